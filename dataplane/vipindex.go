package dataplane

import (
	"encoding/binary"

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
type vipIndex struct {
	slots []vipSlot
	addrs []vipSlot
	mask  uint64
	amask uint64
	seed  uint64
}

type vipSlot struct {
	used bool
	e    vipEntry
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
	x.mask = uint64(len(x.slots) - 1)
	x.addrs = make([]vipSlot, tableSize(len(entries)))
	x.amask = uint64(len(x.addrs) - 1)
	for _, e := range entries {
		for i := x.hash(&e.addr.IP, e.addr.V6, e.port, e.proto, e.frag) & x.mask; ; i = (i + 1) & x.mask {
			if !x.slots[i].used {
				x.slots[i] = vipSlot{true, e}
				break
			}
		}
		for i := x.hash(&e.addr.IP, e.addr.V6, 0, 0, false) & x.amask; ; i = (i + 1) & x.amask {
			if !x.addrs[i].used {
				x.addrs[i] = vipSlot{true, vipEntry{addr: e.addr}}
				break
			}
			if x.addrs[i].e.addr == e.addr {
				break
			}
		}
	}
	return x
}

// hash is a cheap multiplicative hash: the table is built from our own
// configuration, so it needs spread, not resistance to chosen keys.
func (x *vipIndex) hash(ip *[16]byte, v6 bool, port uint16, proto uint8, frag bool) uint64 {
	h := x.seed ^ uint64(port)<<8 ^ uint64(proto)
	if frag {
		h ^= 1 << 40
	}
	h ^= uint64(binary.LittleEndian.Uint32(ip[0:4])) << 24
	if v6 {
		h ^= 1<<41 ^ binary.LittleEndian.Uint64(ip[4:12]) ^ uint64(binary.LittleEndian.Uint32(ip[12:16]))<<7
	}
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
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
	if id, ok := x.get(ip, v6, port, proto, false); ok {
		return id, true
	}
	if port != 0 {
		return x.get(ip, v6, 0, proto, false)
	}
	return 0, false
}

// findFrag returns the fragment-hashing service of a VIP and protocol,
// for non-first fragments (which carry no port). Build allows one such
// service per VIP and protocol.
func (x *vipIndex) findFrag(ip *[16]byte, v6 bool, proto uint8) (uint32, bool) {
	return x.get(ip, v6, 0, proto, true)
}

func (x *vipIndex) get(ip *[16]byte, v6 bool, port uint16, proto uint8, frag bool) (uint32, bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	for i := x.hash(ip, v6, port, proto, frag) & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if !s.used {
			return 0, false
		}
		if s.e.port == port && s.e.proto == proto && s.e.frag == frag && s.e.addr.V6 == v6 && s.e.addr.IP == *ip {
			return s.e.svc, true
		}
	}
}

// isVIP reports whether a is the address of any service.
func (x *vipIndex) isVIP(ip *[16]byte, v6 bool) bool {
	if len(x.addrs) == 0 {
		return false
	}
	for i := x.hash(ip, v6, 0, 0, false) & x.amask; ; i = (i + 1) & x.amask {
		s := &x.addrs[i]
		if !s.used {
			return false
		}
		if s.e.addr.V6 == v6 && s.e.addr.IP == *ip {
			return true
		}
	}
}
