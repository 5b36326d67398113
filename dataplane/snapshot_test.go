package dataplane

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestBuildRejectsBadSpecsNamingTheField(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Spec)
		field string
	}{
		{"no interfaces", func(s *Spec) { s.Ifaces = nil }, "Ifaces"},
		{"duplicate name", func(s *Spec) { s.Services = append(s.Services, s.Services[0]) }, "Services[1].Name"},
		{"same vip port proto", func(s *Spec) {
			c := s.Services[0]
			c.Name = "other"
			s.Services = append(s.Services, c)
		}, "Services[1].VIP"},
		{"l3dsr without dscp", func(s *Spec) { s.Services[0].Mode = ModeL3DSR; s.Services[0].DSCP = 0 }, "Services[0].DSCP"},
		{"port translation in dsr", func(s *Spec) { s.Services[0].Backends[0].Port = 8080 }, "Services[0].Backends[0].Port"},
		{"nat across families", func(s *Spec) {
			s.Services[0].Mode = ModeNAT
			s.Services[0].Backends[0].Address = netip.MustParseAddr("2001:db8::1")
		}, "Services[0].Backends[0].Address"},
		{"fullnat without snat", func(s *Spec) { s.Services[0].Mode = ModeFullNAT; s.SNAT4 = nil }, "Services[0].Mode"},
		{"frag_hash with nat", func(s *Spec) { s.Services[0].Mode = ModeNAT; s.Services[0].FragHash = true }, "Services[0].FragHash"},
		{"frag_hash with rr", func(s *Spec) { s.Services[0].FragHash = true; s.Services[0].Scheduler = SchedRR }, "Services[0].FragHash"},
		{"snat is a vip", func(s *Spec) { s.SNAT4 = []netip.Addr{vip4} }, "SNAT4[0]"},
		{"l3dsr dscp shared by two vips", func(s *Spec) {
			s.Services[0].Mode, s.Services[0].DSCP = ModeL3DSR, 9
			c := s.Services[0]
			c.Name, c.VIP = "other", netip.MustParseAddr("198.51.100.11")
			s.Services = append(s.Services, c)
		}, "Services[1].DSCP"},
		{"duplicate backend", func(s *Spec) {
			s.Services[0].Backends = append(s.Services[0].Backends, s.Services[0].Backends[0])
		}, "Services[0].Backends[2].Address"},
	}
	for _, c := range cases {
		spec := testSpec(ModeDSR, SchedMaglev, false, 2)
		c.edit(&spec)
		_, err := Build(spec, nil)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %v, want one naming %s", c.name, err, c.field)
		}
	}
}

func TestBackendByKey(t *testing.T) {
	s := mustBuild(t, testSpec(ModeNAT, SchedMaglev, false, 2), nil)
	be := s.BackendByKey("web", netip.MustParseAddrPort("10.0.0.12:8080"))
	if be == nil || be.Addr.IP[3] != 12 {
		t.Fatalf("BackendByKey: %+v", be)
	}
	if s.BackendByKey("web", netip.MustParseAddrPort("10.0.0.99:8080")) != nil {
		t.Fatal("found a backend that does not exist")
	}
}

func TestBuildReusesUnchangedServices(t *testing.T) {
	spec := testSpec(ModeDSR, SchedMaglev, false, 4)
	other := spec.Services[0]
	other.Name, other.VIP = "other", netip.MustParseAddr("198.51.100.99")
	other.Backends = append([]BackendSpec(nil), other.Backends...)
	spec.Services = append(spec.Services, other)
	s1 := mustBuild(t, spec, nil)
	// Changing the caller's spec after Build must not leak into s1.
	spec.Services[0].Backends[0].Weight = 7
	s2 := mustBuild(t, spec, s1)
	web1, web2 := s1.ServiceByName("web"), s2.ServiceByName("web")
	if web1.Maglev == web2.Maglev {
		t.Fatal("a changed service kept its Maglev table")
	}
	if s2.Backend(web2.Backends[0]).Weight != 7 {
		t.Fatal("the change did not reach the new snapshot")
	}
	if o1, o2 := s1.ServiceByName("other"), s2.ServiceByName("other"); o1.Maglev != o2.Maglev || o1.ID != o2.ID {
		t.Fatal("an unchanged service was rebuilt")
	}
	// A changed global (a new router MAC) rebuilds every backend.
	spec.Router = [6]byte{2, 0, 0, 0, 0, 9}
	s3 := mustBuild(t, spec, s2)
	for _, name := range []string{"web", "other"} {
		svc := s3.ServiceByName(name)
		for _, bid := range svc.Backends {
			if b := s3.Backend(bid); b.Egress.Dst != spec.Router && b.Egress.Dst == s2.Backend(bid).Egress.Dst && spec.Services[0].Backends[0].MAC == ([6]byte{}) {
				t.Fatalf("%s backend %d kept the old router MAC", name, bid)
			}
		}
	}
	// Lookups keep working through a reused service.
	if s3.BackendByKey("other", netip.AddrPortFrom(spec.Services[1].Backends[0].Address, spec.Services[1].Backends[0].Port)) == nil {
		t.Fatal("reused backend not found by key")
	}
}
