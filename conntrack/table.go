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
	v4 family[Key4, Entry4, flavor4]
	v6 family[Key6, Entry6, flavor6]

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

// Lookup4 finds the entry for k. On a hit it refreshes the entry's
// timestamp and, for TCP (k.Proto 6), advances its state from tcpFlags, the
// raw TCP flag byte of the packet (TCPFlagSYN etc.; pass 0 for other
// protocols): RST gives StateClosed, FIN StateClosing, an ACK after a SYN
// StateEstablished, a SYN on a closing or closed entry StateSynSent. The
// returned entry carries the new state. An entry idle for longer than the
// timeout of its state is removed (with its NAT partner) and reported as a
// miss, unless it is half of a NAT pair whose other half keeps the pair
// alive (see the package documentation): then it is refreshed and found.
func (t *Table) Lookup4(k *Key4, tcpFlags uint8, now int64) (e Entry4, ok bool) {
	if k == nil {
		return e, false
	}
	st, ok := t.v4.lookup(k, hash4(k, t.seed), tcpFlags, k.Proto == protoTCP, t.tick(now), &e, true)
	e.State = st
	return e, ok
}

// Lookup6 is Lookup4 for IPv6.
func (t *Table) Lookup6(k *Key6, tcpFlags uint8, now int64) (e Entry6, ok bool) {
	if k == nil {
		return e, false
	}
	st, ok := t.v6.lookup(k, hash6(k, t.seed), tcpFlags, k.Proto == protoTCP, t.tick(now), &e, true)
	e.State = st
	return e, ok
}

// Prefetch4 prepares the lookups of a batch: it computes each key's hash
// and reads, without locking, the cache lines its Lookup4 (or Insert4) will
// touch. The cache misses of the whole batch then overlap instead of being
// paid one lookup after the other, which is most of the cost of a lookup in
// a table larger than the CPU caches: on the 2-core test VM a lookup in a
// 1M-flow table costs 300-450 ns alone and 125-150 ns after Prefetch4 over
// batches of 32 (BenchmarkLookup4Hit, BenchmarkLookup4Batch). It changes
// nothing and needs no lock; call it once per rx batch before the
// per-packet calls.
func (t *Table) Prefetch4(keys []Key4) { prefetch4(t, keys) }

// Prefetch6 is Prefetch4 for IPv6.
func (t *Table) Prefetch6(keys []Key6) { prefetch6(t, keys) }

//go:noinline
func prefetch4(t *Table, keys []Key4) (sum uint8) {
	var hs [prefetchChunk]uint64
	for len(keys) > 0 {
		n := min(len(keys), len(hs))
		for i := range n {
			hs[i] = hash4(&keys[i], t.seed)
		}
		sum += t.v4.touchBatch(hs[:n])
		keys = keys[n:]
	}
	return sum
}

//go:noinline
func prefetch6(t *Table, keys []Key6) (sum uint8) {
	var hs [prefetchChunk]uint64
	for len(keys) > 0 {
		n := min(len(keys), len(hs))
		for i := range n {
			hs[i] = hash6(&keys[i], t.seed)
		}
		sum += t.v6.touchBatch(hs[:n])
		keys = keys[n:]
	}
	return sum
}

// Insert4 stores e under k, replacing any entry for k. e.State StateNone
// (or an unknown state) is replaced by the protocol's default, see
// StateNone; use InitialState to derive it from the packet's flags.
//
// When k's shard is full, Insert4 evicts the shard's least recently used
// entry if it has been idle for at least Config.EvictMinIdle or is expired,
// closing or closed; otherwise it returns ErrFull and counts it in
// Stats.Full.
//
// Replacing or evicting half of a NAT pair removes its partner and frees
// its SNAT port, as any removal does. A NAT entry stored with Insert4 takes
// part in pair teardown like one stored with InsertNAT4, but on ErrFull
// Insert4 leaves the SNAT port in e to the caller.
func (t *Table) Insert4(k *Key4, e Entry4, now int64) error {
	if k == nil {
		return ErrNilKey
	}
	e.State = normState(e.State, k.Proto)
	p, err := t.v4.insert(k, hash4(k, t.seed), &e, e.State, isPaired(e.Flags), t.tick(now))
	if p.what != 0 {
		t.v4.settle(&p)
	}
	return err
}

// Insert6 is Insert4 for IPv6.
func (t *Table) Insert6(k *Key6, e Entry6, now int64) error {
	if k == nil {
		return ErrNilKey
	}
	e.State = normState(e.State, k.Proto)
	p, err := t.v6.insert(k, hash6(k, t.seed), &e, e.State, isPaired(e.Flags), t.tick(now))
	if p.what != 0 {
		t.v6.settle(&p)
	}
	return err
}

// Delete4 removes the entry for k, and with it its NAT partner and SNAT
// port, and reports whether there was one.
func (t *Table) Delete4(k *Key4) bool {
	if k == nil {
		return false
	}
	return t.v4.remove(k, hash4(k, t.seed), nil)
}

// Delete6 is Delete4 for IPv6.
func (t *Table) Delete6(k *Key6) bool {
	if k == nil {
		return false
	}
	return t.v6.remove(k, hash6(k, t.seed), nil)
}

// InsertNAT4 stores a NAT pair: the forward entry fwdEntry under fwd (the
// client's direction) and the reverse entry revEntry under rev (the
// backend's replies). The two must name each other as described at
// [Entry4]: fwdEntry without FlagReverse, revEntry with it, both with
// FlagNAT or FlagFullNAT, PairKey4(fwd, fwdEntry) == rev and
// PairKey4(rev, revEntry) == fwd; otherwise ErrBadPair.
//
// The entries go to different shards and are inserted one after the other
// (one lock at a time): the forward entry first, and if the reverse insert
// fails the forward entry is removed again. InsertNAT4 owns the SNAT port
// of a fullnat fwdEntry in every case: on success it is freed when the
// pair is torn down, on any error it has been freed before InsertNAT4
// returns.
func (t *Table) InsertNAT4(fwd *Key4, fwdEntry Entry4, rev *Key4, revEntry Entry4, now int64) error {
	if fwd == nil || rev == nil {
		t.releaseSNAT4(&fwdEntry)
		return ErrNilKey
	}
	fp, rp := pair4(t, fwd, &fwdEntry), pair4(t, rev, &revEntry)
	if fwdEntry.Flags&FlagReverse != 0 || revEntry.Flags&FlagReverse == 0 ||
		fp.what&pairPartner == 0 || rp.what&pairPartner == 0 ||
		fp.partner != *rev || rp.partner != *fwd {
		t.releaseSNAT4(&fwdEntry)
		return ErrBadPair
	}
	tick := t.tick(now)
	fwdEntry.State = normState(fwdEntry.State, fwd.Proto)
	revEntry.State = normState(revEntry.State, rev.Proto)
	fh := hash4(fwd, t.seed)
	p, err := t.v4.insert(fwd, fh, &fwdEntry, fwdEntry.State, true, tick)
	if p.what != 0 {
		t.v4.settle(&p)
	}
	if err != nil {
		t.releaseSNAT4(&fwdEntry)
		return err
	}
	p, err = t.v4.insert(rev, hash4(rev, t.seed), &revEntry, revEntry.State, true, tick)
	if p.what != 0 {
		t.v4.settle(&p)
	}
	if err != nil {
		// Removing the forward entry frees its SNAT port. If it is no longer
		// there, whoever removed or replaced it has freed the port already.
		t.v4.remove(fwd, fh, &fwdEntry)
		return err
	}
	return nil
}

// InsertNAT6 is InsertNAT4 for IPv6.
func (t *Table) InsertNAT6(fwd *Key6, fwdEntry Entry6, rev *Key6, revEntry Entry6, now int64) error {
	if fwd == nil || rev == nil {
		t.releaseSNAT6(&fwdEntry)
		return ErrNilKey
	}
	fp, rp := pair6(t, fwd, &fwdEntry), pair6(t, rev, &revEntry)
	if fwdEntry.Flags&FlagReverse != 0 || revEntry.Flags&FlagReverse == 0 ||
		fp.what&pairPartner == 0 || rp.what&pairPartner == 0 ||
		fp.partner != *rev || rp.partner != *fwd {
		t.releaseSNAT6(&fwdEntry)
		return ErrBadPair
	}
	tick := t.tick(now)
	fwdEntry.State = normState(fwdEntry.State, fwd.Proto)
	revEntry.State = normState(revEntry.State, rev.Proto)
	fh := hash6(fwd, t.seed)
	p, err := t.v6.insert(fwd, fh, &fwdEntry, fwdEntry.State, true, tick)
	if p.what != 0 {
		t.v6.settle(&p)
	}
	if err != nil {
		t.releaseSNAT6(&fwdEntry)
		return err
	}
	p, err = t.v6.insert(rev, hash6(rev, t.seed), &revEntry, revEntry.State, true, tick)
	if p.what != 0 {
		t.v6.settle(&p)
	}
	if err != nil {
		t.v6.remove(fwd, fh, &fwdEntry)
		return err
	}
	return nil
}

// releaseSNAT4 frees the SNAT port of a fullnat IPv4 forward entry.
func (t *Table) releaseSNAT4(e *Entry4) {
	if e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT && int(e.SNATAddr) < len(t.snat4) {
		t.FreeSNAT(e.SNATAddr, e.SNATPort)
	}
}

// releaseSNAT6 frees the SNAT port of a fullnat IPv6 forward entry.
func (t *Table) releaseSNAT6(e *Entry6) {
	if _, ok := t.SNATIP6(e.SNATAddr); ok && e.Flags&(FlagFullNAT|FlagReverse) == FlagFullNAT {
		t.FreeSNAT(e.SNATAddr, e.SNATPort)
	}
}

// PairKey4 returns the key of the other half of the NAT pair that e (stored
// under k) belongs to, and false if e is not a NAT entry or names a SNAT
// address that is not an IPv4 SNAT address of the table. See [Entry4].
func (t *Table) PairKey4(k *Key4, e *Entry4) (Key4, bool) {
	if k == nil || e == nil {
		return Key4{}, false
	}
	p := pair4(t, k, e)
	return p.partner, p.what&pairPartner != 0
}

// PairKey6 is PairKey4 for IPv6.
func (t *Table) PairKey6(k *Key6, e *Entry6) (Key6, bool) {
	if k == nil || e == nil {
		return Key6{}, false
	}
	p := pair6(t, k, e)
	return p.partner, p.what&pairPartner != 0
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
	return int(unsafe.Sizeof(slot[Key4, Entry4]{})) + 2*int(unsafe.Sizeof(uint32(0)))
}

// BytesPerEntry6 is BytesPerEntry4 for IPv6.
func (t *Table) BytesPerEntry6() int {
	return int(unsafe.Sizeof(slot[Key6, Entry6]{})) + 2*int(unsafe.Sizeof(uint32(0)))
}

// Range4 calls fn for every stored IPv4 entry until fn returns false. It is
// meant for the API and dashboard, not the per-packet path: it locks one
// shard at a time and calls fn with no lock held, so fn may use the table.
// Entries inserted or removed meanwhile may or may not be visited, and
// expired entries not yet removed are visited.
func (t *Table) Range4(fn func(k Key4, e Entry4) bool) {
	if fn == nil {
		return
	}
	t.v4.rangeAll(func(k Key4, e Entry4, st uint8) bool {
		e.State = st
		return fn(k, e)
	})
}

// Range6 is Range4 for IPv6.
func (t *Table) Range6(fn func(k Key6, e Entry6) bool) {
	if fn == nil {
		return
	}
	t.v6.rangeAll(func(k Key6, e Entry6, st uint8) bool {
		e.State = st
		return fn(k, e)
	})
}

// flavor4 and flavor6 bind the generic family to the concrete types.
type (
	flavor4 struct{}
	flavor6 struct{}
)

func (flavor4) hash(k Key4, seed uint64) uint64                { return hash4(&k, seed) }
func (flavor4) pair(t *Table, k Key4, e Entry4) pairInfo[Key4] { return pair4(t, &k, &e) }
func (flavor4) flow(e Entry4) (uint32, bool)                   { return e.Backend, e.Flags&FlagReverse == 0 }
func (flavor4) service(e Entry4) uint32                        { return e.Service }
func (flavor6) service(e Entry6) uint32                        { return e.Service }
func (flavor6) hash(k Key6, seed uint64) uint64                { return hash6(&k, seed) }
func (flavor6) pair(t *Table, k Key6, e Entry6) pairInfo[Key6] { return pair6(t, &k, &e) }
func (flavor6) flow(e Entry6) (uint32, bool)                   { return e.Backend, e.Flags&FlagReverse == 0 }

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

// pair4 computes the NAT obligations of e stored under k (see Entry4).
func pair4(t *Table, k *Key4, e *Entry4) (p pairInfo[Key4]) {
	if !isPaired(e.Flags) {
		return p
	}
	p.partner.Proto = k.Proto
	p.partner.SrcIP, p.partner.SrcPort = e.PeerIP, e.PeerPort
	switch {
	case e.Flags&FlagReverse != 0:
		p.partner.DstIP, p.partner.DstPort = e.VIP, e.VPort
	case e.Flags&FlagFullNAT != 0:
		ip, ok := t.SNATIP4(e.SNATAddr)
		if !ok {
			return pairInfo[Key4]{}
		}
		p.what = pairSNAT
		p.snatIdx, p.snatPort = e.SNATAddr, e.SNATPort
		p.partner.DstIP, p.partner.DstPort = ip, e.SNATPort
	default:
		p.partner.DstIP, p.partner.DstPort = k.SrcIP, k.SrcPort
	}
	p.what |= pairPartner
	return p
}

// pair6 computes the NAT obligations of e stored under k (see Entry4).
func pair6(t *Table, k *Key6, e *Entry6) (p pairInfo[Key6]) {
	if !isPaired(e.Flags) {
		return p
	}
	p.partner.Proto = k.Proto
	p.partner.SrcIP, p.partner.SrcPort = e.PeerIP, e.PeerPort
	switch {
	case e.Flags&FlagReverse != 0:
		p.partner.DstIP, p.partner.DstPort = e.VIP, e.VPort
	case e.Flags&FlagFullNAT != 0:
		ip, ok := t.SNATIP6(e.SNATAddr)
		if !ok {
			return pairInfo[Key6]{}
		}
		p.what = pairSNAT
		p.snatIdx, p.snatPort = e.SNATAddr, e.SNATPort
		p.partner.DstIP, p.partner.DstPort = ip, e.SNATPort
	default:
		p.partner.DstIP, p.partner.DstPort = k.SrcIP, k.SrcPort
	}
	p.what |= pairPartner
	return p
}
