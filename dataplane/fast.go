package dataplane

import (
	"encoding/binary"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// The established-flow fast path. Most packets a balancer sees are the
// next packet of a flow it already knows: an untagged IPv4 TCP segment
// (no SYN, FIN or RST) or UDP datagram to a service (of any mode but
// frag_hash)
// whose conntrack entry needs nothing but a new timestamp. For those the
// pipeline's general stages (Decode into a Parsed, the 16-byte key, the
// Entry copied from stage to stage, a Result returned through three
// calls) cost more than the work itself, much of it in store-forwarding
// stalls: a struct written in narrow stores and read back in wide loads.
// established4 does the same work in one pass, reading the headers
// straight from the frame into registers. It takes a packet only when the
// full pipeline would do exactly what it does (TestFastPathMatchesPipeline
// checks that frame by frame); for anything else it changes nothing and
// the frame goes through the full pipeline.

// head4 is what parse4 read of a frame, kept between the passes of a
// prefetched batch.
type head4 struct {
	k     conntrack.Flow4
	h     uint64
	ipLen int
	flags uint8
	ok    bool
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
	end := l3 + ipLen
	if end > len(b) {
		return k, 0, 0, false
	}
	proto := b[l3+9]
	switch proto {
	case packet.ProtoTCP:
		if end < l4+packet.TCPMinLen {
			return k, 0, 0, false
		}
		if d := int(b[l4+12]>>4) * 4; d < packet.TCPMinLen || l4+d > end {
			return k, 0, 0, false
		}
		flags = b[l4+13]
	case packet.ProtoUDP:
		if n := int(binary.BigEndian.Uint16(b[l4+4 : l4+6])); n < packet.UDPLen || l4+n > end {
			return k, 0, 0, false
		}
	default:
		return k, 0, 0, false
	}
	k.Addrs = binary.LittleEndian.Uint64(b[l3+12 : l3+20])
	k.SrcPort, k.DstPort, k.Proto = binary.BigEndian.Uint16(b[l4:l4+2]), binary.BigEndian.Uint16(b[l4+2:l4+4]), proto
	return k, flags, ipLen, true
}

// established4 forwards frame f, parsed by parse4 (key k, hashed h), if it
// is the next packet of an established flow, writing
// its verdict to *out; otherwise it reports false having changed nothing
// (but, like any lookup, the entry's timestamp). It is one() for that
// case: the same lookups, checks, rewrite and counters.
func (w *Worker) established4(s *Snapshot, f *encap.Frame, k conntrack.Flow4, h uint64, flags uint8, ipLen int, now int64, out *Result) bool {
	if k.Proto == packet.ProtoTCP && flags&(packet.TCPSyn|packet.TCPFin|packet.TCPRst) != 0 {
		return false // opens, closes or resets: the state machine's
	}
	id, ok := s.vips.find4(uint32(k.Addrs>>32), k.DstPort, k.Proto)
	if !ok {
		return w.reply4(s, f, k, h, flags, ipLen, now, out)
	}
	svc := &s.Services[id]
	if svc.FragHash {
		return false
	}
	var e conntrack.Entry4
	if !w.ct.LookupFast4(k, h, flags, now, &e) {
		return false
	}
	// keeps, for a packet that is not a fresh SYN.
	if e.Flags&conntrack.FlagReverse != 0 || !modeMatches(svc.Mode, e.Flags) || int(e.Backend) >= len(s.Backends) {
		return false
	}
	be := &s.Backends[e.Backend]
	if !be.Present || be.Service != svc.ID || be.State == StateDown || (be.Egress.MTU > 0 && ipLen > be.Egress.MTU) {
		return false
	}
	b, rxLen := f.Bytes(), f.Len // (a tunnel rewrite changes f.Len)
	switch svc.Mode {
	case ModeDSR:
		encap.SetMACs(b, &be.Egress)
	case ModeTunnel, ModeL3DSR:
		// The general rewrites, with the few header fields they read
		// (each stored once and read at its own width); a verdict other
		// than Forward leaves the frame as it was, for the full pipeline
		// to answer (too big: the ICMP error).
		p := &w.fp
		p.L3Off, p.L4Off, p.End, p.Tagged = packet.EthernetLen, packet.EthernetLen+packet.IPv4MinLen, uint16(packet.EthernetLen+ipLen), false
		p.Family, p.Proto, p.TOS, p.DF, p.Frag = 4, k.Proto, b[packet.EthernetLen+1], b[packet.EthernetLen+6]&0x40 != 0, packet.FragNone
		if directRewrite(f, p, svc, be, uint32(h)) != encap.Forward {
			return false
		}
	case ModeNAT:
		if be.Endpoint.V6 {
			return false
		}
		encap.Translate4(b, k.Proto, nil, &be.Endpoint, &be.Egress)
	default: // ModeFullNAT
		if int(e.SNATAddr) >= len(s.SNAT) || s.SNAT[e.SNATAddr].V6 || be.Endpoint.V6 {
			return false
		}
		snat := encap.Endpoint{Addr: s.SNAT[e.SNATAddr], Port: e.SNATPort}
		encap.Translate4(b, k.Proto, &snat, &be.Endpoint, &be.Egress)
	}
	w.c.RxBytes += uint64(rxLen)
	w.fastHits++
	w.txTo(out, f, be.Iface, svc.ID, be.ID)
	return true
}

// reply4 is established4 for a packet to no service: a nat or fullnat
// backend's reply, translated back by its reverse entry (reply, for the
// case of a lock-free hit on an IPv4 service). Anything else, replies
// without state included, goes to the full pipeline.
func (w *Worker) reply4(s *Snapshot, f *encap.Frame, k conntrack.Flow4, h uint64, flags uint8, ipLen int, now int64, out *Result) bool {
	var e conntrack.Entry4
	if !w.ct.LookupFast4(k, h, flags, now, &e) || e.Flags&conntrack.FlagReverse == 0 {
		return false
	}
	svc := s.Service(e.Service)
	if svc == nil || svc.VIP.V6 || s.Backend(e.Backend) == nil || (s.Reply.MTU > 0 && ipLen > s.Reply.MTU) {
		return false
	}
	b, rxLen := f.Bytes(), f.Len
	vip := encap.Endpoint{Addr: svc.VIP, Port: e.VPort}
	if e.Flags&conntrack.FlagFullNAT != 0 {
		client := encap.Endpoint{Port: e.PeerPort}
		copy(client.IP[:4], e.PeerIP[:])
		encap.Translate4(b, k.Proto, &vip, &client, &s.Reply)
	} else {
		encap.Translate4(b, k.Proto, &vip, nil, &s.Reply)
	}
	w.c.RxBytes += uint64(rxLen)
	w.c.Replies++
	w.fastHits++
	w.txTo(out, f, s.ReplyIface, svc.ID, e.Backend)
	return true
}
