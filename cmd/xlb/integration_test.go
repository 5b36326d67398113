package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/mgmt"
)

// xlbBin is the binary under test, built once by TestMain.
var xlbBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xlb-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xlbBin = filepath.Join(dir, "xlb")
	if out, err := exec.Command("go", "build", "-o", xlbBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xlb: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const apiAddr = "127.0.0.1:9900"

// lbConfig writes the configuration the balancer runs with.
func lbConfig(t *testing.T, tp *netns.Topology, mode string, weight int) string {
	t.Helper()
	var b strings.Builder
	if tp.Layout == netns.TwoArm {
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native, role: client}\n  - {name: %s, xdp: native, role: backend}\n", tp.LBClientIface, tp.LBBackendIface)
	} else {
		fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	}
	fmt.Fprintf(&b, "lb:\n  workers: 1\n  conntrack: {capacity: 65536}\n")
	if mode == "fullnat" {
		fmt.Fprintf(&b, "  snat: {addresses: [%s], ports: 10000-30000}\n", tp.SNAT)
	}
	fmt.Fprintf(&b, "api: {listen: %s}\n", apiAddr)
	port := 80
	if mode != "dsr" {
		port = 8080 // nat and fullnat translate VIP:80 to backend:8080
	}
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    protocol: tcp\n    mode: %s\n    backends:\n", tp.VIP, mode)
	for i, be := range tp.Backends {
		w := 100
		if i == 0 {
			w = weight
		}
		fmt.Fprintf(&b, "      - {address: %s, port: %d, weight: %d}\n", be.Addr, port, w)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// balancer is a running `xlb run` inside the lb namespace.
type balancer struct {
	cmd  *exec.Cmd
	logs *syncBuf
	done chan error
	tp   *netns.Topology
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startXLB(t testing.TB, tp *netns.Topology, cfg string) *balancer {
	return startXLBWith(t, tp, cfg, "--poll")
}

// startXLBBusy starts a busy-polling balancer (the default, for speed).
func startXLBBusy(t testing.TB, tp *netns.Topology, cfg string) *balancer {
	return startXLBWith(t, tp, cfg)
}

func startXLBWith(t testing.TB, tp *netns.Topology, cfg string, extra ...string) *balancer {
	t.Helper()
	return startXLBEnv(t, tp, cfg, nil, extra...)
}

// startXLBEnv is startXLBWith with extra environment variables.
func startXLBEnv(t testing.TB, tp *netns.Topology, cfg string, env []string, extra ...string) *balancer {
	t.Helper()
	lb := launchXLB(t, tp, cfg, env, extra...)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := lb.stats(); err == nil {
			return lb
		}
		select {
		case err := <-lb.done:
			t.Fatalf("xlb exited: %v\n%s", err, lb.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("xlb did not come up\n%s", lb.logs.String())
	return nil
}

// launchXLB starts `xlb run` in the lb namespace without waiting for it.
func launchXLB(t testing.TB, tp *netns.Topology, cfg string, env []string, extra ...string) *balancer {
	t.Helper()
	lb := &balancer{logs: &syncBuf{}, done: make(chan error, 1), tp: tp}
	args := append([]string{"netns", "exec", tp.LB.NS, xlbBin, "run", "--config", cfg, "--log-format", "console"}, extra...)
	lb.cmd = exec.Command("ip", args...)
	lb.cmd.Env = append(os.Environ(), env...)
	lb.cmd.Stdout, lb.cmd.Stderr = lb.logs, lb.logs
	if err := lb.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { lb.done <- lb.cmd.Wait() }()
	t.Cleanup(func() {
		if lb.cmd.ProcessState == nil {
			_ = lb.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-lb.done:
			case <-time.After(5 * time.Second):
				_ = lb.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("xlb logs:\n%s", lb.logs.String())
		}
	})
	return lb
}

func (lb *balancer) stats() (mgmt.Stats, error) {
	var st mgmt.Stats
	resp, err := lb.tp.LB.HTTPClient(2 * time.Second).Get("http://" + apiAddr + "/api/v1/stats")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// stop sends SIGTERM and requires a clean exit with the XDP programs gone.
func (lb *balancer) stop(t testing.TB) {
	t.Helper()
	_ = lb.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-lb.done:
		if err != nil {
			t.Fatalf("xlb exit: %v\n%s", err, lb.logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("xlb did not stop on SIGTERM")
	}
	for _, ifc := range []string{lb.tp.LBClientIface, lb.tp.LBBackendIface} {
		out, err := lb.tp.LB.Run(context.Background(), "ip", "link", "show", ifc)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "xdp") {
			t.Fatalf("XDP program still attached after SIGTERM:\n%s", out)
		}
	}
}

func get(t *testing.T, tp *netns.Topology, path string) (netns.HTTPReply, error) {
	var r netns.HTTPReply
	resp, err := tp.HTTPClient(5 * time.Second).Get("http://" + tp.VIP.String() + path)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return r, fmt.Errorf("status %d", resp.StatusCode)
	}
	return r, json.NewDecoder(resp.Body).Decode(&r)
}

func TestModesThroughNamespaces(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	for _, layout := range []netns.Layout{netns.OneArm, netns.TwoArm} {
		for _, mode := range []string{"dsr", "nat", "fullnat"} {
			name := map[netns.Layout]string{netns.OneArm: "one-arm", netns.TwoArm: "two-arm"}[layout] + "/" + mode
			t.Run(name, func(t *testing.T) {
				tp := netns.New(t, netns.Options{Layout: layout, Mode: mode, Backends: 2})
				tp.StartHTTPBackends(t)
				lb := startXLB(t, tp, lbConfig(t, tp, mode, 100))
				seen := map[string]int{}
				wantRemote := tp.Client.Addr.String()
				if mode == "fullnat" {
					wantRemote = tp.SNAT.String()
				}
				for i := 0; i < 200; i++ {
					r, err := get(t, tp, "/")
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					seen[r.Backend]++
					host, _, _ := strings.Cut(r.Remote, ":")
					if host != wantRemote {
						t.Fatalf("backend %s saw %s, want %s", r.Backend, r.Remote, wantRemote)
					}
				}
				if len(seen) != 2 {
					t.Fatalf("answers by backend: %v", seen)
				}
				// Big responses: in dsr they must not cross the balancer.
				const big = 200_000
				before, err := lb.stats()
				if err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 5; i++ {
					resp, err := tp.HTTPClient(5 * time.Second).Get(fmt.Sprintf("http://%s/stream?bytes=%d", tp.VIP, big))
					if err != nil {
						t.Fatal(err)
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || n != big {
						t.Fatalf("stream: %d bytes, %v", n, err)
					}
				}
				after, _ := lb.stats()
				rx := after.Totals.RxBytes - before.Totals.RxBytes
				if mode == "dsr" && rx > big/4 {
					t.Fatalf("dsr: the balancer received %d bytes for 5×%d-byte responses: replies crossed it", rx, big)
				}
				if mode != "dsr" && rx < 5*big {
					t.Fatalf("%s: the balancer received only %d bytes, replies should cross it", mode, rx)
				}
				t.Logf("%s: answers %v, lb rx %d bytes for %d response bytes", name, seen, rx, 5*big)
				lb.stop(t)
			})
		}
	}
}

func TestLongConnectionSurvivesChurnAndReload(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "nat", Backends: 2})
	tp.StartHTTPBackends(t)
	cfg := lbConfig(t, tp, "nat", 100)
	lb := startXLB(t, tp, cfg)
	const total = 6_000_000
	streamErr := make(chan error, 1)
	go func() {
		resp, err := tp.HTTPClient(60 * time.Second).Get(fmt.Sprintf("http://%s/stream?bytes=%d&chunk=16384&delay=10ms", tp.VIP, total))
		if err != nil {
			streamErr <- err
			return
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var k int64
		for {
			c, err := br.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				streamErr <- fmt.Errorf("after %d bytes: %w", k, err)
				return
			}
			if c != netns.StreamByte(k) {
				streamErr <- fmt.Errorf("byte %d corrupted", k)
				return
			}
			k++
		}
		if k != total {
			streamErr <- fmt.Errorf("stream ended after %d of %d bytes", k, total)
			return
		}
		streamErr <- nil
	}()
	for i := 0; i < 300; i++ {
		if _, err := get(t, tp, "/"); err != nil {
			t.Fatalf("short request %d: %v", i, err)
		}
		if i == 100 || i == 200 {
			// Reload with another weight for backend 1: established
			// connections keep their backend.
			if err := os.WriteFile(cfg, []byte(strings.Replace(readFile(t, cfg), "weight: 100", fmt.Sprintf("weight: %d", 50+i), 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_ = lb.cmd.Process.Signal(syscall.SIGHUP)
		}
	}
	select {
	case err := <-streamErr:
		if err != nil {
			t.Fatalf("long connection: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("long connection did not finish")
	}
	st, _ := lb.stats()
	if st.Generation < 2 {
		t.Fatalf("reloads not applied: generation %d\n%s", st.Generation, lb.logs.String())
	}
	// A bad configuration is refused and the running one stays.
	if err := os.WriteFile(cfg, []byte(strings.Replace(readFile(t, cfg), "mode: nat", "mode: warp", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = lb.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if !strings.Contains(lb.logs.String(), "services[0].mode") {
		t.Fatalf("bad reload not reported with its field:\n%s", lb.logs.String())
	}
	if _, err := get(t, tp, "/"); err != nil {
		t.Fatalf("after a refused reload: %v", err)
	}
	lb.stop(t)
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPingVIPAndMalformedFrames(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 2})
	tp.StartHTTPBackends(t)
	lb := startXLB(t, tp, lbConfig(t, tp, "dsr", 100))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Client.Ping(ctx, tp.VIP); err != nil {
		t.Fatalf("ping VIP: %v", err)
	}
	st, _ := lb.stats()
	if st.Totals.EchoReplies == 0 {
		t.Fatal("echo answered, but not by xlb")
	}
	// Frames that pass the steering program (VIP, port 80, TCP) but are
	// broken further in, sent raw from the router onto the lb's segment.
	lbMAC, err := tp.LB.MAC(tp.LBClientIface)
	if err != nil {
		t.Fatal(err)
	}
	sent, err := sendMalformed(tp, lbMAC)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	st2, _ := lb.stats()
	dropped := st2.Totals.Dropped - st.Totals.Dropped
	if dropped < uint64(sent) {
		t.Fatalf("sent %d malformed frames, %d dropped: reasons %v", sent, dropped, st2.Drops)
	}
	for i := 0; i < 20; i++ {
		if _, err := get(t, tp, "/"); err != nil {
			t.Fatalf("after malformed frames: %v", err)
		}
	}
	t.Logf("malformed: sent %d, reasons %v", sent, st2.Drops)
	lb.stop(t)
}
