package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestChecksumOffloadDetected: with tx checksum offload left on on every
// veth (as a fresh host has it), senders hand xlb frames that carry only
// the pseudo-header sum. With the default interfaces[].checksum: verify,
// xlb drops the first packet of each new flow, counts bad_checksum on the
// interface and logs a warning naming the cause and the fix, once per
// interval; with checksum: fix, 200 requests succeed in nat and fullnat.
func TestChecksumOffloadDetected(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	for _, mode := range []string{"nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 2, TxChecksumOffload: true})
			tp.StartHTTPBackends(t)
			cfg := lbConfig(t, tp, mode, 100)
			lb := startXLB(t, tp, cfg)
			client := tp.HTTPClient(700 * time.Millisecond)
			failed := 0
			for i := 0; i < 5; i++ {
				if resp, err := client.Get("http://" + tp.VIP.String() + "/"); err != nil {
					failed++
				} else {
					resp.Body.Close()
				}
			}
			if failed != 5 {
				t.Fatalf("%d of 5 requests failed; with partial checksums and checksum: verify all should", failed)
			}
			st, err := lb.stats()
			if err != nil {
				t.Fatal(err)
			}
			if n := st.Interfaces[tp.LBClientIface]["bad_checksum"]; n < 5 {
				t.Fatalf("bad_checksum on %s = %d, want ≥ 5 (one per SYN and retransmission): %v", tp.LBClientIface, n, st.Interfaces)
			}
			if st.Drops["bad_checksum"] == 0 {
				t.Fatalf("drops %v", st.Drops)
			}
			waitFor(t, 3*time.Second, "the warning", func() bool { return strings.Contains(lb.logs.String(), "checksum: fix") })
			if n := strings.Count(lb.logs.String(), "bad TCP/UDP checksums"); n != 1 {
				t.Fatalf("warning logged %d times within one interval, want once:\n%s", n, lb.logs.String())
			}
			if !strings.Contains(lb.logs.String(), "interface="+tp.LBClientIface) || !strings.Contains(lb.logs.String(), "ethtool -K") {
				t.Fatalf("the warning does not name the interface and the fix:\n%s", lb.logs.String())
			}
			lb.stop(t)

			// checksum: fix recomputes every checksum: traffic flows.
			b, _ := os.ReadFile(cfg)
			fixed := strings.Replace(string(b), "xdp: native}", "xdp: native, checksum: fix}", 1)
			p := filepath.Join(t.TempDir(), "fix.yaml")
			if err := os.WriteFile(p, []byte(fixed), 0o644); err != nil {
				t.Fatal(err)
			}
			lb = startXLB(t, tp, p)
			if seen := answers(t, tp, 200); len(seen) != 2 {
				t.Fatalf("answers %v", seen)
			}
			st, _ = lb.stats()
			if n := st.Drops["bad_checksum"]; n != 0 {
				t.Fatalf("checksum: fix still dropped %d", n)
			}
			t.Logf("%s: verify dropped every new flow with a warning; fix carried 200 requests", mode)
			lb.stop(t)
		})
	}
}

// TestManagedSNATAddress: a fullnat SNAT address on no interface. With
// lb.manage_addresses (the default) xlb adds it, traffic flows, and it is
// gone after xlb stops, also after a kill -9 followed by a start and a
// stop; with manage_addresses: false xlb refuses to start, naming the
// address, the interface and the fix.
func TestManagedSNATAddress(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeFullNAT, Backends: 2})
	tp.StartHTTPBackends(t)
	const snat = "10.30.0.201" // the harness put 10.30.0.200 on the lb; this one is on no interface
	cfg := func(manage bool) string {
		var b strings.Builder
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
		fmt.Fprintf(&b, "lb: {workers: 1, manage_addresses: %v, snat: {addresses: [%s], ports: 10000-30000}}\napi: {listen: %s}\n", manage, snat, apiAddr)
		fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    mode: fullnat\n    backends:\n", tp.VIP)
		for _, h := range tp.Backends {
			fmt.Fprintf(&b, "      - {address: %s, port: 8080}\n", h.Addr)
		}
		p := filepath.Join(t.TempDir(), "xlb.yaml")
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hasAddr := func() bool {
		out, err := tp.LB.Run(context.Background(), "ip", "-o", "addr", "show", "dev", tp.LBClientIface)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(out), " "+snat+"/32 ")
	}
	if hasAddr() {
		t.Fatal("the SNAT address is there before xlb starts")
	}
	on := cfg(true)
	lb := startXLB(t, tp, on)
	if !hasAddr() {
		t.Fatal("xlb did not add the SNAT address")
	}
	for i := 0; i < 200; i++ {
		r, err := get(t, tp, "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if host, _, _ := strings.Cut(r.Remote, ":"); host != snat {
			t.Fatalf("backend saw %s, want %s", r.Remote, snat)
		}
	}
	lb.stop(t)
	if hasAddr() {
		t.Fatal("the SNAT address is still there after xlb stopped")
	}
	// kill -9 leaves it; the next start cleans up, and its stop removes it.
	lb = startXLB(t, tp, on)
	_ = lb.cmd.Process.Signal(syscall.SIGKILL)
	<-lb.done
	if !hasAddr() {
		t.Fatal("expected the address to survive a kill -9")
	}
	lb = startXLB(t, tp, on)
	if !strings.Contains(lb.logs.String(), "left behind") {
		t.Fatalf("the start after kill -9 did not say it cleaned up:\n%s", lb.logs.String())
	}
	if _, err := get(t, tp, "/"); err != nil {
		t.Fatal(err)
	}
	lb.stop(t)
	if hasAddr() {
		t.Fatal("the SNAT address is still there after kill -9, start and stop")
	}
	// manage_addresses: false refuses to start, with the fix.
	cmd := exec.Command("ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", cfg(false), "--poll", "--log-format", "console")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("start with a missing SNAT address and manage_addresses: false: %v\n%s", err, out)
	}
	for _, want := range []string{snat, "manage_addresses", "ip addr add " + snat + "/32 dev " + tp.LBClientIface, "lb.manage_addresses: true"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the error does not say %q:\n%s", want, out)
		}
	}
}
