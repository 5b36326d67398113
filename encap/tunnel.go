package encap

import (
	"encoding/binary"

	"github.com/xlb/xlb/internal/packet"
)

// Tunnel parameters: the outer header's fixed fields.
const (
	TunnelTTL = 64
)

// TunnelHeaderLen returns the bytes Tunnel prepends for an outer family.
func TunnelHeaderLen(outerV6 bool) int {
	if outerV6 {
		return packet.IPv6Len
	}
	return packet.IPv4MinLen
}

// Tunnel encapsulates the IP packet of f in an outer IPv4 (protocol 4 or 41)
// or IPv6 (next header 4 or 41) header from src to dst, written into the
// headroom in front of the frame: IPv4-in-IPv4 (RFC 2003), IPv6-in-IPv6
// (RFC 2473), IPv4-in-IPv6 and IPv6-in-IPv4. The Ethernet header (and VLAN
// tag) moves forward; trailing padding is dropped. The outer header gets
// TTL 64, the inner DSCP and ECN, and, for an IPv4 outer header, the inner
// DF bit (set for IPv6 inner packets, which routers do not fragment). An
// IPv6 outer header carries flowHash as its flow label so ECMP spreads
// tunnelled flows.
func Tunnel(f *Frame, p *packet.Parsed, src, dst *Addr, flowHash uint32, e *Egress) Verdict {
	if src.V6 != dst.V6 {
		return Unsupported
	}
	hdr := TunnelHeaderLen(dst.V6)
	inner := int(p.End - p.L3Off)
	if tooBig(p, hdr, e) {
		return TooBig
	}
	if f.Off < hdr {
		return NoHeadroom
	}
	l2 := int(p.L3Off)
	old := f.Buf[f.Off:]
	off := f.Off - hdr
	b := f.Buf[off:]
	copy(b[:l2], old[:l2])
	setMACs(b, e)
	innerProto := uint8(packet.ProtoIPIP)
	if p.Family == 6 {
		innerProto = packet.ProtoIPv6
	}
	o := b[l2 : l2+hdr]
	if dst.V6 {
		binary.BigEndian.PutUint16(b[l2-2:l2], packet.EtherTypeIPv6)
		binary.BigEndian.PutUint32(o[0:4], 6<<28|uint32(p.TOS)<<20|flowHash&0xfffff)
		binary.BigEndian.PutUint16(o[4:6], uint16(inner))
		o[6] = innerProto
		o[7] = TunnelTTL
		copy(o[8:24], src.IP[:])
		copy(o[24:40], dst.IP[:])
	} else {
		binary.BigEndian.PutUint16(b[l2-2:l2], packet.EtherTypeIPv4)
		o[0] = 0x45
		o[1] = p.TOS
		binary.BigEndian.PutUint16(o[2:4], uint16(inner+hdr))
		var id, ff uint16
		if p.Family == 4 {
			id = packet.IPv4(old[l2:]).ID()
			if p.DF {
				ff = 0x4000
			}
		} else {
			ff = 0x4000
		}
		binary.BigEndian.PutUint16(o[4:6], id)
		binary.BigEndian.PutUint16(o[6:8], ff)
		o[8] = TunnelTTL
		o[9] = innerProto
		o[10], o[11] = 0, 0
		copy(o[12:16], src.IP[:4])
		copy(o[16:20], dst.IP[:4])
		packet.IPv4(o).SetChecksum(packet.IPv4(o).ComputeChecksum())
	}
	f.Off = off
	f.Len = l2 + hdr + inner
	return Forward
}
