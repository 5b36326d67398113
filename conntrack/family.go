package conntrack

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// This file is the table proper, generic over the key and entry types of
// one address family. What depends on the concrete types comes in
// through a flavor F: the hash and the NAT partner of an entry by a type
// switch on F (hashOf, pairOf: direct calls, see there), the counters'
// IDs through F's methods. The per-packet paths (lookup, insert, remove)
// receive the hash from the non-generic wrappers in table.go.

const (
	markUsed   uint8 = 1 << 0 // slot holds an entry
	markPaired uint8 = 1 << 1 // entry is half of a NAT pair

	// lruShift sets the LRU granule: 2^6 ticks = 640 ms. A packet moves its
	// entry to the head of the LRU list only if the entry's previous packet
	// fell in an earlier granule (see touchLocked).
	lruShift = 6

	cacheLine = 64
)

// slot is one preallocated entry. LRU links are int32 positions in the
// family's slot array; -1 is nil. Field order keeps it at 56 bytes for
// IPv4 (12 meta + 28 entry + 14 key + 2) and 104 for IPv6.
type slot[K comparable, E comparable] struct {
	prev  int32  // LRU neighbour towards the head (more recently used)
	after int32  // LRU neighbour towards the tail (less recently used)
	seen  uint32 // last packet, in ticks since the table was created
	e     E      // e.State is as inserted; the live state is in state
	k     K
	state uint8
	mark  uint8
}

// shardData is a shard's header. It lives in the table's memory (shared
// memory for a persistent table), so it holds no Go pointers; Attach
// rebuilds everything in it but the counters from the slots.
type shardData struct {
	// The place of the sync.Mutex the shard had before seq became its
	// lock; kept so that the memory format stays the same.
	_    [8]byte
	free int32 // head of the free list (slot index), -1 if empty
	head int32 // most recently linked entry that is not half-open
	tail int32 // least recently linked one: the eviction candidate
	n    int32 // entries in use
	// next is the shard's high-water mark: its slots from next on have
	// never held an entry and are free without being on the free list, so
	// a new table touches no memory beyond what it uses (a sparse file
	// stays sparse).
	next int32
	// The half-open entries (StateSynSent) have an LRU list of their own:
	// they are evicted first, oldest first, and at most f.synMax of them
	// are stored (see Config.SynBudget).
	synHead, synTail int32
	synN             int32

	// Counters, written under mu.
	inserts, updates, deletes, expired, evictions, evictedSyn, full, pairRemovals uint64

	// seq is the shard's lock and its sequence count for the lock-free
	// readers (see lock and read): odd while a writer holds the shard
	// (and may change what they read: the chains, and the keys, entries,
	// states and marks of the slots). A crash may leave it odd; Attach
	// resets it with the rest of the header.
	// It sits in what was the header's padding, at the end, so that the
	// memory format, and a table the previous binary left, did not change.
	seq atomic.Uint64
}

// shard is padded to two cache lines so that the locks and counters of
// neighbouring shards never share a line (the adjacent-line prefetcher
// pairs lines, hence two).
type shard struct {
	shardData
	_ [(2*cacheLine - unsafe.Sizeof(shardData{})%(2*cacheLine)) % (2 * cacheLine)]byte
}

// pairInfo is what removing an entry obliges the table to do: remove the
// partner entry of its NAT pair and/or free its SNAT port.
type pairInfo[K any] struct {
	partner  K
	snatPort uint16
	snatIdx  uint8
	what     uint8 // pairPartner | pairSNAT
}

const (
	pairPartner uint8 = 1 << 0
	pairSNAT    uint8 = 1 << 1
)

// pending is a pairInfo still to be carried out, after the lock of the
// removed entry's shard has been released (locks are never nested).
type pending[K any] struct {
	pairInfo[K]
	from K // the removed key: the partner is removed only if it names it
}

// flavor names the concrete key and entry types of a family: flavor4
// (key4, Entry4) or flavor6 (key6, entry6). What depends on them is
// picked by a type switch on it (pairOf, hashOf, flowOf, serviceOf).
type flavor[K comparable, E comparable] interface {
	flavor4 | flavor6
}

type rangeItem[K, E any] struct {
	k  K
	e  E
	st uint8
}

// family is the table of one address family.
//
// The index is chained hashing with the chain links kept out of the slots,
// in a word array parallel to the slot array. A word names a slot of the
// same shard by its position in the shard plus one (0 ends a chain) in its
// low ib bits, and carries in its high bits a tag of that slot's hash. A
// chain walk therefore reads the slot itself only when the tag matches:
// a hit reads one slot and a miss usually none, and the bucket and link
// arrays (8 bytes per entry) stay in cache far more easily than the slots.
type family[K comparable, E comparable, F flavor[K, E]] struct {
	slots      []slot[K, E]
	buckets    []uint32 // chain heads, one per slot
	links      []uint32 // links[i]: word after slot i in its chain or in the free list
	shards     []shard
	shardMask  uint32
	bucketMask uint32 // slots per shard - 1
	idxMask    uint32 // 1<<ib - 1
	bits       uint8  // log2(slots per shard)
	ib         uint8  // index bits of a word: bits+1
	tagShift   uint8  // tag = h >> tagShift (64 when there is no room for a tag)
	synMax     int32  // half-open entries a shard may hold (Config.SynBudget); 0: off
	t          *Table
}

// pairOf writes the NAT obligations of e stored under k to *out, and
// hashOf returns k's hash: flavor's work, called directly. A call through
// the flavor's dictionary passes keys and entries by value (they hold
// arrays, so on the stack), returns the obligations the same way and,
// being opaque to escape analysis, cannot take pointers to the caller's
// locals; here the concrete function is picked by a type switch on the
// zero-size flavor, which the compiler resolves per instantiation.
func (f *family[K, E, F]) pairOf(k *K, e *E, out *pairInfo[K]) {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		pair4to(f.t, (*key4)(unsafe.Pointer(k)), (*Entry4)(unsafe.Pointer(e)), (*pairInfo[key4])(unsafe.Pointer(out)))
	case flavor6:
		pair6to(f.t, (*key6)(unsafe.Pointer(k)), (*entry6)(unsafe.Pointer(e)), (*pairInfo[key6])(unsafe.Pointer(out)))
	default:
		panic("conntrack: unknown flavor")
	}
}

// flowOf returns the backend of a flow entry counted by BackendFlows
// (every entry but the reverse half of a NAT pair).
func (f *family[K, E, F]) flowOf(e *E) (backend uint32, counted bool) {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		x := (*Entry4)(unsafe.Pointer(e))
		return x.Backend, x.Flags&FlagReverse == 0
	case flavor6:
		x := (*entry6)(unsafe.Pointer(e))
		return x.Backend, x.Flags&FlagReverse == 0
	}
	panic("conntrack: unknown flavor")
}

// flagsOf returns the entry's flags.
func (f *family[K, E, F]) flagsOf(e *E) uint8 {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		return (*Entry4)(unsafe.Pointer(e)).Flags
	case flavor6:
		return (*entry6)(unsafe.Pointer(e)).Flags
	}
	panic("conntrack: unknown flavor")
}

// setEntryState sets the entry's State field.
func (f *family[K, E, F]) setEntryState(e *E, st uint8) {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		(*Entry4)(unsafe.Pointer(e)).State = st
	case flavor6:
		(*entry6)(unsafe.Pointer(e)).State = st
	}
}

// serviceOf returns the entry's service ID (for ServiceStats).
func (f *family[K, E, F]) serviceOf(e *E) uint32 {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		return (*Entry4)(unsafe.Pointer(e)).Service
	case flavor6:
		return (*entry6)(unsafe.Pointer(e)).Service
	}
	panic("conntrack: unknown flavor")
}

func (f *family[K, E, F]) hashOf(k *K) uint64 {
	var fl F
	switch any(fl).(type) {
	case flavor4:
		return hash4((*key4)(unsafe.Pointer(k)), f.t.seed)
	case flavor6:
		return hash6((*key6)(unsafe.Pointer(k)), f.t.seed)
	}
	panic("conntrack: unknown flavor")
}

// place lays the family over the table's memory at the offsets of fl
// (see layout). The slices point into mem, which the caller keeps alive:
// Go heap memory without pointers, or a shared mapping the garbage
// collector never scans. fresh means the memory is all zeros (a new
// table): the shard headers are initialised; otherwise Attach recovers
// them from the slots.
func (f *family[K, E, F]) place(t *Table, mem []byte, fl familyLayout, ps, shards, synBudget int, fresh bool) {
	n := ps * shards
	f.t = t
	f.slots = unsafe.Slice((*slot[K, E])(unsafe.Pointer(&mem[fl.slots])), n)
	f.buckets = unsafe.Slice((*uint32)(unsafe.Pointer(&mem[fl.buckets])), n)
	f.links = unsafe.Slice((*uint32)(unsafe.Pointer(&mem[fl.links])), n)
	f.shards = unsafe.Slice((*shard)(unsafe.Pointer(&mem[fl.shards])), shards)
	f.shardMask = uint32(shards - 1)
	f.bucketMask = uint32(ps - 1)
	for ps>>f.bits > 1 {
		f.bits++
	}
	f.ib = f.bits + 1
	f.idxMask = 1<<f.ib - 1
	// The tag takes hash bits 48 and up, which neither the shard (bits 32
	// to 47) nor the bucket (bits 0 to 28) use.
	f.tagShift = 64 - min(16, 32-f.ib)
	f.synMax = 0 // off: half-open entries are ordinary entries
	if synBudget > 0 {
		f.synMax = int32(max(1, ps*synBudget/100))
	}
	if fresh {
		for si := range f.shards {
			f.shards[si].reset()
		}
	}
}

// reset empties a shard header but for its counters.
func (s *shard) reset() {
	s.seq.Store(0)
	s.free, s.head, s.tail, s.synHead, s.synTail = -1, -1, -1, -1, -1
	s.n, s.next, s.synN = 0, 0, 0
}

// lock takes the shard's lock, which is its sequence count: a writer
// moves seq from even to odd with one compare-and-swap and back to even
// with one add (unlock), so that the lock-free readers (read) see every
// locked section as a change and retry under the lock. One word and two
// locked instructions per section, where a mutex plus a separate count
// took four, each of which drains the store buffer: a new fullnat flow
// takes several sections. Writers hold it for well under a microsecond;
// a waiter spins, and yields its thread if that takes long.
func (s *shard) lock() {
	for n := 0; ; n++ {
		if q := s.seq.Load(); q&1 == 0 && s.seq.CompareAndSwap(q, q+1) {
			return
		}
		if n >= 32 {
			runtime.Gosched()
		}
	}
}

// unlock releases the lock taken by lock.
func (s *shard) unlock() { s.seq.Add(1) }

// halfOpen reports whether an entry in state st is on the half-open LRU
// list (always false with the SYN budget off).
func (f *family[K, E, F]) halfOpen(st uint8) bool { return st == StateSynSent && f.synMax > 0 }

// list returns the head and tail of the LRU list an entry in state st
// belongs to.
func (f *family[K, E, F]) list(s *shard, st uint8) (head, tail *int32) {
	if f.halfOpen(st) {
		return &s.synHead, &s.synTail
	}
	return &s.head, &s.tail
}

// locate returns the shard of hash h and the global index of its bucket.
func (f *family[K, E, F]) locate(h uint64) (*shard, uint32) {
	si := uint32(h>>32) & f.shardMask
	return &f.shards[si], si<<(f.bits&31) | uint32(h)&f.bucketMask
}

// tag is the part of hash h kept in the words that point to its slot.
// (The shift counts are masked, which they never need, so that the
// compiler can leave out its checks for counts beyond the width.)
func (f *family[K, E, F]) tag(h uint64) uint32 { return uint32(h >> (f.tagShift & 63)) }

// word encodes a pointer to slot i (in the shard starting at base) with tag.
func (f *family[K, E, F]) word(tag uint32, i, base int32) uint32 {
	return tag<<f.ib | uint32(i-base+1)
}

// age is now-seen in ticks, modulo 2^32; a timestamp from a worker whose
// clock reading is slightly ahead counts as age 0.
func age(now, seen uint32) uint32 {
	d := int32(now - seen)
	if d < 0 {
		return 0
	}
	return uint32(d)
}

func (f *family[K, E, F]) expiredAt(sl *slot[K, E], now uint32) bool {
	return age(now, sl.seen) > f.t.timeouts[sl.state&7]
}

// find returns the slot holding k, whose hash has tag, in bucket b, or -1.
// Caller holds the lock.
func (f *family[K, E, F]) find(k *K, b, tag uint32) int32 {
	base := int32(b &^ f.bucketMask)
	for w := f.buckets[b]; w&f.idxMask != 0; {
		i := base + int32(w&f.idxMask) - 1
		if w>>(f.ib&31) == tag && f.slots[i].k == *k {
			return i
		}
		w = f.links[i]
	}
	return -1
}

// lookup finds k, refreshes it, advances its TCP state and copies the
// entry to *out (a pointer, not a result: returning the entry by value
// costs a store-forwarding stall on the caller's side). An expired entry is
// removed and reported as a miss.
//
// A hit on an entry that needs nothing but a new timestamp (the common
// case: an established flow's next packet) takes no lock and writes
// nothing shared but, once per tick, that timestamp (see read); anything
// else is done under the shard's lock by lookupLocked.
func (f *family[K, E, F]) lookup(k *K, h uint64, tcpFlags uint8, tcp bool, now uint32, out *E) (st uint8, ok bool) {
	st, r := f.read(k, h, now, tcpFlags, tcp, true, out)
	if r == readSlow {
		return f.lookupLocked(k, h, tcpFlags, tcp, now, out, true)
	}
	return st, r == readHit
}

// Results of read.
const (
	readHit uint8 = iota
	readMiss
	readSlow // the lock is needed: a writer was busy, or the hit has work to do
)

// maxReadChain bounds read's chain walk: a chain torn by a concurrent
// writer may look endless. Real chains in a table with a keyed hash are a
// few links long; a longer one is walked under the lock.
const maxReadChain = 32

// read is the lock-free half of lookup and peek, a seqlock read: it loads
// the shard's seq, walks the chain, copies the entry of the slot whose key
// matches, and trusts the copy only if seq was even and has not moved
// meanwhile.
// Writers make seq odd while they hold the shard (lock, unlock).
// Everything read before the second load of seq may be torn, so it is only
// used, bounds-checked, to find the next word or slot to read. A reader
// never writes the shard's header or blocks its writers.
//
// With refresh (lookup), a hit is read's only if it leaves the entry as it
// is but for its timestamp: not expired, no TCP state change, no move in
// the LRU list (once per granule). The timestamp is then set with a
// compare-and-swap, and only when the tick has changed, so that a flow's
// packets write its slot at most once per tick and never wait for a lock;
// a swap that loses to a writer loses nothing (the writer stored a time at
// least as recent, or freed the slot). Anything else returns readSlow.
// Without refresh (peek), an expired entry is a miss.
//
// In race-detector builds the timestamp is left to the locked path: the
// writers store it without atomics, which is safe on the hardware (an
// aligned 32-bit store) but a race by the detector's rules.
//
//go:norace
func (f *family[K, E, F]) read(k *K, h uint64, now uint32, tcpFlags uint8, tcp, refresh bool, out *E) (uint8, uint8) {
	si := uint32(h>>32) & f.shardMask
	s := &f.shards[si]
	seq := s.seq.Load()
	if seq&1 != 0 {
		return 0, readSlow
	}
	base := si << (f.bits & 31)
	tag := f.tag(h)
	var buf slot[K, E]
	var e E
	var st, mark uint8
	var seen uint32
	i := int32(-1)
	w := ld32(&f.buckets[base|uint32(h)&f.bucketMask])
	for n := 0; w&f.idxMask != 0; n++ {
		off := w & f.idxMask
		if off > f.bucketMask+1 || n == maxReadChain {
			return 0, readSlow
		}
		j := int32(base + off - 1)
		if w>>(f.ib&31) == tag {
			if sl := view(&f.slots[j], &buf); sl.k == *k {
				e, st, mark, seen = sl.e, sl.state, sl.mark, sl.seen
				i = j
				break
			}
		}
		w = ld32(&f.links[j])
	}
	if s.seq.Load() != seq {
		return 0, readSlow
	}
	if i < 0 {
		return 0, readMiss
	}
	if mark&markUsed == 0 {
		return 0, readSlow
	}
	if age(now, seen) > f.t.timeouts[st&7] {
		if refresh {
			return 0, readSlow // removed, or kept alive by its NAT partner
		}
		return 0, readMiss
	}
	if refresh {
		// An ACK or data on an established flow changes nothing: only
		// other packets need the state machine.
		if tcp && (st != StateEstablished || tcpFlags&(TCPFlagSYN|TCPFlagFIN|TCPFlagRST) != 0) && nextState(st, tcpFlags) != st {
			return 0, readSlow
		}
		if int32(now-seen) > 0 {
			if (now^seen)>>lruShift != 0 || raceEnabled {
				return 0, readSlow
			}
			atomic.CompareAndSwapUint32(&f.slots[i].seen, seen, now)
		}
	}
	*out = e
	return st, readHit
}

// lookupLocked is lookup under the shard's lock: the hits that change the
// entry (its state, its place in the LRU list), expired entries, and reads
// that met a writer.
//
// An expired half of a NAT pair is not a miss while its partner is alive
// (see expirePaired); pairCheck false skips that check (used for the retry
// after it).
//
//go:noinline
func (f *family[K, E, F]) lookupLocked(k *K, h uint64, tcpFlags uint8, tcp bool, now uint32, out *E, pairCheck bool) (st uint8, ok bool) {
	s, b := f.locate(h)
	s.lock()
	i := f.find(k, b, f.tag(h))
	if i < 0 {
		s.unlock()
		return 0, false
	}
	sl := &f.slots[i]
	if f.expiredAt(sl, now) {
		if pairCheck && sl.mark&markPaired != 0 {
			return f.lookupExpiredPair(s, i, k, h, tcpFlags, tcp, now, out)
		}
		f.expireLocked(s, i, b)
		return 0, false
	}
	if tcp {
		if st := nextState(sl.state, tcpFlags); st != sl.state {
			if sl.mark&markPaired != 0 && st == StateEstablished && f.halfOpen(sl.state) {
				return f.lookupEstablishPair(s, i, st, now, out)
			}
			f.setState(s, i, st)
		}
	}
	f.touchLocked(s, i, now)
	*out, st = sl.e, sl.state
	s.unlock()
	return st, true
}

// lookupEstablishPair is lookup's slow path for a half of a NAT pair that
// leaves StateSynSent for StateEstablished (the client's ACK completed the
// handshake): it finishes the lookup, unlocks s and promotes the other
// half too. The reverse half sees only the backend's packets, and until
// the backend's first one after its SYN-ACK it would stay on the
// half-open list, where a SYN flood evicts it, and the established
// connection with it.
//
//go:noinline
func (f *family[K, E, F]) lookupEstablishPair(s *shard, i int32, st uint8, now uint32, out *E) (uint8, bool) {
	sl := &f.slots[i]
	f.setState(s, i, st)
	f.touchLocked(s, i, now)
	*out = sl.e
	var info pairInfo[K]
	f.pairOf(&sl.k, &sl.e, &info)
	k := sl.k
	s.unlock()
	if info.what&pairPartner == 0 {
		return st, true
	}
	h := f.hashOf(&info.partner)
	ps, b := f.locate(h)
	ps.lock()
	if j := f.find(&info.partner, b, f.tag(h)); j >= 0 && f.slots[j].state == StateSynSent && f.slots[j].mark&markPaired != 0 {
		var back pairInfo[K]
		if f.pairOf(&f.slots[j].k, &f.slots[j].e, &back); back.what&pairPartner != 0 && back.partner == k {
			f.setState(ps, j, StateEstablished)
		}
	}
	ps.unlock()
	return st, true
}

// lookupExpiredPair is lookup's slow path for an expired half of a NAT
// pair in slot i of s (locked): it lets expirePaired decide, then looks
// the key up again.
//
//go:noinline
func (f *family[K, E, F]) lookupExpiredPair(s *shard, i int32, k *K, h uint64, tcpFlags uint8, tcp bool, now uint32, out *E) (uint8, bool) {
	var info pairInfo[K]
	f.pairOf(&f.slots[i].k, &f.slots[i].e, &info)
	s.unlock()
	if f.expirePaired(k, &info, now) > 0 {
		return 0, false
	}
	return f.lookupLocked(k, h, tcpFlags, tcp, now, out, false)
}

// expirePaired handles an entry k, half of a NAT pair described by info,
// that has idled past its own timeout. The pair is judged as one
// connection: its timestamp is the later of the two halves', its state
// StateClosed or StateClosing if either half is in it and otherwise the
// state of the half seen last. If the pair is still alive by that measure
// (the other direction carries traffic, e.g. a one-way UDP stream), the
// entry takes the pair's timestamp and state and stays; otherwise it is
// removed together with its partner. No lock is held on entry; the two
// shards are locked one after the other. Returns the entries removed.
func (f *family[K, E, F]) expirePaired(k *K, info *pairInfo[K], now uint32) (removed int) {
	var pSeen uint32
	var pState uint8
	partner := false
	if info.what&pairPartner != 0 {
		h := f.hashOf(&info.partner)
		s, b := f.locate(h)
		s.lock()
		if i := f.find(&info.partner, b, f.tag(h)); i >= 0 && f.slots[i].mark&markPaired != 0 {
			sl := &f.slots[i]
			var back pairInfo[K]
			if f.pairOf(&sl.k, &sl.e, &back); back.what&pairPartner != 0 && back.partner == *k {
				pSeen, pState, partner = sl.seen, sl.state, true
			}
		}
		s.unlock()
	}
	h := f.hashOf(k)
	s, b := f.locate(h)
	s.lock()
	i := f.find(k, b, f.tag(h))
	if i < 0 {
		s.unlock()
		return 0
	}
	sl := &f.slots[i]
	var now4 pairInfo[K]
	f.pairOf(&sl.k, &sl.e, &now4)
	if !f.expiredAt(sl, now) || sl.mark&markPaired == 0 || now4 != *info {
		s.unlock() // refreshed or replaced meanwhile
		return 0
	}
	if partner {
		seen, st := sl.seen, pairState(sl.state, sl.seen, pState, pSeen)
		if int32(pSeen-seen) > 0 {
			seen = pSeen
		}
		if age(now, seen) <= f.t.timeouts[st&7] {
			f.setState(s, i, st)
			f.touchLocked(s, i, seen) // also moves it in the LRU list
			s.unlock()
			return 0
		}
	}
	p := f.removeLocked(s, i, b)
	s.expired++
	s.unlock()
	return 1 + f.settle(&p)
}

// pairState is the state of a NAT pair whose halves are in states a (last
// packet at aSeen) and b (at bSeen): closed or closing if either half is,
// else the state of the half seen last.
func pairState(a uint8, aSeen uint32, b uint8, bSeen uint32) uint8 {
	switch {
	case a == StateClosed || b == StateClosed:
		return StateClosed
	case a == StateClosing || b == StateClosing:
		return StateClosing
	case int32(aSeen-bSeen) >= 0:
		return a
	}
	return b
}

// expireLocked removes the expired entry in slot i, unlocks s and settles
// the entry's NAT obligations. Kept out of lookup, whose hit path it would
// otherwise weigh down.
//
//go:noinline
func (f *family[K, E, F]) expireLocked(s *shard, i int32, b uint32) {
	p := f.removeLocked(s, i, b)
	s.expired++
	s.unlock()
	if p.what != 0 {
		f.settle(&p)
	}
}

// insert stores e under k, overwriting an existing entry. In a full shard
// it evicts the least recently used entry if that one is evictable and
// otherwise refuses with ErrFull. The returned pending holds the NAT
// obligations of an overwritten or evicted entry; the caller settles it.
func (f *family[K, E, F]) insert(k *K, h uint64, e *E, st uint8, paired bool, now uint32) (p pending[K], err error) {
	mark := markUsed
	if paired {
		mark |= markPaired
	}
	s, b := f.locate(h)
	tag := f.tag(h)
	s.lock()
	if i := f.find(k, b, tag); i >= 0 {
		sl := &f.slots[i]
		if sl.mark&markPaired != 0 {
			p = f.overwriteObligations(sl, k, e, paired)
		}
		if f.expiredAt(sl, now) {
			s.expired++
			s.inserts++ // a new flow that reuses the tuple
		} else {
			s.updates++
		}
		if id, ok := f.flowOf(&sl.e); ok {
			f.t.addFlows(id, -1)
		}
		if id, ok := f.flowOf(e); ok {
			f.t.addFlows(id, 1)
		}
		if st != sl.state {
			f.setState(s, i, st)
		}
		sl.e, sl.mark = *e, mark
		f.touchLocked(s, i, now)
		s.unlock()
		return p, nil
	}
	base := int32(b &^ f.bucketMask)
	if f.halfOpen(st) && s.synN >= f.synMax || s.free < 0 && s.next > int32(f.bucketMask) {
		v := f.victim(s, st, now)
		if v < 0 {
			s.full++
			s.unlock()
			f.t.countRefused(f.serviceOf(e))
			return p, ErrFull
		}
		vs := &f.slots[v]
		f.t.countEvicted(f.serviceOf(&vs.e), vs.state)
		if f.halfOpen(vs.state) {
			s.evictedSyn++
		}
		_, vb := f.locate(f.hashOf(&vs.k))
		p = f.removeLocked(s, v, vb)
		s.evictions++
	}
	i := s.free
	if i >= 0 {
		if w := f.links[i] & f.idxMask; w != 0 {
			s.free = base + int32(w) - 1
		} else {
			s.free = -1
		}
	} else {
		i = base + s.next
		s.next++
	}
	sl := &f.slots[i]
	sl.k, sl.e, sl.state, sl.seen, sl.mark = *k, *e, st, now, mark
	f.links[i] = f.buckets[b]
	f.buckets[b] = f.word(tag, i, base)
	f.lruPush(s, i)
	if id, ok := f.flowOf(e); ok {
		f.t.addFlows(id, 1)
	}
	s.n++
	s.inserts++
	s.unlock()
	return p, nil
}

// overwriteObligations returns what replacing the paired entry in sl by e
// requires: removing the old partner unless the new entry has the same one,
// freeing the old SNAT port unless the new entry keeps it.
func (f *family[K, E, F]) overwriteObligations(sl *slot[K, E], k *K, e *E, paired bool) (p pending[K]) {
	f.pairOf(&sl.k, &sl.e, &p.pairInfo)
	p.from = *k
	if !paired {
		return p
	}
	var nw pairInfo[K]
	f.pairOf(k, e, &nw)
	if nw.what&pairPartner != 0 && nw.partner == p.partner {
		p.what &^= pairPartner
	}
	if nw.what&pairSNAT != 0 && nw.snatIdx == p.snatIdx && nw.snatPort == p.snatPort {
		p.what &^= pairSNAT
	}
	return p
}

// victim picks the entry to evict for an insert in state st into s, which
// is full or at its half-open budget, or returns -1 (ErrFull). Half-open
// entries go first, oldest first: a half-open insert at the budget
// replaces the oldest half-open entry whatever its age (under a SYN flood
// a half-open entry lives for budget/rate; a real handshake needs one
// round trip), and a full shard gives up its oldest half-open entry
// before anything else. Only a shard without half-open entries evicts its
// least recently used entry, and only an evictable one.
func (f *family[K, E, F]) victim(s *shard, st uint8, now uint32) int32 {
	if s.synTail >= 0 && (f.halfOpen(st) && s.synN >= f.synMax || s.free < 0 && s.next > int32(f.bucketMask)) {
		return s.synTail
	}
	if v := s.tail; v >= 0 && f.evictable(&f.slots[v], now) {
		return v
	}
	return -1
}

// setState moves slot i (linked, in shard s) to state st and, when it
// enters or leaves StateSynSent, to the head of its new LRU list. Rare:
// once or twice per connection.
//
//go:noinline
func (f *family[K, E, F]) setState(s *shard, i int32, st uint8) {
	sl := &f.slots[i]
	if f.halfOpen(sl.state) == f.halfOpen(st) {
		sl.state = st
		return
	}
	f.lruUnlink(s, i)
	sl.state = st
	f.lruPush(s, i)
}

// evictable reports whether a full shard may give sl's slot to a new flow.
func (f *family[K, E, F]) evictable(sl *slot[K, E], now uint32) bool {
	a := age(now, sl.seen)
	return a >= f.t.minIdle || a > f.t.timeouts[sl.state&7] ||
		sl.state == StateClosing || sl.state == StateClosed
}

// touchLocked records a packet at now for slot i. The LRU list of a shard
// is kept ordered by the granule (2^lruShift ticks) of each entry's last
// packet: an entry moves to the head only when now is in a later granule
// than its previous packet, so a busy flow costs the two extra cache lines
// of an LRU move at most once per granule instead of once per packet, and
// the tail is the least recently used entry up to one granule. A now
// behind the stored timestamp (another worker's clock reading a little
// behind) changes nothing.
func (f *family[K, E, F]) touchLocked(s *shard, i int32, now uint32) {
	sl := &f.slots[i]
	if int32(now-sl.seen) <= 0 {
		return
	}
	if (now^sl.seen)>>lruShift != 0 {
		f.moveToFront(s, i)
	}
	sl.seen = now
}

// moveToFront relinks slot i at the head of its LRU list.
func (f *family[K, E, F]) moveToFront(s *shard, i int32) {
	if sl := &f.slots[i]; sl.prev >= 0 { // not the head already
		f.lruUnlink(s, i)
		f.lruPush(s, i)
	}
}

// lruPush links slot i at the head of the LRU list of its state.
func (f *family[K, E, F]) lruPush(s *shard, i int32) {
	sl := &f.slots[i]
	head, tail := f.list(s, sl.state)
	if f.halfOpen(sl.state) {
		s.synN++
	}
	sl.prev = -1
	sl.after = *head
	if *head >= 0 {
		f.slots[*head].prev = i
	} else {
		*tail = i
	}
	*head = i
}

// lruUnlink takes slot i out of the LRU list of its state.
func (f *family[K, E, F]) lruUnlink(s *shard, i int32) {
	sl := &f.slots[i]
	head, tail := f.list(s, sl.state)
	if f.halfOpen(sl.state) {
		s.synN--
	}
	if sl.prev >= 0 {
		f.slots[sl.prev].after = sl.after
	} else {
		*head = sl.after
	}
	if sl.after >= 0 {
		f.slots[sl.after].prev = sl.prev
	} else {
		*tail = sl.prev
	}
}

// removeLocked frees slot i, which holds an entry in bucket b, and returns
// the entry's NAT obligations. Caller holds the lock of s.
func (f *family[K, E, F]) removeLocked(s *shard, i int32, b uint32) (p pending[K]) {
	sl := &f.slots[i]
	base := int32(b &^ f.bucketMask)
	me := uint32(i-base) + 1
	if f.buckets[b]&f.idxMask == me {
		f.buckets[b] = f.links[i]
	} else {
		for w := f.buckets[b]; w&f.idxMask != 0; {
			j := base + int32(w&f.idxMask) - 1
			w = f.links[j]
			if w&f.idxMask == me {
				f.links[j] = f.links[i]
				break
			}
		}
	}
	f.lruUnlink(s, i)
	if id, ok := f.flowOf(&sl.e); ok {
		f.t.addFlows(id, -1)
	}
	if sl.mark&markPaired != 0 {
		f.pairOf(&sl.k, &sl.e, &p.pairInfo)
		p.from = sl.k
	}
	sl.mark = 0
	if s.free >= 0 {
		f.links[i] = uint32(s.free-base) + 1
	} else {
		f.links[i] = 0
	}
	s.free = i
	s.n--
	return p
}

// remove deletes k. If match is non-nil, only an entry equal to *match is
// deleted.
func (f *family[K, E, F]) remove(k *K, h uint64, match *E) bool {
	s, b := f.locate(h)
	s.lock()
	i := f.find(k, b, f.tag(h))
	if i < 0 || (match != nil && f.slots[i].e != *match) {
		s.unlock()
		return false
	}
	p := f.removeLocked(s, i, b)
	s.deletes++
	s.unlock()
	if p.what != 0 {
		f.settle(&p)
	}
	return true
}

// settle carries out the obligations of a removed entry: it removes the
// NAT partner if that still names p.from (so a partner that was since
// replaced by another flow is left alone), frees the partner's SNAT port if
// the partner was the fullnat forward entry, and frees p's own SNAT port.
// It returns the number of entries removed (0 or 1).
func (f *family[K, E, F]) settle(p *pending[K]) (removed int) {
	if p.what&pairPartner != 0 {
		h := f.hashOf(&p.partner)
		s, b := f.locate(h)
		s.lock()
		var q pending[K]
		if i := f.find(&p.partner, b, f.tag(h)); i >= 0 && f.slots[i].mark&markPaired != 0 {
			var back pairInfo[K]
			f.pairOf(&f.slots[i].k, &f.slots[i].e, &back)
			if back.what&pairPartner != 0 && back.partner == p.from {
				q = f.removeLocked(s, i, b)
				s.pairRemovals++
				removed = 1
			}
		}
		s.unlock()
		if q.what&pairSNAT != 0 {
			f.t.FreeSNAT(q.snatIdx, q.snatPort)
		}
	}
	if p.what&pairSNAT != 0 {
		f.t.FreeSNAT(p.snatIdx, p.snatPort)
	}
	return removed
}

// expireRange removes the expired entries among slots [lo, hi), locking
// one shard at a time, and returns how many entries it removed (NAT
// partners included). A shard's part of the range is first looked over
// without the lock (anyExpired) and locked only if it holds a candidate,
// so that the workers' per-batch sweep does not contend with the writers
// or make the lock-free readers retry. Expired NAT entries are collected
// and handed to expirePaired once the shard's lock is released.
func (f *family[K, E, F]) expireRange(lo, hi int, now uint32) (removed int) {
	var cand [16]pending[K]
	for lo < hi {
		si := lo >> f.bits
		end := min(hi, (si+1)<<f.bits)
		if !f.anyExpired(lo, end, now) {
			lo = end
			continue
		}
		s := &f.shards[si]
		n := 0
		s.lock()
		// Slots above the high-water mark have never been used.
		for i := lo; i < min(end, si<<f.bits+int(s.next)); i++ {
			sl := &f.slots[i]
			if sl.mark&markUsed == 0 || !f.expiredAt(sl, now) {
				continue
			}
			if sl.mark&markPaired != 0 {
				f.pairOf(&sl.k, &sl.e, &cand[n].pairInfo)
				cand[n].from = sl.k
				if n++; n == len(cand) {
					s.unlock()
					for j := range cand {
						removed += f.expirePaired(&cand[j].from, &cand[j].pairInfo, now)
					}
					n = 0
					s.lock()
				}
				continue
			}
			_, b := f.locate(f.hashOf(&sl.k))
			f.removeLocked(s, int32(i), b) // no obligations: not paired
			s.expired++
			removed++
		}
		s.unlock()
		for j := range cand[:n] {
			removed += f.expirePaired(&cand[j].from, &cand[j].pairInfo, now)
		}
		lo = end
	}
	return removed
}

// anyExpired reports whether a slot among [lo, hi) (of one shard) looked
// like an expired entry, read without the lock: a hint for expireRange,
// which decides under the lock. Reads of a slot that a writer is changing
// may be torn; the worst outcome is a sweep that locks for nothing or
// leaves an entry to the next sweep (or to the lookup that meets it).
//
// Like expireRange it stops at the shard's high-water mark, so that the
// never-used part of a table in a sparse file is never touched.
//
//go:norace
func (f *family[K, E, F]) anyExpired(lo, hi int, now uint32) bool {
	si := lo >> f.bits
	hi = min(hi, si<<f.bits+int(f.shards[si].next))
	for i := lo; i < hi; i++ {
		sl := &f.slots[i]
		if sl.mark&markUsed != 0 && age(now, sl.seen) > f.t.timeouts[sl.state&7] {
			return true
		}
	}
	return false
}

// rangeAll calls fn for every stored entry, copying up to 32 entries under
// a shard's lock and calling fn without any lock held.
func (f *family[K, E, F]) rangeAll(fn func(k K, e E, st uint8) bool) {
	var buf [32]rangeItem[K, E]
	per := 1 << f.bits
	for si := range f.shards {
		s := &f.shards[si]
		for lo, hi := si*per, (si+1)*per; lo < hi; {
			n := 0
			s.lock()
			hi = min(hi, si*per+int(s.next))
			for ; lo < hi && n < len(buf); lo++ {
				if sl := &f.slots[lo]; sl.mark&markUsed != 0 {
					buf[n] = rangeItem[K, E]{sl.k, sl.e, sl.state}
					n++
				}
			}
			s.unlock()
			for j := range buf[:n] {
				if !fn(buf[j].k, buf[j].e, buf[j].st) {
					return
				}
			}
		}
	}
}

// addStats adds the family's counters to st and returns its entry count.
func (f *family[K, E, F]) addStats(st *Stats) int {
	n := 0
	for si := range f.shards {
		s := &f.shards[si]
		s.lock()
		n += int(s.n)
		st.Inserts += s.inserts
		st.Updates += s.updates
		st.Deletes += s.deletes
		st.Expired += s.expired
		st.Evictions += s.evictions
		st.EvictedHalfOpen += s.evictedSyn
		st.HalfOpen += int(s.synN)
		st.Full += s.full
		st.PairRemovals += s.pairRemovals
		s.unlock()
	}
	return n
}

func (f *family[K, E, F]) len() int {
	n := 0
	for si := range f.shards {
		s := &f.shards[si]
		s.lock()
		n += int(s.n)
		s.unlock()
	}
	return n
}

// prefetchChunk is how many lookups touchBatch prepares at once.
const prefetchChunk = 16

// touchBatch reads the cache lines that the lookups of the hashes in hs
// (at most prefetchChunk) will need: each bucket, the links of its chain up
// to the slot whose tag matches, and that slot. It goes breadth first, one
// chain step for every hash per pass, so that the loads of a pass do not
// depend on each other and their cache misses overlap. It returns a
// meaningless sum of what it read, so that the reads cannot be optimised
// away.
//
// It runs without the shard locks: a concurrent writer may be changing
// what it reads, which is harmless because the values are only used,
// bounds-checked, to pick the next address to read (three chain steps at
// most) and are never acted upon. go:norace keeps the race detector from
// reporting these deliberate unlocked reads; every access that matters is
// made under the lock.
//
//go:norace
func (f *family[K, E, F]) touchBatch(hs []uint64) (sum uint8) {
	var ws [prefetchChunk]uint32
	n := min(len(hs), len(ws))
	for j := range n {
		_, b := f.locate(hs[j])
		ws[j] = f.buckets[b]
	}
	size := unsafe.Sizeof(f.slots[0])
	for pass := 0; pass < 3; pass++ {
		more := false
		for j := range n {
			w := ws[j]
			if w&f.idxMask == 0 {
				continue
			}
			i := int32(uint32(hs[j]>>32)&f.shardMask)<<f.bits + int32(w&f.idxMask) - 1
			if uint32(i) >= uint32(len(f.slots)) {
				ws[j] = 0
				continue
			}
			if w>>f.ib != f.tag(hs[j]) {
				ws[j] = f.links[i]
				more = true
				continue
			}
			p := unsafe.Pointer(&f.slots[i])
			for off := uintptr(0); off < size; off += cacheLine {
				sum += *(*uint8)(unsafe.Add(p, off))
			}
			sum += *(*uint8)(unsafe.Add(p, size-1))
			ws[j] = 0
		}
		if !more {
			break
		}
	}
	return sum
}
