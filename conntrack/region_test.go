package conntrack

import (
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// region returns zeroed, pointer-free memory for a table of cfg (what a
// new shared-memory file gives).
func region(tb testing.TB, cfg Config) []byte {
	tb.Helper()
	n, err := Size(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	w := make([]uint64, n/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), n)
}

// restart copies mem as another process would find it: the same bytes at
// another address.
func restart(mem []byte) []byte {
	w := make([]uint64, len(mem)/8)
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), len(mem))
	copy(b, mem)
	return b
}

var bootA = [16]byte{1, 2, 3}

func attach(tb testing.TB, cfg Config, mem []byte, p Persist) (*Table, AttachInfo) {
	tb.Helper()
	tbl, info, err := Attach(cfg, mem, p)
	if err != nil {
		tb.Fatalf("Attach: %v", err)
	}
	checkTable(tb, tbl)
	checkPairs(tb, tbl)
	return tbl, info
}

// TestAttachHeader: a table is reused only by a configuration of the
// same geometry and seed; anything else is rebuilt with the reason said.
func TestAttachHeader(t *testing.T) {
	base := smallConfig()
	for _, tc := range []struct {
		name   string
		change func(c *Config, mem []byte)
		reason string // "" = reused
	}{
		{"same", func(*Config, []byte) {}, ""},
		{"timeouts and budget may change", func(c *Config, _ []byte) { c.TCPEstablished = time.Hour; c.SynBudget = 50 }, ""},
		{"capacity", func(c *Config, _ []byte) { c.Capacity = 256 }, "capacity"},
		{"capacity6", func(c *Config, _ []byte) { c.Capacity6 = 256 }, "capacity"},
		{"shards", func(c *Config, _ []byte) { c.Shards = 8; c.Capacity = 128 }, "shards"},
		{"seed", func(c *Config, _ []byte) { c.Seed++ }, "hash seed"},
		{"magic", func(_ *Config, m []byte) { m[0] = 'X' }, "magic"},
		{"version", func(_ *Config, m []byte) { (*header)(unsafe.Pointer(&m[0])).Version = 1 }, "format version"},
		{"layout", func(_ *Config, m []byte) { (*header)(unsafe.Pointer(&m[0])).Layout++ }, "layout"},
		{"torn header", func(_ *Config, m []byte) { (*header)(unsafe.Pointer(&m[0])).Pid++ }, "checksum"},
		{"zero", func(_ *Config, m []byte) { clear(m) }, "no table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := region(t, base)
			tbl, info := attach(t, base, mem, Persist{Now: t0, Boot: 5e9, BootID: bootA, Fresh: true, Instance: 7})
			if info.Reused || info.Reason != "" {
				t.Fatalf("fresh: %+v", info)
			}
			k := testKey4(1, protoTCP)
			mustInsert4(t, tbl, &k, Entry4{Backend: 3, State: StateEstablished}, at(0))
			cfg := base
			mem2 := restart(mem)
			tc.change(&cfg, mem2)
			if n, _ := Size(cfg); n > len(mem2) {
				mem2 = append(mem2, make([]byte, n-len(mem2))...)
			}
			if got := Check(cfg, mem2); !strings.Contains(got, tc.reason) || (tc.reason == "") != (got == "") {
				t.Fatalf("Check = %q, want %q", got, tc.reason)
			}
			tbl2, info := attach(t, cfg, mem2, Persist{Now: 77 * t0, Boot: 5e9, BootID: bootA, Instance: 8})
			_, found := tbl2.peekKey4(&k, 77*t0)
			if tc.reason == "" {
				if !info.Reused || !found || info.Entries != 1 || tbl2.Instance() != 7 {
					t.Fatalf("not reused: %+v, found %v, instance %d", info, found, tbl2.Instance())
				}
			} else if info.Reused || found || !strings.Contains(info.Reason, tc.reason) || tbl2.Instance() != 8 {
				t.Fatalf("reused: %+v, found %v", info, found)
			}
		})
	}
}

// TestAttachAfterCrash: a process dies holding shard locks in the middle
// of updates; the next one finds every entry, the locks free, the lists,
// SNAT ports and flow counters rebuilt, and entries exactly as old as
// they are on the boot clock.
func TestAttachAfterCrash(t *testing.T) {
	cfg := smallConfig()
	cfg.Capacity = 256
	mem := region(t, cfg)
	// Process 1: its own clock starts at t0 while the boot clock reads 50s.
	tbl, _ := attach(t, cfg, mem, Persist{Now: t0, Boot: 50e9, BootID: bootA, Fresh: true, Pid: 100})
	var fwd []key4
	for i := range 40 {
		k := testKey4(i, protoTCP)
		if i%2 == 0 {
			mustInsert4(t, tbl, &k, Entry4{Backend: uint32(i % 5), State: StateEstablished}, at(time.Duration(i)*time.Second))
			continue
		}
		idx, port, ok := tbl.allocSNAT4(uint32(i), at(0))
		if !ok {
			t.Fatal("snat")
		}
		f, fe, r, re := fullNATPair4(tbl, k, idx, port, uint32(i%5))
		if err := tbl.insertNAT4(&f, fe, &r, re, at(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
		fwd = append(fwd, f)
	}
	before := tbl.Stats()
	flows := tbl.BackendFlows(1)
	half := fwd[0]
	halfEntry, _ := peek4(tbl, &half)
	pk, _ := tbl.pairKey4(&half, &halfEntry)
	// The crash: two shards locked, one slot torn (used, garbage key), one
	// NAT half whose partner is gone, LRU and free-list heads scribbled.
	tbl.v4.shards[0].lock()
	tbl.v4.shards[2].lock()
	tbl.v4.shards[1].head, tbl.v4.shards[1].free, tbl.v4.shards[3].n = 7, 3, 99
	s0 := &tbl.v4.shards[0]
	torn := int32(0)*int32(tbl.v4.bucketMask+1) + s0.next
	tbl.v4.slots[torn].mark = markUsed
	tbl.v4.slots[torn].state = StateEstablished
	tbl.v4.slots[torn].k = key4{SrcIP: [4]byte{1, 2, 3, 4}} // hashes to some shard, rarely 0
	s0.next++
	h := hash4(&pk, tbl.seed)
	s, b := tbl.v4.locate(h)
	tbl.v4.removeLocked(s, tbl.v4.find(&pk, b, tbl.v4.tag(h)), b) // partner gone without settling

	// Process 2 attaches 70s later on the boot clock, its own clock at 9*t0.
	now2 := 9 * t0
	tbl2, info := attach(t, cfg, restart(mem), Persist{Now: now2, Boot: 120e9, BootID: bootA, Pid: 200})
	if !info.Reused || info.Pid != 100 || info.Rebased {
		t.Fatalf("info %+v", info)
	}
	if want := before.Entries4 - 2; info.Entries != want || info.Dropped < 1 {
		t.Fatalf("kept %d entries (dropped %d), want %d", info.Entries, info.Dropped, want)
	}
	if _, ok := tbl2.peekKey4(&half, now2); ok {
		t.Fatal("NAT half without its partner kept")
	}
	// Established entry i was last seen at i s (process 1), i.e. boot
	// clock 50+i s; now the boot clock is 120s: idle 70-i s.
	k := testKey4(0, protoTCP)
	if e, ok := tbl2.lookup4(&k, TCPFlagACK, now2); !ok || e.Backend != 0 {
		t.Fatalf("entry 0: %+v %v", e, ok)
	}
	// With a 100s timeout, entry 2 (idle 68s) expires 32s later, not before.
	k2 := testKey4(2, protoTCP)
	if _, ok := tbl2.peekKey4(&k2, now2+int64(31*time.Second)); !ok {
		t.Fatal("entry 2 expired early")
	}
	if _, ok := tbl2.peekKey4(&k2, now2+int64(33*time.Second)); ok {
		t.Fatal("entry 2 outlived its timeout")
	}
	// Locks are free, the SNAT ports of kept pairs are held, others free.
	st := tbl2.Stats()
	if st.SNATInUse != len(fwd)-1 {
		t.Fatalf("SNAT in use %d, want %d", st.SNATInUse, len(fwd)-1)
	}
	if st.Inserts < before.Inserts {
		t.Fatalf("counters lost: %d < %d", st.Inserts, before.Inserts)
	}
	if got := tbl2.BackendFlows(1); got > flows || got < flows-2 {
		t.Fatalf("flows of backend 1: %d, were %d", got, flows)
	}
	for i := range 40 {
		k := testKey4(100+i, protoTCP)
		mustInsert4(t, tbl2, &k, Entry4{Backend: 1}, now2)
	}
	tbl2.Expire(now2, 1<<20)
	checkTable(t, tbl2)
	checkPairs(t, tbl2)
}

// TestAttachClock: a table attached in another boot, or with a boot clock
// behind its entries, keeps the entries' ages as they were when it was
// left: nothing expires at once and nothing lives forever.
func TestAttachClock(t *testing.T) {
	cfg := smallConfig() // established 100s
	for _, tc := range []struct {
		name   string
		boot   int64
		id     [16]byte
		rebase bool
	}{
		{"same boot, later", 90e9, bootA, false},
		{"same boot, clock behind", 10e9, bootA, true},
		{"another boot", 1e9, [16]byte{9}, true},
		{"no boot id", 90e9, [16]byte{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := region(t, cfg)
			tbl, _ := attach(t, cfg, mem, Persist{Now: t0, Boot: 50e9, BootID: bootA, Fresh: true})
			old, fresh := testKey4(1, protoTCP), testKey4(2, protoTCP)
			mustInsert4(t, tbl, &old, Entry4{State: StateEstablished}, at(0))
			mustInsert4(t, tbl, &fresh, Entry4{State: StateEstablished}, at(30*time.Second)) // boot 80s
			now := int64(3) * t0
			tbl2, info := attach(t, cfg, restart(mem), Persist{Now: now, Boot: tc.boot, BootID: tc.id})
			if info.Rebased != tc.rebase {
				t.Fatalf("rebased %v, want %v", info.Rebased, tc.rebase)
			}
			idleFresh := 10 * time.Second // same boot: boot clock 90s - 80s
			if tc.rebase {
				idleFresh = 0 // the newest entry is as old as when left
			}
			left := 100*time.Second - idleFresh
			if _, ok := tbl2.peekKey4(&fresh, now+int64(left-time.Second)); !ok {
				t.Fatal("fresh entry expired early")
			}
			if _, ok := tbl2.peekKey4(&fresh, now+int64(left+time.Second)); ok {
				t.Fatal("fresh entry outlived its timeout")
			}
			// The old entry stays 30s older than the fresh one.
			if _, ok := tbl2.peekKey4(&old, now+int64(left-31*time.Second)); !ok {
				t.Fatal("old entry expired early")
			}
			if _, ok := tbl2.peekKey4(&old, now+int64(left-29*time.Second)); ok {
				t.Fatal("old entry outlived its timeout")
			}
		})
	}
}

// TestAttachSNATChange: entries follow their SNAT address to its new index;
// pairs on an address or port no longer configured are dropped.
func TestAttachSNATChange(t *testing.T) {
	cfg := smallConfig() // snat4a, snat4b, snat6a; ports 1000-1099
	cfg.Capacity = 256
	mem := region(t, cfg)
	tbl, _ := attach(t, cfg, mem, Persist{Now: t0, Boot: t0, BootID: bootA, Fresh: true})
	type pair struct {
		fwd  key4
		addr [4]byte
		port uint16
	}
	var pairs []pair
	for i, a := range []uint8{0, 1, 0, 1} {
		port := uint16(1000 + 50*(i/2) + i) // 1000, 1001, 1052, 1053
		if !tbl.snat[a].releaseAllocated(port - 1000) {
			t.Fatal("alloc")
		}
		f, fe, r, re := fullNATPair4(tbl, testKey4(i, protoTCP), a, port, 1)
		if err := tbl.insertNAT4(&f, fe, &r, re, at(0)); err != nil {
			t.Fatal(err)
		}
		ip, _ := tbl.snatIP4(a)
		pairs = append(pairs, pair{f, ip, port})
	}
	// snat4a is gone, snat4b now first; ports 1000-1050.
	cfg2 := cfg
	cfg2.SNATIPs4 = [][4]byte{snat4b, {192, 0, 2, 77}}
	cfg2.SNATPortMax = 1050
	tbl2, info := attach(t, cfg2, restart(mem), Persist{Now: t0, Boot: t0, BootID: bootA})
	if !info.Reused {
		t.Fatalf("%+v", info)
	}
	for i, p := range pairs {
		e, ok := tbl2.peekKey4(&p.fwd, t0)
		want := p.addr == snat4b && p.port <= 1050
		if ok != want {
			t.Fatalf("pair %d (%v:%d): kept %v, want %v", i, p.addr, p.port, ok, want)
		}
		if ok {
			if ip, _ := tbl2.snatIP4(e.SNATAddr); ip != p.addr || e.SNATPort != p.port {
				t.Fatalf("pair %d: SNAT %v:%d, want %v:%d", i, ip, e.SNATPort, p.addr, p.port)
			}
		}
	}
	if st := tbl2.Stats(); st.SNATInUse != 1 || st.Entries4 != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// releaseAllocated takes port offset off out of the free ring (test
// helper: allocate a chosen port).
func (p *snatPool) releaseAllocated(off uint16) bool {
	for j := 0; j < int(p.free); j++ {
		i := (int(p.head) + j) % len(p.ring)
		if p.ring[i] == off {
			// Swap it to the head and allocate it.
			p.ring[i], p.ring[p.head] = p.ring[p.head], p.ring[i]
			got, ok := p.alloc()
			return ok && got == off
		}
	}
	return false
}

// TestSynBudget: half-open entries never take more than their budget of a
// shard; at the budget the oldest half-open entry makes room, whatever its
// age, and established entries are never pushed out by SYNs.
func TestSynBudget(t *testing.T) {
	cfg := smallConfig() // 4 shards of 16
	cfg.SynBudget = 25   // 4 half-open entries per shard
	cfg.EvictMinIdle = 0 // even so, SYNs must not evict established flows
	tbl := newTable(t, cfg)
	keys := keysInShard4(tbl, 0, 200, protoTCP)
	est := keys[:12]
	for i := range est {
		mustInsert4(t, tbl, &est[i], Entry4{Service: 1, State: StateEstablished}, at(0))
	}
	// A flood of 100 SYNs into the shard: 12 established + 4 half-open fill it.
	flood := keys[12:112]
	for i := range flood {
		mustInsert4(t, tbl, &flood[i], Entry4{Service: 2, State: StateSynSent}, at(time.Duration(i)*time.Millisecond))
		if n := tbl.v4.shards[0].synN; n > 4 {
			t.Fatalf("after SYN %d: %d half-open entries", i, n)
		}
	}
	for i := range est {
		if _, ok := peek4(tbl, &est[i]); !ok {
			t.Fatalf("established entry %d pushed out by SYNs", i)
		}
	}
	// The newest four SYNs are the ones kept (oldest evicted first).
	for i, k := range flood {
		_, ok := peek4(tbl, &k)
		if ok != (i >= len(flood)-4) {
			t.Fatalf("SYN %d kept=%v", i, ok)
		}
	}
	st := tbl.Stats()
	if st.EvictedHalfOpen != 96 || st.HalfOpen != 4 || st.HalfOpenBudget != 4*4+4*4 {
		t.Fatalf("stats %+v", st)
	}
	if ss := tbl.ServiceStats(2); ss.Evicted[StateSynSent] != 96 || ss.Refused != 0 {
		t.Fatalf("service stats %+v", ss)
	}
	if ss := tbl.ServiceStats(1); ss.Evicted != [NumStates]uint64{} {
		t.Fatalf("service 1 stats %+v", ss)
	}
	// A real handshake completes: its ACK moves it out of the budget.
	real := keys[150]
	mustInsert4(t, tbl, &real, Entry4{Service: 2, State: StateSynSent}, at(time.Second))
	if e, ok := tbl.lookup4(&real, TCPFlagACK, at(time.Second)); !ok || e.State != StateEstablished {
		t.Fatal("handshake")
	}
	checkTable(t, tbl)
	if tbl.v4.shards[0].synN != 3 {
		t.Fatalf("half-open after the handshake: %d", tbl.v4.shards[0].synN)
	}
}

// TestEvictionOrder: a full shard gives up half-open entries first, oldest
// first; then the least recently used evictable entry; otherwise it
// refuses, counting the refusal for the inserting service.
func TestEvictionOrder(t *testing.T) {
	cfg := smallConfig() // 4 shards of 16, EvictMinIdle 1s
	cfg.SynBudget = 100
	tbl := newTable(t, cfg)
	keys := keysInShard4(tbl, 1, 40, protoTCP)
	// 14 established (the first 4 idle long), 2 half-open.
	for i := range 14 {
		d := 10 * time.Second
		if i < 4 {
			d = 0
		}
		mustInsert4(t, tbl, &keys[i], Entry4{Service: 1, State: StateEstablished}, at(d))
	}
	mustInsert4(t, tbl, &keys[14], Entry4{Service: 2, State: StateSynSent}, at(5*time.Second))
	mustInsert4(t, tbl, &keys[15], Entry4{Service: 2, State: StateSynSent}, at(6*time.Second))
	now := at(10 * time.Second)
	// Full: an established insert evicts the half-open entries, oldest first.
	mustInsert4(t, tbl, &keys[16], Entry4{Service: 3, State: StateEstablished}, now)
	if _, ok := peek4(tbl, &keys[14]); ok {
		t.Fatal("oldest half-open entry not evicted first")
	}
	mustInsert4(t, tbl, &keys[17], Entry4{Service: 3, State: StateEstablished}, now)
	if _, ok := peek4(tbl, &keys[15]); ok {
		t.Fatal("second half-open entry not evicted")
	}
	// No half-open left: the LRU entry idle >= 1s (keys[0]) goes.
	mustInsert4(t, tbl, &keys[18], Entry4{Service: 3, State: StateSynSent}, now)
	if _, ok := peek4(tbl, &keys[0]); ok {
		t.Fatal("LRU entry not evicted")
	}
	// Now the shard holds one half-open entry (keys[18]): the next SYN
	// replaces it rather than an established flow.
	mustInsert4(t, tbl, &keys[19], Entry4{Service: 3, State: StateSynSent}, now)
	if _, ok := peek4(tbl, &keys[18]); ok {
		t.Fatal("half-open entry not replaced by the next SYN")
	}
	for i := 1; i < 14; i++ {
		if _, ok := peek4(tbl, &keys[i]); !ok {
			t.Fatalf("established entry %d evicted", i)
		}
	}
	// Refresh everything: nothing is evictable, an established insert is refused.
	for i := range keys[:20] {
		tbl.lookup4(&keys[i], TCPFlagACK, now)
	}
	if err := tbl.insert4(&keys[30], Entry4{Service: 4, State: StateEstablished}, now); err != ErrFull {
		t.Fatalf("insert into a full shard of fresh flows: %v", err)
	}
	if ss := tbl.ServiceStats(4); ss.Refused != 1 {
		t.Fatalf("refusal not counted: %+v", ss)
	}
	ss := tbl.ServiceStats(2)
	if ss.Evicted[StateSynSent] != 2 {
		t.Fatalf("service 2: %+v", ss)
	}
	if ss := tbl.ServiceStats(1); ss.Evicted[StateEstablished] != 1 {
		t.Fatalf("service 1: %+v", ss)
	}
	checkTable(t, tbl)
}

// TestSparse: a new table writes nothing beyond its header and the slots
// it uses, so a shared-memory file stays sparse.
func TestSparse(t *testing.T) {
	cfg := smallConfig()
	cfg.Capacity, cfg.Capacity6 = 4096, 4096
	mem := region(t, cfg)
	tbl, _ := attach(t, cfg, mem, Persist{Now: t0, Boot: t0, Fresh: true})
	for i := range 10 {
		k := testKey4(i, protoTCP)
		mustInsert4(t, tbl, &k, Entry4{}, at(0))
	}
	tbl.Expire(at(time.Second), 1<<20)
	lay := newLayout(cfg)
	touched := 0
	for p := lay.f4.slots; p < lay.size; p += pageSize {
		for _, b := range mem[p:min(p+pageSize, lay.size)] {
			if b != 0 {
				touched++
				break
			}
		}
	}
	// 10 entries touch at most 10 slot pages, 10 bucket pages and one
	// shard-header page per family (4 shards x 2 families).
	if touched > 24 {
		t.Fatalf("%d pages touched for 10 entries", touched)
	}
}

func BenchmarkAttach(b *testing.B) {
	cfg := benchConfig(1_000_000, false)
	mem := region(b, cfg)
	tbl, _, err := Attach(cfg, mem, Persist{Now: t0, Boot: t0, BootID: bootA, Fresh: true})
	if err != nil {
		b.Fatal(err)
	}
	prefill(b, tbl, shuffled4(1_000_000, 0), at(0))
	b.ResetTimer()
	for range b.N {
		if _, info, err := Attach(cfg, mem, Persist{Now: t0, Boot: t0, BootID: bootA}); err != nil || info.Entries != 1_000_000 {
			b.Fatalf("%v %+v", err, info)
		}
	}
}

// TestSynBudgetEstablishedPair: once the client's ACK establishes a NAT
// pair, its reverse half leaves the half-open list too, so a SYN flood in
// the reverse half's shard cannot evict the connection.
func TestSynBudgetEstablishedPair(t *testing.T) {
	cfg := smallConfig()
	cfg.SynBudget = 25
	tbl := newTable(t, cfg)
	fwd := testKey4(1, protoTCP)
	idx, port, _ := tbl.allocSNAT4(1, at(0))
	f, fe, r, re := fullNATPair4(tbl, fwd, idx, port, 1)
	fe.State, re.State = StateSynSent, StateSynSent
	if err := tbl.insertNAT4(&f, fe, &r, re, at(0)); err != nil {
		t.Fatal(err)
	}
	tbl.lookup4(&r, TCPFlagSYN|TCPFlagACK, at(0)) // the backend's SYN-ACK: still half-open
	if e, _ := peek4(tbl, &r); e.State != StateSynSent {
		t.Fatalf("reverse half after SYN-ACK: state %d", e.State)
	}
	tbl.lookup4(&f, TCPFlagACK, at(0)) // the client's ACK
	if e, _ := peek4(tbl, &r); e.State != StateEstablished {
		t.Fatalf("reverse half after the client's ACK: state %d", e.State)
	}
	h := hash4(&r, tbl.seed)
	si := uint32(h>>32) & tbl.v4.shardMask
	for i, k := range keysInShard4(tbl, si, 100, protoTCP) {
		mustInsert4(t, tbl, &k, Entry4{State: StateSynSent}, at(time.Duration(i)*time.Millisecond))
	}
	if _, ok := peek4(tbl, &f); !ok {
		t.Fatal("established pair evicted by a SYN flood")
	}
	checkTable(t, tbl)
	checkPairs(t, tbl)
}

// TestPointerFree: nothing stored in a table's memory may hold a Go
// pointer (the memory may be a shared mapping the garbage collector
// neither scans nor keeps alive, and another process reads it).
func TestPointerFree(t *testing.T) {
	var check func(path string, typ reflect.Type)
	check = func(path string, typ reflect.Type) {
		switch typ.Kind() {
		case reflect.Pointer, reflect.UnsafePointer, reflect.Slice, reflect.Map, reflect.Chan, reflect.Func,
			reflect.Interface, reflect.String, reflect.Uintptr:
			t.Errorf("%s is a %s", path, typ.Kind())
		case reflect.Array:
			check(path+"[]", typ.Elem())
		case reflect.Struct:
			for i := range typ.NumField() {
				check(path+"."+typ.Field(i).Name, typ.Field(i).Type)
			}
		}
	}
	for _, v := range []any{header{}, shard{}, slot[key4, Entry4]{}, slot[key6, entry6]{}} {
		check(reflect.TypeOf(v).String(), reflect.TypeOf(v))
	}
}
