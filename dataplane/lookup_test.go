package dataplane

import (
	"net/netip"
	"testing"
)

func TestLookupFlowRunsThePipeline(t *testing.T) {
	spec := testSpec(ModeNAT, SchedMaglev, false, 4)
	s1 := mustBuild(t, spec, nil)
	ct := newCT(t, 1<<12)
	w := NewWorker(ct, 0)
	// New flows: the lookup agrees with what a real packet then gets.
	for i := 0; i < 50; i++ {
		tu := Tuple{Src: client(i), Dst: vip4, SrcPort: 5555, DstPort: 80, Proto: 6}
		d, err := LookupFlow(s1, ct, tu, sec)
		if err != nil {
			t.Fatal(err)
		}
		if d.Existing || d.Action != ActTx || d.Service != "web" || d.Mode != ModeNAT {
			t.Fatalf("lookup of a new flow: %+v", d)
		}
		r, _ := run(w, s1, pkt{src: client(i), dst: vip4, sport: 5555, dport: 80, flags: "S"}.bytes(t), sec)
		if got := s1.Backend(r.Backend); d.Addr != netip.AddrPortFrom(netip.AddrFrom4([4]byte(got.Addr.IP[:4])), 8080) {
			t.Fatalf("lookup said %v, the packet went to %v", d.Addr, got.Addr)
		}
	}
	if ct.Len() != 100 { // 50 NAT pairs from the real packets, none from lookups
		t.Fatalf("conntrack has %d entries, want 100", ct.Len())
	}
	// After a backend set change the lookup follows conntrack, not Maglev.
	spec.Services[0].Backends = append(spec.Services[0].Backends, BackendSpec{Address: netip.MustParseAddr("10.0.0.99"), Port: 8080, Weight: 10000, MAC: beMAC(99)})
	s2 := mustBuild(t, spec, s1)
	for i := 0; i < 50; i++ {
		tu := Tuple{Src: client(i), Dst: vip4, SrcPort: 5555, DstPort: 80, Proto: 6}
		d, _ := LookupFlow(s2, ct, tu, 2*sec)
		before, _ := LookupFlow(s1, ct, tu, 2*sec)
		if !d.Existing || d.Addr != before.Addr {
			t.Fatalf("established flow %d: lookup %+v, was %+v", i, d, before)
		}
	}
	// Not a service: passed.
	if d, _ := LookupFlow(s2, ct, Tuple{Src: client(1), Dst: netip.MustParseAddr("192.0.2.1"), SrcPort: 1, DstPort: 80, Proto: 6}, sec); d.Action != ActPass {
		t.Fatalf("non-VIP: %+v", d)
	}
	if _, err := LookupFlow(s2, ct, Tuple{Src: client(1), Dst: vip6, Proto: 6}, sec); err == nil {
		t.Fatal("mixed families accepted")
	}
}
