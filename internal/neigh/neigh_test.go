package neigh

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// env is a one-arm topology with a Resolver made inside the lb namespace.
// Every call below comes from the test goroutine, i.e. from a thread in
// the root namespace: the answers (lb interface, 10.30.0.1 as gateway)
// show the resolver stays bound to the lb namespace.
type env struct {
	tp    *netns.Topology
	r     *Resolver
	lbIdx int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tp := netns.New(t, netns.Options{Backends: 3, IPv6: true})
	var r *Resolver
	if err := tp.LB.Do(func() (err error) { r, err = NewResolver(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	idx, err := tp.LB.Ifindex("eth0")
	if err != nil {
		t.Fatal(err)
	}
	return &env{tp: tp, r: r, lbIdx: idx}
}

func (e *env) mac(t *testing.T, h *netns.Host, iface string) net.HardwareAddr {
	t.Helper()
	m, err := h.MAC(iface)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestResolver(t *testing.T) {
	e := newEnv(t)
	r := e.r
	b1, b2, b3 := e.tp.Backends[0], e.tp.Backends[1], e.tp.Backends[2]
	routerMAC := e.mac(t, e.tp.Router, "br0")

	t.Run("RouteOnLink", func(t *testing.T) {
		for _, c := range []struct{ dst, src string }{{"10.30.0.11", "10.30.0.2"}, {"fd00:30::11", "fd00:30::2"}} {
			rt, err := r.Route(addr(c.dst))
			if err != nil {
				t.Fatal(err)
			}
			want := Route{Ifindex: e.lbIdx, Src: addr(c.src)}
			if rt != want {
				t.Errorf("Route(%s) = %+v, want %+v", c.dst, rt, want)
			}
			if rt.NextHop(addr(c.dst)) != addr(c.dst) {
				t.Errorf("NextHop of on-link %s = %v", c.dst, rt.NextHop(addr(c.dst)))
			}
		}
	})

	t.Run("RouteViaGateway", func(t *testing.T) {
		for _, c := range []struct{ dst, gw, src string }{
			{"10.10.0.2", "10.30.0.1", "10.30.0.2"},
			{"fd00:10::2", "fd00:30::1", "fd00:30::2"},
			{"::ffff:10.10.0.2", "10.30.0.1", "10.30.0.2"}, // 4-in-6 is unmapped
		} {
			rt, err := r.Route(addr(c.dst))
			if err != nil {
				t.Fatal(err)
			}
			want := Route{Ifindex: e.lbIdx, Gateway: addr(c.gw), Src: addr(c.src)}
			if rt != want {
				t.Errorf("Route(%s) = %+v, want %+v", c.dst, rt, want)
			}
		}
	})

	t.Run("RouteNotUnicast", func(t *testing.T) {
		for _, dst := range []string{"10.30.0.2", "127.0.0.1", "fd00:30::2"} {
			if _, err := r.Route(addr(dst)); !errors.Is(err, ErrNotUnicast) {
				t.Errorf("Route(%s) error %v, want ErrNotUnicast", dst, err)
			}
		}
	})

	t.Run("NeighborAfterPing", func(t *testing.T) {
		if _, ok, err := r.Neighbor(e.lbIdx, b1.Addr); err != nil || ok {
			t.Fatalf("before any traffic: ok=%v err=%v, want not resolved", ok, err)
		}
		if err := e.tp.LB.Ping(ctx(t, 5*time.Second), b1.Addr); err != nil {
			t.Fatal(err)
		}
		mac, ok, err := r.Neighbor(e.lbIdx, b1.Addr)
		if err != nil || !ok {
			t.Fatalf("after ping: ok=%v err=%v", ok, err)
		}
		if want := e.mac(t, b1, "eth0"); mac.String() != want.String() {
			t.Errorf("Neighbor(b1) = %s, want %s", mac, want)
		}
		if _, ok, err := r.Neighbor(e.lbIdx+100, b1.Addr); err != nil || ok {
			t.Errorf("on another ifindex: ok=%v err=%v, want not found", ok, err)
		}
	})

	t.Run("ResolveUnresolved", func(t *testing.T) {
		for _, dst := range []netip.Addr{b2.Addr, b2.Addr6} {
			if _, ok, _ := r.Neighbor(e.lbIdx, dst); ok {
				t.Fatalf("%s already resolved", dst)
			}
			mac, idx, err := r.Resolve(ctx(t, 3*time.Second), dst)
			if err != nil {
				t.Fatal(err)
			}
			if want := e.mac(t, b2, "eth0"); mac.String() != want.String() || idx != e.lbIdx {
				t.Errorf("Resolve(%s) = %s on %d, want %s on %d", dst, mac, idx, want, e.lbIdx)
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.noUse {
			t.Error("the kernel refused NTF_USE; Resolve fell back to the UDP trigger")
		}
	})

	t.Run("ResolveViaGateway", func(t *testing.T) {
		for _, dst := range []string{"10.10.0.2", "fd00:10::2"} {
			mac, idx, err := r.Resolve(ctx(t, 3*time.Second), addr(dst))
			if err != nil {
				t.Fatal(err)
			}
			if mac.String() != routerMAC.String() || idx != e.lbIdx {
				t.Errorf("Resolve(%s) = %s on %d, want the router's %s on %d", dst, mac, idx, routerMAC, e.lbIdx)
			}
		}
	})

	t.Run("ResolveMissingTimesOut", func(t *testing.T) {
		for _, dst := range []string{"10.30.0.99", "fd00:30::99"} {
			start := time.Now()
			_, _, err := r.Resolve(ctx(t, 300*time.Millisecond), addr(dst))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Resolve(%s) error %v, want deadline exceeded", dst, err)
			}
			if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
				t.Errorf("Resolve(%s) gave up after %v, want about 300ms", dst, d)
			}
		}
	})

	t.Run("ResolveUDPFallback", func(t *testing.T) {
		r.mu.Lock()
		r.noUse = true // as if NTF_USE were refused (no CAP_NET_ADMIN)
		r.mu.Unlock()
		defer func() { r.mu.Lock(); r.noUse = false; r.mu.Unlock() }()
		for _, dst := range []netip.Addr{b3.Addr, b3.Addr6} {
			if _, ok, _ := r.Neighbor(e.lbIdx, dst); ok {
				t.Fatalf("%s already resolved", dst)
			}
			mac, _, err := r.Resolve(ctx(t, 3*time.Second), dst)
			if err != nil {
				t.Fatal(err)
			}
			if want := e.mac(t, b3, "eth0"); mac.String() != want.String() {
				t.Errorf("Resolve(%s) = %s, want %s", dst, mac, want)
			}
		}
	})
}

// TestConcurrent shares one Resolver between goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	e := newEnv(t)
	dsts := []netip.Addr{addr("10.30.0.11"), addr("10.30.0.12"), addr("10.10.0.2"), addr("fd00:30::13")}
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				dst := dsts[(g+i)%len(dsts)]
				c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				_, idx, err := e.r.Resolve(c, dst)
				cancel()
				if err == nil && idx != e.lbIdx {
					err = errors.New("wrong interface")
				}
				if err == nil {
					_, err = e.r.Route(dst)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestClose(t *testing.T) {
	r, err := NewResolver() // the test's own namespace; no request is sent
	if err != nil {
		t.Skipf("skipping: no rtnetlink socket: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Route(addr("10.30.0.1")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Route after Close: %v, want net.ErrClosed", err)
	}
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}
