package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/mgmt"
	"github.com/xlb/xlb/mgmt/health"
)

// fakeDP is the data plane behind the real mgmt handler: Apply validates
// the configuration as the real one does and keeps it; the rest answer
// fixed data.
type fakeDP struct {
	mu      sync.Mutex
	applied *config.File
	flowsQ  [2]any // the last Flows(service, limit)
	lookupQ dataplane.Tuple
}

func (f *fakeDP) Apply(cfg *config.File) error {
	if _, err := cfg.CompileAll(); err != nil {
		return err // a *config.FieldError naming the key
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = cfg.Clone()
	return nil
}

func (f *fakeDP) config() *config.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied.Clone()
}

func (f *fakeDP) Stats() mgmt.Stats {
	return mgmt.Stats{
		UptimeSeconds: 3725, Generation: 4, Workers: 2,
		Totals: mgmt.Totals{RxPackets: 1500, RxBytes: 180000, TxPackets: 1400, TxBytes: 170000, Passed: 7, Dropped: 93, NewFlows: 12},
		Drops:  map[string]uint64{"bad_l4": 90, "truncated": 3, "no_backend": 0},
		Passes: map[string]uint64{"not_ip": 7, "no_service": 0},
		Services: map[string]mgmt.ServiceStats{
			"web": {ObjStats: mgmt.ObjStats{Packets: 1000, Bytes: 150000, NewFlows: 10, Flows: 2},
				Backends: map[string]mgmt.ObjStats{"10.0.0.11": {Packets: 600, Flows: 1}, "10.0.0.12:80": {Packets: 400, Flows: 1}}},
		},
		Runners:   mgmt.RunnerStats{RxBatches: 50, TxDropped: 2},
		Conntrack: mgmt.ConntrackStats{Entries: 2, Capacity: 65536},
	}
}

var fakeFlows = []mgmt.Flow{
	{Service: "web", Protocol: "tcp", Client: "203.0.113.7:40000", VIP: "198.51.100.10:80", Backend: "10.0.0.11", State: "established"},
	{Service: "web", Protocol: "tcp", Client: "203.0.113.8:40001", VIP: "198.51.100.10:80", Backend: "10.0.0.12:80", State: "syn"},
}

func (f *fakeDP) Flows(service string, limit int) ([]mgmt.Flow, error) {
	f.mu.Lock()
	f.flowsQ = [2]any{service, limit}
	f.mu.Unlock()
	var out []mgmt.Flow
	for _, fl := range fakeFlows {
		if (service == "" || fl.Service == service) && len(out) < limit {
			out = append(out, fl)
		}
	}
	return out, nil
}

func (f *fakeDP) Lookup(t dataplane.Tuple) (dataplane.FlowDecision, error) {
	f.mu.Lock()
	f.lookupQ = t
	f.mu.Unlock()
	return dataplane.FlowDecision{Action: dataplane.ActTx, Service: "web", Mode: dataplane.ModeDSR, Backend: "10.0.0.11", Existing: t.SrcPort == 1111}, nil
}

// testConfig has a service without health checks (web) and one with a
// tcp check whose probes the fake dialer answers (api: .21 up, .22 down).
func testConfig() *config.File {
	w := 50
	return &config.File{Services: []config.Service{
		{Name: "web", VIP: "198.51.100.10", Port: 80, Backends: []config.Backend{
			{Address: "10.0.0.11"}, {Address: "10.0.0.12", Port: 80, Weight: &w}}},
		{Name: "api", VIP: "198.51.100.20", Port: 443, Mode: "nat",
			Health:   config.Health{Type: "tcp", Interval: config.Duration(20 * time.Millisecond), Timeout: config.Duration(10 * time.Millisecond), Rise: 1, Fall: 1},
			Backends: []config.Backend{{Address: "10.0.0.21", Port: 8443}, {Address: "10.0.0.22", Port: 8443}}},
	}}
}

// fakeDial answers the health probes: 10.0.0.21 accepts, others refuse.
func fakeDial(ctx context.Context, network, addr string) (net.Conn, error) {
	if strings.HasPrefix(addr, "10.0.0.21:") {
		c, s := net.Pipe()
		go func() { time.Sleep(10 * time.Millisecond); s.Close() }()
		return c, nil
	}
	return nil, &net.OpError{Op: "dial", Net: network, Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

type testEnv struct {
	t   *testing.T
	dp  *fakeDP
	srv *mgmt.Server
	ts  *httptest.Server
	env map[string]string
}

// newEnv serves the real mgmt handler over a fake data plane, token "t".
func newEnv(t *testing.T) *testEnv {
	t.Helper()
	dp := &fakeDP{}
	srv, err := mgmt.New(mgmt.Options{Config: testConfig(), Dataplane: dp, Token: "t",
		HealthDial: health.Options{Dial: fakeDial, Jitter: func(time.Duration) time.Duration { return 0 }}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return &testEnv{t: t, dp: dp, srv: srv, ts: ts, env: map[string]string{"XLB_API": ts.URL, "XLB_API_TOKEN": "t"}}
}

type result struct {
	code     int
	out, err string
}

// run runs xlbctl in-process with stdin.
func (e *testEnv) runIn(stdin string, args ...string) result {
	var out, errb strings.Builder
	code := run(args, func(k string) string { return e.env[k] }, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (e *testEnv) run(args ...string) result { return e.runIn("", args...) }

// ok runs xlbctl and fails the test unless it exits 0.
func (e *testEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("xlbctl %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// fails runs xlbctl, wants exit code and stderr containing every want.
func (e *testEnv) fails(code int, args []string, want ...string) result {
	e.t.Helper()
	r := e.run(args...)
	if r.code != code {
		e.t.Fatalf("xlbctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, code, r.out, r.err)
	}
	for _, w := range want {
		if !strings.Contains(r.err, w) {
			e.t.Fatalf("xlbctl %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, r.err)
		}
	}
	return r
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Fatalf("%s lacks %q:\n%s", what, w, s)
		}
	}
}

func lacks(t *testing.T, what, s string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(s, n) {
			t.Fatalf("%s has %q:\n%s", what, n, s)
		}
	}
}

func parseJSON(t *testing.T, what, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: not a JSON object: %v\n%s", what, err, s)
	}
	return v
}

func parseYAML(t *testing.T, what, s string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil || v == nil {
		t.Fatalf("%s: not a YAML mapping: %v\n%s", what, err, s)
	}
	return v
}

func writeTemp(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func findSvc(f *config.File, name string) *config.Service {
	for i := range f.Services {
		if f.Services[i].Name == name {
			return &f.Services[i]
		}
	}
	return nil
}

func findBe(s *config.Service, key string) *config.Backend {
	if s == nil {
		return nil
	}
	for i := range s.Backends {
		if s.Backends[i].Key() == key {
			return &s.Backends[i]
		}
	}
	return nil
}

// TestEveryCommandEveryFormat runs every command in table, json and yaml
// form against the real API; json must parse, yaml too.
func TestEveryCommandEveryFormat(t *testing.T) {
	e := newEnv(t)
	svcFile := writeTemp(t, "svc.yaml", "name: FILE\nvip: 198.51.100.40\nport: 53\nprotocol: udp\nbackends:\n  - {address: 10.0.0.41}\n")
	cfgJSON := e.ok("config", "get", "-o", "json")
	cfgFile := writeTemp(t, "xlb.json", cfgJSON)
	// Each case is run once per format; FMT in an argument becomes the
	// format so names stay unique.
	cases := []struct {
		args  []string
		empty bool // no output in json/yaml (204 No Content)
	}{
		{args: []string{"service", "list"}},
		{args: []string{"service", "get", "web"}},
		{args: []string{"service", "add", "--name", "s-FMT", "--vip", "198.51.100.50", "--port", "80", "--backend", "10.0.0.51:80,weight=7", "--backend", "10.0.0.52"}},
		{args: []string{"service", "rm", "s-FMT"}, empty: true},
		{args: []string{"backend", "list", "web"}},
		{args: []string{"backend", "add", "web", "10.0.0.13", "--weight", "20"}},
		{args: []string{"backend", "drain", "web", "10.0.0.13"}},
		{args: []string{"backend", "disable", "web", "10.0.0.13"}},
		{args: []string{"backend", "enable", "web", "10.0.0.13"}},
		{args: []string{"backend", "weight", "web", "10.0.0.13", "30"}},
		{args: []string{"backend", "rm", "web", "10.0.0.13"}, empty: true},
		{args: []string{"stats"}},
		{args: []string{"flows"}},
		{args: []string{"lookup", "--protocol", "tcp", "--src", "203.0.113.7:40000", "--dst", "198.51.100.10:80"}},
		{args: []string{"health"}},
		{args: []string{"config", "get"}},
		{args: []string{"config", "apply", "-f", cfgFile}},
		{args: []string{"version"}},
	}
	covered := map[string]bool{}
	for _, format := range []string{"table", "json", "yaml"} {
		for _, c := range cases {
			args := make([]string, len(c.args))
			for i, a := range c.args {
				args[i] = strings.ReplaceAll(a, "FMT", format)
			}
			args = append(args, "-o", format)
			out := e.ok(args...)
			what := strings.Join(args, " ")
			cmd := findCommand(c.args)
			if cmd == nil {
				t.Fatalf("%s: no such command", what)
			}
			covered[cmd.path] = true
			switch {
			case c.empty && format != "table":
				if out != "" {
					t.Fatalf("%s: want no output, got:\n%s", what, out)
				}
			case format == "json":
				parseJSON(t, what, out)
			case format == "yaml":
				parseYAML(t, what, out)
			case c.args[0] == "config" && c.args[1] == "get":
				parseYAML(t, what+" (table means yaml)", out)
			default:
				if strings.TrimSpace(out) == "" {
					t.Fatalf("%s: no output", what)
				}
			}
		}
	}
	// service add -f: YAML file, JSON on stdin.
	e.ok("service", "add", "-f", svcFile)
	if s := findSvc(e.dp.config(), "FILE"); s == nil || s.Protocol != "udp" || len(s.Backends) != 1 {
		t.Fatalf("service from file not applied: %+v", s)
	}
	r := e.runIn(`{"name": "STDIN", "vip": "198.51.100.41", "port": 80, "backends": [{"address": "10.0.0.42"}]}`, "service", "add", "-f", "-")
	if r.code != 0 || findSvc(e.dp.config(), "STDIN") == nil {
		t.Fatalf("service add -f -: %+v", r)
	}
	covered["service add"] = true
	for _, c := range commands {
		if !covered[c.path] {
			t.Errorf("command %q is not exercised", c.path)
		}
	}
}

func TestServiceTables(t *testing.T) {
	e := newEnv(t)
	out := e.ok("service", "list")
	contains(t, "service list", out, "NAME", "VIP:PORT", "PROTO", "MODE", "SCHED", "BACKENDS",
		"web", "198.51.100.10:80", "tcp", "dsr", "maglev", "2/2 up", "api", "198.51.100.20:443", "nat")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Index(lines[0], "VIP:PORT") != strings.Index(lines[1], "198.51.100") {
		t.Fatalf("service list is not 3 aligned rows:\n%s", out)
	}
	out = e.ok("service", "get", "web")
	contains(t, "service get", out, "NAME:", "web", "HEALTH:", "none", "TRAFFIC:", "1000 packets", "BACKENDS:", "2/2 up",
		"ADDRESS", "PORT", "WEIGHT", "STATE", "HEALTH", "FLOWS", "PACKETS", "10.0.0.11", "10.0.0.12", "up (no check)", "600")

	// Add from flags: only the keys given are sent; the API fills defaults.
	out = e.ok("service", "add", "--name", "dns", "--vip", "198.51.100.53", "--port", "53", "--protocol", "udp",
		"--scheduler", "sh", "--backend", "10.0.0.61,weight=10,state=draining", "--backend", "[2001:db8::62]:53",
		"--health-type", "udp", "--health-send", "ping", "--health-receive", "pong", "--health-interval", "3s", "--health-rise", "2")
	contains(t, "service add", out, "service dns added", "198.51.100.53:53 udp", "2 backends")
	s := findSvc(e.dp.config(), "dns")
	if s == nil || s.Scheduler != "sh" || s.Mode != "dsr" || s.Health.Type != "udp" || s.Health.Send != "ping" ||
		s.Health.Interval.D() != 3*time.Second || s.Health.Rise != 2 || len(s.Backends) != 2 ||
		*s.Backends[0].Weight != 10 || s.Backends[0].State != "draining" || s.Backends[1].Key() != "[2001:db8::62]:53" {
		t.Fatalf("service add applied %+v", s)
	}
	// The name may be the argument.
	e.ok("service", "add", "named", "--vip", "198.51.100.54", "--backend", "10.0.0.63")
	if findSvc(e.dp.config(), "named") == nil {
		t.Fatal("service add NAME not applied")
	}

	// Bad input: the API's problem, field and value, exit 1.
	e.fails(1, []string{"service", "add", "--name", "bad", "--vip", "198.51.100.55", "--backend", "nope"},
		`xlbctl: 400 Bad Request: backends[0].address: "nope" is not an IP address`)
	e.fails(1, []string{"service", "add", "--name", "web", "--vip", "198.51.100.56", "--backend", "10.0.0.1"},
		`409 Conflict: a service named "web" exists`)
	e.fails(1, []string{"service", "add", "-f", writeTemp(t, "x.yaml", "name: x\nvip: 198.51.100.57\ncolour: blue\nbackends: [{address: 10.0.0.1}]\n")},
		"400 Bad Request: colour: unknown key")
	e.fails(1, []string{"service", "add", "-f", writeTemp(t, "x.json", "{nope")}, "x.json is not valid JSON")
	e.fails(1, []string{"service", "get", "nosuch"}, `404 Not Found: no service "nosuch"`)

	out = e.ok("service", "rm", "dns")
	contains(t, "service rm", out, "service dns removed")
	if findSvc(e.dp.config(), "dns") != nil {
		t.Fatal("service rm not applied")
	}
	e.fails(1, []string{"service", "rm", "dns"}, `404 Not Found: no service "dns"`)
}

func TestBackendCommands(t *testing.T) {
	e := newEnv(t)
	out := e.ok("backend", "add", "web", "10.0.0.13:80", "--weight", "5", "--mac", "02:00:00:00:00:13")
	contains(t, "backend add", out, "backend 10.0.0.13:80 added to web (weight 5, active)")
	b := findBe(findSvc(e.dp.config(), "web"), "10.0.0.13:80")
	if b == nil || *b.Weight != 5 || b.MAC != "02:00:00:00:00:13" {
		t.Fatalf("backend add applied %+v", b)
	}
	// Flags before the arguments work as well as after.
	e.ok("backend", "add", "--state", "disabled", "web", "2001:db8::14")
	if b := findBe(findSvc(e.dp.config(), "web"), "2001:db8::14"); b == nil || b.State != "disabled" {
		t.Fatalf("IPv6 backend: %+v", b)
	}
	e.ok("backend", "add", "web", "[2001:db8::15]:80")

	for _, c := range []struct{ verb, state string }{{"drain", "draining"}, {"disable", "disabled"}, {"enable", "active"}} {
		out := e.ok("backend", c.verb, "web", "10.0.0.13:80")
		contains(t, "backend "+c.verb, out, "backend 10.0.0.13:80 of web: "+c.state+", weight 5")
		if b := findBe(findSvc(e.dp.config(), "web"), "10.0.0.13:80"); b.State != c.state {
			t.Fatalf("backend %s: state %s", c.verb, b.State)
		}
	}
	// {backend} forms: address alone, [v6]:port (URL-escaped).
	e.ok("backend", "drain", "web", "10.0.0.11")
	e.ok("backend", "weight", "web", "[2001:db8::15]:80", "0")
	if b := findBe(findSvc(e.dp.config(), "web"), "[2001:db8::15]:80"); b == nil || *b.Weight != 0 {
		t.Fatalf("weight of [v6]:port: %+v", b)
	}
	out = e.ok("backend", "list", "web")
	contains(t, "backend list", out, "ADDRESS", "PORT", "WEIGHT", "STATE", "HEALTH", "FLOWS", "PACKETS",
		"10.0.0.11", "draining", "10.0.0.13", "2001:db8::15")
	var l backendListView
	if err := json.Unmarshal([]byte(e.ok("backend", "list", "web", "-o", "json")), &l); err != nil || len(l.Backends) != 5 {
		t.Fatalf("backend list -o json: %v %+v", err, l)
	}

	out = e.ok("backend", "rm", "web", "10.0.0.13:80")
	contains(t, "backend rm", out, "backend 10.0.0.13:80 removed from web")
	if findBe(findSvc(e.dp.config(), "web"), "10.0.0.13:80") != nil {
		t.Fatal("backend rm not applied")
	}
	e.fails(1, []string{"backend", "drain", "web", "10.0.0.99"}, `404 Not Found: service "web" has no backend 10.0.0.99`)
	e.fails(1, []string{"backend", "add", "web", "nope"}, `400 Bad Request: address: "nope" is not an IP address`)
	e.fails(1, []string{"backend", "add", "web", "10.0.0.11"}, "409 Conflict")
	e.fails(1, []string{"backend", "weight", "web", "10.0.0.11", "70000"}, "weight: 70000 is outside 0..65536")
	e.fails(1, []string{"backend", "list", "nosuch"}, `404 Not Found: no service "nosuch"`)
	// The field is named when the detail does not say it.
	e.fails(1, []string{"backend", "drain", "web", "not-an-address"}, `backend "not-an-address" is not an address`)
}

func TestHealthTables(t *testing.T) {
	e := newEnv(t)
	// The fake dialer brings 10.0.0.21 up and 10.0.0.22 down within a few
	// intervals.
	deadline := time.Now().Add(5 * time.Second)
	var out string
	for {
		out = e.ok("health")
		if strings.Contains(out, "up") && strings.Contains(out, "down") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	contains(t, "health", out, "SERVICE", "BACKEND", "STATE", "LAST CHECK", "RESULT", "LATENCY",
		"api", "10.0.0.21:8443", "up", "10.0.0.22:8443", "down", "connection refused", "targets")
	lacks(t, "health", out, "web") // no check
	out = e.ok("backend", "list", "api")
	contains(t, "backend list api", out, "up (ok)", "down (", "connection refused")
	contains(t, "service list", e.ok("service", "list"), "1/2 up")
	h := parseJSON(t, "health -o json", e.ok("health", "-o", "json"))
	if bs, _ := h["backends"].(map[string]any); len(bs) != 2 {
		t.Fatalf("health -o json: %v", h)
	}
}

func TestStatsFlowsLookup(t *testing.T) {
	e := newEnv(t)
	out := e.ok("stats")
	contains(t, "stats", out, "UPTIME:", "1h2m", "GENERATION:", "4", "CONNTRACK:", "2 of 65536",
		"received", "1500 packets", "dropped", "93",
		"DROPS BY REASON", "bad_l4", "90", "truncated", "PASSES BY REASON", "not_ip",
		"I/O LOSSES", "tx_dropped", "SERVICE", "PACKETS", "web", "1000")
	lacks(t, "stats", out, "no_backend", "no_service", "rx_batches") // zero counters and non-losses
	if strings.Index(out, "bad_l4") > strings.Index(out, "truncated") {
		t.Fatalf("drops not largest first:\n%s", out)
	}
	st := parseJSON(t, "stats -o json", e.ok("stats", "-o", "json"))
	if st["totals"].(map[string]any)["rx_packets"].(float64) != 1500 {
		t.Fatalf("stats -o json: %v", st)
	}

	out = e.ok("flows")
	contains(t, "flows", out, "SERVICE", "PROTO", "CLIENT", "VIP", "BACKEND", "STATE", "203.0.113.7:40000", "established", "10.0.0.12:80", "syn")
	lacks(t, "flows", out, "SNAT")
	e.ok("flows", "--service", "web", "--limit", "1")
	if q := e.dp.flowsQ; q[0] != "web" || q[1] != 1 {
		t.Fatalf("flows query reached the dataplane as %v", q)
	}
	e.fails(1, []string{"flows", "--service", "nosuch"}, `404 Not Found: no service "nosuch"`)
	e.fails(1, []string{"flows", "--limit", "0"}, `400 Bad Request: limit: "0" is not a number 1..10000`)

	out = e.ok("lookup", "--src", "203.0.113.7:1111", "--dst", "198.51.100.10:80")
	contains(t, "lookup", out, "ACTION:", "forward", "SERVICE:", "web (dsr)", "BACKEND:", "10.0.0.11", "EXISTING:", "yes", "WHY:", "connection table")
	out = e.ok("lookup", "--protocol", "udp", "--src", "[2001:db8::7]:5353", "--dst", "[2001:db8::10]:53")
	contains(t, "lookup", out, "EXISTING:", "no", "new flow")
	if q := e.dp.lookupQ; q.Proto != 17 || q.SrcPort != 5353 || q.Dst.String() != "2001:db8::10" {
		t.Fatalf("lookup reached the dataplane as %+v", q)
	}
	lk := parseJSON(t, "lookup -o json", e.ok("lookup", "-o", "json", "--src", "203.0.113.7:2", "--dst", "198.51.100.10:80"))
	if lk["backend"] != "10.0.0.11" || lk["action"] != "forward" {
		t.Fatalf("lookup -o json: %v", lk)
	}
	e.fails(1, []string{"lookup", "--src", "203.0.113.7", "--dst", "198.51.100.10:80"}, `400 Bad Request: src: "203.0.113.7" is not address:port`)
	e.fails(1, []string{"lookup", "--protocol", "icmp", "--src", "203.0.113.7:1", "--dst", "198.51.100.10:80"}, `protocol: "icmp" is not tcp or udp`)
}

func TestConfigGetApply(t *testing.T) {
	e := newEnv(t)
	y := e.ok("config", "get")
	cfg := parseYAML(t, "config get", y)
	if _, ok := cfg["services"]; !ok || !strings.HasPrefix(y, "interfaces:") {
		t.Fatalf("config get: not the configuration in file order:\n%s", y)
	}
	// A YAML file (as config get wrote it, edited) is sent as YAML.
	edited := strings.Replace(y, "name: web", "name: www", 1)
	p := writeTemp(t, "xlb.yaml", edited)
	out := e.ok("config", "apply", "-f", p)
	contains(t, "config apply", out, "configuration applied: 2 services")
	if findSvc(e.dp.config(), "www") == nil || findSvc(e.dp.config(), "web") != nil {
		t.Fatalf("config apply not applied: %+v", e.dp.config().Services)
	}
	// JSON from stdin.
	j := e.ok("config", "get", "-o", "json")
	parseJSON(t, "config get -o json", j)
	r := e.runIn(strings.Replace(j, `"name": "www"`, `"name": "w3"`, 1), "config", "apply", "-f", "-")
	if r.code != 0 || findSvc(e.dp.config(), "w3") == nil {
		t.Fatalf("config apply -f -: %+v", r)
	}
	// Errors name the key; restart keys are listed.
	e.fails(1, []string{"config", "apply", "-f", writeTemp(t, "bad.yaml", strings.Replace(y, "mode: dsr", "mode: warp", 1))},
		"400 Bad Request: services[0].mode:")
	e.fails(1, []string{"config", "apply", "-f", writeTemp(t, "restart.yaml", strings.Replace(y, "workers: auto", "workers: \"3\"", 1))},
		"409 Conflict", "these keys need a restart of xlb: lb.workers")
	e.fails(1, []string{"config", "apply", "-f", filepath.Join(t.TempDir(), "missing.yaml")}, "no such file")
}

func TestTokens(t *testing.T) {
	e := newEnv(t)
	delete(e.env, "XLB_API_TOKEN")
	// Reads need no token; changes do.
	e.ok("service", "list")
	r := e.fails(1, []string{"backend", "drain", "web", "10.0.0.11"},
		"xlbctl: 401 Unauthorized: missing bearer token (Authorization: Bearer <token>)", "set XLB_API_TOKEN or --token-file")
	if r.out != "" {
		t.Fatalf("stdout on error: %q", r.out)
	}
	wrong := writeTemp(t, "wrong", "nope\n")
	e.fails(1, []string{"--token-file", wrong, "backend", "drain", "web", "10.0.0.11"}, "401 Unauthorized: wrong bearer token")
	right := writeTemp(t, "right", "t\n")
	e.ok("backend", "drain", "web", "10.0.0.11", "--token-file", right)
	e.env["XLB_API_TOKEN"] = "nope"
	e.ok("--token-file", right, "backend", "enable", "web", "10.0.0.11") // the flag wins
	e.fails(1, []string{"--token-file", filepath.Join(t.TempDir(), "none"), "stats"}, "--token-file: open")
	e.fails(1, []string{"--token-file", writeTemp(t, "empty", "\n"), "stats"}, "is empty")
}

func TestConnectionErrors(t *testing.T) {
	e := newEnv(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	url := closed.URL
	closed.Close()
	e.fails(1, []string{"--api", url, "service", "list"},
		"xlbctl: cannot reach the xlb API at "+url+": connection refused (is xlb running? --api / XLB_API)")
	// host:port means http://host:port.
	e.ok("--api", strings.TrimPrefix(e.ts.URL, "http://"), "service", "list")

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	start := time.Now()
	e.fails(1, []string{"stats", "--api", slow.URL, "--timeout", "100ms"}, "no answer within 100ms (--timeout)")
	if time.Since(start) > 3*time.Second {
		t.Fatal("--timeout not applied")
	}

	// Not xlb (no problem+json): the status and the first line.
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream down\nmore", http.StatusBadGateway)
	}))
	defer proxy.Close()
	e.fails(1, []string{"--api", proxy.URL, "stats"}, "xlbctl: 502 Bad Gateway: upstream down …")
	// A path prefix in --api is kept.
	var got string
	pfx := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.EscapedPath()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"backends": []}`))
	}))
	defer pfx.Close()
	e.ok("--api", pfx.URL+"/xlb/", "backend", "list", "web")
	if got != "/xlb/api/v1/services/web/backends" {
		t.Fatalf("path with --api prefix: %s", got)
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		args []string
		want string
	}{
		{nil, "xlbctl: no command"},
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"service"}, "service: missing subcommand"},
		{[]string{"backend", "frob"}, `backend: unknown subcommand "frob"`},
		{[]string{"service", "get"}, "service get: missing NAME"},
		{[]string{"service", "get", "a", "b"}, `service get: unexpected argument "b"`},
		{[]string{"backend", "drain", "web"}, "backend drain: missing BACKEND"},
		{[]string{"backend", "weight", "web", "10.0.0.11"}, "backend weight: missing N"},
		{[]string{"backend", "weight", "web", "10.0.0.11", "heavy"}, `backend weight: "heavy" is not a number`},
		{[]string{"backend", "add", "web", "10.0.0.1", "--weight", "x"}, `invalid value "x" for flag -weight`},
		{[]string{"stats", "--frob"}, "stats: flag provided but not defined: -frob"},
		{[]string{"stats", "-o", "xml"}, `-o "xml" is not table, json or yaml`},
		{[]string{"stats", "--timeout", "soon"}, `--timeout "soon" is not a positive duration`},
		{[]string{"stats", "--api"}, "flag needs an argument: --api"},
		{[]string{"--api", "ftp://x", "stats"}, "is not an http:// or https:// URL"},
		{[]string{"--frob", "stats"}, "unknown global flag --frob"},
		{[]string{"lookup", "--dst", "198.51.100.10:80"}, "lookup: missing --src"},
		{[]string{"service", "add", "--vip", "198.51.100.1"}, "service add: missing --name"},
		{[]string{"service", "add", "-f", "x.yaml", "--vip", "198.51.100.1"}, "-f takes the whole service; drop --vip"},
		{[]string{"service", "add", "--name", "x", "--backend", "10.0.0.1,colour=red"}, `unknown key "colour"`},
		{[]string{"service", "add", "--name", "x", "--backend", "10.0.0.1,weight=lots"}, `weight "lots" is not a number`},
		{[]string{"config", "apply"}, "config apply: missing -f FILE"},
		{[]string{"config", "apply", "x.yaml"}, `config apply: unexpected argument "x.yaml"`},
		{[]string{"help", "frob"}, `help: no command "frob"`},
		{[]string{"help", "backend", "frob"}, `help: no command "backend frob"`},
	}
	for _, c := range cases {
		r := e.fails(2, c.args, c.want, "usage: xlbctl")
		if r.out != "" {
			t.Fatalf("xlbctl %v: usage error wrote to stdout: %q", c.args, r.out)
		}
	}
}

func TestHelpExitsZero(t *testing.T) {
	e := newEnv(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	e.env = map[string]string{"XLB_API": closed.URL} // help never asks the API
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "backend"}, {"help", "backend", "drain"}, {"-o", "json", "--help"}} {
		contains(t, strings.Join(args, " "), e.ok(args...), "usage: xlbctl")
	}
	contains(t, "main help", e.ok("--help"), "service list", "backend weight", "config apply", "--api URL", "Exit status")
	for g := range groups {
		for _, h := range []string{"--help", "-h", "help"} {
			out := e.ok(g, h)
			contains(t, g+" "+h, out, "usage: xlbctl "+g)
			for _, v := range groupVerbs(g) {
				contains(t, g+" "+h, out, g+" "+v)
			}
		}
	}
	for _, c := range commands {
		words := strings.Fields(c.path)
		for _, h := range []string{"--help", "-h"} {
			out := e.ok(append(words, h)...)
			contains(t, c.path+" "+h, out, "usage: xlbctl "+c.synopsis(), "Global flags")
		}
		// --help wins over missing arguments and comes after others too.
		e.ok(append(append(words, "x", "y"), "--help")...)
	}
	contains(t, "service add --help", e.ok("service", "add", "--help"), "-backend", "-health-path", "-vip")
	contains(t, "version --help", e.ok("version", "--help"), "-server")
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	if out := e.ok("version"); out != "xlbctl dev\n" {
		t.Fatalf("version: %q", out)
	}
	contains(t, "version --server", e.ok("version", "--server"), "xlbctl dev", "xlb dev at "+e.ts.URL)
	v := parseJSON(t, "version --server -o json", e.ok("version", "--server", "-o", "json"))
	if v["server"] != "dev" || v["client"] != "dev" {
		t.Fatalf("version -o json: %v", v)
	}
}

func TestGlobalFlagsAnywhere(t *testing.T) {
	e := newEnv(t)
	e.env = map[string]string{} // nothing from the environment
	a := e.ok("--api", e.ts.URL, "-o", "json", "service", "get", "web")
	b := e.ok("service", "get", "web", "--output=json", "--api="+e.ts.URL)
	c := e.ok("service", "--api", e.ts.URL, "get", "-o=json", "web")
	if a != b || a != c {
		t.Fatalf("global flags' position changed the output:\n%s\n%s\n%s", a, b, c)
	}
	parseJSON(t, "service get -o json", a)
}

func TestCACert(t *testing.T) {
	dp := &fakeDP{}
	srv, err := mgmt.New(mgmt.Options{Config: testConfig(), Dataplane: dp, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	ts.StartTLS()
	defer ts.Close()
	e := &testEnv{t: t, dp: dp, srv: srv, ts: ts, env: map[string]string{"XLB_API": ts.URL}}
	e.fails(1, []string{"stats"}, "cannot reach the xlb API at "+ts.URL, "certificate")
	ca := writeTemp(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})))
	e.ok("--cacert", ca, "stats")
	e.fails(1, []string{"--cacert", writeTemp(t, "junk.pem", "junk"), "stats"}, "no PEM certificate")
}

func TestJSONToYAMLKeepsTypes(t *testing.T) {
	in := `{"z": "100", "a": "true", "e": "", "n": 100, "b": true, "nil": null, "list": [{"x": "1.5"}], "s": "plain", "multi": "a\nb"}`
	y, err := jsonToYAML([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	var back, want any
	if err := yaml.Unmarshal(y, &back); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(in), &want)
	bj, _ := json.Marshal(back)
	wj, _ := json.Marshal(want)
	if string(bj) != string(wj) {
		t.Fatalf("YAML changed the document:\n%s\nback: %s\nwant: %s", y, bj, wj)
	}
	if !strings.HasPrefix(string(y), "z: ") || strings.Contains(string(y), "{") {
		t.Fatalf("not block YAML in key order:\n%s", y)
	}
}

func TestAPIErrorText(t *testing.T) {
	cases := []struct {
		e    apiError
		want string
	}{
		{apiError{Status: 400, Problem: problem{Title: "Bad Request", Status: 400, Detail: `backends[0].address: "nope" is not an IP address`, Field: "backends[0].address", Value: "nope"}},
			`400 Bad Request: backends[0].address: "nope" is not an IP address`},
		{apiError{Status: 400, Problem: problem{Title: "Bad Request", Status: 400, Detail: "bad thing", Field: "port", Value: "99999"}},
			`400 Bad Request: bad thing (field port, value "99999")`},
		{apiError{Status: 503}, "503 Service Unavailable"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
	var ce error = &connError{base: "http://x", timeout: time.Second, err: errors.New("boom")}
	if !strings.Contains(ce.Error(), "cannot reach the xlb API at http://x: boom") {
		t.Fatal(ce)
	}
}
