package packet

import "encoding/binary"

// Reason says why Decode did not produce a complete flow. Reason 0 (OK)
// means the frame is well formed; the others are counters' labels in the
// dataplane.
type Reason uint8

// Decode outcomes.
const (
	OK                Reason = iota
	ReasonTruncated          // shorter than its headers claim
	ReasonBadIPv4            // version, IHL or total length invalid
	ReasonBadIPv6            // payload length beyond the frame
	ReasonBadL4              // TCP data offset or UDP length invalid
	ReasonNotIP              // ARP, LLDP, ...: not for the balancer
	ReasonUnsupported        // QinQ, too many IPv6 extension headers, routing header in use
	NumReasons
)

var reasonNames = [NumReasons]string{
	OK:                "ok",
	ReasonTruncated:   "truncated",
	ReasonBadIPv4:     "bad_ipv4",
	ReasonBadIPv6:     "bad_ipv6",
	ReasonBadL4:       "bad_l4",
	ReasonNotIP:       "not_ip",
	ReasonUnsupported: "unsupported",
}

// String returns a stable snake_case name suitable for metrics labels.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Frag describes the fragment state of an IP packet.
type Frag uint8

// Fragment states. A FragLater packet carries no transport header.
const (
	FragNone  Frag = iota // not a fragment
	FragFirst             // offset 0, more fragments follow
	FragLater             // offset > 0
)

// MaxFrame is the largest frame Decode accepts; offsets in Parsed are 16-bit.
const MaxFrame = 0xffff

// MaxExtHeaders bounds the IPv6 extension header walk.
const MaxExtHeaders = 8

// Inner is the flow quoted inside an ICMP error: the offending packet's IP
// header and the first eight bytes of its transport header (RFC 792,
// RFC 4443 section 2.4).
type Inner struct {
	Valid    bool
	Family   uint8 // 4 or 6
	Proto    uint8
	L3Off    uint16 // offset of the quoted IP header in the frame
	L4Off    uint16 // offset of the quoted transport header in the frame
	SrcPort  uint16
	DstPort  uint16
	Src, Dst [16]byte
}

// Parsed is the decoded flow of one frame. Decode fills it in place so a
// worker reuses one per frame slot; nothing escapes to the heap.
type Parsed struct {
	L3Off     uint16 // offset of the IP header
	L4Off     uint16 // offset of the transport header; 0 if none (FragLater)
	End       uint16 // offset one past the IP packet (frames may carry padding)
	EtherType uint16 // EtherType after any VLAN tag
	VLAN      uint16 // tag control information when Tagged
	Tagged    bool
	Family    uint8 // 4 or 6; 0 when not IP
	Proto     uint8 // transport protocol (after IPv6 extension headers)
	TOS       uint8 // IPv4 TOS or IPv6 traffic class: DSCP<<2 | ECN
	TTL       uint8 // TTL or hop limit
	DF        bool  // IPv4 Don't Fragment
	Frag      Frag
	TCPFlags  uint8
	ICMPType  uint8
	ICMPCode  uint8
	SrcPort   uint16 // ICMP echo: the identifier in both SrcPort and DstPort
	DstPort   uint16
	Src, Dst  [16]byte // IPv4 addresses in the first four bytes
	Inner     Inner    // set for ICMP errors that quote a packet
}

// DSCP returns the Differentiated Services code point.
func (p *Parsed) DSCP() uint8 { return p.TOS >> 2 }

// ECN returns the two ECN bits.
func (p *Parsed) ECN() uint8 { return p.TOS & 3 }

// AddrLen returns 4 or 16, the address length of the packet's family.
func (p *Parsed) AddrLen() int {
	if p.Family == 6 {
		return 16
	}
	return 4
}

// IsICMPError reports whether the packet is an ICMP or ICMPv6 error message.
func (p *Parsed) IsICMPError() bool {
	if p.Proto == ProtoICMP {
		return isICMPv4Error(p.ICMPType)
	}
	return p.Proto == ProtoICMPv6 && p.ICMPType < 128
}

func isICMPv4Error(t uint8) bool {
	switch t {
	case ICMPv4DestUnreach, ICMPv4SourceQuench, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// Decode parses frame into p. It returns OK when the frame is a well-formed
// IPv4 or IPv6 packet; otherwise a reason, with p filled as far as decoding
// got. Decode never reads outside frame and never allocates. Inner is
// filled only when Inner.Valid: the other fields of an invalid Inner are
// left as they were.
func Decode(frame []byte, p *Parsed) Reason {
	if r, ok := decodeFast(frame, p); ok {
		return r
	}
	return decode(frame, p)
}

// decodeFast decodes the common frames, untagged IPv4 without options and
// not a fragment or IPv6 without extension headers, carrying a TCP or UDP
// header that fits, at fixed offsets; ok is false for anything else, which
// decode handles (and handles the same way: FuzzDecode compares them).
func decodeFast(frame []byte, p *Parsed) (r Reason, ok bool) {
	if len(frame) < EthernetLen+IPv4MinLen+UDPLen || len(frame) > MaxFrame {
		return 0, false
	}
	var l3, l4, end int
	var proto uint8
	switch et := binary.BigEndian.Uint16(frame[12:14]); et {
	case EtherTypeIPv4:
		l3, l4 = EthernetLen, EthernetLen+IPv4MinLen
		ip := frame[l3:l4]
		if ip[0] != 0x45 || ip[6]&0x3f != 0 || ip[7] != 0 {
			return 0, false // options, or a fragment
		}
		end, proto = l3+int(binary.BigEndian.Uint16(ip[2:4])), ip[9]
	case EtherTypeIPv6:
		l3, l4 = EthernetLen, EthernetLen+IPv6Len
		if len(frame) < l4 {
			return 0, false
		}
		ip := frame[l3:l4]
		if ip[0]>>4 != 6 {
			return 0, false
		}
		end, proto = l4+int(binary.BigEndian.Uint16(ip[4:6])), ip[6]
	default:
		return 0, false
	}
	if end < l4 || end > len(frame) {
		return 0, false
	}
	seg := frame[l4:end]
	var sport, dport uint16
	var flags uint8
	switch proto {
	case ProtoTCP:
		if len(seg) < TCPMinLen {
			return 0, false
		}
		t := seg[:TCPMinLen]
		if d := int(t[12]>>4) * 4; d < TCPMinLen || d > len(seg) {
			return 0, false
		}
		sport, dport, flags = binary.BigEndian.Uint16(t[0:2]), binary.BigEndian.Uint16(t[2:4]), t[13]
	case ProtoUDP:
		if len(seg) < UDPLen {
			return 0, false
		}
		u := seg[:UDPLen]
		if n := int(binary.BigEndian.Uint16(u[4:6])); n < UDPLen || n > len(seg) {
			return 0, false
		}
		sport, dport = binary.BigEndian.Uint16(u[0:2]), binary.BigEndian.Uint16(u[2:4])
	default:
		return 0, false
	}
	p.L3Off, p.L4Off, p.End, p.VLAN, p.Tagged = uint16(l3), uint16(l4), uint16(end), 0, false
	p.Proto, p.Frag, p.TCPFlags, p.ICMPType, p.ICMPCode, p.SrcPort, p.DstPort = proto, FragNone, flags, 0, 0, sport, dport
	if l4 == EthernetLen+IPv4MinLen {
		ip := frame[l3:l4]
		p.EtherType, p.Family, p.TOS, p.TTL, p.DF = EtherTypeIPv4, 4, ip[1], ip[8], ip[6]&0x40 != 0
		// Each address as two 8-byte stores: the readers (the VIP lookup,
		// the flow key) load them 8 bytes at a time, and a load that spans
		// two recent stores (a 16-byte clear and a 4-byte copy) cannot be
		// forwarded from the store buffer: a stall per address.
		binary.LittleEndian.PutUint64(p.Src[0:8], uint64(binary.LittleEndian.Uint32(ip[12:16])))
		binary.LittleEndian.PutUint64(p.Src[8:16], 0)
		binary.LittleEndian.PutUint64(p.Dst[0:8], uint64(binary.LittleEndian.Uint32(ip[16:20])))
		binary.LittleEndian.PutUint64(p.Dst[8:16], 0)
	} else {
		ip := IPv6(frame[l3:l4])
		p.EtherType, p.Family, p.TOS, p.TTL, p.DF = EtherTypeIPv6, 6, ip.TrafficClass(), ip[7], false
		p.Src, p.Dst = [16]byte(ip[8:24]), [16]byte(ip[24:40])
	}
	p.Inner.Valid = false
	return OK, true
}

// decode is the general decoder.
func decode(frame []byte, p *Parsed) Reason {
	*p = Parsed{}
	if len(frame) < EthernetLen {
		return ReasonTruncated
	}
	if len(frame) > MaxFrame {
		return ReasonUnsupported
	}
	off := EthernetLen
	et := binary.BigEndian.Uint16(frame[12:14])
	if et == EtherTypeVLAN {
		if len(frame) < EthernetLen+VLANLen {
			return ReasonTruncated
		}
		p.Tagged = true
		p.VLAN = binary.BigEndian.Uint16(frame[14:16])
		et = binary.BigEndian.Uint16(frame[16:18])
		off += VLANLen
	}
	p.EtherType = et
	p.L3Off = uint16(off)
	switch et {
	case EtherTypeIPv4:
		return decodeIPv4(frame, off, p)
	case EtherTypeIPv6:
		return decodeIPv6(frame, off, p)
	case EtherTypeVLAN, EtherTypeQinQ:
		return ReasonUnsupported
	}
	return ReasonNotIP
}

func decodeIPv4(frame []byte, off int, p *Parsed) Reason {
	if len(frame) < off+IPv4MinLen {
		return ReasonTruncated
	}
	ip := IPv4(frame[off:])
	hl := ip.HeaderLen()
	tl := ip.TotalLen()
	if ip.Version() != 4 || hl < IPv4MinLen || tl < hl {
		return ReasonBadIPv4
	}
	if len(ip) < tl {
		return ReasonTruncated
	}
	p.Family = 4
	p.End = uint16(off + tl)
	p.TOS = ip.TOS()
	p.TTL = ip.TTL()
	p.Proto = ip.Protocol()
	p.DF = ip.DF()
	copy(p.Src[:4], ip[12:16])
	copy(p.Dst[:4], ip[16:20])
	if ff := ip.FlagsFrag(); ff&0x1fff != 0 {
		p.Frag = FragLater
		return OK
	} else if ff&0x2000 != 0 {
		p.Frag = FragFirst
	}
	return decodeL4(frame[:off+tl], off+hl, p)
}

func decodeIPv6(frame []byte, off int, p *Parsed) Reason {
	if len(frame) < off+IPv6Len {
		return ReasonTruncated
	}
	ip := IPv6(frame[off:])
	if ip[0]>>4 != 6 {
		return ReasonBadIPv6
	}
	end := off + IPv6Len + ip.PayloadLen()
	if len(frame) < end {
		return ReasonTruncated
	}
	p.Family = 6
	p.End = uint16(end)
	p.TOS = ip.TrafficClass()
	p.TTL = ip.HopLimit()
	copy(p.Src[:], ip[8:24])
	copy(p.Dst[:], ip[24:40])
	nh, l4, r := skipExt(frame[:end], off+IPv6Len, ip.NextHeader(), &p.Frag)
	p.Proto = nh
	if r != OK || p.Frag == FragLater {
		return r
	}
	return decodeL4(frame[:end], l4, p)
}

// skipExt walks IPv6 extension headers from off, returning the upper-layer
// protocol and its offset. frag is set from a fragment header if present.
func skipExt(b []byte, off int, nh uint8, frag *Frag) (uint8, int, Reason) {
	for i := 0; i < MaxExtHeaders; i++ {
		switch nh {
		case 0, 60, 43: // hop-by-hop, destination options, routing
			if len(b) < off+8 {
				return nh, off, ReasonTruncated
			}
			if nh == 43 && b[off+3] != 0 { // segments left: final destination differs
				return nh, off, ReasonUnsupported
			}
			nh, off = b[off], off+(int(b[off+1])+1)*8
		case 44: // fragment
			if len(b) < off+8 {
				return nh, off, ReasonTruncated
			}
			fo := binary.BigEndian.Uint16(b[off+2 : off+4])
			nh, off = b[off], off+8
			if fo&0xfff8 != 0 {
				// What follows is fragment payload, not headers.
				*frag = FragLater
				return nh, off, OK
			}
			if fo&1 != 0 {
				*frag = FragFirst
			}
		case 51: // authentication header: length in 4-octet units minus 2
			if len(b) < off+8 {
				return nh, off, ReasonTruncated
			}
			nh, off = b[off], off+(int(b[off+1])+2)*4
		default:
			if off > len(b) {
				return nh, off, ReasonTruncated
			}
			return nh, off, OK
		}
	}
	return nh, off, ReasonUnsupported
}

// decodeL4 parses the transport header at off; b ends where the IP packet
// ends.
func decodeL4(b []byte, off int, p *Parsed) Reason {
	if off > len(b) {
		return ReasonTruncated
	}
	p.L4Off = uint16(off)
	l4 := b[off:]
	switch p.Proto {
	case ProtoTCP:
		if len(l4) < TCPMinLen {
			return ReasonTruncated
		}
		t := TCP(l4)
		if d := t.DataOffset(); d < TCPMinLen || d > len(l4) {
			return ReasonBadL4
		}
		p.SrcPort, p.DstPort, p.TCPFlags = t.SrcPort(), t.DstPort(), t.Flags()
	case ProtoUDP:
		if len(l4) < UDPLen {
			return ReasonTruncated
		}
		u := UDP(l4)
		// The UDP length covers the whole datagram: a first fragment
		// carries only part of it.
		if n := u.Length(); n < UDPLen || n > len(l4) && p.Frag != FragFirst {
			return ReasonBadL4
		}
		p.SrcPort, p.DstPort = u.SrcPort(), u.DstPort()
	case ProtoICMP, ProtoICMPv6:
		if len(l4) < ICMPLen {
			return ReasonTruncated
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		if p.IsICMPError() {
			decodeInner(b, off+ICMPLen, p)
		} else {
			id := binary.BigEndian.Uint16(l4[4:6])
			p.SrcPort, p.DstPort = id, id
		}
	}
	return OK
}

// decodeInner parses the packet quoted by an ICMP error. A quote too short
// to hold an IP header and eight transport bytes leaves Inner invalid; the
// outer packet is still well formed.
func decodeInner(b []byte, off int, p *Parsed) {
	in := &p.Inner
	*in = Inner{}
	if len(b) < off+1 {
		return
	}
	var l4 int
	switch b[off] >> 4 {
	case 4:
		if len(b) < off+IPv4MinLen {
			return
		}
		ip := IPv4(b[off:])
		hl := ip.HeaderLen()
		if hl < IPv4MinLen || ip.FragOffset() != 0 {
			return
		}
		in.Family, in.Proto = 4, ip.Protocol()
		copy(in.Src[:4], ip[12:16])
		copy(in.Dst[:4], ip[16:20])
		l4 = off + hl
	case 6:
		if len(b) < off+IPv6Len {
			return
		}
		ip := IPv6(b[off:])
		var frag Frag
		nh, o, r := skipExt(b, off+IPv6Len, ip.NextHeader(), &frag)
		if r != OK || frag == FragLater {
			return
		}
		in.Family, in.Proto = 6, nh
		copy(in.Src[:], ip[8:24])
		copy(in.Dst[:], ip[24:40])
		l4 = o
	default:
		return
	}
	if len(b) < l4+8 {
		return
	}
	in.L3Off, in.L4Off = uint16(off), uint16(l4)
	switch in.Proto {
	case ProtoTCP, ProtoUDP:
		in.SrcPort = binary.BigEndian.Uint16(b[l4 : l4+2])
		in.DstPort = binary.BigEndian.Uint16(b[l4+2 : l4+4])
	case ProtoICMP, ProtoICMPv6:
		id := binary.BigEndian.Uint16(b[l4+4 : l4+6])
		in.SrcPort, in.DstPort = id, id
	}
	in.Valid = true
}
