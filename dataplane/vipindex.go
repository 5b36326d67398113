package dataplane

import (
	"encoding/binary"
	"math/bits"

	"github.com/xlb/xlb/encap"
)

// vipEntry is one (address, port, protocol) → service mapping. frag marks
// the entry that non-first fragments (which carry no port) are matched
// against.
type vipEntry struct {
	addr  encap.Addr
	port  uint16
	proto uint8
	frag  bool
	svc   uint32
}

// vipIndex is an open-addressing hash table of vipEntry built once per
// Snapshot: a lookup is a hash and one or two probes, no Go map. A second
// table holds every VIP address (port and protocol ignored) so that ICMP
// to a VIP is recognised.
//
// A slot keeps the address as it is in a packet (IPv4 in the first four
// bytes, the rest zero) and everything else in one word, so a probe is
// three compares.
type vipIndex struct {
	slots []vipSlot
	addrs []vipSlot
	shift uint8 // slots: 64 - log2(len)
	ashft uint8 // addrs
	seed  uint64
}

type vipSlot struct {
	addr [16]byte
	meta uint32 // vipMeta; 0: empty
	svc  uint32
}

// vipMeta packs the rest of a key into the word a slot stores: port,
// protocol, family and the fragment mark, with bit 0 set so that no key
// is 0.
func vipMeta(v6 bool, port uint16, proto uint8, frag bool) uint32 {
	m := uint32(port)<<16 | uint32(proto)<<8 | 1
	if v6 {
		m |= 2
	}
	if frag {
		m |= 4
	}
	return m
}

func tableSize(n int) int {
	size := 8
	for size < 2*n {
		size <<= 1
	}
	return size
}

func newVIPIndex(entries []vipEntry, seed uint64) vipIndex {
	x := vipIndex{seed: seed}
	x.slots = make([]vipSlot, tableSize(len(entries)))
	x.shift = uint8(64 - bits.TrailingZeros(uint(len(x.slots))))
	x.addrs = make([]vipSlot, tableSize(len(entries)))
	x.ashft = uint8(64 - bits.TrailingZeros(uint(len(x.addrs))))
	for _, e := range entries {
		m := vipMeta(e.addr.V6, e.port, e.proto, e.frag)
		mask := uint64(len(x.slots) - 1)
		for i := x.hash(&e.addr.IP, m, x.shift); ; i = (i + 1) & mask {
			if x.slots[i].meta == 0 {
				x.slots[i] = vipSlot{addr: e.addr.IP, meta: m, svc: e.svc}
				break
			}
		}
		m = vipMeta(e.addr.V6, 0, 0, false)
		mask = uint64(len(x.addrs) - 1)
		for i := x.hash(&e.addr.IP, m, x.ashft); ; i = (i + 1) & mask {
			if x.addrs[i].meta == 0 {
				x.addrs[i] = vipSlot{addr: e.addr.IP, meta: m}
				break
			}
			if x.addrs[i].meta == m && x.addrs[i].addr == e.addr.IP {
				break
			}
		}
	}
	return x
}

// hash is a multiplicative hash taking the top bits of the product, which
// depend on every bit of the key: the table is built from our own
// configuration, so it needs spread, not resistance to chosen keys.
func (x *vipIndex) hash(ip *[16]byte, meta uint32, shift uint8) uint64 {
	h := (binary.LittleEndian.Uint64(ip[0:8])^x.seed)*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(ip[8:16]) ^ uint64(meta)
	return (h * 0xbf58476d1ce4e5b9) >> (shift & 63)
}

// mix is a 64-bit finalizer (the multiply-xorshift of splitmix64).
func mix(h uint64) uint64 {
	h ^= h >> 31
	h *= 0x7fb5d329728ea185
	h ^= h >> 27
	h *= 0x81dadef4bc2dd44d
	h ^= h >> 33
	return h
}

// find returns the service for (addr, port, proto), trying the exact port
// first and then the every-port (0) service.
func (x *vipIndex) find(ip *[16]byte, v6 bool, port uint16, proto uint8) (uint32, bool) {
	m := vipMeta(v6, port, proto, false)
	if id, ok := probe(x.slots, ip, m, x.hash(ip, m, x.shift)); ok {
		return id, true
	}
	if port != 0 {
		return x.get(ip, vipMeta(v6, 0, proto, false))
	}
	return 0, false
}

// findFrag returns the fragment-hashing service of a VIP and protocol,
// for non-first fragments (which carry no port). Build allows one such
// service per VIP and protocol.
func (x *vipIndex) findFrag(ip *[16]byte, v6 bool, proto uint8) (uint32, bool) {
	return x.get(ip, vipMeta(v6, 0, proto, true))
}

func (x *vipIndex) get(ip *[16]byte, meta uint32) (uint32, bool) {
	return probe(x.slots, ip, meta, x.hash(ip, meta, x.shift))
}

// isVIP reports whether a is the address of any service.
func (x *vipIndex) isVIP(ip *[16]byte, v6 bool) bool {
	m := vipMeta(v6, 0, 0, false)
	_, ok := probe(x.addrs, ip, m, x.hash(ip, m, x.ashft))
	return ok
}

func probe(slots []vipSlot, ip *[16]byte, meta uint32, i uint64) (uint32, bool) {
	if len(slots) == 0 {
		return 0, false
	}
	mask := uint64(len(slots) - 1)
	for i &= mask; ; i = (i + 1) & mask {
		s := &slots[i]
		if s.meta == meta && s.addr == *ip {
			return s.svc, true
		}
		if s.meta == 0 {
			return 0, false
		}
	}
}

// find4 is find for an IPv4 address given as its four header bytes read
// little-endian (the form of conntrack.Flow4's addresses).
func (x *vipIndex) find4(ip uint32, port uint16, proto uint8) (uint32, bool) {
	return x.findWords(uint64(ip), 0, false, port, proto)
}

// findWords is find for an address given as two words, its first eight
// bytes and its last eight read little-endian (an IPv4 address: its four
// bytes, then zeros): the same hash and probe sequence, without an
// address in memory.
func (x *vipIndex) findWords(w0, w1 uint64, v6 bool, port uint16, proto uint8) (uint32, bool) {
	m := vipMeta(v6, port, proto, false)
	if id, ok := probeWords(x.slots, w0, w1, m, x.hashWords(w0, w1, m)); ok {
		return id, true
	}
	if port != 0 {
		m = vipMeta(v6, 0, proto, false)
		return probeWords(x.slots, w0, w1, m, x.hashWords(w0, w1, m))
	}
	return 0, false
}

// hashWords is hash of an address given as words, in the slots table.
func (x *vipIndex) hashWords(w0, w1 uint64, meta uint32) uint64 {
	h := (w0^x.seed)*0x9e3779b97f4a7c15 ^ w1 ^ uint64(meta)
	return (h * 0xbf58476d1ce4e5b9) >> (x.shift & 63)
}

func probeWords(slots []vipSlot, w0, w1 uint64, meta uint32, i uint64) (uint32, bool) {
	if len(slots) == 0 {
		return 0, false
	}
	mask := uint64(len(slots) - 1)
	for i &= mask; ; i = (i + 1) & mask {
		s := &slots[i]
		if s.meta == meta && binary.LittleEndian.Uint64(s.addr[0:8]) == w0 && binary.LittleEndian.Uint64(s.addr[8:16]) == w1 {
			return s.svc, true
		}
		if s.meta == 0 {
			return 0, false
		}
	}
}
