package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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

const testToken = "test-token-1234"

// apiClient talks to xlb's API from inside the lb namespace.
type apiClient struct {
	t     testing.TB
	c     *http.Client
	token string
}

func newAPI(t testing.TB, tp *netns.Topology) *apiClient {
	return &apiClient{t: t, c: tp.LB.HTTPClient(5 * time.Second), token: testToken}
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResp) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %d %s: %v", r.status, r.body, err)
	}
}

func (a *apiClient) try(method, path string, body any, hdr ...string) (apiResp, error) {
	var rd io.Reader
	if body != nil {
		b, ok := body.([]byte)
		if !ok {
			var err error
			if b, err = json.Marshal(body); err != nil {
				return apiResp{}, err
			}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+apiAddr+path, rd)
	if err != nil {
		return apiResp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := a.c.Do(req)
	if err != nil {
		return apiResp{}, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return apiResp{res.StatusCode, res.Header, b}, err
}

func (a *apiClient) do(method, path string, body any, hdr ...string) apiResp {
	a.t.Helper()
	r, err := a.try(method, path, body, hdr...)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// must requires a 2xx answer.
func (a *apiClient) must(method, path string, body any) apiResp {
	a.t.Helper()
	r := a.do(method, path, body)
	if r.status/100 != 2 {
		a.t.Fatalf("%s %s: %d %s", method, path, r.status, r.body)
	}
	return r
}

func (a *apiClient) backend(svc, key string) mgmt.BackendView {
	a.t.Helper()
	var bv mgmt.BackendView
	a.must("GET", "/api/v1/services/"+svc+"/backends/"+key, nil).decode(a.t, &bv)
	return bv
}

// apiConfig is a one-arm dsr configuration with a state file and a tcp
// health check, serving the backends named.
func apiConfig(t *testing.T, tp *netns.Topology, backends ...int) (cfgPath, statePath string) {
	t.Helper()
	dir := t.TempDir()
	statePath = filepath.Join(dir, "state.json")
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "lb: {workers: 1, conntrack: {capacity: 65536}}\n")
	fmt.Fprintf(&b, "api: {listen: %s, state_file: %s}\n", apiAddr, statePath)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    mode: dsr\n", tp.VIP)
	fmt.Fprintf(&b, "    health: {type: http, path: /healthz, interval: 300ms, timeout: 200ms, rise: 2, fall: 2}\n    backends:\n")
	for _, i := range backends {
		fmt.Fprintf(&b, "      - {address: %s}\n", tp.Backends[i].Addr)
	}
	cfgPath = filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, statePath
}

// serveEach starts each backend's HTTP server alone and returns the stop
// functions (so one can be stopped and started again).
func serveEach(t *testing.T, tp *netns.Topology) []func() {
	var stops []func()
	for _, h := range tp.Backends {
		stop, err := h.ServeHTTP()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		stops = append(stops, stop)
	}
	return stops
}

// answers sends n requests and counts the answers by backend; every
// request must succeed.
func answers(t *testing.T, tp *netns.Topology, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		r, err := get(t, tp, "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		seen[r.Backend]++
	}
	return seen
}

// waitFor polls cond every 50 ms until it holds or d passes; it returns
// how long that took.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start)
}

// stream is a raw HTTP GET of /stream through the VIP whose body is
// checked byte for byte as it arrives.
type stream struct {
	local string // the client's address:port
	done  chan error
}

func startStream(t *testing.T, tp *netns.Topology, bytes int64, delay time.Duration) *stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	c, err := tp.Client.DialContext(ctx, "tcp", tp.VIP.String()+":80")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &stream{local: c.LocalAddr().String(), done: make(chan error, 1)}
	fmt.Fprintf(c, "GET /stream?bytes=%d&chunk=16384&delay=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", bytes, delay)
	go func() {
		defer cancel()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			s.done <- err
			return
		}
		buf := make([]byte, 65536)
		var k int64
		for {
			n, err := res.Body.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] != netns.StreamByte(k) {
					s.done <- fmt.Errorf("byte %d is %d, want %d", k, buf[i], netns.StreamByte(k))
					return
				}
				k++
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				s.done <- fmt.Errorf("after %d bytes: %w", k, err)
				return
			}
		}
		if k != bytes {
			s.done <- fmt.Errorf("got %d bytes, want %d", k, bytes)
			return
		}
		s.done <- nil
	}()
	return s
}

// TestAPIDrivesTheBalancer is issue 7's proof over real HTTP against a
// running xlb: services and backends created, changed and removed through
// the API with real traffic through the VIP checked after each change; a
// long stream that survives backends being added, drained and removed;
// health checks that take a dead server out and bring it back; and the
// API's errors.
func TestAPIDrivesTheBalancer(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 4})
	stops := serveEach(t, tp)
	cfg, _ := apiConfig(t, tp, 0, 1, 3)
	lb := startXLBEnv(t, tp, cfg, []string{"XLB_API_TOKEN=" + testToken}, "--poll")
	api := newAPI(t, tp)
	name := func(i int) string { return tp.Backends[i].Name }
	key := func(i int) string { return tp.Backends[i].Addr.String() }

	waitFor(t, 5*time.Second, "every backend up", func() bool {
		for _, i := range []int{0, 1, 3} {
			if api.backend("web", key(i)).Health.State != "up" {
				return false
			}
		}
		return true
	})
	if seen := answers(t, tp, 60); len(seen) != 3 {
		t.Fatalf("three backends, answers by %v", seen)
	}

	// A long stream; whichever backend it lands on is "A".
	st := startStream(t, tp, 8<<20, 4*time.Millisecond)
	var a int
	waitFor(t, 3*time.Second, "the stream's flow in GET /api/v1/flows", func() bool {
		var fl struct{ Flows []mgmt.Flow }
		api.must("GET", "/api/v1/flows?service=web&limit=1000", nil).decode(t, &fl)
		for _, f := range fl.Flows {
			if f.Client == st.local {
				for _, i := range []int{0, 1, 3} {
					if f.Backend == key(i) {
						a = i
						return true
					}
				}
			}
		}
		return false
	})
	var others []int
	for _, i := range []int{0, 1, 3} {
		if i != a {
			others = append(others, i)
		}
	}
	b, d := others[0], others[1]
	t.Logf("stream on %s; B=%s D=%s", name(a), name(b), name(d))

	// Add C (backend 2): it takes traffic.
	r := api.must("POST", "/api/v1/services/web/backends", map[string]any{"address": key(2)})
	if r.status != 201 || !strings.HasSuffix(r.header.Get("Location"), "/backends/"+key(2)) {
		t.Fatalf("POST backend: %d %v", r.status, r.header)
	}
	waitFor(t, 10*time.Second, "C gets traffic", func() bool { return answers(t, tp, 20)[name(2)] > 0 })
	// Drain B: no new connection reaches it.
	api.must("PATCH", "/api/v1/services/web/backends/"+key(b), map[string]any{"state": "draining"})
	if seen := answers(t, tp, 60); seen[name(b)] > 0 {
		t.Fatalf("draining %s still got new connections: %v", name(b), seen)
	}
	// Remove D.
	api.must("DELETE", "/api/v1/services/web/backends/"+key(d), nil)
	if seen := answers(t, tp, 60); seen[name(d)] > 0 || seen[name(b)] > 0 {
		t.Fatalf("after removing %s: %v", name(d), seen)
	}
	if err := <-st.done; err != nil {
		t.Fatalf("the stream to %s did not survive the changes: %v", name(a), err)
	}

	// Health: B active again, then its server stops.
	api.must("PATCH", "/api/v1/services/web/backends/"+key(b), map[string]any{"state": "active"})
	waitFor(t, 5*time.Second, "B serving again", func() bool { return answers(t, tp, 20)[name(b)] > 0 })
	const interval, fall, rise = 300 * time.Millisecond, 2, 2
	stops[b]()
	took := waitFor(t, fall*interval+time.Second, "B down", func() bool { return api.backend("web", key(b)).Health.State == "down" })
	t.Logf("health: %s down %v after its server stopped (bound %v)", name(b), took.Round(time.Millisecond), fall*interval+time.Second)
	if seen := answers(t, tp, 60); seen[name(b)] > 0 {
		t.Fatalf("down backend %s got connections: %v", name(b), seen)
	}
	bv := api.backend("web", key(b))
	if bv.Health.LastError == "" || bv.State != "active" {
		t.Fatalf("down backend view: %+v", bv.Health)
	}
	restart, err := tp.Backends[b].ServeHTTP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(restart)
	took = waitFor(t, rise*interval+time.Second, "B up", func() bool { return api.backend("web", key(b)).Health.State == "up" })
	t.Logf("health: %s up %v after its server restarted (bound %v)", name(b), took.Round(time.Millisecond), rise*interval+time.Second)
	waitFor(t, 5*time.Second, "B serving after recovery", func() bool { return answers(t, tp, 20)[name(b)] > 0 })

	// Services: add one on a second VIP port, then remove it.
	svc := map[string]any{"name": "alt", "vip": tp.VIP.String(), "port": 8080, "mode": "dsr",
		"backends": []any{map[string]any{"address": key(0)}}}
	r = api.must("POST", "/api/v1/services", svc)
	if r.header.Get("Location") != "/api/v1/services/alt" {
		t.Fatalf("Location %q", r.header.Get("Location"))
	}
	resp, err := tp.HTTPClient(5 * time.Second).Get("http://" + tp.VIP.String() + ":8080/")
	if err != nil {
		t.Fatalf("new service: %v", err)
	}
	resp.Body.Close()
	api.must("DELETE", "/api/v1/services/alt", nil)
	if resp, err := tp.HTTPClient(time.Second).Get("http://" + tp.VIP.String() + ":8080/"); err == nil {
		resp.Body.Close()
		t.Fatal("a removed service still answers")
	}

	// Errors over real HTTP, each naming what is wrong; nothing changes.
	before := api.must("GET", "/api/v1/config", nil)
	noTok := &apiClient{t: t, c: api.c}
	wrong := &apiClient{t: t, c: api.c, token: "nope"}
	for _, c := range []struct {
		cl     *apiClient
		method string
		path   string
		body   any
		hdr    []string
		status int
		field  string
	}{
		{noTok, "DELETE", "/api/v1/services/web", nil, nil, 401, ""},
		{wrong, "DELETE", "/api/v1/services/web", nil, nil, 401, ""},
		{api, "POST", "/api/v1/services/web/backends", map[string]any{"address": "10.30.0.300"}, nil, 400, "address"},
		{api, "PATCH", "/api/v1/services/web/backends/" + key(0), map[string]any{"weight": 70000}, nil, 400, "weight"},
		{api, "POST", "/api/v1/services", svc, nil, 201, ""},
		{api, "POST", "/api/v1/services", svc, nil, 409, "name"},
		{api, "DELETE", "/api/v1/services/alt", nil, []string{"If-Match", `"stale"`}, 412, ""},
		{api, "GET", "/api/v1/services/none", nil, nil, 404, ""},
		{api, "PUT", "/api/v1/services", nil, nil, 405, ""},
		{api, "POST", "/api/v1/services", []byte("name: x"), []string{"Content-Type", "application/yaml"}, 415, ""},
		{api, "POST", "/api/v1/services", []byte(`{"name":"` + strings.Repeat("x", 1<<20) + `"}`), nil, 413, ""},
		{api, "DELETE", "/api/v1/services/alt", nil, nil, 204, ""},
	} {
		r := c.cl.do(c.method, c.path, c.body, c.hdr...)
		if r.status != c.status {
			t.Fatalf("%s %s: %d, want %d: %s", c.method, c.path, r.status, c.status, r.body)
		}
		if c.status >= 400 {
			var p mgmt.Problem
			r.decode(t, &p)
			if r.header.Get("Content-Type") != "application/problem+json" || p.Detail == "" || p.Field != c.field {
				t.Fatalf("%s %s: problem %+v (%s)", c.method, c.path, p, r.header.Get("Content-Type"))
			}
		}
	}
	if after := api.must("GET", "/api/v1/config", nil); !bytes.Equal(before.body, after.body) {
		t.Fatalf("refused requests changed the configuration")
	}
	m := api.must("GET", "/metrics", nil)
	for _, want := range []string{"xlb_rx_packets_total", `xlb_backend_health{backend="` + key(b) + `",service="web",state="up"} 1`, "xlb_conntrack_entries"} {
		if !strings.Contains(string(m.body), want) {
			t.Fatalf("metrics lack %q", want)
		}
	}
	lb.stop(t)
}

// TestAPIChangesSurviveKill9 makes 200 API changes while killing xlb with
// SIGKILL at random moments: after every restart the configuration holds
// every acknowledged change (and at most the one in flight at the kill).
func TestAPIChangesSurviveKill9(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 3})
	cfg, state := apiConfig(t, tp, 0, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	type model struct {
		weight int
		third  bool // backend 2 present
	}
	acked := model{weight: 100}
	changes, kills := 0, 0
	key := func(i int) string { return tp.Backends[i].Addr.String() }
	observe := func(api *apiClient) model {
		var sv mgmt.ServiceView
		api.must("GET", "/api/v1/services/web", nil).decode(t, &sv)
		m := model{}
		for _, b := range sv.Backends {
			switch b.Address {
			case key(0):
				m.weight = *b.Weight
			case key(2):
				m.third = true
			}
		}
		return m
	}
	for changes < 200 {
		lb := startXLBEnv(t, tp, cfg, []string{"XLB_API_TOKEN=" + testToken}, "--poll")
		api := newAPI(t, tp)
		if got := observe(api); got != acked {
			// The one change in flight at the kill may have been persisted.
			next := acked
			if got.weight != acked.weight {
				next.weight = got.weight
			} else {
				next.third = !acked.third
			}
			if got != next || (got.weight != acked.weight && got.weight != acked.weight+1) {
				t.Fatalf("after restart %d: configuration %+v, last acknowledged %+v", kills, got, acked)
			}
			acked = got
		}
		// Kill after a random number of changes (1..30), a random few
		// milliseconds into the next one.
		killAfter := changes + 1 + rng.IntN(30)
		for changes < 200 && changes < killAfter {
			var r apiResp
			var err error
			next := acked
			if changes%10 == 9 {
				next.third = !acked.third
				if next.third {
					r, err = api.try("POST", "/api/v1/services/web/backends", map[string]any{"address": key(2)})
				} else {
					r, err = api.try("DELETE", "/api/v1/services/web/backends/"+key(2), nil)
				}
			} else {
				next.weight = acked.weight + 1
				r, err = api.try("PATCH", "/api/v1/services/web/backends/"+key(0), map[string]any{"weight": next.weight})
			}
			if err != nil || r.status/100 != 2 {
				t.Fatalf("change %d: %v %d %s", changes, err, r.status, r.body)
			}
			acked = next
			changes++
		}
		// kill -9 with a change in flight (its answer is never read).
		go func(w int) {
			_, _ = api.try("PATCH", "/api/v1/services/web/backends/"+key(0), map[string]any{"weight": w})
		}(acked.weight + 1)
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
		_ = lb.cmd.Process.Signal(syscall.SIGKILL)
		<-lb.done
		kills++
	}
	lb := startXLBEnv(t, tp, cfg, []string{"XLB_API_TOKEN=" + testToken}, "--poll")
	api := newAPI(t, tp)
	got := observe(api)
	if got != acked && got.weight != acked.weight+1 {
		t.Fatalf("final configuration %+v, last acknowledged %+v", got, acked)
	}
	st, err := mgmt.LoadState(state)
	if err != nil || st == nil {
		t.Fatalf("state file: %v", err)
	}
	t.Logf("%d acknowledged changes over %d kill -9 restarts; state generation %d; none lost", changes, kills, st.Generation)
	lb.stop(t)
}

// TestTwoArmStaticMACClientFirst: a backend with a static MAC leaves on
// the interface its route names, not on interface 0 (issue 7, item 8).
func TestTwoArmStaticMACClientFirst(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.TwoArm, Mode: netns.ModeDSR, Backends: 2})
	tp.StartHTTPBackends(t)
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native, role: client}\n  - {name: %s, xdp: native, role: backend}\n", tp.LBClientIface, tp.LBBackendIface)
	fmt.Fprintf(&b, "lb: {workers: 1}\napi: {listen: %s}\nservices:\n  - name: web\n    vip: %s\n    port: 80\n    backends:\n", apiAddr, tp.VIP)
	for _, h := range tp.Backends {
		mac, err := h.MAC("eth0")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - {address: %s, mac: %q}\n", h.Addr, mac)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := startXLB(t, tp, p)
	if seen := answers(t, tp, 50); len(seen) != 2 {
		t.Fatalf("answers %v", seen)
	}
	lb.stop(t)
}

// TestFullNATOneAddressHealthChecks: the one-address appliance. The SNAT
// address is the balancer's own interface address, and health checks come
// from it too: the steering program hands the checks' replies (to ports
// outside the SNAT range) to the kernel, so backends come up, while
// fullnat replies (inside the range) still reach xlb.
func TestFullNATOneAddressHealthChecks(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeFullNAT, Backends: 2})
	tp.StartHTTPBackends(t)
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native}\n", tp.LBClientIface)
	fmt.Fprintf(&b, "lb: {workers: 1, snat: {addresses: [%s]}}\napi: {listen: %s}\n", tp.LB.Addr, apiAddr)
	fmt.Fprintf(&b, "services:\n  - name: web\n    vip: %s\n    port: 80\n    mode: fullnat\n", tp.VIP)
	fmt.Fprintf(&b, "    health: {type: http, path: /healthz, interval: 200ms, timeout: 150ms, rise: 1, fall: 2}\n    backends:\n")
	for _, h := range tp.Backends {
		fmt.Fprintf(&b, "      - {address: %s, port: 8080}\n", h.Addr)
	}
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	lb := startXLB(t, tp, p)
	api := newAPI(t, tp)
	waitFor(t, 5*time.Second, "both backends up by health check from the SNAT address", func() bool {
		for _, h := range tp.Backends {
			if api.backend("web", h.Addr.String()+":8080").Health.State != "up" {
				return false
			}
		}
		return true
	})
	for i := 0; i < 100; i++ {
		r, err := get(t, tp, "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if host, _, _ := strings.Cut(r.Remote, ":"); host != tp.LB.Addr.String() {
			t.Fatalf("backend saw %s, want the SNAT address %s", r.Remote, tp.LB.Addr)
		}
	}
	st, _ := lb.stats()
	if st.Steering[tp.LBClientIface]["pass_snat_other_port"] == 0 {
		t.Fatalf("no health-check reply was passed to the kernel: %v", st.Steering)
	}
	if !strings.Contains(lb.logs.String(), "SNAT ports stay below") {
		t.Fatalf("the SNAT range choice was not logged")
	}
	lb.stop(t)
}

// TestBinaryLinksNoTestHarness: the product binary links neither the
// testing package nor the namespace harness.
func TestBinaryLinksNoTestHarness(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "testing" || strings.HasSuffix(dep, "/internal/netns") || strings.HasSuffix(dep, "/internal/testutil") {
			t.Errorf("cmd/xlb links %s", dep)
		}
	}
}
