package dataplane

import (
	"net/netip"
	"testing"
)

func idSpec(names ...string) Spec {
	spec := Spec{Ifaces: []Iface{{MTU: 1500}}}
	for _, n := range names {
		spec.Services = append(spec.Services, ServiceSpec{Name: n, VIP: netip.AddrFrom4([4]byte{198, 51, 100, n[0]}), Port: 80, Proto: 6,
			Mode: ModeNAT, Backends: []BackendSpec{{Address: netip.MustParseAddr("10.0.0.1"), Port: 8080, Weight: 1},
				{Address: netip.AddrFrom4([4]byte{10, 0, 1, n[0]}), Port: 8080, Weight: 1}}})
	}
	return spec
}

// TestSeedIDs: a restarted balancer that builds from the saved IDs gives
// every service and backend the ID it had, whatever the order of the new
// configuration; removed ones leave their IDs unused.
func TestSeedIDs(t *testing.T) {
	s1, err := Build(idSpec("a", "b", "c"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Live changes: b removed, d added (IDs 3 and 6, 7 fresh).
	s2, err := Build(idSpec("a", "c", "d"), s1)
	if err != nil {
		t.Fatal(err)
	}
	// Restart with the services in another order plus a new one.
	seed, err := SeedIDs(s2.IDs())
	if err != nil {
		t.Fatal(err)
	}
	s3, err := Build(idSpec("e", "d", "c", "a"), seed)
	if err != nil {
		t.Fatal(err)
	}
	if s3.Gen != 0 {
		t.Fatalf("first generation %d", s3.Gen)
	}
	for _, name := range []string{"a", "c", "d"} {
		if got, want := s3.ServiceByName(name).ID, s2.ServiceByName(name).ID; got != want {
			t.Fatalf("service %s: ID %d, had %d", name, got, want)
		}
		for _, id := range s2.ServiceByName(name).Backends {
			b := s2.Backends[id]
			if nb := s3.BackendByKey(name, netip.AddrPortFrom(netip.AddrFrom4([4]byte(b.Addr.IP[:4])), b.Port)); nb == nil || nb.ID != id {
				t.Fatalf("backend %s: %+v, had ID %d", b.Key, nb, id)
			}
		}
	}
	e := s3.ServiceByName("e")
	if e.ID != 4 {
		t.Fatalf("new service got ID %d, want 4 (after a=0 b=1 c=2 d=3)", e.ID)
	}
	if s3.Service(s1.ServiceByName("b").ID) != nil {
		t.Fatal("the removed service's ID was given again")
	}
	for _, id := range e.Backends {
		if id < s2.nextBe {
			t.Fatalf("new backend got old ID %d", id)
		}
	}
	if _, err := SeedIDs(IDs{Services: map[string]uint32{"x": 1, "y": 1}}); err == nil {
		t.Fatal("duplicate IDs accepted")
	}
	// A seed without IDs numbers like no seed.
	seed, _ = SeedIDs(IDs{})
	s4, _ := Build(idSpec("a"), seed)
	s5, _ := Build(idSpec("a"), nil)
	if s4.ServiceByName("a").ID != s5.ServiceByName("a").ID || s4.Gen != s5.Gen {
		t.Fatal("empty seed differs from none")
	}
}
