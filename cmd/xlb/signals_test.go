package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/mgmt"
)

// TestSignalsDuringStartup: SIGHUP and SIGTERM 0, 50, 200 and 1000 ms after
// xlb starts (its first log line), while the start-up waits up to 2 s for
// a backend that does not resolve: SIGTERM ends the process cleanly (exit
// 0, a log line, no XDP program left), SIGHUP is applied once running (the
// edited file is live).
func TestSignalsDuringStartup(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 2})
	tp.StartHTTPBackends(t)
	write := func(p string, weight int) {
		var b strings.Builder
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1}\napi: {listen: %s}\n", tp.LBClientIface, apiAddr)
		fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", tp.VIP)
		fmt.Fprintf(&b, "      - {address: %s, weight: %d}\n      - {address: %s}\n", tp.Backends[0].Addr, weight, tp.Backends[1].Addr)
		fmt.Fprintf(&b, "      - {address: 10.30.0.99}   # nobody: start-up waits for it\n")
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		for _, after := range []time.Duration{0, 50 * time.Millisecond, 200 * time.Millisecond, time.Second} {
			t.Run(fmt.Sprintf("%s/%v", sig, after), func(t *testing.T) {
				cfg := filepath.Join(t.TempDir(), "xlb.yaml")
				write(cfg, 100)
				logs := &syncBuf{}
				cmd := exec.Command("ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", cfg, "--poll", "--log-format", "console")
				cmd.Stdout, cmd.Stderr = logs, logs
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				t.Cleanup(func() {
					if cmd.ProcessState == nil {
						_ = cmd.Process.Kill()
						<-done
					}
				})
				waitFor(t, 5*time.Second, "xlb's first log line", func() bool { return strings.Contains(logs.String(), "xlb starting") })
				time.Sleep(after)
				if sig == syscall.SIGHUP {
					write(cfg, 7) // the reload must bring this in
				}
				start := time.Now()
				_ = cmd.Process.Signal(sig)
				if sig == syscall.SIGTERM {
					select {
					case err := <-done:
						if err != nil {
							t.Fatalf("exit: %v\n%s", err, logs.String())
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("no exit after SIGTERM\n%s", logs.String())
					}
					if !strings.Contains(logs.String(), "signal=terminated") {
						t.Fatalf("no log line about the signal:\n%s", logs.String())
					}
					out, _ := tp.LB.Run(t.Context(), "ip", "link", "show", tp.LBClientIface)
					if strings.Contains(string(out), "xdp") {
						t.Fatalf("XDP program left behind:\n%s", out)
					}
					t.Logf("SIGTERM %v after start: exit 0 in %v", after, time.Since(start).Round(time.Millisecond))
					return
				}
				api := newAPI(t, tp)
				waitFor(t, 10*time.Second, "the SIGHUP's edit live", func() bool {
					r, err := api.try("GET", "/api/v1/services/web/backends/"+tp.Backends[0].Addr.String(), nil)
					if err != nil || r.status != 200 {
						return false
					}
					var bv mgmt.BackendView
					r.decode(t, &bv)
					return bv.Weight != nil && *bv.Weight == 7
				})
				select {
				case err := <-done:
					t.Fatalf("xlb exited after SIGHUP: %v\n%s", err, logs.String())
				default:
				}
				if !strings.Contains(logs.String(), "SIGHUP") && !strings.Contains(logs.String(), "configuration reloaded") {
					t.Fatalf("no log line about the SIGHUP:\n%s", logs.String())
				}
				_ = cmd.Process.Signal(syscall.SIGTERM)
				if err := <-done; err != nil {
					t.Fatalf("exit: %v", err)
				}
			})
		}
	}
}

// TestReloadNeverWaitsForTheNetwork: a SIGHUP that adds a backend nobody
// answers for and removes another applies at once (≤ 200 ms): resolution
// happens in the background, the new backend takes no flows until it
// resolves, and the removed one is out immediately.
func TestReloadNeverWaitsForTheNetwork(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 2})
	tp.StartHTTPBackends(t)
	write := func(p string, extra string, both bool) {
		var b strings.Builder
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1}\napi: {listen: %s}\n", tp.LBClientIface, apiAddr)
		fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n      - {address: %s}\n", tp.VIP, tp.Backends[0].Addr)
		if both {
			fmt.Fprintf(&b, "      - {address: %s}\n", tp.Backends[1].Addr)
		}
		b.WriteString(extra)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "xlb.yaml")
	write(cfg, "", true)
	lb := startXLB(t, tp, cfg)
	if seen := answers(t, tp, 40); len(seen) != 2 {
		t.Fatalf("answers %v", seen)
	}
	write(cfg, "      - {address: 10.30.0.99}   # nobody answers ARP for it\n", false)
	before := strings.Count(lb.logs.String(), "configuration reloaded")
	start := time.Now()
	_ = lb.cmd.Process.Signal(syscall.SIGHUP)
	took := waitFor(t, 3*time.Second, "reload applied", func() bool {
		return strings.Count(lb.logs.String(), "configuration reloaded") > before
	})
	if took > 200*time.Millisecond {
		t.Fatalf("reload took %v, want ≤ 200 ms\n%s", took, lb.logs.String())
	}
	if seen := answers(t, tp, 40); seen[tp.Backends[1].Name] > 0 || len(seen) != 1 {
		t.Fatalf("after the reload: %v (the removed backend must be out, the unresolvable one must take nothing)", seen)
	}
	t.Logf("reload with an unresolvable backend applied in %v (logged within %v of the signal)", took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	lb.stop(t)
}

// TestSecondInstanceSaysWhoOwnsTheQueue: a second xlb on the same
// interface fails with a message naming the other xlb's pid, not a bare
// "device or resource busy".
func TestSecondInstanceSaysWhoOwnsTheQueue(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 1})
	cfg := lbConfig(t, tp, "dsr", 100)
	lb := startXLB(t, tp, cfg)
	out, err := exec.Command("ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", cfg, "--poll",
		"--set", "api.listen=127.0.0.1:9901", "--log-format", "console").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("second instance: %v\n%s", err, out)
	}
	want := fmt.Sprintf("pid %d", lb.cmd.Process.Pid)
	if !strings.Contains(string(out), "another xlb") || !strings.Contains(string(out), want) {
		t.Fatalf("the error does not name the other xlb (%s):\n%s", want, out)
	}
	lb.stop(t)
}
