package conntrack

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

// Flow4 is an IPv4 flow key in the form a packet parser has it in
// registers: the two addresses as one word (the source's four header
// bytes read little-endian in the low half, the destination's in the high
// half), the ports in host order and the protocol. It is passed by value,
// so building one costs no stores and reading it no loads: the key of
// LookupFast4, the established-flow fast path's lookup.
type Flow4 struct {
	Addrs            uint64
	SrcPort, DstPort uint16
	Proto            uint8
}

// Key returns k as a Key.
func (k Flow4) Key() Key {
	var out Key
	binary.LittleEndian.PutUint64(out.SrcIP[0:8], k.Addrs&0xffffffff)
	binary.LittleEndian.PutUint64(out.DstIP[0:8], k.Addrs>>32)
	out.SrcPort, out.DstPort, out.Proto = k.SrcPort, k.DstPort, k.Proto
	return out
}

// Hash4 is Hash of the IPv4 key k.
func (t *Table) Hash4(k Flow4) uint64 {
	b := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	return mix(mix(k.Addrs^t.seed, b^k2), k3)
}

// LookupFast4 is the lock-free half of Lookup for an IPv4 flow: on a hit
// that changes nothing but the entry's timestamp (an established flow's
// next packet; see Lookup for what else a hit may do) it writes the entry
// to *out (out.State is the entry's state) and reports true, as Lookup
// would. Anything else
// (a miss, an expired entry, a TCP state change, an LRU move, a writer at
// work in the shard) reports false and changes nothing in the table
// (*out is then undefined): the caller calls Lookup, which does it all.
// h is Hash4(k).
func (t *Table) LookupFast4(k Flow4, h uint64, tcpFlags uint8, now int64, out *Entry4) bool {
	return read4(&t.v4, k, h, t.tick(now), tcpFlags, out)
}

// read4 is family.read for a key given as words: the key is compared
// field by field with the slot's (plain loads of memory no recent store
// wrote), where read compares two key structs, one of which its caller
// has just written in narrow stores. It follows read's seqlock protocol
// and its rules for what a lock-free hit may do; everything else is
// reported as not found. *out is written before the check; on false its
// contents mean nothing.
//
//go:norace
func read4(f *family[key4, Entry4, flavor4], k Flow4, h uint64, now uint32, tcpFlags uint8, out *Entry4) bool {
	si := uint32(h>>32) & f.shardMask
	s := &f.shards[si]
	seq := s.seq.Load()
	if seq&1 != 0 {
		return false
	}
	base := si << (f.bits & 31)
	tag := f.tag(h)
	ports := uint32(k.SrcPort) | uint32(k.DstPort)<<16
	var buf slot[key4, Entry4]
	w := ld32(&f.buckets[base|uint32(h)&f.bucketMask])
	for n := 0; w&f.idxMask != 0; n++ {
		off := w & f.idxMask
		if off > f.bucketMask+1 || n == maxReadChain {
			return false
		}
		j := base + off - 1
		if w>>(f.ib&31) == tag {
			sl := view(&f.slots[j], &buf)
			if addrWord(&sl.k) == k.Addrs && uint32(sl.k.SrcPort)|uint32(sl.k.DstPort)<<16 == ports && sl.k.Proto == k.Proto {
				*out = sl.e // (a torn copy is not reported: see the check below)
				st, mark, seen := sl.state, sl.mark, sl.seen
				if s.seq.Load() != seq || mark&markUsed == 0 || age(now, seen) > f.t.timeouts[st&7] {
					return false
				}
				if k.Proto == protoTCP && (st != StateEstablished || tcpFlags&(TCPFlagSYN|TCPFlagFIN|TCPFlagRST) != 0) && nextState(st, tcpFlags) != st {
					return false
				}
				if int32(now-seen) > 0 {
					if (now^seen)>>lruShift != 0 || raceEnabled {
						return false
					}
					atomic.CompareAndSwapUint32(&f.slots[j].seen, seen, now)
				}
				out.State = st
				return true
			}
		}
		w = ld32(&f.links[j])
	}
	return false
}

// addrWord returns a stored key's addresses in Flow4.Addrs's form.
func addrWord(k *key4) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Pointer(&k.SrcIP))[:])
}
