package daemon

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/mgmt"
)

// Stats sums the counters of every worker (mgmt.Dataplane).
func (d *Daemon) Stats() mgmt.Stats {
	s := d.snap.Load()
	st := mgmt.Stats{UptimeSeconds: time.Since(d.started).Seconds(), Generation: s.Gen, Workers: len(d.workers),
		Drops: map[string]uint64{}, Passes: map[string]uint64{}, Services: map[string]mgmt.ServiceStats{},
		Steering: map[string]map[string]uint64{}, Sockets: map[string]mgmt.SocketStats{}}
	var total dataplane.Counters
	for _, w := range d.workers {
		c := w.Counters()
		total.Add(&c)
		st.PerWorker = append(st.PerWorker, mgmt.TotalsFrom(&c))
	}
	st.Totals = mgmt.TotalsFrom(&total)
	st.Interfaces = map[string]map[string]uint64{}
	for i, ifc := range d.ifaces {
		if i < dataplane.MaxIfaces {
			st.Interfaces[ifc.net.Name] = map[string]uint64{"bad_checksum": total.BadChecksum[i]}
		}
	}
	for r := dataplane.Reason(1); r < dataplane.NumReasons; r++ {
		n := total.Reasons[r]
		switch r {
		case dataplane.PassNotIP, dataplane.PassNoService, dataplane.PassICMP:
			st.Passes[r.String()] = n
		default:
			st.Drops[r.String()] = n
		}
	}
	for i := range s.Services {
		svc := &s.Services[i]
		if !svc.Present {
			continue
		}
		ss := mgmt.ServiceStats{Backends: map[string]mgmt.ObjStats{}}
		for _, w := range d.workers {
			c := w.ServiceCounters(svc.ID)
			ss.Packets += c.Packets
			ss.Bytes += c.Bytes
			ss.NewFlows += c.NewFlows
		}
		for _, bid := range svc.Backends {
			var bc mgmt.ObjStats
			for _, w := range d.workers {
				c := w.BackendCounters(bid)
				bc.Packets += c.Packets
				bc.Bytes += c.Bytes
				bc.NewFlows += c.NewFlows
			}
			bc.Flows = d.ct.BackendFlows(bid)
			ss.Flows += bc.Flows
			ss.Backends[backendKey(svc, &s.Backends[bid])] = bc
		}
		cs := d.ct.ServiceStats(svc.ID)
		ss.Refused = cs.Refused
		for state, n := range cs.Evicted {
			if n > 0 {
				if ss.Evicted == nil {
					ss.Evicted = map[string]uint64{}
				}
				ss.Evicted[conntrack.StateName(uint8(state))] = n
			}
		}
		st.Services[svc.Name] = ss
	}
	for _, ifc := range d.ifaces {
		if ifc.steering == nil {
			continue
		}
		if c, err := ifc.steering.Counters(); err == nil {
			st.Steering[ifc.net.Name] = c.Map()
		}
	}
	for _, r := range d.runners {
		rs := r.Stats()
		st.Runners.RxBatches += rs.RxBatches
		st.Runners.TxDropped += rs.TxDropped
		st.Runners.PassDropped += rs.PassDropped
		st.Runners.FillStarved += rs.FillStarved
		st.Runners.CompletedTxs += rs.CompletedTxs
		st.Runners.Sleeps += rs.Sleeps
	}
	for _, sk := range d.socks {
		if ks, err := sk.Stats(); err == nil {
			st.Sockets[sockName(sk)] = mgmt.SocketStats{Mode: modeName(sk.Mode()), RxDropped: ks.RxDropped,
				RxInvalidDescs: ks.RxInvalidDescs, TxInvalidDescs: ks.TxInvalidDescs, RxRingFull: ks.RxRingFull,
				RxFillRingEmptyDescs: ks.RxFillRingEmptyDescs, TxRingEmptyDescs: ks.TxRingEmptyDescs,
				RxPackets: ks.RxPackets, TxPackets: ks.TxPackets, BusyPoll: ks.BusyPoll, NAPIID: ks.NAPIID, BusyPolls: ks.BusyPolls}
		}
	}
	cs := d.ct.Stats()
	st.Conntrack = mgmt.ConntrackStats{Entries: d.ct.Len(), Capacity: cs.Capacity4 + cs.Capacity6, HalfOpen: cs.HalfOpen,
		HalfOpenBudget: cs.HalfOpenBudget, EvictedHalfOpen: cs.EvictedHalfOpen, Evictions: cs.Evictions, Full: cs.Full,
		SNATInUse: cs.SNATInUse, SNATFree: cs.SNATFree}
	return st
}

// backendKey is the API's name of a backend: its address, or
// address:port when it has a port (config.Backend.Key).
func backendKey(svc *dataplane.Service, b *dataplane.Backend) string {
	k := b.Key[len(svc.Name)+1:]
	if ap, err := netip.ParseAddrPort(k); err == nil && ap.Port() == 0 {
		return ap.Addr().String()
	}
	return k
}

var stateNames = map[uint8]string{conntrack.StateSynSent: "syn_sent", conntrack.StateEstablished: "established",
	conntrack.StateClosing: "closing", conntrack.StateClosed: "closed", conntrack.StateUDP: "udp", conntrack.StateOther: "other"}

// Flows samples the connection table (mgmt.Dataplane): forward entries
// only (a NAT pair shows once), of one service or all.
func (d *Daemon) Flows(service string, limit int) ([]mgmt.Flow, error) {
	s := d.snap.Load()
	want := ^uint32(0)
	if service != "" {
		svc := s.ServiceByName(service)
		if svc == nil {
			return nil, fmt.Errorf("no service %q", service)
		}
		want = svc.ID
	}
	var out []mgmt.Flow
	add := func(svcID, beID uint32, proto uint8, src, dst netip.AddrPort, state uint8, snat netip.AddrPort) bool {
		if want != ^uint32(0) && svcID != want {
			return true
		}
		svc, be := s.Service(svcID), s.Backend(beID)
		if svc == nil || be == nil {
			return true
		}
		f := mgmt.Flow{Service: svc.Name, Protocol: protoName(proto), Client: src.String(), VIP: dst.String(),
			Backend: backendKey(svc, be), State: stateNames[state]}
		if snat.IsValid() {
			f.SNAT = snat.String()
		}
		out = append(out, f)
		return len(out) < limit
	}
	d.ct.Range(func(k *conntrack.Key, e *conntrack.Entry) bool {
		if e.Flags&conntrack.FlagReverse != 0 {
			return true
		}
		var snat netip.AddrPort
		if e.Flags&conntrack.FlagFullNAT != 0 {
			if ip, ok := d.ct.SNATIP(e.SNATAddr); ok {
				snat = netip.AddrPortFrom(ip, e.SNATPort)
			}
		}
		return add(e.Service, e.Backend, k.Proto, netip.AddrPortFrom(keyAddr(&k.SrcIP, k.V6), k.SrcPort),
			netip.AddrPortFrom(keyAddr(&k.DstIP, k.V6), k.DstPort), e.State, snat)
	})
	return out, nil
}

// keyAddr is an address of a conntrack key (IPv4 in the first four bytes).
func keyAddr(ip *[16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(*ip)
	}
	return netip.AddrFrom4([4]byte(ip[:4]))
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return fmt.Sprint(p)
}

// Lookup runs the real pipeline on a synthesised packet (mgmt.Dataplane).
func (d *Daemon) Lookup(t dataplane.Tuple) (dataplane.FlowDecision, error) {
	if d.ct == nil {
		return dataplane.FlowDecision{}, errors.New("daemon: not running")
	}
	return dataplane.LookupFlow(d.snap.Load(), d.ct, t, d.now())
}
