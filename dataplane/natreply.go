package dataplane

import (
	"encoding/binary"

	"github.com/xlb/xlb/encap"
)

// This file serves nat flows without conntrack state. nat keeps the
// client's address, so both directions can be translated from the
// configuration alone: a client's packet by consistent hash (Maglev gives
// every packet of the flow the same backend), a backend's reply by its
// source, when that address and port belong to the backends of exactly
// one nat service (the same sources the steering program hands to xlb as
// nat return traffic). So a full connection table (a SYN flood), a table
// that lost an entry, or a restart that found none, never stops a nat
// service. fullnat cannot do without state: its SNAT port is the only
// record of the client.

// natReplies maps a nat backend's address, port and protocol to its
// service, for the snapshot it was built from. Open addressing over a
// power-of-two slice: one hash and a probe or two per reply, no map.
type natReplies struct {
	snap  *Snapshot
	slots []natSlot
	mask  uint32
}

type natSlot struct {
	addr      encap.Addr
	port      uint16 // 0: any port (a service on every port without translation)
	proto     uint8
	used      bool
	ambiguous bool // the source belongs to more than one service: no translation
	svc, be   uint32
}

func natKeyHash(a *encap.Addr, port uint16, proto uint8) uint32 {
	h := mix(binary.LittleEndian.Uint64(a.IP[0:8]) ^ uint64(port)<<48 ^ uint64(proto)<<40)
	return uint32(mix(h ^ binary.LittleEndian.Uint64(a.IP[8:16])))
}

// build indexes the backends of s's nat and fullnat services by the source
// their replies carry (fullnat ones only to mark a shared source
// ambiguous).
func (n *natReplies) build(s *Snapshot) {
	n.snap = s
	count := 0
	for i := range s.Services {
		if svc := &s.Services[i]; svc.Present && (svc.Mode == ModeNAT || svc.Mode == ModeFullNAT) {
			count += len(svc.Backends)
		}
	}
	size := 16
	for size < 2*count {
		size <<= 1
	}
	n.slots, n.mask = make([]natSlot, size), uint32(size-1)
	for i := range s.Services {
		svc := &s.Services[i]
		if !svc.Present || (svc.Mode != ModeNAT && svc.Mode != ModeFullNAT) {
			continue
		}
		for _, id := range svc.Backends {
			be := &s.Backends[id]
			port := be.Port
			if port == 0 {
				port = svc.Port // no translation: replies come from the service port (0: any)
			}
			sl := n.find(&be.Addr, port, svc.Proto)
			if sl.used {
				sl.ambiguous = sl.ambiguous || sl.svc != svc.ID || svc.Mode != ModeNAT
				continue
			}
			*sl = natSlot{addr: be.Addr, port: port, proto: svc.Proto, used: true, ambiguous: svc.Mode != ModeNAT, svc: svc.ID, be: id}
		}
	}
}

// find returns the slot of the key, or the empty slot where it belongs.
func (n *natReplies) find(a *encap.Addr, port uint16, proto uint8) *natSlot {
	for i := natKeyHash(a, port, proto); ; i++ {
		sl := &n.slots[i&n.mask]
		if !sl.used || sl.port == port && sl.proto == proto && sl.addr == *a {
			return sl
		}
	}
}

// replyStateless translates a reply from a nat backend that has no
// conntrack entry (see the top of the file). ok is false when the packet
// is not such a reply.
func (w *Worker) replyStateless(s *Snapshot, x *flow) (Result, bool) {
	p, f := x.p, x.f
	if w.nat.snap != s {
		w.nat.build(s)
	}
	src := encap.Addr{V6: p.Family == 6}
	if src.V6 {
		src.IP = p.Src
	} else {
		copy(src.IP[:4], p.Src[:4])
	}
	sl := w.nat.find(&src, p.SrcPort, p.Proto)
	if !sl.used {
		sl = w.nat.find(&src, 0, p.Proto)
	}
	if !sl.used || sl.ambiguous {
		return Result{}, false
	}
	for i := range s.SNAT {
		if s.SNAT[i].V6 == src.V6 && (src.V6 && s.SNAT[i].IP == p.Dst || !src.V6 && [4]byte(s.SNAT[i].IP[:4]) == [4]byte(p.Dst[:4])) {
			return Result{}, false // a fullnat reply that lost its entry
		}
	}
	svc := &s.Services[sl.svc]
	vip := encap.Endpoint{Addr: svc.VIP, Port: svc.Port}
	if svc.Port == 0 {
		vip.Port = p.SrcPort
	}
	if v := encap.NATReply(f.Bytes(), p, &vip, &s.Reply); v != encap.Forward {
		return w.rewriteFailed(v), true
	}
	w.c.Replies++
	w.c.StatelessReplies++
	return w.tx(f, s.ReplyIface, svc.ID, sl.be), true
}

// stateless serves a new flow without state after the table refused it:
// the consistent hash gives every packet of the flow the same backend.
func (w *Worker) stateless(svc *Service, x *flow) error {
	w.c.Stateless++
	if id, ok := svc.Maglev.Lookup(x.hash); ok {
		x.e.Backend = id
	}
	return nil
}
