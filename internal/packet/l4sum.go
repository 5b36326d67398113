package packet

import "encoding/binary"

// l4 returns the transport segment of an unfragmented TCP or UDP packet
// and its pseudo-header sum, or ok=false when the packet is not one.
func l4(frame []byte, p *Parsed) (seg []byte, pseudo uint16, ok bool) {
	if p.Frag != FragNone || (p.Proto != ProtoTCP && p.Proto != ProtoUDP) || p.L4Off == 0 || int(p.End) > len(frame) || p.L4Off >= p.End {
		return nil, 0, false
	}
	seg = frame[p.L4Off:p.End]
	min := UDPLen
	if p.Proto == ProtoTCP {
		min = TCPMinLen
	}
	if len(seg) < min {
		return nil, 0, false
	}
	if p.Family == 4 {
		pseudo = PseudoSum4(p.Src[:4], p.Dst[:4], p.Proto, uint16(len(seg)))
	} else {
		pseudo = PseudoSum6(p.Src[:16], p.Dst[:16], p.Proto, uint32(len(seg)))
	}
	return seg, pseudo, true
}

func csumOff(proto uint8) int {
	if proto == ProtoTCP {
		return 16
	}
	return 6
}

// L4ChecksumOK reports whether the TCP or UDP checksum of an unfragmented
// packet is valid (a zero UDP checksum over IPv4 means "none" and is
// valid). Packets it cannot judge (fragments, other protocols) are OK.
//
// A frame whose sender left the checksum to offload (CHECKSUM_PARTIAL:
// veth, containers, some VMs) carries only the pseudo-header sum there and
// fails this check.
func L4ChecksumOK(frame []byte, p *Parsed) bool {
	seg, pseudo, ok := l4(frame, p)
	if !ok {
		return true
	}
	if p.Proto == ProtoUDP && p.Family == 4 && binary.BigEndian.Uint16(seg[6:8]) == 0 {
		return true
	}
	return Checksum(seg, pseudo) == 0
}

// FixL4Checksum recomputes the TCP or UDP checksum of an unfragmented
// packet from scratch (for senders that leave it to offload). It returns
// false for packets it does not touch.
func FixL4Checksum(frame []byte, p *Parsed) bool {
	seg, pseudo, ok := l4(frame, p)
	if !ok {
		return false
	}
	off := csumOff(p.Proto)
	seg[off], seg[off+1] = 0, 0
	c := Checksum(seg, pseudo)
	if c == 0 && p.Proto == ProtoUDP {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(seg[off:off+2], c)
	return true
}
