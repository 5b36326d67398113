package encap

import (
	"encoding/binary"

	"github.com/xlb/xlb/internal/packet"
)

// SetMACs is DSR for the frames the forwarding fast path sends, whose
// size the caller has checked against the egress MTU: the Ethernet
// addresses only.
func SetMACs(frame []byte, e *Egress) { setMACs(frame, e) }

// Translate4 is Translate for the frames the forwarding fast path sends:
// an untagged IPv4 packet without options, carrying a whole TCP (proto 6)
// or UDP header, within the egress MTU, and IPv4 endpoints (the caller has
// checked all of that). src nil keeps the source; a port of 0 keeps the
// packet's. The frame comes out byte for byte as Translate leaves it
// (TestTranslate4MatchesTranslate), without a Parsed.
func Translate4(frame []byte, proto uint8, src, dst *Endpoint, e *Egress) {
	const l3, l4 = packet.EthernetLen, packet.EthernetLen + packet.IPv4MinLen
	ip := frame[l3:l4:l4]
	var d packet.Delta
	if src != nil {
		setAddr4(ip[packet.IPv4SrcOff:], &src.Addr, &d)
	}
	if dst != nil {
		setAddr4(ip[packet.IPv4DstOff:], &dst.Addr, &d)
	}
	fixIPv4(ip, d)
	t := frame[l4 : l4+packet.UDPLen : l4+packet.UDPLen]
	setPorts(t, src, dst, &d)
	if proto == packet.ProtoUDP {
		binary.BigEndian.PutUint16(t[6:8], d.ApplyUDP(binary.BigEndian.Uint16(t[6:8])))
	} else {
		c := frame[l4+16 : l4+18]
		binary.BigEndian.PutUint16(c, d.Apply(binary.BigEndian.Uint16(c)))
	}
	setMACs(frame, e)
}
