package conntrack

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestLookupTakesNoLock: a hit on an established flow, and a miss, take
// no lock and write nothing shared; a hit that changes the entry takes
// the lock (waiting while another holds it).
func TestLookupTakesNoLock(t *testing.T) {
	tbl := newTable(t, smallConfig())
	k4 := testKey4(1, protoTCP)
	k := wide4(&k4)
	h := tbl.Hash(&k)
	if err := tbl.Insert(&k, &Entry{Backend: 9, State: StateEstablished}, at(0)); err != nil {
		t.Fatal(err)
	}
	// Taking the lock moves seq by two: lookups that leave it where it
	// was took no lock.
	s, _ := tbl.v4.locate(h)
	seq := s.seq.Load()
	var e Entry
	ok := tbl.Lookup(&k, h, TCPFlagACK, at(time.Millisecond), &e) && e.Backend == 9
	m4 := testKey4(2, protoTCP)
	miss := wide4(&m4)
	ok = ok && !tbl.Lookup(&miss, tbl.Hash(&miss), TCPFlagACK, at(0), &e)
	ok = ok && tbl.Peek(&k, h, at(time.Second), &e)
	var e4 Entry4
	ok = ok && tbl.LookupFast4(flow4(&k4), h, TCPFlagACK, tbl.Tick(at(2*time.Millisecond)), &e4) && e4.Backend == 9
	if !ok {
		t.Error("lock-free lookups gave wrong answers")
	}
	if got := s.seq.Load(); got != seq {
		t.Fatalf("lookups of an established flow moved seq from %d to %d: they took the lock", seq, got)
	}
	// A lookup that changes the state takes the lock, and waits for it.
	s.lock()
	done := make(chan bool)
	go func() {
		var e Entry
		done <- tbl.Lookup(&k, h, TCPFlagFIN|TCPFlagACK, at(time.Second), &e) && e.State == StateClosing
	}()
	select {
	case <-done:
		t.Fatal("a lookup that changes the state did not wait for the lock")
	case <-time.After(50 * time.Millisecond):
	}
	s.unlock()
	if !<-done {
		t.Error("FIN did not move the entry to closing")
	}
	if got := s.seq.Load(); got != seq+4 {
		t.Errorf("seq %d after one locked section by the test and one by the lookup, want %d", got, seq+4)
	}
	checkTable(t, tbl)
}

// TestLookupWritesOnceATick: the lock-free hit leaves the shard's header
// alone and stores the entry's timestamp only when the tick has changed.
func TestLookupWritesOnceATick(t *testing.T) {
	tbl := newTable(t, smallConfig())
	k4 := testKey4(1, protoUDP)
	k := wide4(&k4)
	h := tbl.Hash(&k)
	if err := tbl.Insert(&k, &Entry{Backend: 1}, at(0)); err != nil {
		t.Fatal(err)
	}
	s, b := tbl.v4.locate(h)
	sl := &tbl.v4.slots[tbl.v4.find(&k4, b, tbl.v4.tag(h))]
	seq := s.seq.Load()
	var e Entry
	for i := range 5 {
		if !tbl.Lookup(&k, h, 0, at(time.Duration(i)*time.Millisecond), &e) { // all within tick 0
			t.Fatal("miss")
		}
	}
	if sl.seen != 0 || s.seq.Load() != seq {
		t.Fatalf("lookups in one tick wrote: seen %d, seq %d -> %d", sl.seen, seq, s.seq.Load())
	}
	if !tbl.Lookup(&k, h, 0, at(25*time.Millisecond), &e) {
		t.Fatal("miss")
	}
	want, wantSeq := uint32(2), seq
	if raceEnabled {
		wantSeq += 2 // in a race build the locked path stores it
	}
	if sl.seen != want || s.seq.Load() != wantSeq {
		t.Fatalf("a lookup two ticks later: seen %d (want %d), seq %d -> %d (want %d)", sl.seen, want, seq, s.seq.Load(), wantSeq)
	}
}

// TestLockFreeReadsNotTorn has writers overwrite, delete and re-insert
// entries whose fields all carry one number v, stored under key v%keys,
// while readers look them up without locks: a reader that saw half of one
// write and half of another would find two numbers, or the number of
// another key (a slot freed and reused while it read it). Run with and
// without -race.
func TestLockFreeReadsNotTorn(t *testing.T) {
	c := smallConfig()
	c.Capacity, c.Shards = 64, 1 // one shard: every write moves the readers' seq
	tbl := newTable(t, c)
	const keys = 8
	ks := make([]Key, keys)
	for i := range ks {
		if i%2 == 0 {
			k := testKey4(i, protoUDP)
			ks[i] = wide4(&k)
		} else {
			k := testKey6(i, protoUDP)
			ks[i] = wide6(&k)
		}
	}
	entry := func(v uint32) *Entry {
		e := &Entry{Backend: v, Service: v, PeerPort: uint16(v), VPort: uint16(v), State: StateUDP}
		for j := range e.PeerIP {
			e.PeerIP[j], e.VIP[j] = byte(v), byte(v)
		}
		return e
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := uint32(w); !stop.Load(); v = (v + 3) & 0xff {
				k := &ks[v%keys]
				if v%3 == 0 {
					tbl.Delete(k)
				}
				_ = tbl.Insert(k, entry(v), at(0))
			}
		}()
	}
	var bad atomic.Int64
	var hits atomic.Int64
	var readers sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var e Entry
			for n := 0; hits.Load() < 5000 && time.Now().Before(deadline); n++ {
				k := &ks[n%keys]
				if !tbl.Lookup(k, tbl.Hash(k), 0, at(0), &e) {
					continue
				}
				hits.Add(1)
				v := e.Backend
				ok := v%keys == uint32(n%keys) && e.Service == v && e.PeerPort == uint16(v) && e.VPort == uint16(v)
				alen := 4
				if k.V6 {
					alen = 16
				}
				for j := range alen {
					ok = ok && e.PeerIP[j] == byte(v) && e.VIP[j] == byte(v)
				}
				if !ok {
					bad.Add(1)
				}
			}
		}()
	}
	readers.Wait()
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d lookups returned a torn entry", bad.Load(), hits.Load())
	}
	checkTable(t, tbl)
}

// TestAttachResetsSeq: a process that died in the middle of a write leaves
// its shard's seq odd; the next Attach starts it even, so that lookups are
// lock-free again.
func TestAttachResetsSeq(t *testing.T) {
	cfg := smallConfig()
	mem := region(t, cfg)
	tbl, _, err := Attach(cfg, mem, Persist{Now: t0, Boot: t0, BootID: bootA, Fresh: true})
	if err != nil {
		t.Fatal(err)
	}
	k4 := testKey4(1, protoTCP)
	k := wide4(&k4)
	if err := tbl.Insert(&k, &Entry{Backend: 4, State: StateEstablished}, at(0)); err != nil {
		t.Fatal(err)
	}
	s, _ := tbl.v4.locate(tbl.Hash(&k))
	s.lock() // and the process dies here
	tbl2, info, err := Attach(cfg, mem, Persist{Now: t0, Boot: t0, BootID: bootA})
	if err != nil || !info.Reused {
		t.Fatalf("%+v %v", info, err)
	}
	for i := range tbl2.v4.shards {
		if sq := tbl2.v4.shards[i].seq.Load(); sq != 0 {
			t.Fatalf("shard %d: seq %d after Attach", i, sq)
		}
	}
	var e Entry
	k4w := narrowKey4(&k)
	if st, r := tbl2.v4.read(&k4w, tbl2.Hash(&k), tbl2.tick(at(0)), TCPFlagACK, true, true, new(Entry4)); r != readHit || st != StateEstablished {
		t.Fatalf("read after Attach: %d %d", st, r)
	}
	if !tbl2.Lookup(&k, tbl2.Hash(&k), TCPFlagACK, at(0), &e) || e.Backend != 4 {
		t.Fatalf("entry %+v", e)
	}
}

// TestLockFreeReadSlotReuse: writers keep moving one slot between two
// keys (delete one, insert the other: the free list hands the same slot
// back) while readers look up one of them; an entry of the other key
// would be a read torn between a key and the entry that replaced it.
func TestLockFreeReadSlotReuse(t *testing.T) {
	for _, fast := range []bool{false, true} {
		t.Run(map[bool]string{false: "Lookup", true: "LookupFast4"}[fast], func(t *testing.T) { slotReuse(t, fast) })
	}
}

func slotReuse(t *testing.T, fast bool) {
	c := smallConfig()
	c.Capacity, c.Shards = 16, 1
	tbl := newTable(t, c)
	a4, b4 := testKey4(1, protoUDP), testKey4(2, protoUDP)
	ka, kb := wide4(&a4), wide4(&b4)
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for v := uint32(0); !stop.Load(); v += 2 {
			tbl.Delete(&kb)
			_ = tbl.Insert(&ka, &Entry{Backend: v, Service: v, State: StateUDP}, at(0))
			tbl.Delete(&ka)
			_ = tbl.Insert(&kb, &Entry{Backend: v + 1, Service: v + 1, State: StateUDP}, at(0))
		}
	}()
	var e Entry
	var e4 Entry4
	h := tbl.Hash(&ka)
	lookup := func() (backend, service uint32, ok bool) {
		if fast {
			ok = tbl.LookupFast4(flow4(&a4), h, 0, tbl.Tick(at(0)), &e4)
			return e4.Backend, e4.Service, ok
		}
		ok = tbl.Lookup(&ka, h, 0, at(0), &e)
		return e.Backend, e.Service, ok
	}
	hits, bad := 0, 0
	deadline := time.Now().Add(2 * time.Second)
	for n := 0; (n < 2_000_000 || hits < 1000) && time.Now().Before(deadline); n++ {
		if be, svc, ok := lookup(); ok {
			hits++
			if be%2 != 0 || svc != be {
				bad++
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	if bad != 0 || hits == 0 {
		t.Fatalf("%d of %d lookups of one key returned another key's entry", bad, hits)
	}
	t.Logf("%d hits", hits)
	// A writer in the middle of a change (seq odd) sends readers to the
	// lock; LookupFast4 then reports nothing.
	_ = tbl.Insert(&ka, &Entry{Backend: 2, Service: 2, State: StateUDP}, at(0))
	s, _ := tbl.v4.locate(h)
	s.lock()
	if _, r := tbl.v4.read(&a4, h, 0, 0, false, false, new(Entry4)); r != readSlow {
		t.Errorf("read during a write: %d, want readSlow", r)
	}
	if tbl.LookupFast4(flow4(&a4), h, 0, tbl.Tick(at(0)), &e4) {
		t.Error("LookupFast4 hit while a writer held the shard")
	}
	s.unlock()
	if be, _, ok := lookup(); !ok || be != 2 {
		t.Errorf("lookup after the write: %v %d", ok, be)
	}
}

// TestHash: the hash callers get for a key is the one the table files its
// stored form under.
func TestHash(t *testing.T) {
	tbl := newTable(t, smallConfig())
	for i := range 1000 {
		k4 := testKey4(i, uint8(i))
		w4 := wide4(&k4)
		w4.SrcIP[7] = byte(i) // IPv4: the last twelve bytes are not part of the key
		if got, want := tbl.Hash(&w4), hash4(&k4, tbl.seed); got != want {
			t.Fatalf("%+v: Hash %x, stored under %x", k4, got, want)
		}
		k6 := testKey6(i, uint8(i))
		w6 := wide6(&k6)
		if got, want := tbl.Hash(&w6), hash6(&k6, tbl.seed); got != want {
			t.Fatalf("%+v: Hash %x, stored under %x", k6, got, want)
		}
	}
}

// TestSeqInPadding: the sequence count sits after every field the memory
// format knows, in the header's padding, so that a table the previous
// binary left (format 2, same layout checksum) is reused on upgrade.
func TestSeqInPadding(t *testing.T) {
	var sh shard
	if unsafe.Offsetof(sh.seq) < unsafe.Offsetof(sh.pairRemovals)+unsafe.Sizeof(sh.pairRemovals) ||
		unsafe.Sizeof(sh) != 2*cacheLine || FormatVersion != 2 {
		t.Fatalf("seq at %d, counters end at %d, shard %d bytes, format %d", unsafe.Offsetof(sh.seq),
			unsafe.Offsetof(sh.pairRemovals)+unsafe.Sizeof(sh.pairRemovals), unsafe.Sizeof(sh), FormatVersion)
	}
}
