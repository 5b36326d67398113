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

// Tick converts the caller's clock (the now of Lookup) to the table's
// ticks, for LookupFast4 and LookupFast6.
func (t *Table) Tick(now int64) uint32 { return t.tick(now) }

// Hash4 is Hash of the IPv4 key k.
func (t *Table) Hash4(k Flow4) uint64 {
	b := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	return mix(mix(k.Addrs^t.seed, b^k2), k3)
}

// LookupFast4 is the lock-free half of Lookup for an IPv4 flow: on a hit
// that changes nothing but the entry's timestamp (an established flow's
// next packet; see Lookup for what else a hit may do) it writes the entry
// to *out (out.State is the entry's state) and reports true, as Lookup
// would. Anything else (a miss, an expired entry, a TCP state change, an
// LRU move, a writer at work in the shard) reports false and changes
// nothing in the table (*out is then undefined): the caller calls Lookup,
// which does it all. h is Hash4(k); tick is Tick of the caller's clock
// (taken once for a batch of lookups).
func (t *Table) LookupFast4(k Flow4, h uint64, tcpFlags uint8, tick uint32, out *Entry4) bool {
	return readFast(&t.v4, h, k.Addrs, 0, 0, 0, flowPorts(k.SrcPort, k.DstPort, k.Proto)|uint64(tcpFlags)<<48, tick, out)
}

// Flow6 is Flow4 for IPv6: each address as two words, its first eight
// header bytes and its last eight, each read little-endian.
type Flow6 struct {
	Src, Dst         [2]uint64
	SrcPort, DstPort uint16
	Proto            uint8
}

// Hash6 is Hash of the IPv6 key k.
func (t *Table) Hash6(k *Flow6) uint64 {
	h1 := mix(k.Src[0]^t.seed, k.Src[1]^k2)
	h2 := mix(k.Dst[0]^t.seed^k3, k.Dst[1]^k4)
	p := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	return mix(h1^p^k5, h2^k2)
}

// LookupFast6 is LookupFast4 for an IPv6 flow (h is Hash6(k)), writing
// the entry in its wide form.
func (t *Table) LookupFast6(k *Flow6, h uint64, tcpFlags uint8, tick uint32, out *Entry) bool {
	var e entry6
	ok := readFast(&t.v6, h, k.Src[0], k.Src[1], k.Dst[0], k.Dst[1], flowPorts(k.SrcPort, k.DstPort, k.Proto)|ppV6|uint64(tcpFlags)<<48, tick, &e)
	if ok {
		wideEntry6(&e, e.State, out)
	}
	return ok
}

// readFast is family.read for a key as the fast path has it, in words
// (IPv4: a0 the addresses as Flow4.Addrs; IPv6: a0..a3 Flow6's Src and
// Dst; pp flowPorts, with ppV6 for IPv6 and the TCP flags in bits 48-55:
// fewer arguments, in registers): the key is compared word by word with the slot's
// (plain loads of memory no recent store wrote), where read compares two
// key structs, one of which its caller has just written in narrow stores. It follows read's seqlock protocol and its rules for
// what a lock-free hit may do; everything else is reported as not found.
// *out is written before the check; on false its contents mean nothing.
//
//go:norace
func readFast[K, E comparable, F flavor[K, E]](f *family[K, E, F], h, a0, a1, a2, a3, pp uint64, now uint32, out *E) bool {
	v6, tcpFlags := pp&ppV6 != 0, uint8(pp>>48)
	pp &= ppKey
	si := uint32(h>>32) & f.shardMask
	s := &f.shards[si]
	seq := s.seq.Load()
	if seq&1 != 0 {
		return false
	}
	base := si << (f.bits & 31)
	tag := f.tag(h)
	var buf slot[K, E]
	w := ld32(&f.buckets[base|uint32(h)&f.bucketMask])
	for n := 0; w&f.idxMask != 0; n++ {
		off := w & f.idxMask
		if off > f.bucketMask+1 || n == maxReadChain {
			return false
		}
		j := base + off - 1
		if w>>(f.ib&31) == tag {
			sl := view(&f.slots[j], &buf)
			var is bool
			if !v6 { // (the IPv4 compare inline: flowIs6 is too big to be)
				a := (*key4)(unsafe.Pointer(&sl.k))
				is = addrWord(a) == a0 && flowPorts(a.SrcPort, a.DstPort, a.Proto) == pp
			} else {
				is = flowIs6((*key6)(unsafe.Pointer(&sl.k)), a0, a1, a2, a3, pp)
			}
			if is {
				*out = sl.e // (a torn copy is not reported: see the check below)
				st, mark, seen := sl.state, sl.mark, sl.seen
				if s.seq.Load() != seq || mark&markUsed == 0 || age(now, seen) > f.t.timeouts[st&7] {
					return false
				}
				if uint8(pp>>32) == protoTCP && (st != StateEstablished || tcpFlags&(TCPFlagSYN|TCPFlagFIN|TCPFlagRST) != 0) && nextState(st, tcpFlags) != st {
					return false
				}
				if int32(now-seen) > 0 {
					if (now^seen)>>lruShift != 0 || raceEnabled {
						return false
					}
					atomic.CompareAndSwapUint32(&f.slots[j].seen, seen, now)
				}
				// The live state (sl.e.State is the state as inserted).
				if v6 {
					(*entry6)(unsafe.Pointer(out)).State = st
				} else {
					(*Entry4)(unsafe.Pointer(out)).State = st
				}
				return true
			}
		}
		w = ld32(&f.links[j])
	}
	return false
}

// Bits of readFast's pp beside flowPorts.
const (
	ppKey = 1<<40 - 1 // flowPorts
	ppV6  = 1 << 40   // the IPv6 family
)

// flowPorts is the ports and protocol of a key as one word.
func flowPorts(sport, dport uint16, proto uint8) uint64 {
	return uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
}

// flowIs6 reports whether the stored key k is the IPv6 flow of the words
// readFast takes.
func flowIs6(a *key6, a0, a1, a2, a3, pp uint64) bool {
	return binary.LittleEndian.Uint64(a.SrcIP[0:8]) == a0 && binary.LittleEndian.Uint64(a.SrcIP[8:16]) == a1 &&
		binary.LittleEndian.Uint64(a.DstIP[0:8]) == a2 && binary.LittleEndian.Uint64(a.DstIP[8:16]) == a3 &&
		flowPorts(a.SrcPort, a.DstPort, a.Proto) == pp
}

// addrWord returns a stored key's addresses in Flow4.Addrs's form.
func addrWord(k *key4) uint64 {
	return binary.LittleEndian.Uint64((*[8]byte)(unsafe.Pointer(&k.SrcIP))[:])
}
