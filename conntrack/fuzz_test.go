package conntrack

import (
	"errors"
	"testing"
	"time"
)

// model is the reference the fuzz target checks the table against: a Go
// map per family holding what the table should hold, with the timestamp in
// the table's ticks. Entries whose timeout has passed stay in the model
// until the table must have dropped them (a lookup or delete of that key,
// or a full Expire sweep), because Expire's partial sweeps may or may not
// have reached them.
type model[K comparable, E any] struct {
	m map[K]*modelEntry[E]
}

type modelEntry[E any] struct {
	e     E
	state uint8
	seen  int64 // ticks
}

func modelTick(now int64) int64 { return (now - t0) / int64(Tick) }

// modelTimeout is the timeout of each state in ticks for smallConfig:
// syn 5s, established 100s, closing and closed 2s, udp 10s, other 20s.
func modelTimeout(st uint8) int64 {
	switch st {
	case StateSynSent:
		return 500
	case StateEstablished:
		return 10000
	case StateClosing, StateClosed:
		return 200
	case StateUDP:
		return 1000
	}
	return 2000
}

// modelNext is the TCP state machine as the documentation states it.
func modelNext(st, fl uint8) uint8 {
	if st == StateUDP || st == StateOther {
		return st
	}
	rst, fin, syn, ack := fl&TCPFlagRST != 0, fl&TCPFlagFIN != 0, fl&TCPFlagSYN != 0, fl&TCPFlagACK != 0
	switch {
	case rst:
		return StateClosed
	case fin && st != StateClosed:
		return StateClosing
	case fin:
		return st
	case syn && (st == StateClosing || st == StateClosed):
		return StateSynSent
	case syn:
		return st
	case ack && st == StateSynSent:
		return StateEstablished
	}
	return st
}

func modelInitial(st, proto uint8) uint8 {
	if st != StateNone && st < numStates {
		return st
	}
	switch proto {
	case protoTCP:
		return StateSynSent
	case protoUDP:
		return StateUDP
	}
	return StateOther
}

func (m *model[K, E]) expired(me *modelEntry[E], now int64) bool {
	return modelTick(now)-me.seen > modelTimeout(me.state)
}

// fuzzProto spreads the fuzz keys over TCP, UDP and GRE.
func fuzzProto(i int) uint8 { return [3]uint8{protoTCP, protoUDP, 47}[i%3] }

// FuzzTable interprets data as a sequence of operations, three bytes each
// (op, a, b), on a small table and on the reference model, and checks that
// they agree. data[0] bit 0 selects a table small enough to evict (8
// entries per shard for 24 keys per family); there the model accepts that
// live entries disappear and checks everything else. The structural
// invariants and the NAT pair/SNAT invariants are checked along the way.
func FuzzTable(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 1, 1, 0x12, 6, 0, 50, 1, 1, 0x10})
	f.Add([]byte{1, 0, 3, 1, 0, 4, 2, 0, 5, 2, 6, 0, 255, 7, 0, 255, 1, 3, 0x10})
	f.Add([]byte{0, 8, 1, 2, 8, 2, 3, 9, 1, 4, 6, 0, 200, 9, 1, 4, 10, 2, 0, 7, 0, 255})
	f.Add([]byte{1, 8, 1, 1, 8, 2, 2, 8, 3, 3, 8, 4, 4, 8, 5, 5, 8, 6, 6, 6, 0, 30, 8, 7, 7, 7, 0, 255})
	f.Add([]byte{0, 3, 1, 9, 3, 2, 10, 4, 1, 0x12, 5, 1, 0, 6, 0, 250, 4, 1, 0x10, 7, 0, 255})
	f.Fuzz(fuzzTable)
}

func fuzzTable(t *testing.T, data []byte) {
	if len(data) == 0 || len(data) > 3*256 {
		return
	}
	evicting := data[0]&1 == 1
	data = data[1:]
	c := smallConfig()
	if evicting {
		c.Capacity, c.Shards = 16, 2
	} else {
		c.Capacity = 256 // 64 per shard: more than all keys of a family
	}
	tbl := newTable(t, c)
	m4 := model[key4, Entry4]{m: map[key4]*modelEntry[Entry4]{}}
	m6 := model[key6, entry6]{m: map[key6]*modelEntry[entry6]{}}
	now := at(0)
	for n := 0; len(data) >= 3; n++ {
		op, a, b := data[0], int(data[1]), data[2]
		data = data[3:]
		switch op % 11 {
		case 0: // Insert4
			k := testKey4(a%24, fuzzProto(a))
			e := Entry4{Backend: uint32(b), Service: uint32(a), VPort: uint16(b) << 4, State: b % 9}
			_, stored := peek4(tbl, &k)
			err := tbl.insert4(&k, e, now)
			fuzzInsert(t, &m4, k, e, k.Proto, stored, err, evicting, now)
		case 1: // Lookup4
			k := testKey4(a%24, fuzzProto(a))
			e, ok := tbl.lookup4(&k, b, now)
			fuzzLookup(t, &m4, k, e, ok, b, k.Proto == protoTCP, evicting, now, func(e *Entry4) *uint8 { return &e.State })
		case 2: // Delete4
			k := testKey4(a%24, fuzzProto(a))
			fuzzDelete(t, &m4, k, tbl.delete4(&k), evicting, now)
		case 3: // Insert6
			k := testKey6(a%24, fuzzProto(a))
			e := entry6{Backend: uint32(b), Service: uint32(a), VPort: uint16(b) << 4, State: b % 9}
			_, stored := peek6(tbl, &k)
			err := tbl.insert6(&k, e, now)
			fuzzInsert(t, &m6, k, e, k.Proto, stored, err, evicting, now)
		case 4: // Lookup6
			k := testKey6(a%24, fuzzProto(a))
			e, ok := tbl.lookup6(&k, b, now)
			fuzzLookup(t, &m6, k, e, ok, b, k.Proto == protoTCP, evicting, now, func(e *entry6) *uint8 { return &e.State })
		case 5: // Delete6
			k := testKey6(a%24, fuzzProto(a))
			fuzzDelete(t, &m6, k, tbl.delete6(&k), evicting, now)
		case 6: // time passes
			now += int64(b)*int64(50*time.Millisecond) + int64(a%10)*int64(time.Millisecond)
		case 7: // Expire; b == 255: a full sweep, then compare counts
			if b != 255 {
				if removed := tbl.Expire(now, int(b)+1); removed < 0 {
					t.Fatalf("Expire returned %d", removed)
				}
				break
			}
			st := tbl.Stats()
			tbl.Expire(now, st.Capacity4+st.Capacity6)
			live4, live6 := m4.sweep(now), m6.sweep(now)
			got4, got6 := 0, 0
			tbl.range4(func(k key4, e Entry4) bool {
				if e.Flags == 0 {
					got4++
				}
				return true
			})
			tbl.range6(func(key6, entry6) bool { got6++; return true })
			if !evicting && (got4 != live4 || got6 != live6) {
				t.Fatalf("op %d: after a full sweep the table holds %d/%d plain entries, the model %d/%d", n, got4, got6, live4, live6)
			}
		case 8: // InsertNAT4 of a fullnat pair for client a%16
			idx, port, ok := tbl.allocSNAT4(uint32(b)*0x9e3779b9, now)
			if !ok {
				break
			}
			fwd, fe, rev, re := fullNATPair4(tbl, testKey4(1000+a%16, fuzzProto(a)), idx, port, uint32(b))
			fe.State, re.State = b%9, b%9
			err := tbl.insertNAT4(&fwd, fe, &rev, re, now)
			if err != nil && (!evicting || !errors.Is(err, ErrFull)) {
				t.Fatalf("op %d: InsertNAT4: %v", n, err)
			}
		case 9: // Lookup4 on a NAT client key or a reverse key
			k := testKey4(1000+a%16, fuzzProto(a))
			if e, ok := tbl.lookup4(&k, b, now); ok {
				if rev, ok := tbl.pairKey4(&k, &e); ok {
					tbl.lookup4(&rev, b, now)
				}
			}
		case 10: // Delete4 of either half of a NAT pair
			k := testKey4(1000+a%16, fuzzProto(a))
			if e, ok := peek4(tbl, &k); ok && b&1 == 1 {
				if rev, ok := tbl.pairKey4(&k, &e); ok {
					k = rev
				}
			}
			tbl.delete4(&k)
		}
		if n%16 == 15 {
			checkTable(t, tbl)
		}
	}
	checkTable(t, tbl)
	checkPairs(t, tbl)
}

// fuzzInsert checks the outcome of an insert of k, which the table held
// (possibly expired) before the insert if stored.
func fuzzInsert[K comparable, E any](t *testing.T, m *model[K, E], k K, e E, proto uint8, stored bool, err error, evicting bool, now int64) {
	t.Helper()
	var st *uint8
	switch e := any(&e).(type) {
	case *Entry4:
		st = &e.State
	case *entry6:
		st = &e.State
	}
	if err != nil {
		if !evicting || !errors.Is(err, ErrFull) {
			t.Fatalf("Insert(%v): %v", k, err)
		}
		// Replacing never fails: ErrFull means the key was not stored,
		// and a live model entry for it must have been evicted.
		if stored {
			t.Fatalf("Insert(%v) = ErrFull but the table held the key", k)
		}
		delete(m.m, k)
		return
	}
	*st = modelInitial(*st, proto)
	m.m[k] = &modelEntry[E]{e: e, state: *st, seen: modelTick(now)}
}

func fuzzLookup[K comparable, E comparable](t *testing.T, m *model[K, E], k K, got E, ok bool, flags uint8, tcp, evicting bool, now int64, state func(*E) *uint8) {
	t.Helper()
	me := m.m[k]
	if me != nil && m.expired(me, now) {
		delete(m.m, k)
		me = nil
	}
	switch {
	case me == nil && ok:
		t.Fatalf("Lookup(%v) hit %+v, the model has no live entry", k, got)
	case me == nil:
		return
	case !ok && evicting: // evicted
		delete(m.m, k)
		return
	case !ok:
		t.Fatalf("Lookup(%v) missed, the model holds %+v", k, me.e)
	}
	if tcp {
		me.state = modelNext(me.state, flags)
	}
	me.seen = modelTick(now)
	want := me.e
	*state(&want) = me.state
	if got != want {
		t.Fatalf("Lookup(%v) = %+v, want %+v", k, got, want)
	}
}

func fuzzDelete[K comparable, E any](t *testing.T, m *model[K, E], k K, deleted, evicting bool, now int64) {
	t.Helper()
	me := m.m[k]
	delete(m.m, k)
	switch {
	case me == nil && deleted:
		t.Fatalf("Delete(%v) = true, the model has no entry", k)
	case me != nil && !deleted && !evicting && !m.expired(me, now):
		t.Fatalf("Delete(%v) = false, the model holds a live entry", k)
	}
}

// sweep drops the expired entries (the table's full sweep removed them)
// and returns the number of live ones.
func (m *model[K, E]) sweep(now int64) int {
	for k, me := range m.m {
		if m.expired(me, now) {
			delete(m.m, k)
		}
	}
	return len(m.m)
}
