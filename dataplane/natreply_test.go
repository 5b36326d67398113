package dataplane

import (
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/testutil"
)

// TestNATWithoutState: a nat flow that has no conntrack entry (full table,
// lost entry, restart) is still served both ways: the client's packets by
// Maglev, the backend's replies by their source.
func TestNATWithoutState(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		s := mustBuild(t, testSpec(ModeNAT, SchedMaglev, v6, 3), nil)
		vip, cl := vip4, client(9)
		if v6 {
			vip, cl = vip6, client6(9)
		}
		// A table that refuses everything: no budget, full of fresh flows.
		ct := newCTWith(t, 16, func(c *conntrack.Config) { c.SynBudget = 0; c.Shards = 1; c.Capacity6 = 16 })
		for i := 0; ct.Len() < 32; i++ {
			k := conntrack.Key{SrcIP: [16]byte{1, 1, byte(i >> 8), byte(i)}, DstPort: 1, Proto: 17}
			_ = ct.Insert(&k, &conntrack.Entry{Service: 5}, sec)
			k.V6 = true
			_ = ct.Insert(&k, &conntrack.Entry{Service: 5}, sec)
			if i > 1000 {
				t.Fatal("cannot fill the table")
			}
		}
		w := NewWorker(ct, 0)
		first, out := run(w, s, pkt{src: cl, dst: vip, sport: 41000, dport: 80, flags: "S"}.bytes(t), sec)
		if first.Action != ActTx || w.Counters().Stateless != 1 {
			t.Fatalf("v6=%v: SYN %+v, stateless %d", v6, first, w.Counters().Stateless)
		}
		pk := verify(t, out)
		beAddr, _ := netip.AddrFromSlice(pk.NetworkLayer().NetworkFlow().Dst().Raw())
		// Every packet of the flow goes to the same backend.
		for i := range 5 {
			r, _ := run(w, s, pkt{src: cl, dst: vip, sport: 41000, dport: 80, flags: "A", payload: 10 * i}.bytes(t), sec)
			if r.Backend != first.Backend {
				t.Fatalf("packet %d to backend %d, first to %d", i, r.Backend, first.Backend)
			}
		}
		reply := pkt{src: beAddr, dst: cl, sport: 8080, dport: 41000, flags: "SA", srcMAC: beMAC(int(first.Backend))}.bytes(t)
		rr, rout := run(w, s, reply, sec)
		if c := w.Counters(); rr.Action != ActTx || rr.Backend != first.Backend || c.StatelessReplies != 1 || c.Replies != 1 {
			t.Fatalf("v6=%v: reply %+v, counters %+v", v6, rr, c)
		}
		rp := verify(t, rout)
		rt := rp.Layer(layers.LayerTypeTCP).(*layers.TCP)
		src, _ := netip.AddrFromSlice(rp.NetworkLayer().NetworkFlow().Src().Raw())
		if src != vip || rt.SrcPort != 80 || rt.DstPort != 41000 {
			t.Fatalf("reply from %v:%d", src, rt.SrcPort)
		}
		// Not a reply: another port of the backend, or to a SNAT address.
		snat := netip.MustParseAddr("10.0.0.2")
		if v6 {
			snat = netip.MustParseAddr("2001:db8:1::2")
		}
		for _, p := range []pkt{
			{src: beAddr, dst: cl, sport: 22, dport: 41000, flags: "A"},
			{src: beAddr, dst: snat, sport: 8080, dport: 41000, flags: "A"},
		} {
			if r, _ := run(w, s, p.bytes(t), sec); r.Action != ActPass {
				t.Fatalf("v6=%v %v→%v:%d: %+v", v6, p.src, p.dst, p.sport, r)
			}
		}
		frames, res := []encap.Frame{frameOf(reply)}, make([]Result, 1)
		buf := frames[0]
		if n := testutil.Mallocs(100, func() {
			frames[0] = buf
			copy(buf.Bytes(), reply)
			w.Process(s, frames, res, sec)
		}); n > 0 {
			t.Fatalf("%d allocations in 100 stateless replies", n)
		}
	}
}

// TestNATReplyAmbiguous: a backend address:port in two services has no
// stateless translation (which VIP would it be?).
func TestNATReplyAmbiguous(t *testing.T) {
	spec := testSpec(ModeNAT, SchedMaglev, false, 2)
	other := spec.Services[0]
	other.Name, other.VIP = "other", netip.MustParseAddr("198.51.100.20")
	spec.Services = append(spec.Services, other)
	s := mustBuild(t, spec, nil)
	w := NewWorker(newCT(t, 1024), 0)
	reply := pkt{src: netip.MustParseAddr("10.0.0.11"), dst: client(1), sport: 8080, dport: 41000, flags: "A"}.bytes(t)
	if r, _ := run(w, s, reply, sec); r.Action != ActPass || r.Reason != PassNoService {
		t.Fatalf("ambiguous reply: %+v", r)
	}
	// With an entry the reply is translated as before.
	r, _ := run(w, s, pkt{src: client(1), dst: vip4, sport: 41000, dport: 80, flags: "S"}.bytes(t), sec)
	be := s.Backends[r.Backend]
	reply = pkt{src: netip.AddrFrom4([4]byte(be.Addr.IP[:4])), dst: client(1), sport: 8080, dport: 41000, flags: "SA"}.bytes(t)
	if rr, _ := run(w, s, reply, sec); rr.Action != ActTx || w.Counters().StatelessReplies != 0 {
		t.Fatalf("reply with an entry: %+v", rr)
	}
}

// TestSynFlood: with the half-open budget a flood of SYNs to a nat VIP
// never pushes out an established flow, and every SYN is served.
func TestSynFlood(t *testing.T) {
	s := mustBuild(t, testSpec(ModeNAT, SchedMaglev, false, 2), nil)
	w := NewWorker(newCTWith(t, 256, func(c *conntrack.Config) { c.Shards = 4 }), 0)
	est, _ := run(w, s, pkt{src: client(1), dst: vip4, sport: 40000, dport: 80, flags: "S"}.bytes(t), sec)
	run(w, s, pkt{src: client(1), dst: vip4, sport: 40000, dport: 80, flags: "A"}.bytes(t), sec)
	for i := range 5000 {
		r, _ := run(w, s, pkt{src: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), dst: vip4, sport: uint16(i), dport: 80, flags: "S"}.bytes(t), sec)
		if r.Action != ActTx {
			t.Fatalf("SYN %d: %+v", i, r)
		}
	}
	if r, _ := run(w, s, pkt{src: client(1), dst: vip4, sport: 40000, dport: 80, flags: "A"}.bytes(t), sec); r.Backend != est.Backend {
		t.Fatal("established flow lost its backend")
	}
	k := ctKey(client(1), vip4, 40000, 80, 6)
	var e conntrack.Entry
	if !w.ct.Peek(&k, w.ct.Hash(&k), sec, &e) {
		t.Fatal("established flow's entry pushed out")
	}
	st := w.ct.Stats()
	if st.EvictedHalfOpen == 0 || st.HalfOpen > st.HalfOpenBudget {
		t.Fatalf("stats %+v", st)
	}
	if ss := w.ct.ServiceStats(0); ss.Evicted[conntrack.StateSynSent] == 0 || ss.Evicted[conntrack.StateEstablished] != 0 {
		t.Fatalf("service stats %+v", ss)
	}
}

// newCTNoBudget is newCT without the half-open budget: SYNs fill the table.
func newCTNoBudget(t testing.TB, capacity int) *conntrack.Table {
	return newCTWith(t, capacity, func(c *conntrack.Config) { c.SynBudget = 0 })
}
