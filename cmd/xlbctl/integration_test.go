package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// The integration test drives a real `xlb run` (built from ./cmd/xlb)
// with the real xlbctl binary, both inside the lb namespace of a one-arm
// dsr topology, and checks each change with HTTP through the VIP.

var (
	buildOnce            sync.Once
	buildErr             error
	xlbBin, xlbctlBinary string
)

// buildBinaries builds xlb and xlbctl once per test binary.
func buildBinaries(t *testing.T) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xlbctl-it-")
		if err != nil {
			buildErr = err
			return
		}
		xlbBin, xlbctlBinary = filepath.Join(dir, "xlb"), filepath.Join(dir, "xlbctl")
		for _, b := range []struct{ out, pkg string }{{xlbBin, "../xlb"}, {xlbctlBinary, "."}} {
			if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if xlbBin != "" {
		os.RemoveAll(filepath.Dir(xlbBin))
	}
	os.Exit(code)
}

const (
	itAPI   = "127.0.0.1:9900" // inside the lb namespace
	itToken = "it-secret"
)

// syncBuf collects a process's output.
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

// startXLB runs `xlb run --poll` in the lb namespace with no services and
// waits for its API.
func startXLB(t *testing.T, tp *netns.Topology) *exec.Cmd {
	t.Helper()
	cfg := fmt.Sprintf("interfaces:\n  - {name: %s, xdp: native}\nlb:\n  workers: 1\n  conntrack: {capacity: 65536}\napi: {listen: %s}\nservices: []\n",
		tp.LBClientIface, itAPI)
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuf{}
	cmd := exec.Command("ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", p, "--log-format", "console", "--poll")
	cmd.Env = append(cleanEnv(), "XLB_API_TOKEN="+itToken)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("xlb exit: %v", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Error("xlb did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("xlb logs:\n%s", logs.String())
		}
	})
	hc := tp.LB.HTTPClient(time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := hc.Get("http://" + itAPI + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd
			}
		}
		select {
		case err := <-done:
			t.Fatalf("xlb exited: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("xlb did not come up\n%s", logs.String())
	return nil
}

// cleanEnv is the environment without XLB_* variables.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XLB_") {
			env = append(env, kv)
		}
	}
	return env
}

// ctl runs the xlbctl binary in the lb namespace.
type ctl struct {
	t     *testing.T
	ns    string
	token string
}

func (c *ctl) run(args ...string) (code int, stdout, stderr string) {
	c.t.Helper()
	all := append([]string{"netns", "exec", c.ns, xlbctlBinary, "--api", "http://" + itAPI}, args...)
	cmd := exec.Command("ip", all...)
	cmd.Env = cleanEnv()
	if c.token != "" {
		cmd.Env = append(cmd.Env, "XLB_API_TOKEN="+c.token)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		c.t.Fatalf("xlbctl %s: %v", strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// ok runs xlbctl and requires exit 0.
func (c *ctl) ok(args ...string) string {
	c.t.Helper()
	code, out, errs := c.run(args...)
	if code != 0 {
		c.t.Fatalf("xlbctl %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// json runs xlbctl -o json and decodes its output into v.
func (c *ctl) json(v any, args ...string) {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("xlbctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// hits sends n HTTP requests through the VIP, each on a new connection,
// and counts the answers by backend name (b1, b2, ...).
func hits(t *testing.T, tp *netns.Topology, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	hc := tp.HTTPClient(3 * time.Second)
	for i := 0; i < n; i++ {
		resp, err := hc.Get("http://" + tp.VIP.String() + "/")
		if err != nil {
			t.Fatalf("request %d through the VIP: %v", i, err)
		}
		var r netns.HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		seen[r.Backend]++
	}
	return seen
}

func names(m map[string]int) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

func TestXlbctlDrivesXLB(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	buildBinaries(t)
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 3})
	tp.StartHTTPBackends(t)
	startXLB(t, tp)
	c := &ctl{t: t, ns: tp.LB.NS, token: itToken}
	b1, b2, b3 := tp.Backends[0].Addr.String(), tp.Backends[1].Addr.String(), tp.Backends[2].Addr.String()
	vip := tp.VIP.String()

	if out := c.ok("service", "list"); !strings.Contains(out, "no services") {
		t.Fatalf("service list at start:\n%s", out)
	}
	// Changes need the token: xlb has one, so loopback alone is not enough.
	nt := &ctl{t: t, ns: tp.LB.NS}
	if code, _, errs := nt.run("service", "rm", "web"); code != 1 || !strings.Contains(errs, "401 Unauthorized: missing bearer token") {
		t.Fatalf("change without a token: exit %d, %s", code, errs)
	}

	// A service with two backends: both answer.
	out := c.ok("service", "add", "--name", "web", "--vip", vip, "--port", "80", "--backend", b1, "--backend", b2,
		"--health-type", "http", "--health-path", "/healthz", "--health-interval", "200ms", "--health-timeout", "150ms", "--health-rise", "1")
	if !strings.Contains(out, "service web added") {
		t.Fatalf("service add: %s", out)
	}
	if got := names(hits(t, tp, 40)); got != "b1,b2" {
		t.Fatalf("two backends: answers from %s", got)
	}
	if out := c.ok("service", "list"); !strings.Contains(out, "web") || !strings.Contains(out, vip+":80") || !strings.Contains(out, "2/2 up") {
		t.Fatalf("service list:\n%s", out)
	}

	// Health checks from xlb reach the backends.
	var hr healthReport
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.json(&hr, "health")
		if hr.Backends["web/"+b1].State == "up" && hr.Backends["web/"+b2].State == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health checks never came up: %+v", hr)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A third backend gets traffic.
	if out := c.ok("backend", "add", "web", b3); !strings.Contains(out, "backend "+b3+" added to web") {
		t.Fatalf("backend add: %s", out)
	}
	if got := names(hits(t, tp, 60)); got != "b1,b2,b3" {
		t.Fatalf("three backends: answers from %s", got)
	}

	// Draining b1: new connections stop reaching it.
	c.ok("backend", "drain", "web", b1)
	if got := names(hits(t, tp, 60)); got != "b2,b3" {
		t.Fatalf("b1 draining: answers from %s", got)
	}

	// Enable b1 again; weight 0 takes b3 out of the table.
	c.ok("backend", "enable", "web", b1)
	c.ok("backend", "weight", "web", b3, "0")
	if got := names(hits(t, tp, 60)); got != "b1,b2" {
		t.Fatalf("b3 weight 0: answers from %s", got)
	}
	var bl backendListView
	c.json(&bl, "backend", "list", "web")
	if len(bl.Backends) != 3 || bl.Backends[2].Address != b3 || bl.Backends[2].Weight == nil || *bl.Backends[2].Weight != 0 || bl.Backends[0].State != "active" {
		t.Fatalf("backend list -o json: %+v", bl)
	}

	// Disabled b2: only b1 is left.
	c.ok("backend", "disable", "web", b2)
	if got := names(hits(t, tp, 30)); got != "b1" {
		t.Fatalf("b2 disabled, b3 weight 0: answers from %s", got)
	}
	c.ok("backend", "rm", "web", b3)
	out = c.ok("backend", "list", "web")
	if strings.Contains(out, b3) || !strings.Contains(out, "disabled") || !strings.Contains(out, "up (ok)") {
		t.Fatalf("backend list after rm:\n%s", out)
	}
	if got := names(hits(t, tp, 20)); got != "b1" {
		t.Fatalf("after rm: answers from %s", got)
	}

	// Bad input: the API's problem names the field, exit 1.
	if code, _, errs := c.run("backend", "add", "web", "nope"); code != 1 || !strings.Contains(errs, `address: "nope" is not an IP address`) {
		t.Fatalf("bad backend: exit %d, %s", code, errs)
	}

	// Observing: every -o json parses and says what happened.
	var st statsView
	c.json(&st, "stats")
	if st.Totals.RxPackets == 0 || st.Services["web"].Packets == 0 || st.Conntrack.Capacity < 65536 {
		t.Fatalf("stats -o json: %+v", st)
	}
	var fl flowList
	c.json(&fl, "flows", "--service", "web", "--limit", "500")
	if len(fl.Flows) == 0 {
		t.Fatal("flows -o json: no flows after 270 connections")
	}
	for _, f := range fl.Flows {
		if f.Service != "web" || f.VIP != vip+":80" || f.Protocol != "tcp" {
			t.Fatalf("flows -o json: %+v", f)
		}
	}
	var lk lookupView
	c.json(&lk, "lookup", "--protocol", "tcp", "--src", tp.Client.Addr.String()+":40000", "--dst", vip+":80")
	if lk.Action != "forward" || lk.Service != "web" || !strings.HasPrefix(lk.Backend, b1) || lk.Why == "" {
		t.Fatalf("lookup -o json: %+v", lk)
	}
	c.json(&hr, "health")
	if hr.Backends["web/"+b1].State != "up" || hr.Counters.Checks == 0 {
		t.Fatalf("health -o json: %+v", hr)
	}
	for _, cmd := range [][]string{{"stats"}, {"flows"}, {"health"}, {"service", "get", "web"}, {"lookup", "--src", "10.10.0.2:1", "--dst", vip + ":80"}} {
		if out := c.ok(cmd...); strings.TrimSpace(out) == "" {
			t.Fatalf("xlbctl %v: empty table", cmd)
		}
	}

	// Removing the service: the VIP stops answering.
	c.ok("service", "rm", "web")
	hc := tp.HTTPClient(time.Second)
	for i := 0; i < 3; i++ {
		if resp, err := hc.Get("http://" + vip + "/"); err == nil {
			resp.Body.Close()
			t.Fatalf("the VIP still answers after service rm (status %d)", resp.StatusCode)
		}
	}
	if out := c.ok("service", "list"); !strings.Contains(out, "no services") {
		t.Fatalf("service list at the end:\n%s", out)
	}
}
