package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/mgmt"
)

// Datapath probes end to end (issue 10, item 4): the backends of a tunnel
// (or l3dsr) service behind a router run `xlb realserver` and the test
// HTTP server; the service has an ordinary HTTP check of the backends' own
// addresses. Stopping the realserver on b1 leaves its HTTP server up (the
// ordinary check keeps passing) but breaks the client's path: the datapath
// probe must take b1 out within fall × interval + 1 s, new connections
// must all go to b2, and an established connection to b2 must carry on
// undisturbed.

const (
	dpInterval = 300 * time.Millisecond
	dpFall     = 2
)

func datapathConfig(t *testing.T, tp *netns.Topology, c directCase) string {
	t.Helper()
	vip := tp.VIP
	if c.vip6 {
		vip = tp.VIP6
	}
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: 65536}\n  tunnel_source: %s\n", tp.LB.Addr)
	if tp.LB.Addr6.IsValid() {
		fmt.Fprintf(&b, "  tunnel_source6: \"%s\"\n", tp.LB.Addr6)
	}
	fmt.Fprintf(&b, "api: {listen: %s}\n", apiAddr)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: \"%s\"\n    port: 80\n    mode: %s\n", vip, c.mode)
	if c.dscp != 0 {
		fmt.Fprintf(&b, "    dscp: %d\n", c.dscp)
	}
	fmt.Fprintf(&b, "    health: {type: http, path: /healthz, interval: %s, timeout: 200ms, rise: 1, fall: %d}\n", dpInterval, dpFall)
	b.WriteString("    backends:\n")
	for _, be := range tp.Backends {
		a := be.Addr
		if c.backend6 {
			a = be.Addr6
		}
		fmt.Fprintf(&b, "      - {address: \"%s\", port: 80}\n", a)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// backendHealth reads one backend's health from the API.
func backendHealth(t *testing.T, tp *netns.Topology, key string) *mgmt.HealthView {
	t.Helper()
	resp, err := tp.LB.HTTPClient(2 * time.Second).Get("http://" + apiAddr + "/api/v1/services/web/backends/" + key)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var bv mgmt.BackendView
	if err := json.NewDecoder(resp.Body).Decode(&bv); err != nil || bv.Health == nil {
		t.Fatalf("backend %s: %v", key, err)
	}
	return bv.Health
}

// pinnedClient is a keep-alive HTTP client with one connection, counting
// the connections it opens.
type pinnedClient struct {
	*http.Client
	dials atomic.Int32
}

func newPinnedClient(h *netns.Host) *pinnedClient {
	pc := &pinnedClient{}
	pc.Client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			pc.dials.Add(1)
			return h.DialContext(ctx, network, addr)
		}}}
	return pc
}

func (pc *pinnedClient) backend(t *testing.T, url string) (string, error) {
	t.Helper()
	resp, err := pc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r netns.HTTPReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", err
	}
	return r.Backend, nil
}

func TestDatapathProbeTakesBrokenBackendOut(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeTunnel, Backends: 2, IPv6: true,
		RoutedBackends: true, BareBackends: true})
	tp.StartHTTPBackends(t)
	for _, c := range []directCase{
		{name: "tunnel/ipip", mode: "tunnel"},
		{name: "tunnel/ip6ip6", mode: "tunnel", vip6: true, backend6: true},
		{name: "l3dsr/ipv4", mode: "l3dsr", dscp: 10},
	} {
		t.Run(c.name, func(t *testing.T) { runDatapathCase(t, tp, c) })
	}
}

func runDatapathCase(t *testing.T, tp *netns.Topology, c directCase) {
	vip := tp.VIP
	if c.vip6 {
		vip = tp.VIP6
	}
	vipArg := vip.String()
	if c.dscp != 0 {
		vipArg += "=" + strconv.Itoa(c.dscp)
	}
	dir := t.TempDir()
	var rss []*rsProc
	for _, bk := range tp.Backends {
		rss = append(rss, startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), "--mode", c.mode, "--vip", vipArg))
	}
	lb := startXLB(t, tp, datapathConfig(t, tp, c))
	keys := make([]string, len(tp.Backends))
	for i, bk := range tp.Backends {
		a := bk.Addr
		if c.backend6 {
			a = bk.Addr6
		}
		keys[i] = netip.AddrPortFrom(a, 80).String()
	}

	// Both backends up by both checks.
	deadline := time.Now().Add(10 * time.Second)
	for i := range keys {
		for {
			h := backendHealth(t, tp, keys[i])
			if h.State == "up" && h.LastResult == "ok" && h.Datapath != nil && h.Datapath.State == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never came up by both checks: %+v %+v", keys[i], h, h.Datapath)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// An established connection to each backend.
	url := "http://" + net.JoinHostPort(vip.String(), "80") + "/"
	pinned := map[string]*pinnedClient{}
	for tries := 0; len(pinned) < 2; tries++ {
		if tries == 100 {
			t.Fatalf("100 connections reached only %v", pinned)
		}
		pc := newPinnedClient(tp.Client)
		name, err := pc.backend(t, url)
		if err != nil {
			t.Fatal(err)
		}
		if pinned[name] == nil {
			pinned[name] = pc
		}
	}

	// Break b1's data path; its HTTP server stays up.
	broken, kept := tp.Backends[0].Name, tp.Backends[1].Name
	stopped := time.Now()
	rss[0].stop(t)
	limit := dpFall*dpInterval + time.Second
	var h *mgmt.HealthView
	for {
		h = backendHealth(t, tp, keys[0])
		if h.State == "down" {
			break
		}
		if time.Since(stopped) > limit {
			t.Fatalf("%s still %s %v after its realserver stopped (limit %v): datapath %+v", broken, h.State, time.Since(stopped), limit, h.Datapath)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(stopped)
	if h.Datapath == nil || h.Datapath.State != "down" || h.LastResult != "ok" {
		t.Fatalf("%s down, but not by its datapath probe alone: %+v datapath %+v", broken, h, h.Datapath)
	}
	if c.mode == "l3dsr" && !strings.Contains(h.Datapath.LastResult, "does not map DSCP") {
		t.Fatalf("l3dsr datapath result %q", h.Datapath.LastResult)
	}
	if h2 := backendHealth(t, tp, keys[1]); h2.State != "up" {
		t.Fatalf("%s is %s", kept, h2.State)
	}

	// New connections go to the other backend only.
	hc := tp.HTTPClient(5 * time.Second)
	for i := range 50 {
		resp, err := hc.Get(url)
		if err != nil {
			t.Fatalf("new connection %d: %v", i, err)
		}
		var r netns.HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || r.Backend != kept {
			t.Fatalf("new connection %d went to %q (%v), want %s", i, r.Backend, err, kept)
		}
	}
	// The established connection to the healthy backend is untouched: the
	// same connection answers, from the same backend.
	pc := pinned[kept]
	for i := range 5 {
		if name, err := pc.backend(t, url); err != nil || name != kept {
			t.Fatalf("established connection to %s, request %d: %q %v", kept, i, name, err)
		}
	}
	if n := pc.dials.Load(); n != 1 {
		t.Fatalf("the connection to %s was reopened (%d dials)", kept, n)
	}
	st, _ := lb.stats()
	t.Logf("%s: %s down by its datapath probe %v after its realserver stopped (limit %v; ordinary check %q; datapath %q); 50 new connections to %s; rescheduled %d",
		c.name, broken, took.Round(time.Millisecond), limit, h.LastResult, h.Datapath.LastResult, kept, st.Totals.Rescheduled)

	// The realserver back: the backend comes back.
	rss[0] = startRealserver(t, tp.Backends[0], filepath.Join(dir, tp.Backends[0].Name+"-again.json"), "--mode", c.mode, "--vip", vipArg)
	deadline = time.Now().Add(5 * time.Second)
	for backendHealth(t, tp, keys[0]).State != "up" {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come back with its realserver", broken)
		}
		time.Sleep(50 * time.Millisecond)
	}
	lb.stop(t)
	for _, p := range rss {
		p.stop(t)
	}
}

// TestDatapathProbeTwoArmStrictRPFilter: two-arm, the probe's SYN-ACK
// comes from the VIP in on the backend side while the balancer's route
// back to the VIP leaves on the client side, so a strict rp_filter (the
// default of many distributions) drops it in the IP layer. The prober
// reads answers before the IP layer (AF_PACKET), so the backends still
// come up by their datapath probes, and the kernel's drop counter shows
// the answers it discarded.
func TestDatapathProbeTwoArmStrictRPFilter(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.TwoArm, Mode: netns.ModeTunnel, Backends: 2,
		RoutedBackends: true, BareBackends: true})
	tp.StartHTTPBackends(t)
	for _, k := range []string{"all", "eth0", "eth1"} {
		if err := tp.LB.Sysctl("net/ipv4/conf/"+k+"/rp_filter", "1"); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	for _, bk := range tp.Backends {
		startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), "--mode", "tunnel", "--vip", tp.VIP.String())
	}
	side := tp.LB.Ifaces[tp.LBBackendIface].Addr.Addr()
	cfg := fmt.Sprintf(`interfaces:
  - {name: eth0, xdp: native, role: client}
  - {name: eth1, xdp: native, role: backend}
lb: {workers: 1, conntrack: {capacity: 65536}, tunnel_source: %s}
api: {listen: %s}
services:
  - name: web
    vip: %s
    port: 80
    mode: tunnel
    health: {interval: 300ms, timeout: 200ms, rise: 1, fall: 2}
    backends: [{address: %s, port: 80}, {address: %s, port: 80}]
`, side, apiAddr, tp.VIP, tp.Backends[0].Addr, tp.Backends[1].Addr)
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := startXLB(t, tp, p)
	dropsBefore := rpFilterDrops(t, tp.LB)
	deadline := time.Now().Add(10 * time.Second)
	for _, bk := range tp.Backends {
		key := netip.AddrPortFrom(bk.Addr, 80).String()
		for {
			h := backendHealth(t, tp, key)
			if h.State == "up" && h.Datapath != nil && h.Datapath.State == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not up by its datapath probe: %+v %+v", key, h, h.Datapath)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // a few more probes
	drops := rpFilterDrops(t, tp.LB) - dropsBefore
	if drops == 0 {
		t.Fatal("rp_filter dropped no probe answer: the test does not show what it means to")
	}
	if _, err := get(t, tp, "/"); err != nil {
		t.Fatal(err)
	}
	t.Logf("two-arm, rp_filter=1: both backends up by their datapath probes; the kernel's rp_filter dropped %d of the answers", drops)
	lb.stop(t)
}

// rpFilterDrops is TcpExt IPReversePathFilter of h's kernel.
func rpFilterDrops(t *testing.T, h *netns.Host) uint64 {
	t.Helper()
	out, err := h.Run(context.Background(), "cat", "/proc/net/netstat")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(out), "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(vals) != len(names) {
			continue
		}
		for j, n := range names {
			if n == "IPReversePathFilter" {
				v, _ := strconv.ParseUint(vals[j], 10, 64)
				return v
			}
		}
	}
	t.Fatal("no TcpExt IPReversePathFilter in /proc/net/netstat")
	return 0
}
