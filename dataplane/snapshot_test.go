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
		{"no interfaces", func(s *Spec) { s.Ifaces = nil }, "interfaces"},
		{"duplicate name", func(s *Spec) { s.Services = append(s.Services, s.Services[0]) }, "services[1].name"},
		{"same vip port proto", func(s *Spec) {
			c := s.Services[0]
			c.Name = "other"
			s.Services = append(s.Services, c)
		}, "services[1]"},
		{"l3dsr without dscp", func(s *Spec) { s.Services[0].Mode = ModeL3DSR; s.Services[0].DSCP = 0 }, "services[0].dscp"},
		{"port translation in dsr", func(s *Spec) { s.Services[0].Backends[0].Port = 8080 }, "services[0].backends[0].port"},
		{"nat across families", func(s *Spec) {
			s.Services[0].Mode = ModeNAT
			s.Services[0].Backends[0].Address = netip.MustParseAddr("2001:db8::1")
		}, "services[0].backends[0].address"},
		{"fullnat without snat", func(s *Spec) { s.Services[0].Mode = ModeFullNAT; s.SNAT4 = nil }, "services[0].mode"},
		{"frag_hash with nat", func(s *Spec) { s.Services[0].Mode = ModeNAT; s.Services[0].FragHash = true }, "services[0].frag_hash"},
		{"frag_hash with rr", func(s *Spec) { s.Services[0].FragHash = true; s.Services[0].Scheduler = SchedRR }, "services[0].frag_hash"},
		{"snat is a vip", func(s *Spec) { s.SNAT4 = []netip.Addr{vip4} }, "lb.snat.addresses[0]"},
		{"l3dsr dscp shared by two vips", func(s *Spec) {
			s.Services[0].Mode, s.Services[0].DSCP = ModeL3DSR, 9
			c := s.Services[0]
			c.Name, c.VIP = "other", netip.MustParseAddr("198.51.100.11")
			s.Services = append(s.Services, c)
		}, "services[1].dscp"},
		{"duplicate backend", func(s *Spec) {
			s.Services[0].Backends = append(s.Services[0].Backends, s.Services[0].Backends[0])
		}, "services[0].backends[2]"},
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
