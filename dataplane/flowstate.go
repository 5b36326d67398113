package dataplane

import (
	"encoding/binary"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// flow is what the pipeline knows about the frame it is handling. It is
// passed from stage to stage; nothing of it stays in the Worker from one
// frame to the next.
type flow struct {
	f *encap.Frame
	p *packet.Parsed
	// key is the packet's 5-tuple as received and hash conntrack's hash of
	// it, computed once per packet (for TCP and UDP packets that are not
	// fragments) and used for everything the flow decides: the conntrack
	// lookup (and the prefetch before it), the Maglev lookup of a new flow,
	// the SNAT address of a fullnat flow and the flow label of tunnel mode.
	// A frag_hash service replaces hash by a hash of the addresses alone.
	key  conntrack.Key
	hash uint64
	// e is the flow's conntrack entry, or what newFlow decided for it.
	e conntrack.Entry
}

// keyed reports whether a frame decoded with r has a 5-tuple to look up.
func keyed(r packet.Reason, p *packet.Parsed) bool {
	return r == packet.OK && p.Frag == packet.FragNone && isL4(p.Proto)
}

// setKey fills x.key from the decoded packet and hashes it.
func (w *Worker) setKey(x *flow) {
	p, k := x.p, &x.key
	copyAddr(&k.SrcIP, &p.Src)
	copyAddr(&k.DstIP, &p.Dst)
	k.SrcPort, k.DstPort, k.Proto, k.V6 = p.SrcPort, p.DstPort, p.Proto, p.Family == 6
	x.hash = w.ct.Hash(k)
}

// copyAddr copies an address 8 bytes at a time: Decode has just stored it
// that way, and a 16-byte load of two recent 8-byte stores cannot be
// forwarded from the store buffer (a stall of tens of cycles).
func copyAddr(dst, src *[16]byte) {
	binary.LittleEndian.PutUint64(dst[0:8], binary.LittleEndian.Uint64(src[0:8]))
	binary.LittleEndian.PutUint64(dst[8:16], binary.LittleEndian.Uint64(src[8:16]))
}

// lookup finds the conntrack entry of key (hashed h) and copies it into
// *e; a dry-run worker only peeks.
func (w *Worker) lookup(k *conntrack.Key, h uint64, tcpFlags uint8, now int64, e *conntrack.Entry) bool {
	if w.dry {
		return w.ct.Peek(k, h, now, e)
	}
	return w.ct.Lookup(k, h, tcpFlags, now, e)
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
// allocates the SNAT address and port first and stores them in x.e.
func (w *Worker) insertNAT(s *Snapshot, x *flow, now int64, full bool) error {
	p, k, e := x.p, &x.key, &x.e
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
	// (Addresses are copied with copyAddr: the key's were just stored 8
	// bytes at a time.)
	fe := conntrack.Entry{Backend: e.Backend, Service: e.Service, PeerIP: be.Addr.IP,
		PeerPort: bport, VPort: k.DstPort, State: st, Flags: flags}
	copyAddr(&fe.VIP, &k.DstIP)
	rk := conntrack.Key{SrcIP: be.Addr.IP, SrcPort: bport, DstPort: k.SrcPort, Proto: k.Proto, V6: k.V6}
	copyAddr(&rk.DstIP, &k.SrcIP)
	if full {
		idx, port, ok := w.ct.AllocSNAT(k.V6, uint32(x.hash))
		if !ok {
			return conntrack.ErrSNATExhausted
		}
		fe.SNATAddr, fe.SNATPort = idx, port
		e.SNATAddr, e.SNATPort = idx, port
		rk.DstIP, rk.DstPort = s.SNAT[idx].IP, port
	}
	re := conntrack.Entry{Backend: e.Backend, Service: e.Service, PeerPort: k.SrcPort,
		VPort: k.DstPort, SNATAddr: fe.SNATAddr, SNATPort: fe.SNATPort, State: st, Flags: flags | conntrack.FlagReverse}
	copyAddr(&re.PeerIP, &k.SrcIP)
	copyAddr(&re.VIP, &k.DstIP)
	// On error InsertNAT has already returned the SNAT port.
	return w.ct.InsertNAT(k, &fe, &rk, &re, now)
}
