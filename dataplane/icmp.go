package dataplane

import (
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// icmpToVIP handles ICMP addressed to a VIP: echo requests are answered;
// errors quoting a VIP flow (fragmentation needed, packet too big, ...) go
// to the backend that owns the flow, translated the way the flow is;
// anything else is left to the kernel.
func (w *Worker) icmpToVIP(s *Snapshot, x *flow, now int64) Result {
	p, f := x.p, x.f
	if p.ICMPType == packet.ICMPv4EchoRequest && p.Proto == packet.ProtoICMP ||
		p.ICMPType == packet.ICMPv6EchoRequest && p.Proto == packet.ProtoICMPv6 {
		if encap.EchoReply(f.Bytes(), p) != encap.Forward {
			return w.drop(DropCannotRewrite)
		}
		w.c.EchoReplies++
		w.c.TxPackets++
		w.c.TxBytes += uint64(f.Len)
		return Result{Action: ActTx, Iface: w.ingress}
	}
	if !p.IsICMPError() || !p.Inner.Valid || !isL4(p.Inner.Proto) {
		return w.pass(PassICMP)
	}
	// The quoted packet went VIP:vport → client:cport; the flow's forward
	// tuple is the reverse of it.
	in := &p.Inner
	id, ok := s.vips.find(&in.Src, in.Family == 6, in.SrcPort, in.Proto)
	if !ok {
		return w.pass(PassICMP)
	}
	svc := &s.Services[id]
	// The flow's own key and hash: the backend and flow label its packets
	// got (a frag_hash service hashes the addresses alone).
	fk := conntrack.Key{SrcIP: in.Dst, DstIP: in.Src, SrcPort: in.DstPort, DstPort: in.SrcPort, Proto: in.Proto, V6: in.Family == 6}
	h := w.ct.Hash(&fk)
	if svc.FragHash {
		fwd := packet.Parsed{Family: in.Family, Proto: in.Proto, Src: in.Dst, Dst: in.Src}
		h = addrHash(&fwd, s.Seed)
	}
	e := &x.e
	if svc.FragHash || !w.lookup(&fk, h, 0, now, e) || !usable(s, svc, e.Backend) {
		// Without state only a consistent hash can name the backend, and
		// only the modes that need no state can reach it.
		if svc.Mode == ModeNAT || svc.Mode == ModeFullNAT || svc.Scheduler != SchedMaglev {
			return w.drop(DropICMPNoFlow)
		}
		bid, ok := svc.Maglev.Lookup(h)
		if !ok {
			return w.drop(DropNoBackend)
		}
		*e = conntrack.Entry{Backend: bid, Service: svc.ID}
	}
	be := &s.Backends[e.Backend]
	var v encap.Verdict
	switch svc.Mode {
	case ModeDSR, ModeTunnel, ModeL3DSR:
		v = directRewrite(f, p, svc, be, uint32(h))
	case ModeNAT:
		src := encap.Endpoint{Addr: be.Addr, Port: e.PeerPort}
		v = encap.ICMPError(f.Bytes(), p, nil, &be.Addr, &src, nil, &be.Egress)
	case ModeFullNAT:
		src := encap.Endpoint{Addr: be.Addr, Port: e.PeerPort}
		snat := encap.Endpoint{Addr: s.SNAT[e.SNATAddr], Port: e.SNATPort}
		v = encap.ICMPError(f.Bytes(), p, &snat.Addr, &be.Addr, &src, &snat, &be.Egress)
	}
	if v != encap.Forward {
		return w.rewriteFailed(v)
	}
	w.c.ICMPForwarded++
	return w.tx(f, be.Iface, svc.ID, be.ID)
}
