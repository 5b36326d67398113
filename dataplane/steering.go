package dataplane

import (
	"net/netip"

	"github.com/xlb/xlb/dataplane/bpf"
)

// SteeringRules is the steering policy: exactly the traffic this
// snapshot's pipeline must receive, as rules for the XDP steering program
// of one interface.
//
//   - Every service's VIP, port and protocol; a port-0 rule as well for
//     frag_hash services (later fragments carry no port).
//   - ICMP/ICMPv6 to every VIP (echo, and errors about VIP flows).
//   - nat services: the backends' address and port as reply sources
//     (the program still passes replies addressed to a local address:
//     those answer the balancer's own connections, health checks).
//   - fullnat SNAT addresses, TCP and UDP, only within snatPorts: the
//     kernel's own connections from an SNAT address (a one-address
//     appliance's health checks and SSH) use ports outside that range.
//   - local are the interface's own addresses.
func (s *Snapshot) SteeringRules(local []netip.Addr, snatPorts [2]uint16) bpf.RuleSet {
	var rs bpf.RuleSet
	spec := s.spec
	seenICMP := map[netip.Addr]bool{}
	for _, svc := range spec.Services {
		vip := svc.VIP.Unmap()
		rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Port: svc.Port, Proto: svc.Proto})
		if svc.FragHash && svc.Port != 0 {
			rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Proto: svc.Proto})
		}
		if !seenICMP[vip] {
			seenICMP[vip] = true
			p := bpf.ProtoICMP
			if vip.Is6() {
				p = bpf.ProtoICMPv6
			}
			rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Proto: p})
		}
		if svc.Mode == ModeNAT {
			for _, b := range svc.Backends {
				port := b.Port
				if port == 0 {
					port = svc.Port // no translation: replies come from the service port
				}
				rs.BackendSources = append(rs.BackendSources, bpf.Rule{Addr: b.Address.Unmap(), Port: port, Proto: svc.Proto})
			}
		}
	}
	rs.SNAT = append(append(rs.SNAT, spec.SNAT4...), spec.SNAT6...)
	if len(rs.SNAT) > 0 {
		rs.SNATPorts = snatPorts
	}
	rs.Local = append(rs.Local, local...)
	return rs
}
