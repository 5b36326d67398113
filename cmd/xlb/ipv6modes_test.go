package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// IPv6 in every mode, one-arm and two-arm (issue 10, item 3), for what
// the other tests do not cover: TestIPv6ThroughNamespaces runs dsr, nat and
// fullnat two-arm, TestTunnelAndL3DSRThroughRouter tunnel (IP6IP6, 4in6)
// and l3dsr one-arm. Here: dsr, nat and fullnat one-arm, and tunnel
// (IP6IP6, 4in6) and l3dsr two-arm, the backends behind the router running
// `xlb realserver`.

// v6Case is one IPv6 run.
type v6Case struct {
	name     string
	layout   netns.Layout
	mode     string
	vip4     bool // tunnel 4in6: an IPv4 VIP over IPv6 backends
	dscp     int
	rsArg    string // the realservers' --vip (with =DSCP); "" = no realserver
	wantSeen string // the client address the backends must see ("" = the client's)
}

func v6Config(t *testing.T, tp *netns.Topology, c v6Case) string {
	t.Helper()
	var b strings.Builder
	if tp.Layout == netns.TwoArm {
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native, role: client}\n  - {name: %s, xdp: native, role: backend}\n", tp.LBClientIface, tp.LBBackendIface)
	} else {
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	}
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: 65536}\n")
	if c.mode == "tunnel" {
		// The outer source is the balancer's backend-side address.
		side := tp.LB.Ifaces[tp.LBBackendIface]
		fmt.Fprintf(&b, "  tunnel_source: %s\n  tunnel_source6: \"%s\"\n", side.Addr.Addr(), side.Addr6.Addr())
	}
	if c.mode == "fullnat" {
		fmt.Fprintf(&b, "  snat: {addresses: [\"%s\"]}\n", tp.SNAT6)
	}
	vip := tp.VIP6
	if c.vip4 {
		vip = tp.VIP
	}
	fmt.Fprintf(&b, "api: {listen: %s}\nservices:\n  - name: web\n    vip: \"%s\"\n    port: 80\n    mode: %s\n", apiAddr, vip, c.mode)
	if c.dscp != 0 {
		fmt.Fprintf(&b, "    dscp: %d\n", c.dscp)
	}
	if c.mode == "tunnel" || c.mode == "l3dsr" {
		// Datapath probes (no ordinary check), quick enough to wait for.
		b.WriteString("    health: {interval: 300ms, timeout: 200ms, rise: 1, fall: 2}\n")
	}
	b.WriteString("    backends:\n")
	for _, be := range tp.Backends {
		port := 80
		if c.mode == "nat" || c.mode == "fullnat" {
			port = 8080
		}
		fmt.Fprintf(&b, "      - {address: \"%s\", port: %d}\n", be.Addr6, port)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestIPv6EveryModeOneArmAndTwoArm(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	for _, mode := range []string{"dsr", "nat", "fullnat"} {
		t.Run("one-arm/"+mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 2, IPv6: true})
			tp.StartHTTPBackends(t)
			c := v6Case{name: "one-arm/" + mode, layout: netns.OneArm, mode: mode}
			if mode == "fullnat" {
				c.wantSeen = tp.SNAT6.String()
			}
			runV6Case(t, tp, c)
		})
	}
	t.Run("two-arm", func(t *testing.T) {
		tp := netns.New(t, netns.Options{Layout: netns.TwoArm, Mode: netns.ModeTunnel, Backends: 2, IPv6: true,
			RoutedBackends: true, BareBackends: true})
		tp.StartHTTPBackends(t)
		for _, c := range []v6Case{
			{name: "two-arm/tunnel/ip6ip6", mode: "tunnel", rsArg: tp.VIP6.String()},
			{name: "two-arm/tunnel/4in6", mode: "tunnel", vip4: true, rsArg: tp.VIP.String()},
			{name: "two-arm/l3dsr", mode: "l3dsr", dscp: 12, rsArg: tp.VIP6.String() + "=12"},
		} {
			c.layout = netns.TwoArm
			t.Run(strings.TrimPrefix(c.name, "two-arm/"), func(t *testing.T) { runV6Case(t, tp, c) })
		}
	})
}

func runV6Case(t *testing.T, tp *netns.Topology, c v6Case) {
	var rss []*rsProc
	if c.rsArg != "" {
		dir := t.TempDir()
		for _, bk := range tp.Backends {
			rss = append(rss, startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), "--mode", c.mode, "--vip", c.rsArg))
		}
	}
	lb := startXLB(t, tp, v6Config(t, tp, c))
	vip, client := tp.VIP6, tp.Client.Addr6
	if c.vip4 {
		vip, client = tp.VIP, tp.Client.Addr
	}
	want := client.String()
	if c.wantSeen != "" {
		want = c.wantSeen
	}
	base := "http://" + net.JoinHostPort(vip.String(), "80")
	hc := tp.HTTPClient(5 * time.Second)
	seen := map[string]int{}
	const requests = 100
	start := time.Now()
	for i := range requests {
		resp, err := hc.Get(base + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		var r netns.HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d, %v", i, resp.StatusCode, err)
		}
		host, _, _ := net.SplitHostPort(r.Remote)
		if a, err := netip.ParseAddr(host); err != nil || a.Unmap().String() != want {
			t.Fatalf("backend %s saw the client as %s, want %s", r.Backend, r.Remote, want)
		}
		seen[r.Backend]++
	}
	elapsed := time.Since(start)
	if len(seen) != 2 {
		t.Fatalf("answers by backend: %v", seen)
	}
	const big = 1 << 20
	resp, err := hc.Get(base + "/stream?bytes=" + strconv.Itoa(big))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != big {
		t.Fatalf("stream: %d bytes, %v", n, err)
	}
	st, _ := lb.stats()
	t.Logf("%s: %d requests in %v (%.0f req/s, a new connection each), answers %v, the backends saw %s; lb rx %d B, tx %d B",
		c.name, requests, elapsed.Round(time.Millisecond), requests/elapsed.Seconds(), seen, want, st.Totals.RxBytes, st.Totals.TxBytes)
	// The datapath probes pass too: encapsulated or DSCP-marked as the
	// dataplane forwards, answered from the VIP (4in6: an IPv4 SYN from
	// lb.tunnel_source inside IPv6).
	deadline := time.Now().Add(5 * time.Second)
	for _, bk := range tp.Backends[:len(rss)] {
		key := netip.AddrPortFrom(bk.Addr6, 80).String()
		for {
			h := backendHealth(t, tp, key)
			if h.Datapath != nil && h.Datapath.State == "up" && h.State == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: datapath probe not up: %+v %+v", key, h, h.Datapath)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, bk := range tp.Backends[:len(rss)] {
		m := rsStats(t, bk)
		for _, k := range []string{"pass_inner_not_vip", "pass_not_local", "pass_dscp_unknown"} {
			if m[k] != 0 {
				t.Fatalf("%s: realserver counted %s=%d", bk.Name, k, m[k])
			}
		}
	}
	lb.stop(t)
	for _, p := range rss {
		p.stop(t)
	}
}
