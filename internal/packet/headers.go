package packet

import "encoding/binary"

// Lengths and well-known values of the headers this package understands.
const (
	EthernetLen = 14
	VLANLen     = 4
	IPv4MinLen  = 20
	IPv6Len     = 40
	TCPMinLen   = 20
	UDPLen      = 8
	ICMPLen     = 8 // ICMPv4 and ICMPv6 fixed header incl. the rest-of-header word

	EtherTypeIPv4 = 0x0800
	EtherTypeARP  = 0x0806
	EtherTypeVLAN = 0x8100
	EtherTypeQinQ = 0x88a8
	EtherTypeIPv6 = 0x86dd

	ProtoICMP   = 1
	ProtoIPIP   = 4 // IPv4 encapsulated (RFC 2003)
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoIPv6   = 41 // IPv6 encapsulated (RFC 2473)
	ProtoICMPv6 = 58

	// TCP flag bits as they appear in byte 13 of the TCP header.
	TCPFin = 0x01
	TCPSyn = 0x02
	TCPRst = 0x04
	TCPPsh = 0x08
	TCPAck = 0x10
)

// Ethernet is a view of an Ethernet II header.
type Ethernet []byte

// Dst returns the destination MAC.
func (e Ethernet) Dst() []byte { return e[0:6] }

// Src returns the source MAC.
func (e Ethernet) Src() []byte { return e[6:12] }

// EtherType returns the EtherType (or TPID of a tag) at offset 12.
func (e Ethernet) EtherType() uint16 { return binary.BigEndian.Uint16(e[12:14]) }

// SetEtherType writes the EtherType at offset 12.
func (e Ethernet) SetEtherType(t uint16) { binary.BigEndian.PutUint16(e[12:14], t) }

// IPv4 is a view of an IPv4 header (RFC 791).
type IPv4 []byte

// HeaderLen returns IHL in bytes.
func (ip IPv4) HeaderLen() int { return int(ip[0]&0x0f) * 4 }

// Version returns the version nibble.
func (ip IPv4) Version() uint8 { return ip[0] >> 4 }

// TOS returns the DSCP/ECN byte.
func (ip IPv4) TOS() uint8 { return ip[1] }

// TotalLen returns the total length field.
func (ip IPv4) TotalLen() int { return int(binary.BigEndian.Uint16(ip[2:4])) }

// ID returns the identification field.
func (ip IPv4) ID() uint16 { return binary.BigEndian.Uint16(ip[4:6]) }

// FlagsFrag returns the flags and fragment offset word.
func (ip IPv4) FlagsFrag() uint16 { return binary.BigEndian.Uint16(ip[6:8]) }

// DF reports whether Don't Fragment is set.
func (ip IPv4) DF() bool { return ip[6]&0x40 != 0 }

// MoreFragments reports whether MF is set.
func (ip IPv4) MoreFragments() bool { return ip[6]&0x20 != 0 }

// FragOffset returns the fragment offset in bytes.
func (ip IPv4) FragOffset() int { return int(ip.FlagsFrag()&0x1fff) * 8 }

// TTL returns the time to live.
func (ip IPv4) TTL() uint8 { return ip[8] }

// Protocol returns the transport protocol.
func (ip IPv4) Protocol() uint8 { return ip[9] }

// Checksum returns the header checksum field.
func (ip IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(ip[10:12]) }

// SetChecksum writes the header checksum field.
func (ip IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(ip[10:12], c) }

// Src returns the source address.
func (ip IPv4) Src() []byte { return ip[12:16] }

// Dst returns the destination address.
func (ip IPv4) Dst() []byte { return ip[16:20] }

// ComputeChecksum returns the header checksum computed over the header with
// the checksum field taken as zero.
func (ip IPv4) ComputeChecksum() uint16 {
	hl := ip.HeaderLen()
	s := Combine(Sum(ip[0:10]), Sum(ip[12:hl]))
	return ^s
}

// Offsets of the address fields within their IP headers.
const (
	IPv4SrcOff = 12
	IPv4DstOff = 16
	IPv6SrcOff = 8
	IPv6DstOff = 24
)

// IPv6 is a view of the IPv6 fixed header (RFC 8200).
type IPv6 []byte

// TrafficClass returns the traffic class (DSCP/ECN).
func (ip IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(ip[0:2]) >> 4)
}

// SetTrafficClass writes the traffic class, keeping version and flow label.
// IPv6 has no header checksum.
func (ip IPv6) SetTrafficClass(tc uint8) {
	w := binary.BigEndian.Uint16(ip[0:2])
	w = w&0xf00f | uint16(tc)<<4
	binary.BigEndian.PutUint16(ip[0:2], w)
}

// FlowLabel returns the 20-bit flow label.
func (ip IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(ip[0:4]) & 0xfffff }

// PayloadLen returns the payload length field.
func (ip IPv6) PayloadLen() int { return int(binary.BigEndian.Uint16(ip[4:6])) }

// NextHeader returns the next header field of the fixed header.
func (ip IPv6) NextHeader() uint8 { return ip[6] }

// HopLimit returns the hop limit.
func (ip IPv6) HopLimit() uint8 { return ip[7] }

// Src returns the source address.
func (ip IPv6) Src() []byte { return ip[8:24] }

// Dst returns the destination address.
func (ip IPv6) Dst() []byte { return ip[24:40] }

// TCP is a view of a TCP header (RFC 9293).
type TCP []byte

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[0:2]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[2:4]) }

// DataOffset returns the header length in bytes.
func (t TCP) DataOffset() int { return int(t[12]>>4) * 4 }

// Flags returns the flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
func (t TCP) Flags() uint8 { return t[13] }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[16:18]) }

// UDP is a view of a UDP header (RFC 768).
type UDP []byte

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[0:2]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[2:4]) }

// Length returns the UDP length field.
func (u UDP) Length() int { return int(binary.BigEndian.Uint16(u[4:6])) }

// Checksum returns the checksum field (0 = none, IPv4 only).
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[6:8]) }

// ICMP is a view of an ICMPv4 (RFC 792) or ICMPv6 (RFC 4443) header; both
// share type, code, checksum and a 32-bit rest-of-header word.
type ICMP []byte

// Type returns the message type.
func (i ICMP) Type() uint8 { return i[0] }

// Code returns the message code.
func (i ICMP) Code() uint8 { return i[1] }

// Checksum returns the checksum field.
func (i ICMP) Checksum() uint16 { return binary.BigEndian.Uint16(i[2:4]) }

// SetChecksum writes the checksum field.
func (i ICMP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(i[2:4], c) }

// ICMP message types xlb acts on.
const (
	ICMPv4EchoReply      = 0
	ICMPv4DestUnreach    = 3
	ICMPv4SourceQuench   = 4
	ICMPv4Redirect       = 5
	ICMPv4EchoRequest    = 8
	ICMPv4TimeExceeded   = 11
	ICMPv4ParamProblem   = 12
	ICMPv4FragNeededCode = 4 // code of DestUnreach: fragmentation needed and DF set

	ICMPv6DestUnreach   = 1
	ICMPv6PacketTooBig  = 2
	ICMPv6TimeExceeded  = 3
	ICMPv6ParamProblem  = 4
	ICMPv6EchoRequest   = 128
	ICMPv6EchoReply     = 129
	ICMPv6RouterSolicit = 133
	ICMPv6NeighborAdv   = 136
	ICMPv6Redirect      = 137
)
