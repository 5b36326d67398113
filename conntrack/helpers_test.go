package conntrack

import (
	"fmt"
	"testing"
	"time"
)

// t0 is an arbitrary non-zero clock reading for New: tables must work with
// any monotonic origin.
const t0 = int64(1_000_000) * int64(time.Second)

// at returns the clock reading d after t0.
func at(d time.Duration) int64 { return t0 + int64(d) }

var (
	snat4a = [4]byte{192, 0, 2, 100}
	snat4b = [4]byte{192, 0, 2, 101}
	snat6a = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 0x64}
	vip4   = [4]byte{198, 51, 100, 10}
	vip6   = [16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 15: 0x10}
)

// smallConfig is a 64-entry (per family), 4-shard table with distinct
// timeouts so that a wrong timeout choice shows.
func smallConfig() Config {
	c := DefaultConfig()
	c.Capacity = 64
	c.Shards = 4
	c.TCPSyn = 5 * time.Second
	c.TCPEstablished = 100 * time.Second
	c.TCPClosing = 2 * time.Second
	c.UDP = 10 * time.Second
	c.Other = 20 * time.Second
	c.EvictMinIdle = time.Second
	c.SNATIPs4 = [][4]byte{snat4a, snat4b}
	c.SNATIPs6 = [][16]byte{snat6a}
	c.SNATPortMin, c.SNATPortMax = 1000, 1099
	c.Seed = 0x1234_5678_9abc_def0
	c.MaxBackends = 1024
	c.SynBudget = 0 // the plain LRU; TestSynBudget* turn it on
	return c
}

func newTable(tb testing.TB, c Config) *Table {
	tb.Helper()
	tbl, err := New(c, t0)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return tbl
}

// key4 returns a distinct client→VIP key for every i.
func testKey4(i int, proto uint8) key4 {
	return key4{
		SrcIP:   [4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)},
		DstIP:   vip4,
		SrcPort: uint16(1024 + i%50000),
		DstPort: 80,
		Proto:   proto,
	}
}

// key6 returns a distinct client→VIP key for every i.
func testKey6(i int, proto uint8) key6 {
	return key6{
		SrcIP:   [16]byte{0: 0xfd, 1: 1, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)},
		DstIP:   vip6,
		SrcPort: uint16(1024 + i%50000),
		DstPort: 443,
		Proto:   proto,
	}
}

// keysInShard4 returns n distinct keys of the given protocol that hash to
// IPv4 shard si.
func keysInShard4(tbl *Table, si uint32, n int, proto uint8) []key4 {
	var ks []key4
	for i := 0; len(ks) < n; i++ {
		k := testKey4(i, proto)
		if s, _ := tbl.v4.locate(hash4(&k, tbl.seed)); s == &tbl.v4.shards[si] {
			ks = append(ks, k)
		}
	}
	return ks
}

// fullNATPair4 builds a consistent fullnat pair for client key fwd: the
// backend is 192.0.2.11:8080, the SNAT address idx and port as given.
func fullNATPair4(tbl *Table, fwd key4, idx uint8, port uint16, backend uint32) (key4, Entry4, key4, Entry4) {
	bip := [4]byte{192, 0, 2, 11}
	sip, _ := tbl.snatIP4(idx)
	fe := Entry4{Backend: backend, Service: 7, PeerIP: bip, PeerPort: 8080, VIP: fwd.DstIP, VPort: fwd.DstPort,
		SNATAddr: idx, SNATPort: port, Flags: FlagFullNAT}
	rev := key4{SrcIP: bip, SrcPort: 8080, DstIP: sip, DstPort: port, Proto: fwd.Proto}
	re := Entry4{Backend: backend, Service: 7, PeerIP: fwd.SrcIP, PeerPort: fwd.SrcPort, VIP: fwd.DstIP, VPort: fwd.DstPort,
		SNATAddr: idx, SNATPort: port, Flags: FlagFullNAT | FlagReverse}
	return fwd, fe, rev, re
}

func fullNATPair6(tbl *Table, fwd key6, idx uint8, port uint16, backend uint32) (key6, entry6, key6, entry6) {
	bip := [16]byte{0x20, 0x01, 0x0d, 0xb8, 2, 15: 11}
	sip, _ := tbl.snatIP6(idx)
	fe := entry6{Backend: backend, Service: 7, PeerIP: bip, PeerPort: 8080, VIP: fwd.DstIP, VPort: fwd.DstPort,
		SNATAddr: idx, SNATPort: port, Flags: FlagFullNAT}
	rev := key6{SrcIP: bip, SrcPort: 8080, DstIP: sip, DstPort: port, Proto: fwd.Proto}
	re := entry6{Backend: backend, Service: 7, PeerIP: fwd.SrcIP, PeerPort: fwd.SrcPort, VIP: fwd.DstIP, VPort: fwd.DstPort,
		SNATAddr: idx, SNATPort: port, Flags: FlagFullNAT | FlagReverse}
	return fwd, fe, rev, re
}

// checkTable verifies the structural invariants of both families and of
// the SNAT allocator. It must run with no concurrent users.
func checkTable(tb testing.TB, tbl *Table) {
	tb.Helper()
	if err := checkFamily(&tbl.v4); err != nil {
		tb.Fatalf("v4: %v", err)
	}
	if err := checkFamily(&tbl.v6); err != nil {
		tb.Fatalf("v6: %v", err)
	}
	// Flow counters: one per stored entry that is not a reverse half.
	want := make([]int64, len(tbl.flows))
	count := func(backend uint32, flags uint8) {
		if flags&FlagReverse == 0 && int(backend) < len(want) {
			want[backend]++
		}
	}
	tbl.range4(func(_ key4, e Entry4) bool { count(e.Backend, e.Flags); return true })
	tbl.range6(func(_ key6, e entry6) bool { count(e.Backend, e.Flags); return true })
	for id, w := range want {
		if got := tbl.BackendFlows(uint32(id)); got != w {
			tb.Fatalf("BackendFlows(%d) = %d, %d entries stored", id, got, w)
		}
	}
	for i := range tbl.snat {
		p := &tbl.snat[i]
		inUse := 0
		for _, w := range p.used {
			for ; w != 0; w &= w - 1 {
				inUse++
			}
		}
		if inUse+int(p.free) != len(p.ring) {
			tb.Fatalf("snat %d: %d in use + %d free != %d ports", i, inUse, p.free, len(p.ring))
		}
		for j := 0; j < int(p.free); j++ {
			off := p.ring[(int(p.head)+j)%len(p.ring)]
			if p.used[off>>6]&(1<<(off&63)) != 0 {
				tb.Fatalf("snat %d: port offset %d both free and in use", i, off)
			}
		}
	}
}

func checkFamily[K comparable, E comparable, F flavor[K, E]](f *family[K, E, F]) error {
	per := int32(1) << f.bits
	for si := range f.shards {
		s := &f.shards[si]
		lo, hi := int32(si)*per, int32(si+1)*per
		in := func(i int32) bool { return i >= lo && i < hi }
		used := int32(0)
		for i := lo; i < hi; i++ {
			if f.slots[i].mark&markUsed != 0 {
				used++
			}
		}
		if used != s.n {
			return fmt.Errorf("shard %d: n=%d but %d slots used", si, s.n, used)
		}
		if s.next < 0 || s.next > per {
			return fmt.Errorf("shard %d: high-water mark %d out of range", si, s.next)
		}
		for i := lo + s.next; i < hi; i++ {
			if f.slots[i].mark != 0 {
				return fmt.Errorf("shard %d: slot %d above the high-water mark %d is used", si, i, s.next)
			}
		}
		free := per - s.next // never used
		for i := s.free; i >= 0; {
			if !in(i) || i >= lo+s.next || f.slots[i].mark != 0 {
				return fmt.Errorf("shard %d: free list holds slot %d (mark %x)", si, i, f.slots[i].mark)
			}
			if free++; free > per {
				return fmt.Errorf("shard %d: free list loops", si)
			}
			w := f.links[i]
			if w>>f.ib != 0 {
				return fmt.Errorf("shard %d: free link %#x carries a tag", si, w)
			}
			if w == 0 {
				break
			}
			i = lo + int32(w) - 1
		}
		if free+used != per {
			return fmt.Errorf("shard %d: %d free + %d used != %d", si, free, used, per)
		}
		// LRU lists: every used slot once, on the list of its state, links
		// consistent both ways.
		total := int32(0)
		for _, half := range []bool{false, true} {
			head, tail := s.head, s.tail
			if half {
				head, tail = s.synHead, s.synTail
			}
			n, prev := int32(0), int32(-1)
			for i := head; i >= 0; i = f.slots[i].after {
				if !in(i) || f.slots[i].mark&markUsed == 0 {
					return fmt.Errorf("shard %d: LRU holds bad slot %d", si, i)
				}
				if f.halfOpen(f.slots[i].state) != half {
					return fmt.Errorf("shard %d: slot %d in state %d on the wrong LRU list", si, i, f.slots[i].state)
				}
				if f.slots[i].prev != prev {
					return fmt.Errorf("shard %d: LRU prev of %d is %d, want %d", si, i, f.slots[i].prev, prev)
				}
				prev = i
				if n++; n > per {
					return fmt.Errorf("shard %d: LRU loops", si)
				}
			}
			if tail != prev {
				return fmt.Errorf("shard %d: LRU (half-open %v) tail %d, want %d", si, half, tail, prev)
			}
			if half && n != s.synN {
				return fmt.Errorf("shard %d: %d half-open entries listed, synN %d", si, n, s.synN)
			}
			total += n
		}
		if total != used {
			return fmt.Errorf("shard %d: LRU lists hold %d entries, want %d", si, total, used)
		}
		// Chains: every used slot reachable from the bucket of its hash.
		seen := 0
		for b := lo; b < hi; b++ {
			c := 0
			for w := f.buckets[b]; w&f.idxMask != 0; w = f.links[lo+int32(w&f.idxMask)-1] {
				i := lo + int32(w&f.idxMask) - 1
				if !in(i) || f.slots[i].mark&markUsed == 0 {
					return fmt.Errorf("shard %d: bucket %d chains bad slot %d", si, b, i)
				}
				h := f.hashOf(&f.slots[i].k)
				hs, hb := f.locate(h)
				if hs != s || hb != uint32(b) {
					return fmt.Errorf("shard %d: slot %d chained in bucket %d, hashes to %d", si, i, b, hb)
				}
				if w>>f.ib != f.tag(h) {
					return fmt.Errorf("shard %d: slot %d chained with tag %#x, hash has %#x", si, i, w>>f.ib, f.tag(h))
				}
				if c++; c > int(per) {
					return fmt.Errorf("shard %d: bucket %d loops", si, b)
				}
				seen++
			}
		}
		if seen != int(used) {
			return fmt.Errorf("shard %d: chains hold %d slots, %d used", si, seen, used)
		}
	}
	return nil
}

// checkPairs verifies, for a table used by one goroutine, that every stored
// NAT entry's partner is stored and names it back, and that the SNAT ports
// in use are exactly those of the stored fullnat forward entries.
func checkPairs(tb testing.TB, tbl *Table) {
	tb.Helper()
	type port struct {
		idx  uint8
		port uint16
	}
	held := map[port]bool{}
	tbl.range4(func(k key4, e Entry4) bool {
		if !isPaired(e.Flags) {
			return true
		}
		pk, ok := tbl.pairKey4(&k, &e)
		if !ok {
			tb.Errorf("v4 %v: NAT entry without partner key", k)
			return true
		}
		var pe Entry4
		found := false
		tbl.range4(func(k2 key4, e2 Entry4) bool {
			if k2 == pk {
				pe, found = e2, true
				return false
			}
			return true
		})
		if back, _ := tbl.pairKey4(&pk, &pe); !found || back != k {
			tb.Errorf("v4 %v: partner %v missing or not pointing back (found %v)", k, pk, found)
		}
		if e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT {
			p := port{e.SNATAddr, e.SNATPort}
			if held[p] {
				tb.Errorf("v4 %v: SNAT port %v held twice", k, p)
			}
			held[p] = true
		}
		return true
	})
	tbl.range6(func(k key6, e entry6) bool {
		if e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT {
			held[port{e.SNATAddr, e.SNATPort}] = true
		}
		return true
	})
	for i := range tbl.snat {
		p := &tbl.snat[i]
		for off := 0; off < len(p.ring); off++ {
			inUse := p.used[off>>6]&(1<<(off&63)) != 0
			if h := held[port{uint8(i), tbl.portMin + uint16(off)}]; h != inUse {
				tb.Errorf("snat %d port %d: allocated=%v, held by an entry=%v", i, int(tbl.portMin)+off, inUse, h)
			}
		}
	}
}

// Most tests are written with the table's stored types (key4, Entry4, key6,
// entry6); these adapters run them through the public API (Key, Entry,
// one method per operation for both families).

func wide4(k *key4) Key {
	var w Key
	wideKey4(k, &w)
	return w
}

func wide6(k *key6) Key {
	var w Key
	wideKey6(k, &w)
	return w
}

func wideE4(e *Entry4) Entry {
	var w Entry
	wideEntry4(e, e.State, &w)
	return w
}

func wideE6(e *entry6) Entry {
	var w Entry
	wideEntry6(e, e.State, &w)
	return w
}

func (t *Table) lookup4(k *key4, tcpFlags uint8, now int64) (Entry4, bool) {
	if k == nil {
		return Entry4{}, false
	}
	w := wide4(k)
	var e Entry
	ok := t.Lookup(&w, t.Hash(&w), tcpFlags, now, &e)
	return narrowEntry4(&e), ok
}

func (t *Table) lookup6(k *key6, tcpFlags uint8, now int64) (entry6, bool) {
	if k == nil {
		return entry6{}, false
	}
	w := wide6(k)
	var e Entry
	ok := t.Lookup(&w, t.Hash(&w), tcpFlags, now, &e)
	return narrowEntry6(&e), ok
}

func (t *Table) peekKey4(k *key4, now int64) (Entry4, bool) {
	if k == nil {
		return Entry4{}, false
	}
	w := wide4(k)
	var e Entry
	ok := t.Peek(&w, t.Hash(&w), now, &e)
	return narrowEntry4(&e), ok
}

func (t *Table) insert4(k *key4, e Entry4, now int64) error {
	if k == nil {
		return t.Insert(nil, &Entry{}, now)
	}
	w, we := wide4(k), wideE4(&e)
	return t.Insert(&w, &we, now)
}

func (t *Table) insert6(k *key6, e entry6, now int64) error {
	if k == nil {
		return t.Insert(nil, &Entry{}, now)
	}
	w, we := wide6(k), wideE6(&e)
	return t.Insert(&w, &we, now)
}

func (t *Table) delete4(k *key4) bool {
	if k == nil {
		return t.Delete(nil)
	}
	w := wide4(k)
	return t.Delete(&w)
}

func (t *Table) delete6(k *key6) bool {
	if k == nil {
		return t.Delete(nil)
	}
	w := wide6(k)
	return t.Delete(&w)
}

func (t *Table) insertNAT4(fwd *key4, fe Entry4, rev *key4, re Entry4, now int64) error {
	var fk, rk *Key
	if fwd != nil {
		w := wide4(fwd)
		fk = &w
	}
	if rev != nil {
		w := wide4(rev)
		rk = &w
	}
	wf, wr := wideE4(&fe), wideE4(&re)
	return t.InsertNAT(fk, &wf, rk, &wr, now)
}

func (t *Table) insertNAT6(fwd *key6, fe entry6, rev *key6, re entry6, now int64) error {
	var fk, rk *Key
	if fwd != nil {
		w := wide6(fwd)
		fk = &w
	}
	if rev != nil {
		w := wide6(rev)
		rk = &w
	}
	wf, wr := wideE6(&fe), wideE6(&re)
	return t.InsertNAT(fk, &wf, rk, &wr, now)
}

func (t *Table) pairKey4(k *key4, e *Entry4) (key4, bool) {
	if k == nil || e == nil {
		return key4{}, t.PairKey(nil, nil, nil)
	}
	w, we := wide4(k), wideE4(e)
	var out Key
	ok := t.PairKey(&w, &we, &out)
	return narrowKey4(&out), ok
}

func (t *Table) pairKey6(k *key6, e *entry6) (key6, bool) {
	if k == nil || e == nil {
		return key6{}, t.PairKey(nil, nil, nil)
	}
	w, we := wide6(k), wideE6(e)
	var out Key
	ok := t.PairKey(&w, &we, &out)
	return narrowKey6(&out), ok
}

func (t *Table) allocSNAT4(hash uint32, _ int64) (uint8, uint16, bool) {
	return t.AllocSNAT(false, hash)
}
func (t *Table) allocSNAT6(hash uint32, _ int64) (uint8, uint16, bool) {
	return t.AllocSNAT(true, hash)
}

func (t *Table) range4(fn func(k key4, e Entry4) bool) {
	if fn == nil {
		t.Range(nil)
		return
	}
	t.Range(func(k *Key, e *Entry) bool {
		if k.V6 {
			return false
		}
		return fn(narrowKey4(k), narrowEntry4(e))
	})
}

func (t *Table) range6(fn func(k key6, e entry6) bool) {
	if fn == nil {
		t.Range(nil)
		return
	}
	t.Range(func(k *Key, e *Entry) bool {
		if !k.V6 {
			return true
		}
		return fn(narrowKey6(k), narrowEntry6(e))
	})
}

func (t *Table) prefetch4(keys []key4) {
	hs := make([]uint64, len(keys))
	for i := range keys {
		hs[i] = hash4(&keys[i], t.seed)
	}
	t.Prefetch(false, hs)
}

func (t *Table) prefetch6(keys []key6) {
	hs := make([]uint64, len(keys))
	for i := range keys {
		hs[i] = hash6(&keys[i], t.seed)
	}
	t.Prefetch(true, hs)
}
