package encap

import (
	"encoding/binary"

	"github.com/xlb/xlb/internal/packet"
)

// EchoReply turns an ICMP or ICMPv6 echo request into its reply in place:
// Ethernet and IP addresses swapped, type set to echo reply, TTL/hop limit
// 64, checksums fixed incrementally. The balancer answers pings to a VIP
// itself, like a host that owns the address.
func EchoReply(frame []byte, p *packet.Parsed) Verdict {
	if p.L4Off == 0 || !(p.Family == 4 && p.Proto == packet.ProtoICMP && p.ICMPType == packet.ICMPv4EchoRequest ||
		p.Family == 6 && p.Proto == packet.ProtoICMPv6 && p.ICMPType == packet.ICMPv6EchoRequest) {
		return Unsupported
	}
	l3 := frame[p.L3Off:]
	l4 := frame[p.L4Off:]
	var m [6]byte
	copy(m[:], frame[0:6])
	copy(frame[0:6], frame[6:12])
	copy(frame[6:12], m[:])
	var d packet.Delta
	if p.Family == 4 {
		var a [4]byte
		copy(a[:], l3[12:16])
		copy(l3[12:16], l3[16:20]) // swapping addresses keeps every sum
		copy(l3[16:20], a[:])
		var h packet.Delta
		h.Add16(uint16(l3[8])<<8|uint16(l3[9]), uint16(TunnelTTL)<<8|uint16(l3[9]))
		l3[8] = TunnelTTL
		fixIPv4(l3, h)
		d.Add16(uint16(packet.ICMPv4EchoRequest)<<8|uint16(l4[1]), uint16(packet.ICMPv4EchoReply)<<8|uint16(l4[1]))
		l4[0] = packet.ICMPv4EchoReply
	} else {
		var a [16]byte
		copy(a[:], l3[8:24])
		copy(l3[8:24], l3[24:40])
		copy(l3[24:40], a[:])
		l3[7] = TunnelTTL
		d.Add16(uint16(packet.ICMPv6EchoRequest)<<8|uint16(l4[1]), uint16(packet.ICMPv6EchoReply)<<8|uint16(l4[1]))
		l4[0] = packet.ICMPv6EchoReply
	}
	packet.ICMP(l4).SetChecksum(d.Apply(packet.ICMP(l4).Checksum()))
	return Forward
}

// ICMPError rewrites an ICMP error about a translated flow so that the
// backend recognises it: the outer source/destination become outerSrc and
// outerDst (nil keeps them) and the quoted packet's source/destination
// become innerSrc and innerDst — for nat the quoted packet must look like
// what the backend sent (source backend:port), for fullnat also its
// destination becomes the SNAT address and port. Every checksum involved is
// fixed incrementally: the quoted IPv4 header's, the quoted UDP checksum
// (and TCP's, when the quote is long enough to hold it), the ICMP checksum
// over the changed quote (and, for ICMPv6, the outer pseudo-header), and the
// outer IPv4 header's.
func ICMPError(frame []byte, p *packet.Parsed, outerSrc, outerDst *Addr, innerSrc, innerDst *Endpoint, e *Egress) Verdict {
	in := &p.Inner
	if !in.Valid || p.L4Off == 0 {
		return Unsupported
	}
	for _, a := range [...]*Addr{outerSrc, outerDst} {
		if a != nil && a.family() != p.Family {
			return Unsupported
		}
	}
	for _, ep := range [...]*Endpoint{innerSrc, innerDst} {
		if ep != nil && ep.family() != in.Family {
			return Unsupported
		}
	}
	if tooBig(p, 0, e) {
		return TooBig
	}
	il3 := frame[in.L3Off:]
	il4 := frame[in.L4Off:]
	ports := in.Proto == packet.ProtoTCP || in.Proto == packet.ProtoUDP
	var icmpD, ipD, l4D packet.Delta
	for i, ep := range [...]*Endpoint{innerSrc, innerDst} {
		if ep == nil {
			continue
		}
		setAddr(il3, in.Family, i, &ep.Addr, &ipD)
		if ports && ep.Port != 0 {
			at := 2 * i
			old := binary.BigEndian.Uint16(il4[at : at+2])
			l4D.Add16(old, ep.Port)
			binary.BigEndian.PutUint16(il4[at:at+2], ep.Port)
		}
	}
	icmpD += ipD + l4D
	l4D += ipD
	if in.Family == 4 {
		old := binary.BigEndian.Uint16(il3[10:12])
		fixIPv4(il3, ipD)
		icmpD.Add16(old, binary.BigEndian.Uint16(il3[10:12]))
	}
	// The quote holds at least 8 transport bytes: UDP's checksum is in
	// them, TCP's (at 16) only in longer quotes.
	end := int(p.End)
	switch {
	case in.Proto == packet.ProtoUDP:
		old := binary.BigEndian.Uint16(il4[6:8])
		n := l4D.ApplyUDP(old)
		binary.BigEndian.PutUint16(il4[6:8], n)
		icmpD.Add16(old, n)
	case in.Proto == packet.ProtoTCP && int(in.L4Off)+18 <= end:
		old := binary.BigEndian.Uint16(il4[16:18])
		n := l4D.Apply(old)
		binary.BigEndian.PutUint16(il4[16:18], n)
		icmpD.Add16(old, n)
	}
	l3 := frame[p.L3Off:]
	var outD packet.Delta
	if outerSrc != nil {
		setAddr(l3, p.Family, 0, outerSrc, &outD)
	}
	if outerDst != nil {
		setAddr(l3, p.Family, 1, outerDst, &outD)
	}
	if p.Family == 4 {
		fixIPv4(l3, outD)
	} else {
		icmpD += outD // ICMPv6 covers the pseudo-header
	}
	ic := packet.ICMP(frame[p.L4Off:])
	ic.SetChecksum(icmpD.Apply(ic.Checksum()))
	setMACs(frame, e)
	return Forward
}
