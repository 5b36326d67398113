package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/internal/testutil"
)

// hostView is what `xlb realserver` may change in a namespace, as ip(8)
// and sysctl(8) show it.
func hostView(t *testing.T, h *netns.Host) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-br", "addr", "show", "dev", "lo"},
		{"sysctl", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.eth0.arp_ignore", "net.ipv4.conf.all.arp_announce",
			"net.ipv4.conf.eth0.arp_announce", "net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"},
	} {
		out, err := h.Run(ctx, args[0], args[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(out)
	}
	out, err := h.Run(ctx, "ip", "link", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "xdp") {
		b.WriteString("xdp attached\n")
	}
	return b.String()
}

// The real binary restores the host on SIGTERM, and after kill -9 the
// next start undoes what the killed one left and stops cleanly.
func TestRealserverProcessRestoresHost(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	testutil.RequireAFXDP(t)
	ns := testutil.NewNetns(t, "rs")
	testutil.IPCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	testutil.IPCmd(t, "-n", ns, "addr", "add", "10.41.0.11/24", "dev", "eth0")
	testutil.IPCmd(t, "-n", ns, "link", "set", "eth0", "up")
	testutil.IPCmd(t, "-n", ns, "link", "set", "peer0", "up")
	h := &netns.Host{Name: "rs", NS: ns}
	if _, err := h.Run(context.Background(), "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.eth0.rp_filter=1"); err != nil {
		t.Fatal(err)
	}
	before := hostView(t, h)
	state := filepath.Join(t.TempDir(), "rs.json")
	args := []string{"--mode", "l3dsr", "--vip", "198.51.100.10=10,2001:db8:100::10=10"}

	// SIGTERM.
	p := startRealserver(t, h, state, args...)
	running := hostView(t, h)
	for _, want := range []string{"198.51.100.10/32", "2001:db8:100::10/128", "arp_ignore = 1", "arp_announce = 2", "rp_filter = 2", "xdp attached"} {
		if !strings.Contains(running, want) {
			t.Fatalf("while running, no %q in\n%s", want, running)
		}
	}
	p.stop(t)
	if got := hostView(t, h); got != before {
		t.Fatalf("after SIGTERM:\n%s\nwant\n%s", got, before)
	}

	// kill -9, then a new start and stop.
	p = startRealserver(t, h, state, args...)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil
	left := hostView(t, h)
	if !strings.Contains(left, "198.51.100.10/32") || strings.Contains(left, "xdp attached") {
		t.Fatalf("after kill -9 the VIP should stay and the kernel should have detached the program:\n%s", left)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after kill -9: %v", err)
	}
	p = startRealserver(t, h, state, args...)
	if !strings.Contains(p.logs.String(), "recovering from a crash") {
		t.Fatalf("the restart did not recover:\n%s", p.logs.String())
	}
	p.stop(t)
	if got := hostView(t, h); got != before {
		t.Fatalf("after kill -9, start and stop:\n%s\nwant\n%s", got, before)
	}

	// kill -9, then --undo alone.
	p = startRealserver(t, h, state, args...)
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	p.done <- nil
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := h.Run(ctx, xlbBin, "realserver", "--undo", "--state-file", state); err != nil {
		t.Fatalf("--undo: %v\n%s", err, out)
	}
	if got := hostView(t, h); got != before {
		t.Fatalf("after kill -9 and --undo:\n%s\nwant\n%s", got, before)
	}
}

// --check fails (exit 1) on a bare host, naming the fixes, and passes
// while the realserver runs.
func TestRealserverCheck(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	testutil.RequireAFXDP(t)
	ns := testutil.NewNetns(t, "rs")
	testutil.IPCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	testutil.IPCmd(t, "-n", ns, "link", "set", "eth0", "up")
	testutil.IPCmd(t, "-n", ns, "link", "set", "peer0", "up")
	h := &netns.Host{Name: "rs", NS: ns}
	args := []string{"realserver", "--check", "--interface", "eth0", "--mode", "tunnel", "--vip", "198.51.100.10"}
	out, err := h.Run(context.Background(), xlbBin, args...)
	if err == nil {
		t.Fatalf("--check passed on a bare host:\n%s", out)
	}
	for _, want := range []string{"✘ VIP 198.51.100.10/32 on lo", "fix: ip -4 addr add 198.51.100.10/32 dev lo", "✘ arp_ignore = 0",
		"✘ no XDP program on eth0", "blocking check(s) failed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("--check output lacks %q:\n%s", want, out)
		}
	}
	p := startRealserver(t, h, filepath.Join(t.TempDir(), "rs.json"), "--mode", "tunnel", "--vip", "198.51.100.10")
	out, err = h.Run(context.Background(), xlbBin, args...)
	if err != nil {
		t.Fatalf("--check fails while the realserver runs: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "✔ program xlb_rs attached to eth0") {
		t.Errorf("--check output:\n%s", out)
	}
	t.Logf("--check while running:\n%s", out)
	p.stop(t)
}
