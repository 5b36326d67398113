package encap

import (
	"encoding/binary"

	"github.com/xlb/xlb/internal/packet"
)

// Largest ICMP error the balancer sends: the IPv4 minimum reassembly size
// (RFC 1812 4.3.2.3) and the IPv6 minimum MTU (RFC 4443 2.4).
const (
	icmp4ErrorMax = 576
	icmp6ErrorMax = 1280
)

// TooBigReply turns a packet that cannot be forwarded within mtu into the
// ICMP error its sender needs for path MTU discovery, in place: an IPv4
// "fragmentation needed" (type 3 code 4) for packets with DF set, an ICMPv6
// "packet too big" for IPv6, quoting as much of the original packet as the
// error may carry. The error comes from the address the packet was sent to
// (the VIP) and goes back to its sender, out of the interface it came in on
// (MACs swapped, source MAC := src). It returns Unsupported, leaving the
// frame alone, for IPv4 without DF (the sender would not act on it) and for
// ICMP errors (never answered with another, RFC 1122 3.2.2), and
// NoHeadroom when the new headers do not fit in front of the frame.
func TooBigReply(f *Frame, p *packet.Parsed, mtu int, src [6]byte) Verdict {
	if p.IsICMPError() || p.Family == 4 && !p.DF || mtu <= 0 || mtu > 0xffff {
		return Unsupported
	}
	l2 := int(p.L3Off)
	hdr, max := packet.IPv4MinLen+packet.ICMPLen, icmp4ErrorMax
	if p.Family == 6 {
		hdr, max = packet.IPv6Len+packet.ICMPLen, icmp6ErrorMax
	}
	if f.Off < hdr {
		return NoHeadroom
	}
	quote := min(int(p.End-p.L3Off), max-hdr)
	old := f.Buf[f.Off:]
	off := f.Off - hdr
	b := f.Buf[off:]
	// Ethernet header moves forward with MACs swapped.
	var dst [6]byte
	copy(dst[:], old[6:12])
	copy(b[:l2], old[:l2])
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	ip := b[l2 : l2+hdr-packet.ICMPLen]
	orig := old[l2:]
	ic := b[l2+hdr-packet.ICMPLen : l2+hdr]
	if p.Family == 4 {
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:4], uint16(hdr+quote))
		binary.BigEndian.PutUint32(ip[4:8], 0)
		ip[8], ip[9] = TunnelTTL, packet.ProtoICMP
		ip[10], ip[11] = 0, 0
		copy(ip[12:16], orig[16:20]) // from the VIP
		copy(ip[16:20], orig[12:16]) // to the sender
		packet.IPv4(ip).SetChecksum(packet.IPv4(ip).ComputeChecksum())
		ic[0], ic[1] = packet.ICMPv4DestUnreach, packet.ICMPv4FragNeededCode
		binary.BigEndian.PutUint16(ic[4:6], 0)
		binary.BigEndian.PutUint16(ic[6:8], uint16(mtu))
	} else {
		binary.BigEndian.PutUint32(ip[0:4], 6<<28)
		binary.BigEndian.PutUint16(ip[4:6], uint16(packet.ICMPLen+quote))
		ip[6], ip[7] = packet.ProtoICMPv6, TunnelTTL
		var a [16]byte
		copy(a[:], orig[24:40])
		copy(ip[24:40], orig[8:24])
		copy(ip[8:24], a[:])
		ic[0], ic[1] = packet.ICMPv6PacketTooBig, 0
		binary.BigEndian.PutUint32(ic[4:8], uint32(mtu))
	}
	ic[2], ic[3] = 0, 0
	msg := b[l2+hdr-packet.ICMPLen : l2+hdr+quote]
	var init uint16
	if p.Family == 6 {
		init = packet.PseudoSum6(ip[8:24], ip[24:40], packet.ProtoICMPv6, uint32(len(msg)))
	}
	binary.BigEndian.PutUint16(ic[2:4], packet.Checksum(msg, init))
	f.Off, f.Len = off, l2+hdr+quote
	return Forward
}
