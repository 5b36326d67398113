package conntrack

import (
	"sync"
	"unsafe"
)

// This file is the table proper, generic over the key and entry types of
// one address family. Everything that depends on the concrete types (the
// hash, the NAT partner of an entry) comes in through a flavor F. The
// per-packet paths (lookup, insert, remove) receive the hash from the
// non-generic wrappers in table.go and call F only on the rare paths
// (eviction, expiry, NAT pairs); F's methods take values, not pointers, so
// the dictionary calls do not make the caller's key escape.

const (
	markUsed    uint8 = 1 << 0 // slot holds an entry
	markTouched uint8 = 1 << 1 // seen since it was last linked at the LRU head
	markPaired  uint8 = 1 << 2 // entry is half of a NAT pair

	// maxRelink bounds the lazy LRU repair done by one eviction (see
	// victimLocked).
	maxRelink = 16

	cacheLine = 64
)

// slot is one preallocated entry. Indices are int32 positions in the
// family's slot array; -1 is nil. Field order keeps it at 60 bytes for
// IPv4 (16 meta + 28 entry + 14 key + 2) and 108 for IPv6.
type slot[K comparable, E comparable] struct {
	next  int32  // next slot in the bucket chain, or in the free list
	prev  int32  // LRU neighbour towards the head (more recently used)
	after int32  // LRU neighbour towards the tail (less recently used)
	seen  uint32 // last packet, in ticks since the table was created
	e     E      // e.State is as inserted; the live state is in state
	k     K
	state uint8
	mark  uint8
}

type shardData struct {
	mu   sync.Mutex
	free int32 // head of the free list
	head int32 // most recently linked
	tail int32 // least recently linked: the eviction candidate
	n    int32 // entries in use

	// Counters, written under mu.
	inserts, updates, deletes, expired, evictions, full, pairRemovals uint64
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

// flavor supplies what depends on the concrete key and entry types.
type flavor[K comparable, E comparable] interface {
	hash(k K, seed uint64) uint64
	pair(t *Table, k K, e E) pairInfo[K]
}

type rangeItem[K, E any] struct {
	k  K
	e  E
	st uint8
}

// family is the table of one address family.
type family[K comparable, E comparable, F flavor[K, E]] struct {
	slots      []slot[K, E]
	buckets    []int32 // chain heads, one per slot
	shards     []shard
	shardMask  uint32
	bucketMask uint32 // slots per shard - 1
	bits       uint8  // log2(slots per shard)
	t          *Table
}

func (f *family[K, E, F]) init(t *Table, capacity, shards int) {
	ps := perShard(capacity, shards)
	f.t = t
	f.slots = make([]slot[K, E], ps*shards)
	f.buckets = make([]int32, ps*shards)
	f.shards = make([]shard, shards)
	f.shardMask = uint32(shards - 1)
	f.bucketMask = uint32(ps - 1)
	for ps>>f.bits > 1 {
		f.bits++
	}
	for i := range f.buckets {
		f.buckets[i] = -1
	}
	for si := range f.shards {
		s := &f.shards[si]
		lo := si * ps
		for i := lo; i < lo+ps; i++ {
			f.slots[i].next = int32(i + 1)
		}
		f.slots[lo+ps-1].next = -1
		s.free = int32(lo)
		s.head, s.tail = -1, -1
	}
}

// locate returns the shard of hash h and the global index of its bucket.
func (f *family[K, E, F]) locate(h uint64) (*shard, uint32) {
	si := uint32(h>>32) & f.shardMask
	return &f.shards[si], si<<f.bits | uint32(h)&f.bucketMask
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

// find returns the slot holding k in bucket b, or -1. Caller holds the lock.
func (f *family[K, E, F]) find(k *K, b uint32) int32 {
	i := f.buckets[b]
	for i >= 0 && f.slots[i].k != *k {
		i = f.slots[i].next
	}
	return i
}

// lookup finds k, refreshes it and advances its TCP state. An expired entry
// is removed and reported as a miss.
func (f *family[K, E, F]) lookup(k *K, h uint64, tcpFlags uint8, tcp bool, now uint32) (e E, st uint8, ok bool) {
	s, b := f.locate(h)
	s.mu.Lock()
	i := f.find(k, b)
	if i < 0 {
		s.mu.Unlock()
		return e, 0, false
	}
	sl := &f.slots[i]
	if f.expiredAt(sl, now) {
		p := f.removeLocked(s, i, b)
		s.expired++
		s.mu.Unlock()
		if p.what != 0 {
			f.settle(&p)
		}
		return e, 0, false
	}
	if tcp {
		sl.state = nextState(sl.state, tcpFlags)
	}
	if int32(now-sl.seen) > 0 {
		sl.seen = now
	}
	sl.mark |= markTouched
	e, st = sl.e, sl.state
	s.mu.Unlock()
	return e, st, true
}

// insert stores e under k, overwriting an existing entry. In a full shard
// it evicts the least recently used entry if that one is evictable and
// otherwise refuses with ErrFull. The returned pending holds the NAT
// obligations of an overwritten or evicted entry; the caller settles it.
func (f *family[K, E, F]) insert(k *K, h uint64, e *E, st uint8, paired bool, now uint32) (p pending[K], err error) {
	mark := markUsed | markTouched
	if paired {
		mark |= markPaired
	}
	s, b := f.locate(h)
	s.mu.Lock()
	if i := f.find(k, b); i >= 0 {
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
		sl.e, sl.state, sl.seen, sl.mark = *e, st, now, mark
		s.mu.Unlock()
		return p, nil
	}
	i := s.free
	if i < 0 {
		v := f.victimLocked(s)
		if v < 0 || !f.evictable(&f.slots[v], now) {
			s.full++
			s.mu.Unlock()
			return p, ErrFull
		}
		var fl F
		_, vb := f.locate(fl.hash(f.slots[v].k, f.t.seed))
		p = f.removeLocked(s, v, vb)
		s.evictions++
		i = s.free
	}
	sl := &f.slots[i]
	s.free = sl.next
	sl.k, sl.e, sl.state, sl.seen, sl.mark = *k, *e, st, now, mark
	sl.next = f.buckets[b]
	f.buckets[b] = i
	f.lruPush(s, i)
	s.n++
	s.inserts++
	s.mu.Unlock()
	return p, nil
}

// overwriteObligations returns what replacing the paired entry in sl by e
// requires: removing the old partner unless the new entry has the same one,
// freeing the old SNAT port unless the new entry keeps it.
func (f *family[K, E, F]) overwriteObligations(sl *slot[K, E], k *K, e *E, paired bool) (p pending[K]) {
	var fl F
	p.pairInfo = fl.pair(f.t, sl.k, sl.e)
	p.from = *k
	if !paired {
		return p
	}
	nw := fl.pair(f.t, *k, *e)
	if nw.what&pairPartner != 0 && nw.partner == p.partner {
		p.what &^= pairPartner
	}
	if nw.what&pairSNAT != 0 && nw.snatIdx == p.snatIdx && nw.snatPort == p.snatPort {
		p.what &^= pairSNAT
	}
	return p
}

// evictable reports whether a full shard may give sl's slot to a new flow.
func (f *family[K, E, F]) evictable(sl *slot[K, E], now uint32) bool {
	a := age(now, sl.seen)
	return a >= f.t.minIdle || a > f.t.timeouts[sl.state&7] ||
		sl.state == StateClosing || sl.state == StateClosed
}

// victimLocked returns the least recently used entry of a full shard.
//
// Lookups do not move entries in the LRU list (that would touch two more
// cache lines per packet); they set markTouched. The list is therefore
// ordered by the time each entry was last linked at the head, and an entry
// at the tail without markTouched is exactly the least recently used one
// (every other entry was linked later and seen no earlier). Touched entries
// found at the tail are relinked at the head with the mark cleared, which
// is O(1) amortised (one relink per earlier lookup). To bound the worst
// case, after maxRelink relinks the current tail is taken as is.
func (f *family[K, E, F]) victimLocked(s *shard) int32 {
	v := s.tail
	for n := 0; n < maxRelink && v >= 0; n++ {
		sl := &f.slots[v]
		if sl.mark&markTouched == 0 {
			return v
		}
		sl.mark &^= markTouched
		f.lruUnlink(s, v)
		f.lruPush(s, v)
		v = s.tail
	}
	return v
}

func (f *family[K, E, F]) lruPush(s *shard, i int32) {
	sl := &f.slots[i]
	sl.prev = -1
	sl.after = s.head
	if s.head >= 0 {
		f.slots[s.head].prev = i
	} else {
		s.tail = i
	}
	s.head = i
}

func (f *family[K, E, F]) lruUnlink(s *shard, i int32) {
	sl := &f.slots[i]
	if sl.prev >= 0 {
		f.slots[sl.prev].after = sl.after
	} else {
		s.head = sl.after
	}
	if sl.after >= 0 {
		f.slots[sl.after].prev = sl.prev
	} else {
		s.tail = sl.prev
	}
}

// removeLocked frees slot i, which holds an entry in bucket b, and returns
// the entry's NAT obligations. Caller holds the lock of s.
func (f *family[K, E, F]) removeLocked(s *shard, i int32, b uint32) (p pending[K]) {
	sl := &f.slots[i]
	if f.buckets[b] == i {
		f.buckets[b] = sl.next
	} else {
		for j := f.buckets[b]; j >= 0; {
			nj := f.slots[j].next
			if nj == i {
				f.slots[j].next = sl.next
				break
			}
			j = nj
		}
	}
	f.lruUnlink(s, i)
	if sl.mark&markPaired != 0 {
		var fl F
		p.pairInfo = fl.pair(f.t, sl.k, sl.e)
		p.from = sl.k
	}
	sl.mark = 0
	sl.next = s.free
	s.free = i
	s.n--
	return p
}

// remove deletes k. If match is non-nil, only an entry equal to *match is
// deleted.
func (f *family[K, E, F]) remove(k *K, h uint64, match *E) bool {
	s, b := f.locate(h)
	s.mu.Lock()
	i := f.find(k, b)
	if i < 0 || (match != nil && f.slots[i].e != *match) {
		s.mu.Unlock()
		return false
	}
	p := f.removeLocked(s, i, b)
	s.deletes++
	s.mu.Unlock()
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
		var fl F
		s, b := f.locate(fl.hash(p.partner, f.t.seed))
		s.mu.Lock()
		var q pending[K]
		if i := f.find(&p.partner, b); i >= 0 && f.slots[i].mark&markPaired != 0 {
			back := fl.pair(f.t, f.slots[i].k, f.slots[i].e)
			if back.what&pairPartner != 0 && back.partner == p.from {
				q = f.removeLocked(s, i, b)
				s.pairRemovals++
				removed = 1
			}
		}
		s.mu.Unlock()
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
// partners included).
func (f *family[K, E, F]) expireRange(lo, hi int, now uint32) (removed int) {
	var pend [16]pending[K]
	var fl F
	for lo < hi {
		si := lo >> f.bits
		end := min(hi, (si+1)<<f.bits)
		s := &f.shards[si]
		np := 0
		s.mu.Lock()
		for i := lo; i < end; i++ {
			sl := &f.slots[i]
			if sl.mark&markUsed == 0 || !f.expiredAt(sl, now) {
				continue
			}
			_, b := f.locate(fl.hash(sl.k, f.t.seed))
			p := f.removeLocked(s, int32(i), b)
			s.expired++
			removed++
			if p.what == 0 {
				continue
			}
			pend[np] = p
			np++
			if np == len(pend) {
				s.mu.Unlock()
				for j := range pend {
					removed += f.settle(&pend[j])
				}
				np = 0
				s.mu.Lock()
			}
		}
		s.mu.Unlock()
		for j := range pend[:np] {
			removed += f.settle(&pend[j])
		}
		lo = end
	}
	return removed
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
			s.mu.Lock()
			for ; lo < hi && n < len(buf); lo++ {
				if sl := &f.slots[lo]; sl.mark&markUsed != 0 {
					buf[n] = rangeItem[K, E]{sl.k, sl.e, sl.state}
					n++
				}
			}
			s.mu.Unlock()
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
		s.mu.Lock()
		n += int(s.n)
		st.Inserts += s.inserts
		st.Updates += s.updates
		st.Deletes += s.deletes
		st.Expired += s.expired
		st.Evictions += s.evictions
		st.Full += s.full
		st.PairRemovals += s.pairRemovals
		s.mu.Unlock()
	}
	return n
}

func (f *family[K, E, F]) len() int {
	n := 0
	for si := range f.shards {
		s := &f.shards[si]
		s.mu.Lock()
		n += int(s.n)
		s.mu.Unlock()
	}
	return n
}
