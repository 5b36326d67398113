package dataplane

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/testutil"
)

// allocRuns is the number of measured calls per path in the zero-allocation
// tests (testutil.Mallocs makes one more, unmeasured).
const allocRuns = 50

// allocsPerFrame runs the frames one Process call each, every frame
// restored from its bytes into one buffer first (frames[i] on call i, the
// last one again when they run out), and returns the allocations of all
// calls after a first, unmeasured one. now advances 1 µs per call.
func allocsPerFrame(w *Worker, s *Snapshot, frames [][]byte, now *int64) uint64 {
	fr := []encap.Frame{frameOf(make([]byte, 2048))}
	res := make([]Result, 1)
	i := 0
	return testutil.Mallocs(allocRuns, func() {
		b := frames[min(i, len(frames)-1)]
		i++
		copy(fr[0].Buf[headroom:], b)
		fr[0].Off, fr[0].Len = headroom, len(b)
		*now += 1000
		w.Process(s, fr, res, *now)
	})
}

// TestPerPacketPathsZeroAllocs asserts that no per-packet path allocates:
// new flows (a fresh port every call), established flows, nat and fullnat
// replies (with state and, for nat, without), ICMP echo and ICMP errors,
// frames passed or dropped, checksum fixing, a packet too big for the
// egress, a frag_hash service, in every mode and both families, on a
// small table and on one large enough for the prefetch pass.
func TestPerPacketPathsZeroAllocs(t *testing.T) {
	for _, mode := range []Mode{ModeDSR, ModeTunnel, ModeL3DSR, ModeNAT, ModeFullNAT} {
		for _, v6 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v6=%v", mode, v6), func(t *testing.T) { perPacketZeroAllocs(t, mode, v6, 1<<12) })
		}
	}
	if testing.Short() {
		return
	}
	t.Run("prefetch", func(t *testing.T) {
		for _, mode := range []Mode{ModeDSR, ModeFullNAT} {
			for _, v6 := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/v6=%v", mode, v6), func(t *testing.T) { perPacketZeroAllocs(t, mode, v6, prefetchFlows) })
			}
		}
	})
	t.Run("batch", func(t *testing.T) {
		// A mixed batch of 64 frames through the prefetch pass.
		s := mustBuild(t, testSpec(ModeFullNAT, SchedMaglev, false, 4), nil)
		w := NewWorker(newCT(t, 4*prefetchFlows), 0)
		fillTable(t, w, s, prefetchFlows, false)
		prefetchOn(t, w, s)
		frames := make([]encap.Frame, BatchSize)
		orig := make([][]byte, BatchSize)
		for i := range orig {
			switch i % 4 {
			case 0, 1:
				orig[i] = pkt{src: client(i), dst: vip4, sport: 7000, dport: 80, flags: "A", payload: 20}.bytes(t)
			case 2:
				orig[i] = pkt{src: client6(i), dst: vip6, sport: 7000, dport: 80, flags: "A"}.bytes(t) // no service: passed
			default:
				orig[i] = icmpEcho(t, client(i), vip4)
			}
			frames[i] = frameOf(orig[i])
		}
		res := make([]Result, BatchSize)
		now := sec
		w.Process(s, frames, res, now)
		if !w.prefetch {
			t.Fatal("prefetch is off")
		}
		n := testutil.Mallocs(allocRuns, func() {
			for i := range frames {
				copy(frames[i].Buf[headroom:], orig[i])
				frames[i].Off, frames[i].Len = headroom, len(orig[i])
			}
			now += 1000
			w.Process(s, frames, res, now)
		})
		if n != 0 {
			t.Errorf("%d allocations in %d batches", n, allocRuns)
		}
	})
}

// prefetchOn runs frames through w until it has checked the table's size
// (every prefetchCheck batches) and turned the prefetch pass on.
func prefetchOn(t *testing.T, w *Worker, s *Snapshot) {
	t.Helper()
	echo := icmpEcho(t, client(1), vip4)
	for w.batch%prefetchCheck != 0 {
		run(w, s, echo, sec)
	}
	run(w, s, echo, sec)
	if !w.prefetch {
		t.Fatalf("prefetch is off with %d entries", w.ct.Len())
	}
}

// fillTable inserts n flows of clients 100.64.x.y (or 2001:db8:f::x) so
// that the table holds at least n entries.
func fillTable(t *testing.T, w *Worker, s *Snapshot, n int, v6 bool) {
	t.Helper()
	vip := vip4
	if v6 {
		vip = vip6
	}
	frames := make([]encap.Frame, BatchSize)
	res := make([]Result, BatchSize)
	for i := 0; w.ct.Len() < n; i += BatchSize {
		for j := range frames {
			k := i + j
			src := netip.AddrFrom4([4]byte{100, 64 + byte(k>>16), byte(k >> 8), byte(k)})
			if v6 {
				a := netip.MustParseAddr("2001:db8:f::").As16()
				a[12], a[13], a[14], a[15] = byte(k>>24), byte(k>>16), byte(k>>8), byte(k)
				src = netip.AddrFrom16(a)
			}
			frames[j] = frameOf(pkt{src: src, dst: vip, sport: 5000, dport: 80, flags: "A"}.bytes(t))
		}
		w.Process(s, frames, res, sec)
		if i > 4*n {
			t.Fatalf("table holds %d entries, want %d", w.ct.Len(), n)
		}
	}
}

func perPacketZeroAllocs(t *testing.T, mode Mode, v6 bool, flows int) {
	spec := testSpec(mode, SchedMaglev, v6, 4)
	spec.Ifaces[0].MTU = 1500
	s := mustBuild(t, spec, nil)
	ct := newCTWith(t, 2*flows+4096, func(c *conntrack.Config) { c.TCPSyn = time.Hour })
	w := NewWorker(ct, 0)
	vip, cl := vip4, client(7)
	if v6 {
		vip, cl = vip6, client6(7)
	}
	now := sec
	if flows >= prefetchFlows {
		fillTable(t, w, s, flows, v6)
		prefetchOn(t, w, s)
	}
	check := func(name string, frames [][]byte, want Action) {
		t.Helper()
		r, _ := run(w, s, frames[0], now)
		if r.Action != want {
			t.Fatalf("%s: %+v, want %v", name, r, want)
		}
		if n := allocsPerFrame(w, s, frames, &now); n != 0 {
			t.Errorf("%s: %d allocations in %d packets", name, n, allocRuns)
		}
	}
	// New flows: a fresh source port for every call.
	syns := make([][]byte, allocRuns+2)
	for i := range syns {
		syns[i] = pkt{src: cl, dst: vip, sport: uint16(20000 + i), dport: 80, flags: "S"}.bytes(t)
	}
	check("new flow", syns, ActTx)
	// An established flow (opened by the first SYN above).
	ack := pkt{src: cl, dst: vip, sport: 20000, dport: 80, flags: "A", payload: 100}.bytes(t)
	r, out := run(w, s, ack, now)
	check("established", [][]byte{ack}, ActTx)
	if mode == ModeNAT || mode == ModeFullNAT {
		// The backend's reply, to the source it saw.
		pk := verify(t, out)
		tcp := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
		nf := pk.NetworkLayer().NetworkFlow()
		seenSrc, _ := netip.AddrFromSlice(nf.Src().Raw())
		beAddr, _ := netip.AddrFromSlice(nf.Dst().Raw())
		reply := pkt{src: beAddr, dst: seenSrc, sport: uint16(tcp.DstPort), dport: uint16(tcp.SrcPort), flags: "A",
			payload: 100, srcMAC: beMAC(int(r.Backend))}.bytes(t)
		check("reply", [][]byte{reply}, ActTx)
		if mode == ModeNAT {
			// A reply from a backend without an entry: translated by its source.
			stateless := pkt{src: beAddr, dst: cl, sport: uint16(tcp.DstPort), dport: 1, flags: "A", srcMAC: beMAC(int(r.Backend))}.bytes(t)
			check("stateless reply", [][]byte{stateless}, ActTx)
		}
	}
	if !v6 {
		check("echo", [][]byte{icmpEcho(t, client(5), vip4)}, ActTx)
		// A router's fragmentation-needed about the VIP's reply to the flow.
		quoted := pkt{src: vip4, dst: cl, sport: 80, dport: 20000, flags: "A", payload: 1400}.bytes(t)[14:]
		check("icmp error", [][]byte{icmpFragNeeded(t, netip.MustParseAddr("192.0.2.254"), vip4, quoted[:28])}, ActTx)
	}
	// Over the egress MTU: IPv6 gets a packet-too-big reply, IPv4 without
	// DF is dropped.
	big := pkt{src: cl, dst: vip, sport: 20000, dport: 80, flags: "A", payload: 1500}.bytes(t)
	if v6 {
		check("too big", [][]byte{big}, ActTx)
	} else {
		check("too big", [][]byte{big}, ActDrop)
	}
	check("no service", [][]byte{pkt{src: cl, dst: vip, sport: 20000, dport: 81, flags: "A"}.bytes(t)}, ActPass)
	check("truncated", [][]byte{ack[:30]}, ActDrop)
	// checksum: fix recomputes every checksum.
	spec.Ifaces[0].Checksum = ChecksumFix
	s = mustBuild(t, spec, s)
	check("checksum fix", [][]byte{ack}, ActTx)
}

// TestFragHashZeroAllocs: a frag_hash service schedules every packet,
// fragments too, by hash, without state.
func TestFragHashZeroAllocs(t *testing.T) {
	spec := testSpec(ModeDSR, SchedMaglev, false, 4)
	spec.Services[0].Proto = 17
	spec.Services[0].FragHash = true
	s := mustBuild(t, spec, nil)
	w := NewWorker(newCT(t, 1<<12), 0)
	now := sec
	for _, p := range []pkt{
		{src: client(1), dst: vip4, sport: 9, dport: 80, udp: true, payload: 100},
		{src: client(1), dst: vip4, sport: 9, dport: 80, udp: true, payload: 100, mf: true},
		{src: client(1), dst: vip4, udp: true, payload: 100, fragOff: 100},
	} {
		b := p.bytes(t)
		if r, _ := run(w, s, b, now); r.Action != ActTx {
			t.Fatalf("%+v: %+v", p, r)
		}
		if n := allocsPerFrame(w, s, [][]byte{b}, &now); n != 0 {
			t.Errorf("%+v: %d allocations in %d packets", p, n, allocRuns)
		}
	}
}
