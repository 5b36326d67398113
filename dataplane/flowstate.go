package dataplane

import (
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/internal/packet"
)

// flowEntry is a family-neutral copy of a conntrack entry.
type flowEntry struct {
	Backend, Service uint32
	PeerIP           [16]byte
	PeerPort, VPort  uint16
	SNATPort         uint16
	SNATAddr         uint8
	State, Flags     uint8
}

func key4(p *packet.Parsed) conntrack.Key4 {
	return conntrack.Key4{SrcIP: [4]byte(p.Src[:4]), DstIP: [4]byte(p.Dst[:4]), SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
}

func key6(p *packet.Parsed) conntrack.Key6 {
	return conntrack.Key6{SrcIP: p.Src, DstIP: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, Proto: p.Proto}
}

// lookup finds the conntrack entry of the packet's tuple as received and
// copies it into w.fe.
func (w *Worker) lookup(p *packet.Parsed, now int64) bool {
	f := &w.fe
	if p.Family == 4 {
		k := key4(p)
		var e conntrack.Entry4
		var ok bool
		if w.dry {
			e, ok = w.ct.Peek4(&k, now)
		} else {
			e, ok = w.ct.Lookup4(&k, p.TCPFlags, now)
		}
		if ok {
			f.Backend, f.Service, f.PeerPort, f.VPort = e.Backend, e.Service, e.PeerPort, e.VPort
			f.SNATPort, f.SNATAddr, f.State, f.Flags = e.SNATPort, e.SNATAddr, e.State, e.Flags
			copy(f.PeerIP[:4], e.PeerIP[:])
		}
		return ok
	}
	k := key6(p)
	var e conntrack.Entry6
	var ok bool
	if w.dry {
		e, ok = w.ct.Peek6(&k, now)
	} else {
		e, ok = w.ct.Lookup6(&k, p.TCPFlags, now)
	}
	if ok {
		f.Backend, f.Service, f.PeerPort, f.VPort = e.Backend, e.Service, e.PeerPort, e.VPort
		f.SNATPort, f.SNATAddr, f.State, f.Flags = e.SNATPort, e.SNATAddr, e.State, e.Flags
		f.PeerIP = e.PeerIP
	}
	return ok
}

// remove deletes the packet's entry (and, for NAT pairs, its partner).
func (w *Worker) remove(p *packet.Parsed) {
	if p.Family == 4 {
		k := key4(p)
		w.ct.Delete4(&k)
		return
	}
	k := key6(p)
	w.ct.Delete6(&k)
}

// insert records a dsr/tunnel/l3dsr flow.
func (w *Worker) insert(p *packet.Parsed, e *flowEntry, now int64) error {
	st := conntrack.InitialState(p.Proto, p.TCPFlags)
	if p.Family == 4 {
		k := key4(p)
		return w.ct.Insert4(&k, conntrack.Entry4{Backend: e.Backend, Service: e.Service, State: st}, now)
	}
	k := key6(p)
	return w.ct.Insert6(&k, conntrack.Entry6{Backend: e.Backend, Service: e.Service, State: st}, now)
}

// snatIndex is the SNAT address a dry-run fullnat flow would use: the
// first of its family.
func (w *Worker) snatIndex(s *Snapshot, p *packet.Parsed) uint8 {
	for i := range s.SNAT {
		if s.SNAT[i].V6 == (p.Family == 6) {
			return uint8(i)
		}
	}
	return 0
}

// insertNAT records both halves of a nat or fullnat flow; for fullnat it
// allocates the SNAT address and port first and stores them in e.
func (w *Worker) insertNAT(p *packet.Parsed, s *Snapshot, svc *Service, e *flowEntry, now int64, full bool) error {
	be := &s.Backends[e.Backend]
	bport := be.Port
	if bport == 0 {
		bport = p.DstPort
	}
	st := conntrack.InitialState(p.Proto, p.TCPFlags)
	flags := conntrack.FlagNAT
	if full {
		flags = conntrack.FlagFullNAT
	}
	if p.Family == 4 {
		fk := key4(p)
		fe := conntrack.Entry4{Backend: e.Backend, Service: e.Service, PeerIP: [4]byte(be.Addr.IP[:4]), VIP: fk.DstIP,
			PeerPort: bport, VPort: p.DstPort, State: st, Flags: flags}
		rk := conntrack.Key4{SrcIP: fe.PeerIP, DstIP: fk.SrcIP, SrcPort: bport, DstPort: p.SrcPort, Proto: p.Proto}
		if full {
			idx, port, ok := w.ct.AllocSNAT4(uint32(w.hash), now)
			if !ok {
				return conntrack.ErrSNATExhausted
			}
			fe.SNATAddr, fe.SNATPort = idx, port
			e.SNATAddr, e.SNATPort = idx, port
			rk.DstIP, rk.DstPort = [4]byte(s.SNAT[idx].IP[:4]), port
		}
		re := conntrack.Entry4{Backend: e.Backend, Service: e.Service, PeerIP: fk.SrcIP, VIP: fk.DstIP, PeerPort: p.SrcPort,
			VPort: p.DstPort, SNATAddr: fe.SNATAddr, SNATPort: fe.SNATPort, State: st, Flags: flags | conntrack.FlagReverse}
		// On error InsertNAT4 has already returned the SNAT port.
		return w.ct.InsertNAT4(&fk, fe, &rk, re, now)
	}
	fk := key6(p)
	fe := conntrack.Entry6{Backend: e.Backend, Service: e.Service, PeerIP: be.Addr.IP, VIP: fk.DstIP,
		PeerPort: bport, VPort: p.DstPort, State: st, Flags: flags}
	rk := conntrack.Key6{SrcIP: fe.PeerIP, DstIP: fk.SrcIP, SrcPort: bport, DstPort: p.SrcPort, Proto: p.Proto}
	if full {
		idx, port, ok := w.ct.AllocSNAT6(uint32(w.hash), now)
		if !ok {
			return conntrack.ErrSNATExhausted
		}
		fe.SNATAddr, fe.SNATPort = idx, port
		e.SNATAddr, e.SNATPort = idx, port
		rk.DstIP, rk.DstPort = s.SNAT[idx].IP, port
	}
	re := conntrack.Entry6{Backend: e.Backend, Service: e.Service, PeerIP: fk.SrcIP, VIP: fk.DstIP, PeerPort: p.SrcPort,
		VPort: p.DstPort, SNATAddr: fe.SNATAddr, SNATPort: fe.SNATPort, State: st, Flags: flags | conntrack.FlagReverse}
	return w.ct.InsertNAT6(&fk, fe, &rk, re, now)
}
