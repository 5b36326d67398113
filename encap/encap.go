// Package encap holds one in-place rewrite per forwarding mode: dsr (MAC
// rewrite), tunnel (IP-in-IP / IP-in-IPv6 prepended into headroom), l3dsr
// (destination address and DSCP), nat (destination, and the source of
// replies) and fullnat (both). Every rewrite keeps the IPv4 header checksum
// and the TCP/UDP/ICMPv6 checksums valid by incremental update (RFC 1624).
//
// The rewrites trust the offsets of a packet.Parsed that packet.Decode
// returned OK for the same bytes; they do no parsing of their own and never
// allocate. A rewrite that cannot produce a valid frame (too big for the
// egress MTU, no headroom, a non-first fragment that would need its ports
// translated, an address family the mode cannot carry) reports that in its
// Verdict and leaves the frame as it was.
package encap

import (
	"encoding/binary"
	"net/netip"

	"github.com/xlb/xlb/internal/packet"
)

// Verdict is the outcome of a rewrite.
type Verdict uint8

// Rewrite outcomes. Only Forward means the frame was changed.
const (
	Forward     Verdict = iota // rewritten; transmit it
	TooBig                     // the result would exceed the egress MTU
	NoHeadroom                 // not enough room in front of the frame to prepend
	Unsupported                // the mode cannot carry this packet
	NumVerdicts
)

var verdictNames = [NumVerdicts]string{"forward", "too_big", "no_headroom", "unsupported"}

// String returns a stable snake_case name.
func (v Verdict) String() string {
	if v < NumVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Egress describes the next hop of a rewritten frame.
type Egress struct {
	Dst [6]byte // next-hop MAC (backend, router)
	Src [6]byte // MAC of the egress interface
	MTU int     // IP MTU of the egress link; 0 means unchecked
}

// Frame is a packet inside a buffer with headroom: the frame is
// Buf[Off:Off+Len] and Buf[:Off] is free for prepended headers, as in
// wireguard-go's tun.Device batches.
type Frame struct {
	Buf []byte
	Off int
	Len int
}

// Bytes returns the frame.
func (f *Frame) Bytes() []byte { return f.Buf[f.Off : f.Off+f.Len] }

// Addr is an IPv4 or IPv6 address in a fixed array: IPv4 uses the first
// four bytes.
type Addr struct {
	IP [16]byte
	V6 bool
}

// Endpoint is an address and port a translation writes.
type Endpoint struct {
	Addr
	Port uint16
}

func (a *Addr) family() uint8 {
	if a.V6 {
		return 6
	}
	return 4
}

func setMACs(frame []byte, e *Egress) {
	// Array assignments: a few fixed-size moves, where copy is a call.
	*(*[6]byte)(frame[0:6]) = e.Dst
	*(*[6]byte)(frame[6:12]) = e.Src
}

func tooBig(p *packet.Parsed, extra int, e *Egress) bool {
	return e.MTU > 0 && int(p.End-p.L3Off)+extra > e.MTU
}

// DSR rewrites the Ethernet addresses only (L2 direct server return): the
// destination becomes the backend's MAC and the source the egress
// interface's, so the frame leaves as if this host routed it. The IP packet
// is untouched, so no checksum changes.
func DSR(frame []byte, p *packet.Parsed, e *Egress) Verdict {
	if tooBig(p, 0, e) {
		return TooBig
	}
	setMACs(frame, e)
	return Forward
}

// fixL4 applies a pseudo-header/port change to the transport checksum.
// ICMPv4 has no pseudo-header and a non-first fragment no transport header,
// so both are left alone.
func fixL4(frame []byte, p *packet.Parsed, d packet.Delta) {
	if p.L4Off == 0 {
		return
	}
	var at int
	switch p.Proto {
	case packet.ProtoTCP:
		at = int(p.L4Off) + 16
	case packet.ProtoUDP:
		at = int(p.L4Off) + 6
		c := binary.BigEndian.Uint16(frame[at : at+2])
		binary.BigEndian.PutUint16(frame[at:at+2], d.ApplyUDP(c))
		return
	case packet.ProtoICMPv6:
		at = int(p.L4Off) + 2
	default:
		return
	}
	c := binary.BigEndian.Uint16(frame[at : at+2])
	binary.BigEndian.PutUint16(frame[at:at+2], d.Apply(c))
}

// fixIPv4 applies an address change to the IPv4 header checksum.
func fixIPv4(l3 []byte, d packet.Delta) {
	binary.BigEndian.PutUint16(l3[10:12], d.Apply(binary.BigEndian.Uint16(l3[10:12])))
}

func hasPorts(p *packet.Parsed) bool {
	return p.L4Off != 0 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP)
}

// setAddr4 overwrites the IPv4 address f with a, recording the change.
func setAddr4(f []byte, a *Addr, d *packet.Delta) {
	o, n := binary.BigEndian.Uint32(f[:4]), binary.BigEndian.Uint32(a.IP[:4])
	d.Add32(o, n)
	binary.BigEndian.PutUint32(f[:4], n)
}

// setAddr16 overwrites the IPv6 address f with a, recording the change.
func setAddr16(f []byte, a *Addr, d *packet.Delta) {
	f = f[:16]
	for i := 0; i < 16; i += 4 {
		o, n := binary.BigEndian.Uint32(f[i:i+4]), binary.BigEndian.Uint32(a.IP[i:i+4])
		d.Add32(o, n)
		binary.BigEndian.PutUint32(f[i:i+4], n)
	}
}

// setAddr overwrites the source (i=0) or destination (i=1) address.
func setAddr(l3 []byte, family uint8, i int, a *Addr, d *packet.Delta) {
	if family == 4 {
		setAddr4(l3[packet.IPv4SrcOff+4*i:], a, d)
	} else {
		setAddr16(l3[packet.IPv6SrcOff+16*i:], a, d)
	}
}

// Translate rewrites the source and/or destination address and port in
// place (nil leaves that side alone), fixing the IPv4 header checksum and
// the transport checksum with one incremental update each. A port of 0 in
// an Endpoint keeps the packet's port. It is the mechanism behind NAT,
// NATReply, FullNAT and FullNATReply.
func Translate(frame []byte, p *packet.Parsed, src, dst *Endpoint, e *Egress) Verdict {
	if (src != nil && src.family() != p.Family) || (dst != nil && dst.family() != p.Family) {
		return Unsupported
	}
	ports := hasPorts(p)
	if !ports && ((src != nil && src.Port != 0 && src.Port != p.SrcPort) ||
		(dst != nil && dst.Port != 0 && dst.Port != p.DstPort)) {
		return Unsupported
	}
	if tooBig(p, 0, e) {
		return TooBig
	}
	l3 := frame[p.L3Off:]
	var d packet.Delta
	if src != nil {
		setAddr(l3, p.Family, 0, &src.Addr, &d)
	}
	if dst != nil {
		setAddr(l3, p.Family, 1, &dst.Addr, &d)
	}
	if p.Family == 4 {
		fixIPv4(l3, d)
	}
	if ports {
		setPorts(frame[p.L4Off:], src, dst, &d)
	}
	fixL4(frame, p, d)
	setMACs(frame, e)
	return Forward
}

// setPorts overwrites the source and/or destination port of the TCP or
// UDP header l4 (nil, or a port of 0, keeps it), recording the change.
func setPorts(l4 []byte, src, dst *Endpoint, d *packet.Delta) {
	l4 = l4[:4]
	if src != nil && src.Port != 0 {
		d.Add16(binary.BigEndian.Uint16(l4[0:2]), src.Port)
		binary.BigEndian.PutUint16(l4[0:2], src.Port)
	}
	if dst != nil && dst.Port != 0 {
		d.Add16(binary.BigEndian.Uint16(l4[2:4]), dst.Port)
		binary.BigEndian.PutUint16(l4[2:4], dst.Port)
	}
}

// NAT is half-NAT towards a backend: the destination becomes the backend's
// address and port; the client address is kept.
func NAT(frame []byte, p *packet.Parsed, backend *Endpoint, e *Egress) Verdict {
	return Translate(frame, p, nil, backend, e)
}

// NATReply undoes NAT on a backend's reply: the source becomes the VIP and
// service port.
func NATReply(frame []byte, p *packet.Parsed, vip *Endpoint, e *Egress) Verdict {
	return Translate(frame, p, vip, nil, e)
}

// FullNAT sends a client's packet to a backend from a SNAT address: the
// destination becomes the backend and the source the SNAT address and port.
func FullNAT(frame []byte, p *packet.Parsed, snat, backend *Endpoint, e *Egress) Verdict {
	return Translate(frame, p, snat, backend, e)
}

// FullNATReply undoes FullNAT on a backend's reply: the source becomes the
// VIP and service port, the destination the original client.
func FullNATReply(frame []byte, p *packet.Parsed, vip, client *Endpoint, e *Egress) Verdict {
	return Translate(frame, p, vip, client, e)
}

// L3DSR rewrites the destination address to the backend and marks the
// packet with the service's DSCP (keeping ECN), so a backend that maps the
// DSCP back to the VIP (xlb realserver) can answer the client directly.
// Both checksums are updated incrementally. The backend must be of the
// packet's family.
func L3DSR(frame []byte, p *packet.Parsed, backend *Addr, dscp uint8, e *Egress) Verdict {
	if backend.family() != p.Family || dscp > 63 {
		return Unsupported
	}
	if tooBig(p, 0, e) {
		return TooBig
	}
	l3 := frame[p.L3Off:]
	tos := dscp<<2 | p.TOS&3
	var d packet.Delta
	if p.Family == 4 {
		setAddr4(l3[packet.IPv4DstOff:], backend, &d)
		var h packet.Delta
		h.Add16(uint16(l3[0])<<8|uint16(l3[1]), uint16(l3[0])<<8|uint16(tos))
		l3[1] = tos
		fixIPv4(l3, d+h)
	} else {
		setAddr16(l3[packet.IPv6DstOff:], backend, &d)
		packet.IPv6(l3).SetTrafficClass(tos)
	}
	fixL4(frame, p, d)
	setMACs(frame, e)
	return Forward
}

// AddrFrom converts a netip.Addr (IPv4, IPv4-mapped IPv6 treated as IPv4,
// or IPv6) into an Addr. It runs when configuration is compiled, not per
// packet.
func AddrFrom(a netip.Addr) Addr {
	a = a.Unmap()
	var r Addr
	if a.Is4() {
		v4 := a.As4()
		copy(r.IP[:4], v4[:])
		return r
	}
	r.IP, r.V6 = a.As16(), true
	return r
}
