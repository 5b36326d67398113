package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// The proof for tunnel and l3dsr: one-arm behind a router. The
// backends live on their own subnet (10.40.0.0/24, fd00:40::/64), one
// routed hop from the balancer, and start bare (no VIP on lo, ARP sysctls
// at 0); each runs the real `xlb realserver` binary, which sets itself up
// and decapsulates or maps DSCP back to the VIP in XDP. The balancer is the
// real `xlb run --poll`. HTTP through the VIP must reach both backends,
// each must see the client's own address, and the replies must go from
// the backends to the client without crossing the balancer.

// rsProc is `xlb realserver` running in a backend's namespace.
type rsProc struct {
	h    *netns.Host
	cmd  *exec.Cmd
	logs *syncBuf
	done chan error
}

// startRealserver starts `xlb realserver` in h with args (after
// --interface eth0 and a per-test state file) and waits until it is ready.
func startRealserver(t testing.TB, h *netns.Host, stateFile string, args ...string) *rsProc {
	t.Helper()
	p := &rsProc{h: h, logs: &syncBuf{}, done: make(chan error, 1)}
	all := append([]string{"netns", "exec", h.NS, xlbBin, "realserver", "--interface", "eth0",
		"--state-file", stateFile, "--log-format", "console", "--log-level", "debug", "--stats-interval", "1s"}, args...)
	p.cmd = exec.Command("ip", all...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("xlb realserver on %s:\n%s", h.Name, p.logs.String())
		}
	})
	deadline := time.After(10 * time.Second)
	for !strings.Contains(p.logs.String(), "realserver ready") {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("xlb realserver on %s exited: %v\n%s", h.Name, err, p.logs.String())
		case <-deadline:
			t.Fatalf("xlb realserver on %s not ready\n%s", h.Name, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *rsProc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("xlb realserver on %s: %v\n%s", p.h.Name, err, p.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("xlb realserver on %s did not stop on SIGTERM", p.h.Name)
	}
	if !strings.Contains(p.logs.String(), "host configuration restored") {
		t.Fatalf("xlb realserver on %s did not restore the host:\n%s", p.h.Name, p.logs.String())
	}
}

// rsStats runs `xlb realserver --stats --json` in h.
func rsStats(t testing.TB, h *netns.Host) map[string]uint64 {
	t.Helper()
	out, err := h.Run(context.Background(), xlbBin, "realserver", "--stats", "--json", "--interface", "eth0")
	if err != nil {
		t.Fatalf("realserver --stats on %s: %v", h.Name, err)
	}
	var m map[string]uint64
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("realserver --stats on %s: %v\n%s", h.Name, err, out)
	}
	return m
}

// ifStat reads an interface statistic (tx_bytes, rx_packets, ...) in h.
func ifStat(t testing.TB, h *netns.Host, iface, stat string) uint64 {
	t.Helper()
	out, err := h.Run(context.Background(), "cat", "/sys/class/net/"+iface+"/statistics/"+stat)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lbTotals is the part of GET /api/v1/stats these tests read.
type lbTotals struct {
	Totals struct {
		RxBytes   uint64 `json:"rx_bytes"`
		TxPackets uint64 `json:"tx_packets"`
		TxBytes   uint64 `json:"tx_bytes"`
		Replies   uint64 `json:"replies"`
	} `json:"totals"`
	Services map[string]struct {
		Backends map[string]struct {
			Packets uint64 `json:"packets"`
		} `json:"backends"`
	} `json:"services"`
}

func lbStatsOf(t testing.TB, tp *netns.Topology) lbTotals {
	t.Helper()
	var st lbTotals
	resp, err := tp.LB.HTTPClient(2 * time.Second).Get("http://" + apiAddr + "/api/v1/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// toBackends is what the balancer transmitted to backends of service web.
func (s lbTotals) toBackends() uint64 {
	var n uint64
	for _, b := range s.Services["web"].Backends {
		n += b.Packets
	}
	return n
}

// directCase is one tunnel or l3dsr run.
type directCase struct {
	name     string
	mode     string // tunnel | l3dsr
	vip6     bool   // the VIP's family
	backend6 bool   // the backends' addresses' family (tunnel 4in6: IPv4 VIP, IPv6 backends)
	dscp     int
	counter  string // the realserver counter that must count the requests
	xdp      string // the realservers' --xdp; "" = auto (native on veth)
}

// directConfig writes the balancer's configuration for c.
func directConfig(t *testing.T, tp *netns.Topology, c directCase) string {
	t.Helper()
	vip := tp.VIP
	if c.vip6 {
		vip = tp.VIP6
	}
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: 65536}\n  tunnel_source: %s\n  tunnel_source6: \"%s\"\n", tp.LB.Addr, tp.LB.Addr6)
	fmt.Fprintf(&b, "api: {listen: %s}\n", apiAddr)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: \"%s\"\n    port: 80\n    protocol: tcp\n    mode: %s\n", vip, c.mode)
	if c.dscp != 0 {
		fmt.Fprintf(&b, "    dscp: %d\n", c.dscp)
	}
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

func TestTunnelAndL3DSRThroughRouter(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	// One topology for every case: the backends are bare, and each case
	// starts its own balancer and realservers and stops them again, which
	// also proves the stop leaves the backends bare.
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeTunnel, Backends: 2, IPv6: true,
		RoutedBackends: true, BareBackends: true})
	tp.StartHTTPBackends(t)
	for _, bk := range tp.Backends {
		if out, _ := bk.Run(context.Background(), "ip", "addr", "show", "dev", "lo"); strings.Contains(string(out), tp.VIP.String()) {
			t.Fatalf("%s is not bare: the VIP is on lo\n%s", bk.Name, out)
		}
	}
	cases := []directCase{
		{name: "tunnel/ipip", mode: "tunnel", counter: "decap_4in4"},
		{name: "tunnel/ip6ip6", mode: "tunnel", vip6: true, backend6: true, counter: "decap_6in6"},
		{name: "tunnel/4in6", mode: "tunnel", backend6: true, counter: "decap_4in6"},
		// Generic (skb) XDP: the kernel must notice the new ethertype.
		{name: "tunnel/4in6 generic XDP", mode: "tunnel", backend6: true, counter: "decap_4in6", xdp: "generic"},
		{name: "l3dsr/ipv4", mode: "l3dsr", dscp: 10, counter: "rewrite_v4"},
		{name: "l3dsr/ipv6", mode: "l3dsr", vip6: true, backend6: true, dscp: 12, counter: "rewrite_v6"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { runDirectCase(t, tp, c) })
	}
	t.Run("tunnel/inner destination not a configured VIP", func(t *testing.T) { runWrongVIP(t, tp) })
	t.Run("tunnel/needs a tunnel source of the backends' family", func(t *testing.T) {
		cfg := directConfig(t, tp, directCase{mode: "tunnel", backend6: true})
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), "  tunnel_source6: \""+tp.LB.Addr6.String()+"\"\n", "", 1))
		if err := os.WriteFile(cfg, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", cfg, "--poll").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lb.tunnel_source6") {
			t.Fatalf("xlb run with IPv6 tunnel backends and no lb.tunnel_source6: %v\n%s", err, out)
		}
	})
}

// runWrongVIP: realservers configured for another VIP pass the balancer's
// tunnel packets and count them; the kernel (no ipip module here) drops
// them, so the request fails, visibly.
func runWrongVIP(t *testing.T, tp *netns.Topology) {
	dir := t.TempDir()
	for _, bk := range tp.Backends {
		startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), "--mode", "tunnel", "--vip", "198.51.100.99")
	}
	lb := startXLB(t, tp, directConfig(t, tp, directCase{mode: "tunnel"}))
	if _, err := tp.HTTPClient(time.Second).Get("http://" + tp.VIP.String() + "/"); err == nil {
		t.Fatal("a request succeeded although no backend decapsulates for the VIP")
	}
	var passed uint64
	for _, bk := range tp.Backends {
		m := rsStats(t, bk)
		passed += m["pass_inner_not_vip"]
		if m["decap_4in4"] != 0 {
			t.Fatalf("%s decapsulated for a VIP it does not serve: %v", bk.Name, m)
		}
	}
	if passed == 0 {
		t.Fatal("the tunnelled SYNs were not counted as pass_inner_not_vip")
	}
	lb.stop(t)
}

func runDirectCase(t *testing.T, tp *netns.Topology, c directCase) {
	vip, client := tp.VIP, tp.Client.Addr
	if c.vip6 {
		vip, client = tp.VIP6, tp.Client.Addr6
	}
	vipArg := vip.String()
	if c.dscp != 0 {
		vipArg += "=" + strconv.Itoa(c.dscp)
	}
	dir := t.TempDir()
	var rss []*rsProc
	args := []string{"--mode", c.mode, "--vip", vipArg}
	if c.xdp != "" {
		args = append(args, "--xdp", c.xdp)
	}
	for _, bk := range tp.Backends {
		rss = append(rss, startRealserver(t, bk, filepath.Join(dir, bk.Name+".json"), args...))
		if c.xdp == "generic" {
			if out, _ := bk.Run(context.Background(), "ip", "link", "show", "dev", "eth0"); !strings.Contains(string(out), "xdpgeneric") {
				t.Fatalf("%s: not attached in generic mode:\n%s", bk.Name, out)
			}
		}
	}
	lb := startXLB(t, tp, directConfig(t, tp, c))

	// 200 requests, each a new connection.
	base := "http://" + net.JoinHostPort(vip.String(), "80")
	hc := tp.HTTPClient(5 * time.Second)
	seen := map[string]int{}
	const requests = 200
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
		if a, err := netip.ParseAddr(host); err != nil || a.Unmap() != client {
			t.Fatalf("backend %s saw the client as %s, want %s", r.Backend, r.Remote, client)
		}
		local, _, _ := net.SplitHostPort(r.Local)
		if a, err := netip.ParseAddr(local); err != nil || a.Unmap() != vip {
			t.Fatalf("backend %s answered from %s, want the VIP %s", r.Backend, r.Local, vip)
		}
		seen[r.Backend]++
	}
	elapsed := time.Since(start)
	if len(seen) != 2 {
		t.Fatalf("answers by backend: %v", seen)
	}

	// Replies go from the backends straight to the client: big responses
	// hardly register on the balancer, which transmits only what it
	// forwards to the backends, and its interface carries no reply bytes.
	before := lbStatsOf(t, tp)
	txBefore := ifStat(t, tp.LB, tp.LBClientIface, "tx_bytes")
	rxBefore := ifStat(t, tp.LB, tp.LBClientIface, "rx_bytes")
	const big, streams = 200_000, 5
	for range streams {
		resp, err := hc.Get(base + "/stream?bytes=" + strconv.Itoa(big))
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != big {
			t.Fatalf("stream: %d bytes, %v", n, err)
		}
	}
	after := lbStatsOf(t, tp)
	tx := ifStat(t, tp.LB, tp.LBClientIface, "tx_bytes") - txBefore
	rx := ifStat(t, tp.LB, tp.LBClientIface, "rx_bytes") - rxBefore
	// What does cross it is the client's side (requests, ACKs: under a
	// tenth of the response bytes, tunnel headers included).
	if tx > streams*big/5 || rx > streams*big/5 {
		t.Fatalf("the balancer's %s moved tx %d / rx %d bytes for %d×%d response bytes: replies crossed it",
			tp.LBClientIface, tx, rx, streams, big)
	}
	if after.Totals.TxPackets != after.toBackends() || after.Totals.Replies != 0 {
		t.Fatalf("the balancer transmitted %d packets, %d of them to backends, %d replies: it sent something towards the client",
			after.Totals.TxPackets, after.toBackends(), after.Totals.Replies)
	}
	if after.toBackends() <= before.toBackends() {
		t.Fatal("the balancer forwarded nothing during the streams")
	}

	// The backends' programs did the work, and missed nothing.
	var handled uint64
	for _, bk := range tp.Backends {
		m := rsStats(t, bk)
		handled += m[c.counter]
		for _, k := range []string{"pass_inner_not_vip", "pass_not_local", "pass_dscp_unknown", "pass_fragment", "pass_unsupported", "drop_adjust_failed"} {
			if m[k] != 0 {
				t.Fatalf("%s: realserver counted %s=%d: %v", bk.Name, k, m[k], m)
			}
		}
	}
	if handled < requests*3 {
		t.Fatalf("realservers counted %s=%d for %d requests", c.counter, handled, requests)
	}
	t.Logf("%s: %d requests in %v (%.0f req/s, a new connection each), answers %v; lb tx %d B, rx %d B on %s for %d response bytes; %s=%d",
		c.name, requests, elapsed.Round(time.Millisecond), requests/elapsed.Seconds(), seen, tx, rx, tp.LBClientIface, streams*big, c.counter, handled)

	lb.stop(t)
	for i, p := range rss {
		p.stop(t)
		out, err := tp.Backends[i].Run(context.Background(), "ip", "addr", "show", "dev", "lo")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), vip.String()) {
			t.Fatalf("%s: the VIP is still on lo after SIGTERM:\n%s", tp.Backends[i].Name, out)
		}
	}
}
