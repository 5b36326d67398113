package dataplane

import (
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// icmpToVIP handles ICMP addressed to a VIP: echo requests are answered;
// errors quoting a VIP flow (fragmentation needed, packet too big, ...) go
// to the backend that owns the flow, translated the way the flow is;
// anything else is left to the kernel.
func (w *Worker) icmpToVIP(s *Snapshot, f *encap.Frame, now int64) Result {
	p := w.p
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
	fwd := packet.Parsed{Family: in.Family, Proto: in.Proto, Src: in.Dst, Dst: in.Src, SrcPort: in.DstPort, DstPort: in.SrcPort}
	e := &w.fe
	if !w.lookup(&fwd, now) || !usable(s, svc, e.Backend) {
		// Without state only a consistent hash can name the backend, and
		// only the modes that need no state can reach it.
		if svc.Mode == ModeNAT || svc.Mode == ModeFullNAT || svc.Scheduler != SchedMaglev {
			return w.drop(DropICMPNoFlow)
		}
		bid, ok := svc.Maglev.Lookup(flowHash(&fwd, s.Seed, svc.FragHash))
		if !ok {
			return w.drop(DropNoBackend)
		}
		*e = flowEntry{Backend: bid, Service: svc.ID}
	}
	be := &s.Backends[e.Backend]
	var v encap.Verdict
	switch svc.Mode {
	case ModeDSR, ModeTunnel, ModeL3DSR:
		v = directRewrite(f, p, svc, be, uint32(flowHash(&fwd, s.Seed, false)))
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
