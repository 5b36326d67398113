package encap

import (
	"encoding/binary"

	"github.com/xlb/xlb/internal/packet"
)

// TCP option kinds ClampMSS reads (RFC 9293 3.2).
const (
	tcpOptEnd = 0
	tcpOptNOP = 1
	tcpOptMSS = 2
)

// Header bytes between a TCP segment and the IP MTU that carries it.
const (
	tcpMinLen = packet.TCPMinLen
	ipv4Len   = packet.IPv4MinLen
	ipv6Len   = packet.IPv6Len
)

// TunnelMSS returns the largest TCP maximum segment size whose segments,
// encapsulated by Tunnel in an outer header of family outerV6, still fit an
// egress MTU of mtu: mtu minus the outer header, the inner IP header (of
// family innerV6, without options or extension headers) and a TCP header
// without options. It returns 0 when nothing fits.
func TunnelMSS(mtu int, outerV6, innerV6 bool) uint16 {
	n := mtu - TunnelHeaderLen(outerV6) - tcpMinLen - ipv4Len
	if innerV6 {
		n = mtu - TunnelHeaderLen(outerV6) - tcpMinLen - ipv6Len
	}
	if n <= 0 {
		return 0
	}
	return uint16(min(n, 0xffff))
}

// ClampMSS lowers the maximum segment size option of a TCP SYN (a segment
// with SYN set and RST clear) to mss, in place, and reports whether it
// changed the frame. The TCP checksum is updated incrementally (RFC 1624);
// an option that starts at an odd offset contributes its bytes swapped to
// the 16-bit sums, which the update accounts for. Anything else is left
// alone: mss 0, other segments and protocols, a SYN whose option is
// already at or below mss, a SYN without the option (its sender assumes
// 536 or 1220 bytes, RFC 9293 3.7.1, and there is no room to add one in
// place), and malformed option lists.
//
// Only the sender of the SYN learns nothing from it: the MSS option tells
// the receiver how large the segments it sends back may be. In tunnel mode
// the SYN goes to the backend, so a clamp bounds what the backend sends to
// the client, never what the client sends through the tunnel (that is set
// by the backend's SYN-ACK, which does not pass the balancer).
func ClampMSS(frame []byte, p *packet.Parsed, mss uint16) bool {
	if mss == 0 || p.Proto != packet.ProtoTCP || p.L4Off == 0 || p.TCPFlags&(packet.TCPSyn|packet.TCPRst) != packet.TCPSyn {
		return false
	}
	if int(p.End) > len(frame) || int(p.L4Off)+tcpMinLen > int(p.End) {
		return false
	}
	seg := frame[p.L4Off:p.End]
	hl := int(seg[12]>>4) * 4
	if hl > len(seg) {
		return false
	}
	for i := tcpMinLen; i < hl; {
		switch seg[i] {
		case tcpOptEnd:
			return false
		case tcpOptNOP:
			i++
			continue
		}
		if i+1 >= hl {
			return false
		}
		n := int(seg[i+1])
		if n < 2 || i+n > hl {
			return false
		}
		if seg[i] != tcpOptMSS {
			i += n
			continue
		}
		if n != 4 {
			return false
		}
		at := i + 2
		old := binary.BigEndian.Uint16(seg[at : at+2])
		if old <= mss {
			return false
		}
		binary.BigEndian.PutUint16(seg[at:at+2], mss)
		var d packet.Delta
		if at%2 == 0 {
			d.Add16(old, mss)
		} else {
			d.Add16(old>>8|old<<8, mss>>8|mss<<8)
		}
		binary.BigEndian.PutUint16(seg[16:18], d.Apply(binary.BigEndian.Uint16(seg[16:18])))
		return true
	}
	return false
}
