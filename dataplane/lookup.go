package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// Tuple is a flow as a client would send it.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Proto            uint8 // packet.ProtoTCP or packet.ProtoUDP
}

// FlowDecision is what the dataplane would do with a flow's next packet.
type FlowDecision struct {
	Action   Action
	Reason   Reason // why it would be dropped or passed
	Service  string
	Mode     Mode
	Backend  string         // backend key, "address:port"
	Addr     netip.AddrPort // backend address and port
	Existing bool           // the flow is in conntrack (else: scheduled now; always false for frag_hash services)
}

// LookupFlow answers "which backend gets this flow?" by running the real
// pipeline (Worker.Process) on a synthesised packet of the flow, with a
// worker in dry-run mode: conntrack is only peeked at (nothing refreshed,
// inserted or expired) and no SNAT port is taken. Schedulers with
// per-worker state (rr, wrr) answer as a fresh worker would. This is the
// API's flow lookup; it never re-implements the decision.
func LookupFlow(s *Snapshot, ct *conntrack.Table, t Tuple, now int64) (FlowDecision, error) {
	var d FlowDecision
	frame, err := synthesize(t)
	if err != nil {
		return d, err
	}
	w := NewWorker(ct, 0)
	w.dry = true
	const room = 128
	buf := make([]byte, room+len(frame))
	copy(buf[room:], frame)
	frames := []encap.Frame{{Buf: buf, Off: room, Len: len(frame)}}
	res := make([]Result, 1)
	w.Process(s, frames, res, now)
	r := res[0]
	d.Action, d.Reason = r.Action, r.Reason
	if r.HasBackend {
		svc, be := s.Service(r.Service), s.Backend(r.Backend)
		if svc == nil || be == nil {
			return d, errors.New("dataplane: lookup named an unknown service or backend")
		}
		d.Service, d.Mode = svc.Name, svc.Mode
		d.Backend = be.Key[len(svc.Name)+1:]
		ap := netip.AddrFrom16(be.Addr.IP)
		if !be.Addr.V6 {
			ap = netip.AddrFrom4([4]byte(be.Addr.IP[:4]))
		}
		d.Addr = netip.AddrPortFrom(ap, be.Port)
		d.Existing = w.c.NewFlows == 0 && !svc.FragHash // frag_hash services keep no state
	}
	return d, nil
}

// synthesize builds a minimal, well-formed Ethernet frame of the flow: a
// TCP SYN or a UDP datagram.
func synthesize(t Tuple) ([]byte, error) {
	src, dst := t.Src.Unmap(), t.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("dataplane: tuple addresses %v and %v must be valid and of one family", t.Src, t.Dst)
	}
	var l4 []byte
	switch t.Proto {
	case packet.ProtoTCP:
		l4 = make([]byte, packet.TCPMinLen)
		l4[12], l4[13] = 5<<4, packet.TCPSyn
	case packet.ProtoUDP:
		l4 = make([]byte, packet.UDPLen)
		binary.BigEndian.PutUint16(l4[4:6], packet.UDPLen)
	default:
		return nil, fmt.Errorf("dataplane: protocol %d: want tcp (6) or udp (17)", t.Proto)
	}
	binary.BigEndian.PutUint16(l4[0:2], t.SrcPort)
	binary.BigEndian.PutUint16(l4[2:4], t.DstPort)
	f := make([]byte, packet.EthernetLen, 80)
	if src.Is4() {
		binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv4)
		ip := make([]byte, packet.IPv4MinLen)
		ip[0], ip[8], ip[9] = 0x45, 64, t.Proto
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)+len(l4)))
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:16], s4[:])
		copy(ip[16:20], d4[:])
		packet.IPv4(ip).SetChecksum(packet.IPv4(ip).ComputeChecksum())
		f = append(f, ip...)
	} else {
		binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv6)
		ip := make([]byte, packet.IPv6Len)
		ip[0], ip[6], ip[7] = 0x60, t.Proto, 64
		binary.BigEndian.PutUint16(ip[4:6], uint16(len(l4)))
		s16, d16 := src.As16(), dst.As16()
		copy(ip[8:24], s16[:])
		copy(ip[24:40], d16[:])
		f = append(f, ip...)
	}
	return append(f, l4...), nil
}
