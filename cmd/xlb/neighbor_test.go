package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestBackendMACChange: a backend's MAC changes while traffic flows (a
// replaced NIC, a migrated VM: the host announces itself with a
// gratuitous ARP). xlb follows the kernel's neighbour notification, so
// the backend is unreachable for well under a second, not until the next
// periodic refresh (10 s).
func TestBackendMACChange(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 1})
	tp.StartHTTPBackends(t)
	b1 := tp.Backends[0]
	// Announce address changes with gratuitous ARP, as hosts that move do.
	if err := b1.Sysctl("net/ipv4/conf/eth0/arp_notify", "1"); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1}\napi: {listen: %s}\n", tp.LBClientIface, apiAddr)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n      - {address: %s}\n", tp.VIP, b1.Addr)
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := startXLB(t, tp, p)
	answers(t, tp, 5)
	time.Sleep(1100 * time.Millisecond) // past the neighbour entry's locktime (1 s)

	client := tp.HTTPClient(200 * time.Millisecond)
	ok := func() bool {
		resp, err := client.Get("http://" + tp.VIP.String() + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	if _, err := b1.Run(context.Background(), "ip", "link", "set", "eth0", "address", "02:00:00:00:b1:99"); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	var lastFail time.Time
	for time.Since(changed) < 5*time.Second {
		if !ok() {
			lastFail = time.Now()
		} else if time.Since(lastFail) > 500*time.Millisecond && !lastFail.IsZero() || lastFail.IsZero() && time.Since(changed) > time.Second {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	gap := time.Duration(0)
	if !lastFail.IsZero() {
		gap = lastFail.Sub(changed)
	}
	if gap >= time.Second {
		t.Fatalf("the backend was unreachable for %v after its MAC changed (want < 1 s)\n%s", gap, lb.logs.String())
	}
	if !ok() {
		t.Fatalf("not answering after the MAC change\n%s", lb.logs.String())
	}
	t.Logf("MAC change: requests failed for %v (last failure after the change)", gap.Round(time.Millisecond))
	if !strings.Contains(lb.logs.String(), "next hop changed") {
		t.Fatalf("the change was not logged:\n%s", lb.logs.String())
	}
	lb.stop(t)
}
