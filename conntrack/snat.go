package conntrack

import (
	"net/netip"
	"sync"
	"unsafe"
)

// snatPoolData is the port allocator of one SNAT address: a FIFO ring of
// the free ports (as offsets from SNATPortMin) and a bitmap of the
// allocated ones. FIFO order hands a freed port out again only after every
// other free port, which keeps a backend's TIME_WAIT for the old
// connection out of the way of the new one. Alloc and free are O(1).
type snatPoolData struct {
	mu        sync.Mutex
	head      uint32   // ring index of the next port to hand out
	free      uint32   // number of free ports in the ring
	exhausted uint64   // allocations that found this address (the first tried) and all others empty
	ring      []uint16 // free port offsets, ring[head : head+free] (mod len)
	used      []uint64 // bit i set: port offset i is allocated
}

type snatPool struct {
	snatPoolData
	_ [(cacheLine - unsafe.Sizeof(snatPoolData{})%cacheLine) % cacheLine]byte
}

// init makes a pool of n ports with those set in used (nil: none)
// allocated. The free ports queue in order, starting after the highest
// port in use, so that the ports freed last (the ones a restarted table
// finds in use) come back last.
func (p *snatPool) init(n int, used []uint64) {
	p.ring = make([]uint16, n)
	p.used = make([]uint64, (n+63)/64)
	copy(p.used, used)
	start := 0
	for i := n - 1; i >= 0; i-- {
		if p.isUsed(uint16(i)) {
			start = i + 1
			break
		}
	}
	for j := range n {
		if off := uint16((start + j) % n); !p.isUsed(off) {
			p.ring[p.free] = off
			p.free++
		}
	}
}

func (p *snatPool) isUsed(off uint16) bool { return p.used[off>>6]&(1<<(off&63)) != 0 }

func (p *snatPool) alloc() (uint16, bool) {
	p.mu.Lock()
	if p.free == 0 {
		p.mu.Unlock()
		return 0, false
	}
	off := p.ring[p.head]
	p.head++
	if int(p.head) == len(p.ring) {
		p.head = 0
	}
	p.free--
	p.used[off>>6] |= 1 << (off & 63)
	p.mu.Unlock()
	return off, true
}

func (p *snatPool) release(off uint16) bool {
	p.mu.Lock()
	if int(off) >= len(p.ring) || p.used[off>>6]&(1<<(off&63)) == 0 {
		p.mu.Unlock()
		return false
	}
	p.used[off>>6] &^= 1 << (off & 63)
	tail := int(p.head) + int(p.free)
	if tail >= len(p.ring) {
		tail -= len(p.ring)
	}
	p.ring[tail] = off
	p.free++
	p.mu.Unlock()
	return true
}

// AllocSNAT allocates a SNAT source port on one of the SNAT addresses of
// a family (v6 or IPv4). hash (e.g. the flow hash) picks the address tried
// first; when it has no free port the others are tried in turn. It returns
// the address index (for Entry.SNATAddr, see [Table.SNATIP]) and the port,
// or ok=false, counted in Stats.SNATExhausted, when every address is out
// of ports (or none is configured, which is not counted).
func (t *Table) AllocSNAT(v6 bool, hash uint32) (addrIdx uint8, port uint16, ok bool) {
	if v6 {
		return t.allocSNAT(len(t.snat4), len(t.snat6), hash)
	}
	return t.allocSNAT(0, len(t.snat4), hash)
}

func (t *Table) allocSNAT(first, n int, hash uint32) (uint8, uint16, bool) {
	if n == 0 {
		return 0, 0, false
	}
	start := int(uint64(hash) * uint64(n) >> 32)
	for i, j := 0, start; i < n; i++ {
		if off, ok := t.snat[first+j].alloc(); ok {
			return uint8(first + j), t.portMin + off, true
		}
		if j++; j == n {
			j = 0
		}
	}
	p := &t.snat[first+start]
	p.mu.Lock()
	p.exhausted++
	p.mu.Unlock()
	return 0, 0, false
}

// FreeSNAT returns a port allocated by AllocSNAT. It reports false, and
// does nothing, if the port is not currently allocated (a double free) or
// the index or port is out of range. The table frees the ports of the
// fullnat entries it removes itself: callers free only ports they
// allocated and did not hand to InsertNAT.
func (t *Table) FreeSNAT(addrIdx uint8, port uint16) bool {
	if int(addrIdx) >= len(t.snat) || port < t.portMin || port > t.portMax {
		return false
	}
	return t.snat[addrIdx].release(port - t.portMin)
}

// SNATIP returns the SNAT address with index idx: Config.SNATIPs4 are
// indices 0 to len(SNATIPs4)-1, Config.SNATIPs6 follow.
func (t *Table) SNATIP(idx uint8) (netip.Addr, bool) {
	if ip, ok := t.snatIP4(idx); ok {
		return netip.AddrFrom4(ip), true
	}
	if ip, ok := t.snatIP6(idx); ok {
		return netip.AddrFrom16(ip), true
	}
	return netip.Addr{}, false
}

// snatIP returns SNAT address idx in the 16-byte form of Key and Entry if
// it is of the family v6.
func (t *Table) snatIP(idx uint8, v6 bool) (ip [16]byte, ok bool) {
	if !v6 {
		a, ok := t.snatIP4(idx)
		copy(ip[:4], a[:])
		return ip, ok
	}
	return t.snatIP6(idx)
}

func (t *Table) snatIP4(idx uint8) ([4]byte, bool) {
	if int(idx) >= len(t.snat4) {
		return [4]byte{}, false
	}
	return t.snat4[idx], true
}

func (t *Table) snatIP6(idx uint8) ([16]byte, bool) {
	i := int(idx) - len(t.snat4)
	if i < 0 || i >= len(t.snat6) {
		return [16]byte{}, false
	}
	return t.snat6[i], true
}
