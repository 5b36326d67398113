package dataplane

import (
	"net/netip"
	"reflect"
	"sort"
	"testing"

	"github.com/xlb/xlb/dataplane/bpf"
)

func TestSteeringRules(t *testing.T) {
	spec := testSpec(ModeNAT, SchedMaglev, false, 2)
	frag := ServiceSpec{Name: "dns", VIP: vip4, Port: 53, Proto: 17, Mode: ModeDSR, Scheduler: SchedMaglev, FragHash: true,
		Backends: []BackendSpec{{Address: netip.MustParseAddr("10.0.0.31"), Weight: 1}}}
	v6 := ServiceSpec{Name: "v6", VIP: vip6, Port: 443, Proto: 6, Mode: ModeDSR, Scheduler: SchedMaglev,
		Backends: []BackendSpec{{Address: netip.MustParseAddr("2001:db8:1::31"), Weight: 1}}}
	noPort := ServiceSpec{Name: "natnoport", VIP: netip.MustParseAddr("198.51.100.77"), Port: 25, Proto: 6, Mode: ModeNAT,
		Scheduler: SchedMaglev, Backends: []BackendSpec{{Address: netip.MustParseAddr("10.0.0.41"), Weight: 1}}}
	spec.Services = append(spec.Services, frag, v6, noPort)
	s := mustBuild(t, spec, nil)
	local := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	rs := s.SteeringRules(local, [2]uint16{1024, 32767})

	str := func(rules []bpf.Rule) []string {
		var out []string
		for _, r := range rules {
			out = append(out, r.String())
		}
		sort.Strings(out)
		return out
	}
	want := []bpf.Rule{
		{Addr: vip4, Port: 80, Proto: 6},   // web (nat)
		{Addr: vip4, Proto: bpf.ProtoICMP}, // once per VIP
		{Addr: vip4, Port: 53, Proto: 17},  // dns
		{Addr: vip4, Proto: 17},            // dns fragments carry no port
		{Addr: vip6, Port: 443, Proto: 6},
		{Addr: vip6, Proto: bpf.ProtoICMPv6},
		{Addr: netip.MustParseAddr("198.51.100.77"), Port: 25, Proto: 6},
		{Addr: netip.MustParseAddr("198.51.100.77"), Proto: bpf.ProtoICMP},
	}
	if got, w := str(rs.Destinations), str(want); !reflect.DeepEqual(got, w) {
		t.Errorf("destinations\n got %v\nwant %v", got, w)
	}
	// nat replies: the backends' translated port, or the service port
	// when the backend has none; dsr backends are never reply sources.
	wantSrc := []bpf.Rule{
		{Addr: netip.MustParseAddr("10.0.0.11"), Port: 8080, Proto: 6},
		{Addr: netip.MustParseAddr("10.0.0.12"), Port: 8080, Proto: 6},
		{Addr: netip.MustParseAddr("10.0.0.41"), Port: 25, Proto: 6},
	}
	if got, w := str(rs.BackendSources), str(wantSrc); !reflect.DeepEqual(got, w) {
		t.Errorf("backend sources\n got %v\nwant %v", got, w)
	}
	if !reflect.DeepEqual(rs.SNAT, append(append([]netip.Addr(nil), spec.SNAT4...), spec.SNAT6...)) || rs.SNATPorts != [2]uint16{1024, 32767} {
		t.Errorf("snat %v %v", rs.SNAT, rs.SNATPorts)
	}
	if !reflect.DeepEqual(rs.Local, local) {
		t.Errorf("local %v", rs.Local)
	}
	// Without SNAT addresses there is no range either.
	spec.SNAT4, spec.SNAT6 = nil, nil
	spec.Services = spec.Services[1:3]
	if rs := mustBuild(t, spec, nil).SteeringRules(nil, [2]uint16{1024, 32767}); rs.SNAT != nil || rs.SNATPorts != ([2]uint16{}) || rs.BackendSources != nil {
		t.Errorf("without fullnat/nat: %+v", rs)
	}
}
