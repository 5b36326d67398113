package dataplane

import (
	"encoding/binary"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// The established-flow fast path. Most packets a balancer sees are the
// next packet of a flow it already knows: an untagged IPv4 or IPv6 (no
// options, no extension headers) TCP segment (no SYN, FIN or RST) or UDP
// datagram to a service of any mode but frag_hash, or a nat/fullnat
// backend's reply, whose conntrack entry needs nothing but a new
// timestamp. For those the pipeline's general stages (Decode into a
// Parsed, the 16-byte key, the Entry copied from stage to stage, a Result
// returned through three calls) cost more than the work itself, much of
// it in store-forwarding stalls: a struct written in narrow stores and
// read back in wide loads. established4 and established6 do the same work
// in one pass, reading the headers straight from the frame into
// registers. They take a packet only when the full pipeline would do
// exactly what they do (TestFastPathMatchesPipeline and
// FuzzFastPathMatchesPipeline check that frame by frame); for anything
// else they change nothing and the frame goes through the full pipeline.

// head is what parse4 or parse6 read of a frame, kept between the passes
// of a prefetched batch.
type head struct {
	k4    conntrack.Flow4
	k6    conntrack.Flow6
	h     uint64
	ipLen int
	flags uint8
	fam   uint8 // 4 or 6; 0: not for the fast path
}

// parse4 reads the flow key of an untagged IPv4 frame without options
// that is not a fragment and carries a whole TCP or UDP header, with the
// TCP flags and the IP packet's length; ok is false for any other frame
// (which Decode then handles, with all its checks).
func parse4(b []byte) (k conntrack.Flow4, flags uint8, ipLen int, ok bool) {
	const l3, l4 = packet.EthernetLen, packet.EthernetLen + packet.IPv4MinLen
	if len(b) < l4+packet.UDPLen || len(b) > packet.MaxFrame {
		return k, 0, 0, false
	}
	// Ethertype 0x0800, version 4 with a 20-byte header, no fragment
	// offset and MF clear (DF may be set).
	if binary.BigEndian.Uint16(b[12:14]) != packet.EtherTypeIPv4 || b[l3] != 0x45 || b[l3+6]&0x3f != 0 || b[l3+7] != 0 {
		return k, 0, 0, false
	}
	ipLen = int(binary.BigEndian.Uint16(b[l3+2 : l3+4]))
	proto, end := b[l3+9], l3+ipLen
	if end > len(b) || end < l4+packet.UDPLen {
		return k, 0, 0, false
	}
	// transport's checks, inlined.
	if proto == packet.ProtoTCP {
		flags, ok = tcpHeader(b, l4, end)
	} else {
		ok = proto == packet.ProtoUDP && udpHeader(b, l4, end)
	}
	if !ok {
		return k, 0, 0, false
	}
	k.Addrs = binary.LittleEndian.Uint64(b[l3+12 : l3+20])
	k.SrcPort, k.DstPort, k.Proto = binary.BigEndian.Uint16(b[l4:l4+2]), binary.BigEndian.Uint16(b[l4+2:l4+4]), proto
	return k, flags, ipLen, true
}

// parse6 is parse4 for an untagged IPv6 frame whose next header is TCP or
// UDP (no extension headers).
func parse6(b []byte, k *conntrack.Flow6) (flags uint8, ipLen int, ok bool) {
	const l3, l4 = packet.EthernetLen, packet.EthernetLen + packet.IPv6Len
	if len(b) < l4+packet.UDPLen || len(b) > packet.MaxFrame {
		return 0, 0, false
	}
	if binary.BigEndian.Uint16(b[12:14]) != packet.EtherTypeIPv6 || b[l3]>>4 != 6 {
		return 0, 0, false
	}
	ipLen = packet.IPv6Len + int(binary.BigEndian.Uint16(b[l3+4:l3+6]))
	proto := b[l3+6]
	if flags, ok = transport(b, l4, l3+ipLen, proto); !ok {
		return 0, 0, false
	}
	le := binary.LittleEndian
	k.Src = [2]uint64{le.Uint64(b[l3+8 : l3+16]), le.Uint64(b[l3+16 : l3+24])}
	k.Dst = [2]uint64{le.Uint64(b[l3+24 : l3+32]), le.Uint64(b[l3+32 : l3+40])}
	k.SrcPort, k.DstPort, k.Proto = binary.BigEndian.Uint16(b[l4:l4+2]), binary.BigEndian.Uint16(b[l4+2:l4+4]), proto
	return flags, ipLen, true
}

// transport checks the TCP or UDP header at l4 of an IP packet ending at
// end (as Decode's fast path does) and returns the TCP flags. (In parts,
// each small enough to be inlined.)
func transport(b []byte, l4, end int, proto uint8) (flags uint8, ok bool) {
	if end > len(b) || end < l4+packet.UDPLen {
		return 0, false
	}
	switch proto {
	case packet.ProtoTCP:
		return tcpHeader(b, l4, end)
	case packet.ProtoUDP:
		return 0, udpHeader(b, l4, end)
	}
	return 0, false
}

// tcpHeader checks a TCP header at l4 (end >= l4+8, end <= len(b)).
func tcpHeader(b []byte, l4, end int) (flags uint8, ok bool) {
	if end < l4+packet.TCPMinLen {
		return 0, false
	}
	if d := int(b[l4+12]>>4) * 4; d < packet.TCPMinLen || l4+d > end {
		return 0, false
	}
	return b[l4+13], true
}

// udpHeader checks a UDP header at l4 (end >= l4+8, end <= len(b)).
func udpHeader(b []byte, l4, end int) bool {
	n := int(binary.BigEndian.Uint16(b[l4+4 : l4+6]))
	return n >= packet.UDPLen && l4+n <= end
}

// opens reports a TCP segment that opens, closes or resets a connection:
// the state machine's, not the fast path's.
func opens(proto, flags uint8) bool {
	return proto == packet.ProtoTCP && flags&(packet.TCPSyn|packet.TCPFin|packet.TCPRst) != 0
}

// hit is what replyFast uses of a conntrack entry of either family.
type hit struct {
	backend, service uint32
	vport            uint16
	flags            uint8
}

// established4 forwards frame f, parsed by parse4 (key k, hashed h), if it
// is the next packet of an established flow, writing its verdict to
// *out; otherwise it reports false having changed nothing (but, like any
// lookup, the entry's timestamp). It is one() for that case: the same
// lookups, checks, rewrite and counters.
func (w *Worker) established4(s *Snapshot, f *encap.Frame, k conntrack.Flow4, h uint64, flags uint8, ipLen int, out *Result) bool {
	if opens(k.Proto, flags) {
		return false
	}
	var e conntrack.Entry4
	id, ok := s.vips.find4(uint32(k.Addrs>>32), k.DstPort, k.Proto)
	if !ok {
		// A reply, or not ours.
		if !w.ct.LookupFast4(k, h, flags, w.tick, &e) || e.Flags&conntrack.FlagReverse == 0 {
			return false
		}
		client := encap.Endpoint{Port: e.PeerPort}
		copy(client.IP[:4], e.PeerIP[:])
		return w.replyFast(s, f, k.Proto, ipLen, &hit{backend: e.Backend, service: e.Service, vport: e.VPort, flags: e.Flags}, &client, out)
	}
	if !w.ct.LookupFast4(k, h, flags, w.tick, &e) {
		return false
	}
	svc := &s.Services[id]
	be := usableFast(s, svc, e.Backend, e.Flags, ipLen)
	if be == nil {
		return false
	}
	// dsr, and nat and fullnat between IPv4 addresses, here; the rest by
	// the general rewrites.
	b, rxLen := f.Bytes(), f.Len
	switch {
	case svc.Mode == ModeDSR:
		encap.SetMACs(b, &be.Egress)
	case svc.Mode == ModeNAT && !be.Endpoint.V6:
		encap.Translate4(b, k.Proto, nil, &be.Endpoint, &be.Egress)
	case svc.Mode == ModeFullNAT && int(e.SNATAddr) < len(s.SNAT) && !s.SNAT[e.SNATAddr].V6 && !be.Endpoint.V6:
		snat := encap.Endpoint{Addr: s.SNAT[e.SNATAddr], Port: e.SNATPort}
		encap.Translate4(b, k.Proto, &snat, &be.Endpoint, &be.Egress)
	default:
		if !w.rewriteFast(s, svc, be, f, false, k.Proto, h, ipLen, e.SNATAddr, e.SNATPort) {
			return false
		}
	}
	w.sent(out, f, rxLen, false, be.Iface, svc.ID, be.ID)
	return true
}

// established6 is established4 for a frame parsed by parse6.
func (w *Worker) established6(s *Snapshot, f *encap.Frame, k *conntrack.Flow6, h uint64, flags uint8, ipLen int, out *Result) bool {
	if opens(k.Proto, flags) {
		return false
	}
	var e conntrack.Entry
	id, ok := s.vips.findWords(k.Dst[0], k.Dst[1], true, k.DstPort, k.Proto)
	if !ok {
		if !w.ct.LookupFast6(k, h, flags, w.tick, &e) || e.Flags&conntrack.FlagReverse == 0 {
			return false
		}
		client := encap.Endpoint{Addr: encap.Addr{IP: e.PeerIP, V6: true}, Port: e.PeerPort}
		return w.replyFast(s, f, k.Proto, ipLen, &hit{backend: e.Backend, service: e.Service, vport: e.VPort, flags: e.Flags}, &client, out)
	}
	if !w.ct.LookupFast6(k, h, flags, w.tick, &e) {
		return false
	}
	svc := &s.Services[id]
	be := usableFast(s, svc, e.Backend, e.Flags, ipLen)
	rxLen := f.Len
	if be == nil || !w.rewriteFast(s, svc, be, f, true, k.Proto, h, ipLen, e.SNATAddr, e.SNATPort) {
		return false
	}
	w.sent(out, f, rxLen, true, be.Iface, svc.ID, be.ID)
	return true
}

// usableFast returns the backend of a client's packet to svc whose entry
// names backend, with flags, if forward's checks let it go on serving the
// flow (keeps, for a packet that is not a fresh SYN) and the packet fits
// its egress; nil otherwise.
func usableFast(s *Snapshot, svc *Service, backend uint32, flags uint8, ipLen int) *Backend {
	if svc.FragHash || flags&conntrack.FlagReverse != 0 || !modeMatches(svc.Mode, flags) || int(backend) >= len(s.Backends) {
		return nil
	}
	be := &s.Backends[backend]
	if !be.Present || be.Service != svc.ID || be.State == StateDown || (be.Egress.MTU > 0 && ipLen > be.Egress.MTU) {
		return nil
	}
	return be
}

// rewriteFast is forward's rewrite of a fast-path frame by the general
// rewrites (a fullnat flow's SNAT address and port given). false: a
// verdict other than Forward, which leaves the frame as it was (the
// rewrites' contract) for the full pipeline to answer (too big: the ICMP
// error).
func (w *Worker) rewriteFast(s *Snapshot, svc *Service, be *Backend, f *encap.Frame, v6 bool, proto uint8, h uint64, ipLen int, snatAddr uint8, snatPort uint16) bool {
	b := f.Bytes()
	p := w.fastParsed(b, v6, proto, ipLen)
	var v encap.Verdict
	switch svc.Mode {
	case ModeNAT:
		v = encap.NAT(b, p, &be.Endpoint, &be.Egress)
	case ModeFullNAT:
		if int(snatAddr) >= len(s.SNAT) {
			return false
		}
		snat := encap.Endpoint{Addr: s.SNAT[snatAddr], Port: snatPort}
		v = encap.FullNAT(b, p, &snat, &be.Endpoint, &be.Egress)
	default: // dsr, tunnel, l3dsr
		v = directRewrite(f, p, svc, be, uint32(h))
	}
	return v == encap.Forward
}

// sent counts a frame the fast path transmits (rxLen bytes as received)
// and writes its verdict.
func (w *Worker) sent(out *Result, f *encap.Frame, rxLen int, v6 bool, iface uint8, svc, be uint32) {
	w.c.RxBytes += uint64(rxLen)
	w.fastHits[b2i(v6)]++
	w.txTo(out, f, iface, svc, be)
}

// replyFast finishes established4/6 for a packet to no service whose
// entry e is a reverse one: a nat or fullnat backend's reply, translated
// back to the VIP (and for fullnat to the client) as reply does.
func (w *Worker) replyFast(s *Snapshot, f *encap.Frame, proto uint8, ipLen int, e *hit, client *encap.Endpoint, out *Result) bool {
	svc := s.Service(e.service)
	if svc == nil || svc.VIP.V6 != client.V6 || s.Backend(e.backend) == nil || (s.Reply.MTU > 0 && ipLen > s.Reply.MTU) {
		return false
	}
	b, rxLen := f.Bytes(), f.Len
	vip := encap.Endpoint{Addr: svc.VIP, Port: e.vport}
	if e.flags&conntrack.FlagFullNAT == 0 {
		client = nil // nat: the client's address is in the packet
	}
	if !svc.VIP.V6 {
		encap.Translate4(b, proto, &vip, client, &s.Reply)
	} else if encap.Translate(b, w.fastParsed(b, true, proto, ipLen), &vip, client, &s.Reply) != encap.Forward {
		return false
	}
	w.c.Replies++
	w.sent(out, f, rxLen, svc.VIP.V6, s.ReplyIface, svc.ID, e.backend)
	return true
}

// fastParsed fills the Worker's scratch Parsed with what the general
// rewrites read of a frame parse4 or parse6 accepted (each field stored
// once and read at its own width) and returns it.
func (w *Worker) fastParsed(b []byte, v6 bool, proto uint8, ipLen int) *packet.Parsed {
	p := &w.fp
	const l3 = packet.EthernetLen
	p.L3Off, p.End, p.Tagged, p.Proto, p.Frag = l3, uint16(l3+ipLen), false, proto, packet.FragNone
	if v6 {
		p.L4Off, p.Family, p.TOS, p.DF = l3+packet.IPv6Len, 6, uint8(binary.BigEndian.Uint16(b[l3:l3+2])>>4), false
	} else {
		p.L4Off, p.Family, p.TOS, p.DF = l3+packet.IPv4MinLen, 4, b[l3+1], b[l3+6]&0x40 != 0
	}
	return p
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
