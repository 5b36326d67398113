package conntrack

import (
	"sync/atomic"
	"time"
	"unsafe"
)

// Tick is the resolution of the timestamps stored in entries. A timestamp
// is a uint32 count of ticks since the table was created (for a table in
// shared memory: since its file was created, on the boot clock, see
// Persist).
const Tick = 10 * time.Millisecond

const tickNanos = uint64(Tick)

// Table is the flow table: one family of IPv4 entries, one of IPv6 entries
// and the SNAT port allocator. All methods are safe for concurrent use.
type Table struct {
	v4 family[key4, Entry4, flavor4]
	v6 family[key6, entry6, flavor6]

	base     int64   // the caller's clock at tick 0
	seed     uint64  // hash key
	mem      []byte  // the table's memory: Go heap (New) or the caller's (Attach)
	hdr      *header // at the start of mem
	cfg      Config
	timeouts [8]uint32  // in ticks, indexed by state
	minIdle  uint32     // EvictMinIdle in ticks (0: always evictable)
	snat     []snatPool // SNATIPs4 ++ SNATIPs6
	snat4    [][4]byte
	snat6    [][16]byte
	portMin  uint16
	portMax  uint16
	flows    []atomic.Int64 // per backend ID, see BackendFlows
	svc      []svcCounters  // per service ID, see ServiceStats

	_      [cacheLine]byte
	cursor atomic.Uint64 // Expire position, in slots over v4 ++ v6
	_      [cacheLine - 8]byte
}

// New returns a table configured by cfg, with every slot, index and SNAT
// port list preallocated in the Go heap. now is the caller's monotonic
// clock in nanoseconds; every later now must come from the same clock.
// For a table that outlives the process, see Attach.
func New(cfg Config, now int64) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	lay := newLayout(cfg)
	// One pointer-free allocation: the garbage collector never scans it.
	words := make([]uint64, lay.size/8)
	mem := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), lay.size)
	t, _, err := Attach(cfg, mem, Persist{Now: now, Boot: now, Fresh: true})
	return t, err
}

// makeTable returns a table with the Go-heap parts of cfg set up: clock,
// timeouts, SNAT addresses and counters (the SNAT port pools are made by
// the caller, which knows which ports are in use).
func makeTable(cfg Config, now int64) *Table {
	t := &Table{
		cfg:     cfg,
		base:    now,
		seed:    hashSeed(cfg.Seed),
		snat4:   append([][4]byte(nil), cfg.SNATIPs4...),
		snat6:   append([][16]byte(nil), cfg.SNATIPs6...),
		portMin: cfg.SNATPortMin,
		portMax: cfg.SNATPortMax,
	}
	t.timeouts[StateNone] = ticksCeil(cfg.Other)
	t.timeouts[StateSynSent] = ticksCeil(cfg.TCPSyn)
	t.timeouts[StateEstablished] = ticksCeil(cfg.TCPEstablished)
	t.timeouts[StateClosing] = ticksCeil(cfg.TCPClosing)
	t.timeouts[StateClosed] = ticksCeil(cfg.TCPClosing)
	t.timeouts[StateUDP] = ticksCeil(cfg.UDP)
	t.timeouts[StateOther] = ticksCeil(cfg.Other)
	t.timeouts[7] = ticksCeil(cfg.Other)
	if cfg.EvictMinIdle > 0 {
		// age >= ceil(d)+1 ticks guarantees at least d of real idle time.
		t.minIdle = ticksCeil(cfg.EvictMinIdle) + 1
	}
	t.flows = make([]atomic.Int64, cfg.MaxBackends)
	t.svc = make([]svcCounters, cfg.MaxServices)
	return t
}

// initSNAT makes the SNAT port pools with the ports in used (one bitmap
// per address, nil: none) allocated.
func (t *Table) initSNAT(used [][]uint64) {
	if n := len(t.snat4) + len(t.snat6); n > 0 {
		t.snat = make([]snatPool, n)
		for i := range t.snat {
			var u []uint64
			if i < len(used) {
				u = used[i]
			}
			t.snat[i].init(int(t.portMax-t.portMin)+1, u)
		}
	}
}

func ticksCeil(d time.Duration) uint32 {
	return uint32((uint64(d) + tickNanos - 1) / tickNanos)
}

// tick converts the caller's clock to table ticks. An entry expires when
// more than ceil(timeout/Tick) ticks have passed, so never before its
// timeout and at most two ticks after it.
func (t *Table) tick(now int64) uint32 {
	d := now - t.base
	if d < 0 {
		return 0
	}
	return uint32(uint64(d) / tickNanos)
}

// Lookup finds the entry for k, whose hash h is Hash(k) (a caller that
// prefetches hashes its packet's key once for both), and writes it to
// *out. A different h makes the lookup miss; it never finds another key.
// On a hit it refreshes the entry's timestamp and, for TCP (k.Proto 6),
// advances its state from tcpFlags, the raw TCP flag byte of the packet
// (TCPFlagSYN etc.; pass 0 for other protocols): RST gives StateClosed,
// FIN StateClosing, an ACK after a SYN StateEstablished, a SYN on a closing
// or closed entry StateSynSent. out.State is the new state. An entry idle
// for longer than the timeout of its state is removed (with its NAT
// partner) and reported as a miss, unless it is half of a NAT pair whose
// other half keeps the pair alive (see the package documentation): then it
// is refreshed and found.
//
// A hit that changes nothing but the timestamp, the steady state of an
// established flow, takes no lock (see the package documentation).
func (t *Table) Lookup(k *Key, h uint64, tcpFlags uint8, now int64, out *Entry) bool {
	if k == nil || out == nil {
		return false
	}
	tick, tcp := t.tick(now), k.Proto == protoTCP
	if !k.V6 {
		var k4 key4
		k4.from(k)
		var e Entry4
		st, r := t.v4.read(&k4, h, tick, tcpFlags, tcp, true, &e)
		if r == readSlow {
			var ok bool
			if st, ok = t.v4.lookupLocked(&k4, h, tcpFlags, tcp, tick, &e, true); ok {
				r = readHit
			}
		}
		if r == readHit {
			wideEntry4(&e, st, out)
		}
		return r == readHit
	}
	var k6 key6
	k6.from(k)
	var e entry6
	st, ok := t.v6.lookup(&k6, h, tcpFlags, tcp, tick, &e)
	if ok {
		wideEntry6(&e, st, out)
	}
	return ok
}

// Peek is Lookup without side effects: the entry is not refreshed, its
// TCP state does not move and an expired entry is not removed (it is a
// miss). For the management API's flow lookup, which must not keep flows
// alive.
func (t *Table) Peek(k *Key, h uint64, now int64, out *Entry) bool {
	if k == nil || out == nil {
		return false
	}
	tick := t.tick(now)
	if !k.V6 {
		var k4 key4
		k4.from(k)
		var e Entry4
		st, ok := t.v4.peek(&k4, h, tick, &e)
		if ok {
			wideEntry4(&e, st, out)
		}
		return ok
	}
	var k6 key6
	k6.from(k)
	var e entry6
	st, ok := t.v6.peek(&k6, h, tick, &e)
	if ok {
		wideEntry6(&e, st, out)
	}
	return ok
}

// Prefetch prepares the lookups of a batch of keys of one family (v6 or
// IPv4), given their hashes (Hash): it reads, without locking, the cache
// lines each Lookup (or Insert) will touch. The cache misses of the whole
// batch then overlap instead of being paid one lookup after the other,
// which is most of the cost of a lookup in a table larger than the CPU
// caches: on the 2-core test VM a lookup in a 1M-flow table costs 300-450
// ns alone and 125-150 ns after Prefetch over batches of 32
// (BenchmarkLookupHit, BenchmarkLookupBatch). It changes nothing and needs
// no lock; call it once per rx batch before the per-packet calls.
func (t *Table) Prefetch(v6 bool, hs []uint64) {
	if v6 {
		prefetch(&t.v6, hs)
	} else {
		prefetch(&t.v4, hs)
	}
}

//go:noinline
func prefetch[K, E comparable, F flavor[K, E]](f *family[K, E, F], hs []uint64) (sum uint8) {
	for len(hs) > 0 {
		n := min(len(hs), prefetchChunk)
		sum += f.touchBatch(hs[:n])
		hs = hs[n:]
	}
	return sum
}

// Insert stores e under k, replacing any entry for k. e.State StateNone
// (or an unknown state) is replaced by the protocol's default, see
// StateNone; use InitialState to derive it from the packet's flags.
//
// When k's shard is full, Insert evicts the shard's least recently used
// entry if it has been idle for at least Config.EvictMinIdle or is expired,
// closing or closed; otherwise it returns ErrFull and counts it in
// Stats.Full. (Half-open entries go first, see Config.SynBudget.)
//
// Replacing or evicting half of a NAT pair removes its partner and frees
// its SNAT port, as any removal does. A NAT entry stored with Insert takes
// part in pair teardown like one stored with InsertNAT, but on ErrFull
// Insert leaves the SNAT port in e to the caller.
func (t *Table) Insert(k *Key, e *Entry, now int64) error {
	if k == nil || e == nil {
		return ErrNilKey
	}
	st := normState(e.State, k.Proto)
	if !k.V6 {
		var k4 key4
		var e4 Entry4
		k4.from(k)
		e4.from(e)
		return insertOne(&t.v4, &k4, &e4, st, isPaired(e.Flags), t.tick(now))
	}
	var k6 key6
	var e6 entry6
	k6.from(k)
	e6.from(e)
	return insertOne(&t.v6, &k6, &e6, st, isPaired(e.Flags), t.tick(now))
}

// insertOne is Insert in one family: e is stored in state st, and what
// an eviction or replacement obliges the table to do is done.
func insertOne[K, E comparable, F flavor[K, E]](f *family[K, E, F], k *K, e *E, st uint8, paired bool, tick uint32) error {
	f.setEntryState(e, st)
	p, err := f.insert(k, f.hashOf(k), e, st, paired, tick)
	if p.what != 0 {
		f.settle(&p)
	}
	return err
}

// Delete removes the entry for k, and with it its NAT partner and SNAT
// port, and reports whether there was one.
func (t *Table) Delete(k *Key) bool {
	if k == nil {
		return false
	}
	if !k.V6 {
		var k4 key4
		k4.from(k)
		return t.v4.remove(&k4, hash4(&k4, t.seed), nil)
	}
	var k6 key6
	k6.from(k)
	return t.v6.remove(&k6, hash6(&k6, t.seed), nil)
}

// InsertNAT stores a NAT pair: the forward entry fe under fwd (the
// client's direction) and the reverse entry re under rev (the backend's
// replies), both keys of one family. The two must name each other as
// described at [Entry]: fe without FlagReverse, re with it, both with
// FlagNAT or FlagFullNAT, PairKey(fwd, fe) == rev and PairKey(rev, re) ==
// fwd; otherwise ErrBadPair.
//
// The entries go to different shards and are inserted one after the other
// (one lock at a time): the forward entry first, and if the reverse insert
// fails the forward entry is removed again. InsertNAT owns the SNAT port
// of a fullnat fe in every case: on success it is freed when the pair is
// torn down, on any error it has been freed before InsertNAT returns.
func (t *Table) InsertNAT(fwd *Key, fe *Entry, rev *Key, re *Entry, now int64) error {
	if fe == nil {
		return ErrNilKey
	}
	if fwd == nil || rev == nil || re == nil || fwd.V6 != rev.V6 {
		t.releaseSNAT(fe, fwd == nil || fwd.V6)
		if fwd == nil || rev == nil || re == nil {
			return ErrNilKey
		}
		return ErrBadPair
	}
	fst, rst := normState(fe.State, fwd.Proto), normState(re.State, rev.Proto)
	if !fwd.V6 {
		var fk, rk key4
		var fe4, re4 Entry4
		fk.from(fwd)
		fe4.from(fe)
		rk.from(rev)
		re4.from(re)
		return insertPair(t, &t.v4, &fk, &fe4, &rk, &re4, fst, rst, now)
	}
	var fk, rk key6
	var fe6, re6 entry6
	fk.from(fwd)
	fe6.from(fe)
	rk.from(rev)
	re6.from(re)
	return insertPair(t, &t.v6, &fk, &fe6, &rk, &re6, fst, rst, now)
}

// pairsOK checks the flags of the two halves of a NAT pair: a forward
// entry and a reverse one, each naming a partner.
func pairsOK(fflags, rflags, fwhat, rwhat uint8) bool {
	return fflags&FlagReverse == 0 && rflags&FlagReverse != 0 && fwhat&pairPartner != 0 && rwhat&pairPartner != 0
}

// badPair frees the SNAT port of a refused forward entry.
func (t *Table) badPair(snat pairInfo[struct{}]) error {
	t.releasePort(snat)
	return ErrBadPair
}

// releasePort frees the SNAT port of a forward entry that was not stored.
func (t *Table) releasePort(snat pairInfo[struct{}]) {
	if snat.what&pairSNAT != 0 {
		t.FreeSNAT(snat.snatIdx, snat.snatPort)
	}
}

// pairInfo returns p without its partner key: its SNAT obligations.
func (p *pairInfo[K]) pairInfo() pairInfo[struct{}] {
	return pairInfo[struct{}]{snatPort: p.snatPort, snatIdx: p.snatIdx, what: p.what}
}

// insertPair checks the NAT pair (fk, fe) and (rk, re) (they must name
// each other, see InsertNAT) and stores it, in states fst and rst.
func insertPair[K, E comparable, F flavor[K, E]](t *Table, f *family[K, E, F], fk *K, fe *E, rk *K, re *E, fst, rst uint8, now int64) error {
	f.setEntryState(fe, fst)
	f.setEntryState(re, rst)
	var fp, rp pairInfo[K]
	f.pairOf(fk, fe, &fp)
	f.pairOf(rk, re, &rp)
	snat := fp.pairInfo()
	if !pairsOK(f.flagsOf(fe), f.flagsOf(re), fp.what, rp.what) || fp.partner != *rk || rp.partner != *fk {
		return t.badPair(snat)
	}
	fh, rh := f.hashOf(fk), f.hashOf(rk)
	tick := t.tick(now)
	p, err := f.insert(fk, fh, fe, fst, true, tick)
	if p.what != 0 {
		f.settle(&p)
	}
	if err != nil {
		t.releasePort(snat)
		return err
	}
	p, err = f.insert(rk, rh, re, rst, true, tick)
	if p.what != 0 {
		f.settle(&p)
	}
	if err != nil {
		// Removing the forward entry frees its SNAT port. If it is no longer
		// there, whoever removed or replaced it has freed the port already.
		f.remove(fk, fh, fe)
		return err
	}
	return nil
}

// releaseSNAT frees the SNAT port of a fullnat forward entry of the given
// family that InsertNAT refuses.
func (t *Table) releaseSNAT(e *Entry, v6 bool) {
	if e.Flags&(FlagFullNAT|FlagReverse) != FlagFullNAT {
		return
	}
	if _, ok := t.snatIP(e.SNATAddr, v6); ok {
		t.FreeSNAT(e.SNATAddr, e.SNATPort)
	}
}

// PairKey writes to *out the key of the other half of the NAT pair that e
// (stored under k) belongs to, and returns false if e is not a NAT entry
// or names a SNAT address that is not a SNAT address of k's family. See
// [Entry].
func (t *Table) PairKey(k *Key, e *Entry, out *Key) bool {
	if k == nil || e == nil || out == nil {
		return false
	}
	if !k.V6 {
		var k4 key4
		var e4 Entry4
		k4.from(k)
		e4.from(e)
		p := pair4(t, &k4, &e4)
		if p.what&pairPartner == 0 {
			return false
		}
		wideKey4(&p.partner, out)
		return true
	}
	var k6 key6
	var e6 entry6
	k6.from(k)
	e6.from(e)
	p := pair6(t, &k6, &e6)
	if p.what&pairPartner == 0 {
		return false
	}
	wideKey6(&p.partner, out)
	return true
}

// Expire examines at most budget slots, continuing where the previous call
// (from any goroutine) stopped and wrapping around the IPv4 and then the
// IPv6 slots, and removes the expired entries among them together with
// their NAT partners. It returns the number of entries removed, which is
// at most budget plus the partners. Workers call it once per batch with a
// small budget; a full sweep takes (Stats.Capacity4+Stats.Capacity6)/budget
// calls. Lookup and Insert also remove expired entries they find.
func (t *Table) Expire(now int64, budget int) (removed int) {
	total := uint64(len(t.v4.slots) + len(t.v6.slots))
	if budget <= 0 {
		return 0
	}
	if uint64(budget) > total {
		budget = int(total)
	}
	tick := t.tick(now)
	pos := int((t.cursor.Add(uint64(budget)) - uint64(budget)) % total)
	n4 := len(t.v4.slots)
	for budget > 0 {
		if pos < n4 {
			end := min(n4, pos+budget)
			removed += t.v4.expireRange(pos, end, tick)
			budget -= end - pos
			pos = end
		} else {
			end := min(int(total), pos+budget)
			removed += t.v6.expireRange(pos-n4, end-n4, tick)
			budget -= end - pos
			pos = end
		}
		if pos == int(total) {
			pos = 0
		}
	}
	return removed
}

// Stats holds the table's counters. Counters are totals since New over both
// families.
type Stats struct {
	Entries4, Entries6   int // entries stored, including expired ones not yet removed
	Capacity4, Capacity6 int // slots after rounding (see Config.Capacity)

	Inserts      uint64 // new entries stored
	Updates      uint64 // inserts that replaced a live entry for the same key
	Deletes      uint64 // entries removed by Delete (and InsertNAT undoing a half pair)
	Expired      uint64 // entries removed for idling past their timeout
	Evictions    uint64 // entries removed to make room in a full shard, or for the half-open budget
	Full         uint64 // inserts refused with ErrFull
	PairRemovals uint64 // NAT partners removed because the other half was removed

	// EvictedHalfOpen counts the evictions of half-open entries (part of
	// Evictions): what a SYN flood costs; HalfOpen is the number of
	// half-open entries stored and HalfOpenBudget how many the shards may
	// hold together (0 with Config.SynBudget off).
	EvictedHalfOpen uint64
	HalfOpen        int
	HalfOpenBudget  int

	SNATInUse     int    // SNAT ports allocated
	SNATFree      int    // SNAT ports free
	SNATExhausted uint64 // AllocSNAT calls that found no free port
}

// Stats returns the counters, taking each shard's lock in turn (not a
// consistent snapshot across shards). Not for the per-packet path.
func (t *Table) Stats() Stats {
	var st Stats
	st.Entries4 = t.v4.addStats(&st)
	st.Entries6 = t.v6.addStats(&st)
	st.Capacity4, st.Capacity6 = len(t.v4.slots), len(t.v6.slots)
	st.HalfOpenBudget = int(t.v4.synMax)*len(t.v4.shards) + int(t.v6.synMax)*len(t.v6.shards)
	for i := range t.snat {
		p := &t.snat[i]
		p.mu.Lock()
		st.SNATInUse += len(p.ring) - int(p.free)
		st.SNATFree += int(p.free)
		st.SNATExhausted += p.exhausted
		p.mu.Unlock()
	}
	return st
}

// Len returns the number of stored entries of both families, including
// expired entries not yet removed.
func (t *Table) Len() int { return t.v4.len() + t.v6.len() }

// BytesPerEntry4 is the memory one IPv4 entry costs: its slot (key, entry,
// LRU links, timestamp, state) plus its bucket and chain-link words (4
// bytes each; there is one bucket per slot). Per-shard headers (128 bytes
// each) are not included. Everything is allocated at New, so the table's
// memory is BytesPerEntry4 * Stats.Capacity4 (+ the IPv6 equivalent).
func (t *Table) BytesPerEntry4() int {
	return int(unsafe.Sizeof(slot[key4, Entry4]{})) + 2*int(unsafe.Sizeof(uint32(0)))
}

// BytesPerEntry6 is BytesPerEntry4 for IPv6.
func (t *Table) BytesPerEntry6() int {
	return int(unsafe.Sizeof(slot[key6, entry6]{})) + 2*int(unsafe.Sizeof(uint32(0)))
}

// Range calls fn for every stored entry, the IPv4 ones first, until fn
// returns false. k and e are Range's copies, valid during the call. It is
// meant for the API and dashboard, not the per-packet path: it locks one
// shard at a time and calls fn with no lock held, so fn may use the table.
// Entries inserted or removed meanwhile may or may not be visited, and
// expired entries not yet removed are visited.
func (t *Table) Range(fn func(k *Key, e *Entry) bool) {
	if fn == nil {
		return
	}
	var k Key
	var e Entry
	more := true
	t.v4.rangeAll(func(k4 key4, e4 Entry4, st uint8) bool {
		wideKey4(&k4, &k)
		wideEntry4(&e4, st, &e)
		more = fn(&k, &e)
		return more
	})
	if !more {
		return
	}
	t.v6.rangeAll(func(k6 key6, e6 entry6, st uint8) bool {
		wideKey6(&k6, &k)
		wideEntry6(&e6, st, &e)
		return fn(&k, &e)
	})
}

// flavor4 and flavor6 bind the generic family to the concrete types.
type (
	flavor4 struct{}
	flavor6 struct{}
)

// BackendFlows returns the number of flows stored for backend ID id: the
// entries of both families with that Backend, not counting the reverse
// halves of NAT pairs (a NAT flow counts once), including expired entries
// not yet removed. It is what the least-connection schedulers compare. IDs
// at or above Config.MaxBackends are not counted (0). One atomic load; the
// counters are updated with atomic adds when entries are stored, replaced
// and removed, never on lookups.
func (t *Table) BackendFlows(id uint32) int64 {
	if int(id) >= len(t.flows) {
		return 0
	}
	return t.flows[id].Load()
}

func (t *Table) addFlows(id uint32, d int64) {
	if int(id) < len(t.flows) {
		t.flows[id].Add(d)
	}
}

// svcCounters are one service ID's counters, updated with atomic adds on
// the eviction and refusal paths only.
type svcCounters struct {
	evicted [numStates]atomic.Uint64
	refused atomic.Uint64
}

// ServiceStats are the table's counters of one service ID (Entry.Service)
// since New or Attach.
type ServiceStats struct {
	// Evicted counts the service's entries evicted to make room, by the
	// state they were in (index: the State constants; Evicted[StateSynSent]
	// are half-open entries, the ones a SYN flood pushes out).
	Evicted [numStates]uint64
	// Refused counts the inserts refused with ErrFull: each is a flow
	// served without state (dsr, tunnel, l3dsr, nat) or dropped (fullnat).
	Refused uint64
}

// NumStates is the number of connection states (the length of
// ServiceStats.Evicted).
const NumStates = int(numStates)

// StateName returns the snake_case name of a connection state ("syn_sent",
// "established", ...).
func StateName(st uint8) string {
	switch st {
	case StateSynSent:
		return "syn_sent"
	case StateEstablished:
		return "established"
	case StateClosing:
		return "closing"
	case StateClosed:
		return "closed"
	case StateUDP:
		return "udp"
	case StateOther:
		return "other"
	}
	return "none"
}

// ServiceStats returns the counters of service ID id (zero for IDs at or
// above Config.MaxServices).
func (t *Table) ServiceStats(id uint32) ServiceStats {
	var s ServiceStats
	if int(id) >= len(t.svc) {
		return s
	}
	c := &t.svc[id]
	for i := range s.Evicted {
		s.Evicted[i] = c.evicted[i].Load()
	}
	s.Refused = c.refused.Load()
	return s
}

func (t *Table) countEvicted(svc uint32, st uint8) {
	if int(svc) < len(t.svc) && st < numStates {
		t.svc[svc].evicted[st].Add(1)
	}
}

func (t *Table) countRefused(id uint32) {
	if int(id) < len(t.svc) {
		t.svc[id].refused.Add(1)
	}
}

// pair4 computes the NAT obligations of e stored under k (see Entry).
func pair4(t *Table, k *key4, e *Entry4) (p pairInfo[key4]) {
	pair4to(t, k, e, &p)
	return p
}

// pair4to is pair4 writing to *p.
func pair4to(t *Table, k *key4, e *Entry4, p *pairInfo[key4]) {
	*p = pairInfo[key4]{}
	if !isPaired(e.Flags) {
		return
	}
	p.partner.Proto = k.Proto
	p.partner.SrcIP, p.partner.SrcPort = e.PeerIP, e.PeerPort
	switch {
	case e.Flags&FlagReverse != 0:
		p.partner.DstIP, p.partner.DstPort = e.VIP, e.VPort
	case e.Flags&FlagFullNAT != 0:
		ip, ok := t.snatIP4(e.SNATAddr)
		if !ok {
			*p = pairInfo[key4]{}
			return
		}
		p.what = pairSNAT
		p.snatIdx, p.snatPort = e.SNATAddr, e.SNATPort
		p.partner.DstIP, p.partner.DstPort = ip, e.SNATPort
	default:
		p.partner.DstIP, p.partner.DstPort = k.SrcIP, k.SrcPort
	}
	p.what |= pairPartner
}

// pair6 computes the NAT obligations of e stored under k (see Entry).
func pair6(t *Table, k *key6, e *entry6) (p pairInfo[key6]) {
	pair6to(t, k, e, &p)
	return p
}

// pair6to is pair6 writing to *p.
func pair6to(t *Table, k *key6, e *entry6, p *pairInfo[key6]) {
	*p = pairInfo[key6]{}
	if !isPaired(e.Flags) {
		return
	}
	p.partner.Proto = k.Proto
	p.partner.SrcIP, p.partner.SrcPort = e.PeerIP, e.PeerPort
	switch {
	case e.Flags&FlagReverse != 0:
		p.partner.DstIP, p.partner.DstPort = e.VIP, e.VPort
	case e.Flags&FlagFullNAT != 0:
		ip, ok := t.snatIP6(e.SNATAddr)
		if !ok {
			*p = pairInfo[key6]{}
			return
		}
		p.what = pairSNAT
		p.snatIdx, p.snatPort = e.SNATAddr, e.SNATPort
		p.partner.DstIP, p.partner.DstPort = ip, e.SNATPort
	default:
		p.partner.DstIP, p.partner.DstPort = k.SrcIP, k.SrcPort
	}
	p.what |= pairPartner
}
