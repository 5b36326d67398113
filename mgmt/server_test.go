package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/mgmt/health"
)

// fakeDP is an in-memory Dataplane: Apply validates like the daemon and
// keeps what it was given.
type fakeDP struct {
	mu      sync.Mutex
	applied *config.File
	applies int
	fail    error
}

func (f *fakeDP) Apply(cfg *config.File) error {
	if _, err := cfg.CompileAll(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.applied = cfg.Clone()
	f.applies++
	return nil
}

func (f *fakeDP) last() *config.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied.Clone()
}

func (f *fakeDP) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := Stats{Services: map[string]ServiceStats{}, Drops: map[string]uint64{"bad_l4": 3}, Passes: map[string]uint64{}}
	if f.applied != nil {
		for _, s := range f.applied.Services {
			ss := ServiceStats{Backends: map[string]ObjStats{}}
			for _, b := range s.Backends {
				ss.Backends[b.Key()] = ObjStats{Packets: 10, Flows: 2}
			}
			st.Services[s.Name] = ss
		}
	}
	return st
}

func (f *fakeDP) Flows(service string, limit int) ([]Flow, error) {
	return []Flow{{Service: "web", Protocol: "tcp", Client: "10.10.0.2:4000", VIP: "198.51.100.10:80", Backend: "10.30.0.11", State: "established"}}, nil
}

func (f *fakeDP) Lookup(t dataplane.Tuple) (dataplane.FlowDecision, error) {
	return dataplane.FlowDecision{Action: dataplane.ActTx, Service: "web", Backend: "10.30.0.11"}, nil
}

const baseConfig = `
interfaces: [{name: eth0}]
api: {listen: 127.0.0.1:0}
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    backends:
      - {address: 10.30.0.11}
      - {address: 10.30.0.12}
`

type env struct {
	t     testing.TB
	srv   *Server
	dp    *fakeDP
	ts    *httptest.Server
	state string
}

func newEnv(t testing.TB, yaml string) *env {
	return newEnvWith(t, yaml, Options{})
}

func newEnvWith(t testing.TB, yaml string, o Options) *env {
	t.Helper()
	f, err := config.Parse([]byte(yaml), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state.json")
	f.API.StateFile = state
	dp := &fakeDP{}
	if o.HealthDial.Prober == nil {
		// Never real raw packets from a unit test (datapath.go probes
		// tunnel and l3dsr backends with raw sockets by default).
		o.HealthDial.Prober = newFakeProber()
	}
	o.Config, o.Dataplane, o.Token, o.Log = f, dp, "secret", zerolog.Nop()
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { ts.Close(); srv.Close() })
	return &env{t: t, srv: srv, dp: dp, ts: ts, state: state}
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (r resp) problem(t *testing.T) Problem {
	t.Helper()
	var p Problem
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("status %d with Content-Type %q, want application/problem+json: %s", r.status, ct, r.body)
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body: %v: %s", err, r.body)
	}
	if p.Status != r.status || p.Title == "" || p.Detail == "" {
		t.Fatalf("problem %+v does not match status %d", p, r.status)
	}
	return p
}

func (e *env) do(method, path, body string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer secret")
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func (e *env) services() []string {
	var names []string
	for _, s := range e.srv.Config().Services {
		names = append(names, s.Name)
	}
	return names
}

func TestServiceLifecycle(t *testing.T) {
	e := newEnv(t, baseConfig)
	r := e.do("GET", "/api/v1/services/web", "")
	if r.status != 200 || r.header.Get("ETag") == "" {
		t.Fatalf("GET: %d %s", r.status, r.body)
	}
	var sv ServiceView
	if err := json.Unmarshal(r.body, &sv); err != nil || len(sv.Backends) != 2 || sv.Backends[0].Health == nil || sv.Mode != "dsr" {
		t.Fatalf("view %+v %v", sv, err)
	}
	svc := `{"name":"api","vip":"198.51.100.20","port":443,"mode":"nat","backends":[{"address":"10.30.0.21","port":8443}]}`
	r = e.do("POST", "/api/v1/services", svc)
	if r.status != 201 || r.header.Get("Location") != "/api/v1/services/api" {
		t.Fatalf("POST: %d %v %s", r.status, r.header, r.body)
	}
	if got := e.dp.last().Services; len(got) != 2 || got[1].Name != "api" {
		t.Fatalf("dataplane did not get the new service: %+v", got)
	}
	if st, err := LoadState(e.state); err != nil || len(st.Services) != 2 || st.Generation != 1 {
		t.Fatalf("state file %+v %v", st, err)
	}
	if r = e.do("POST", "/api/v1/services", svc); r.status != 409 || r.problem(t).Field != "name" {
		t.Fatalf("duplicate POST: %d %s", r.status, r.body)
	}
	// Backends: add, patch, put, delete.
	r = e.do("POST", "/api/v1/services/api/backends", `{"address":"10.30.0.22","port":8443,"weight":50}`)
	if r.status != 201 || !strings.HasSuffix(r.header.Get("Location"), "/backends/10.30.0.22:8443") {
		t.Fatalf("POST backend: %d %v %s", r.status, r.header, r.body)
	}
	r = e.do("PATCH", "/api/v1/services/api/backends/10.30.0.22", `{"state":"draining","weight":7}`)
	var bv BackendView
	if r.status != 200 || json.Unmarshal(r.body, &bv) != nil || bv.State != "draining" || *bv.Weight != 7 {
		t.Fatalf("PATCH: %d %s", r.status, r.body)
	}
	if b := e.dp.last().Services[1].Backends[1]; b.State != "draining" || *b.Weight != 7 {
		t.Fatalf("dataplane backend %+v", b)
	}
	r = e.do("PUT", "/api/v1/services/api/backends/10.30.0.22:8443", `{"address":"10.30.0.22","port":8443,"weight":9,"health":{"state":"up"},"flows":3}`)
	if r.status != 200 {
		t.Fatalf("PUT backend (read-only fields included): %d %s", r.status, r.body)
	}
	if r = e.do("DELETE", "/api/v1/services/api/backends/10.30.0.22:8443", ""); r.status != 204 {
		t.Fatalf("DELETE backend: %d %s", r.status, r.body)
	}
	if r = e.do("GET", "/api/v1/services/api/backends/10.30.0.22:8443", ""); r.status != 404 {
		t.Fatalf("GET deleted backend: %d", r.status)
	}
	r.problem(t)
	// PUT a whole service, then delete it.
	r = e.do("PUT", "/api/v1/services/api", `{"name":"api","vip":"198.51.100.20","port":443,"mode":"fullnat","backends":[{"address":"10.30.0.21","port":8443}]}`)
	if r.status != 400 || r.problem(t).Field != "mode" {
		t.Fatalf("fullnat without SNAT: %d %s", r.status, r.body)
	}
	if r = e.do("DELETE", "/api/v1/services/api", ""); r.status != 204 {
		t.Fatalf("DELETE: %d %s", r.status, r.body)
	}
	if got := e.services(); !reflect.DeepEqual(got, []string{"web"}) {
		t.Fatalf("services %v", got)
	}
	if st, _ := LoadState(e.state); len(st.Services) != 1 {
		t.Fatalf("state file after delete: %+v", st)
	}
}

func TestErrorsAreProblemsNamingTheField(t *testing.T) {
	e := newEnv(t, baseConfig)
	before := e.srv.Config()
	cases := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		field                    string
	}{
		{"bad vip", "POST", "/api/v1/services", `{"name":"x","vip":"1.2.3","port":80,"backends":[{"address":"10.30.0.11"}]}`, nil, 400, "vip"},
		{"bad backend address", "POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","port":80,"backends":[{"address":"10.30.0.11"},{"address":"nope"}]}`, nil, 400, "backends[1].address"},
		{"unknown key", "POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","colour":"red"}`, nil, 400, "colour"},
		{"wrong type", "POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","port":"eighty"}`, nil, 400, "port"},
		{"bad duration", "POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.30","health":{"type":"tcp","interval":"soon"}}`, nil, 400, ""},
		{"negative weight", "PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":-1}`, nil, 400, "weight"},
		{"bad state", "PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"state":"asleep"}`, nil, 400, "state"},
		{"empty patch", "PATCH", "/api/v1/services/web/backends/10.30.0.11", `{}`, nil, 400, ""},
		{"not json", "POST", "/api/v1/services", `{"name":`, nil, 400, ""},
		{"trailing data", "POST", "/api/v1/services", `{"name":"x"} {}`, nil, 400, ""},
		{"no such service", "GET", "/api/v1/services/nope", "", nil, 404, ""},
		{"no such backend", "DELETE", "/api/v1/services/web/backends/10.9.9.9", "", nil, 404, ""},
		{"bad backend key", "GET", "/api/v1/services/web/backends/zz", "", nil, 400, "backend"},
		{"no such path", "GET", "/api/v2/x", "", nil, 404, ""},
		{"method", "PATCH", "/api/v1/services", `{}`, nil, 405, ""},
		{"media type", "POST", "/api/v1/services", `name: x`, []string{"Content-Type", "text/plain"}, 415, ""},
		{"yaml where json only", "POST", "/api/v1/services", `name: x`, []string{"Content-Type", "application/yaml"}, 415, ""},
		{"no token", "DELETE", "/api/v1/services/web", "", []string{"Authorization", ""}, 401, ""},
		{"wrong token", "DELETE", "/api/v1/services/web", "", []string{"Authorization", "Bearer guess"}, 401, ""},
		{"etag mismatch", "DELETE", "/api/v1/services/web", "", []string{"If-Match", `"0000"`}, 412, ""},
		{"restart key", "PUT", "/api/v1/config", `{"interfaces":[{"name":"eth9"}],"services":[]}`, nil, 409, ""},
		{"too large", "POST", "/api/v1/services", `{"name":"` + strings.Repeat("x", maxBody) + `"}`, nil, 413, ""},
		{"bad limit", "GET", "/api/v1/flows?limit=0", "", nil, 400, "limit"},
		{"bad lookup src", "GET", "/api/v1/lookup?src=x&dst=198.51.100.10:80", "", nil, 400, "src"},
		{"rename by put", "PUT", "/api/v1/services/web", `{"name":"other","vip":"198.51.100.10","port":80,"backends":[{"address":"10.30.0.11"}]}`, nil, 400, "name"},
		{"vip equals backend", "POST", "/api/v1/services", `{"name":"x","vip":"10.30.0.11","port":80,"backends":[{"address":"10.30.0.11"}]}`, nil, 400, "backends[0].address"},
		{"duplicate vip", "POST", "/api/v1/services", `{"name":"x","vip":"198.51.100.10","port":80,"backends":[{"address":"10.30.0.13"}]}`, nil, 400, "vip"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("%s %s: status %d, want %d: %s", c.method, c.path, r.status, c.status, r.body)
			}
			p := r.problem(t)
			if c.field != "" && p.Field != c.field {
				t.Fatalf("field %q, want %q: %s", p.Field, c.field, r.body)
			}
			if c.status == 405 && r.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
			if c.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if c.status == 409 && len(p.RestartKeys) == 0 {
				t.Fatalf("409 without restart_keys: %s", r.body)
			}
		})
	}
	if after := e.srv.Config(); !reflect.DeepEqual(before, after) {
		t.Fatalf("a refused request changed the configuration:\n%+v\n%+v", before, after)
	}
	if _, err := os.Stat(e.state); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused request wrote the state file: %v", err)
	}
}

func TestETagIfMatch(t *testing.T) {
	e := newEnv(t, baseConfig)
	r := e.do("GET", "/api/v1/services/web/backends/10.30.0.11", "")
	etag := r.header.Get("ETag")
	if r = e.do("PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":5}`, "If-Match", etag); r.status != 200 {
		t.Fatalf("PATCH with the current ETag: %d %s", r.status, r.body)
	}
	if r.header.Get("ETag") == etag {
		t.Fatal("ETag did not change with the object")
	}
	if r = e.do("PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":6}`, "If-Match", etag); r.status != 412 {
		t.Fatalf("PATCH with a stale ETag: %d %s", r.status, r.body)
	}
	// The whole document: GET, PUT back with its ETag (YAML this time).
	r = e.do("GET", "/api/v1/config?format=yaml", "")
	if r.status != 200 || !strings.Contains(string(r.body), "vip: 198.51.100.10") {
		t.Fatalf("GET config yaml: %d %s", r.status, r.body)
	}
	doc := strings.Replace(string(r.body), "weight: 5", "weight: 8", 1)
	r2 := e.do("PUT", "/api/v1/config", doc, "Content-Type", "application/yaml", "If-Match", r.header.Get("ETag"))
	if r2.status != 200 {
		t.Fatalf("PUT config yaml: %d %s", r2.status, r2.body)
	}
	if w := *e.dp.last().Services[0].Backends[0].Weight; w != 8 {
		t.Fatalf("weight %d after PUT config", w)
	}
}

func TestReadsNeedTokenOnlyWithAuthReads(t *testing.T) {
	e := newEnv(t, baseConfig)
	if r := e.do("GET", "/api/v1/services", "", "Authorization", ""); r.status != 200 {
		t.Fatalf("read without token: %d", r.status)
	}
	e2 := newEnv(t, strings.Replace(baseConfig, "api: {listen: 127.0.0.1:0}", "api: {listen: 127.0.0.1:0, auth_reads: true}", 1))
	if r := e2.do("GET", "/api/v1/services", "", "Authorization", ""); r.status != 401 {
		t.Fatalf("read without token under auth_reads: %d", r.status)
	}
	if r := e2.do("GET", "/api/v1/services", ""); r.status != 200 {
		t.Fatalf("read with token under auth_reads: %d", r.status)
	}
}

func TestDataplaneFailureKeepsConfiguration(t *testing.T) {
	e := newEnv(t, baseConfig)
	before := e.srv.Config()
	e.dp.mu.Lock()
	e.dp.fail = errors.New("steering map full")
	e.dp.mu.Unlock()
	r := e.do("PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":5}`)
	if r.status != 500 || !strings.Contains(r.problem(t).Detail, "steering map full") {
		t.Fatalf("dataplane failure: %d %s", r.status, r.body)
	}
	if !reflect.DeepEqual(before, e.srv.Config()) {
		t.Fatal("configuration changed although the dataplane refused")
	}
}

func TestStateFileFailureUndoes(t *testing.T) {
	e := newEnv(t, baseConfig)
	// A directory where the state file should be makes the rename fail.
	if err := os.MkdirAll(filepath.Join(e.state, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.do("PATCH", "/api/v1/services/web/backends/10.30.0.11", `{"weight":5}`)
	if r.status != 500 {
		t.Fatalf("state file failure: %d %s", r.status, r.body)
	}
	if w := *e.dp.last().Services[0].Backends[0].Weight; w != 100 {
		t.Fatalf("dataplane kept weight %d after the state file failed", w)
	}
}

func TestBootPrefersStateFile(t *testing.T) {
	e := newEnv(t, baseConfig)
	if r := e.do("DELETE", "/api/v1/services/web/backends/10.30.0.12", ""); r.status != 204 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	f, _ := config.Parse([]byte(baseConfig), "yaml")
	f.API.StateFile = e.state
	src, gen, err := Boot(f)
	if err != nil || !strings.Contains(src, "state file") || gen != 1 || len(f.Services[0].Backends) != 1 {
		t.Fatalf("Boot: %q %d %v %+v", src, gen, err, f.Services)
	}
}

func TestHealthTakesBackendsOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	up := ln.Addr().String()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	down := dead.Addr().String()
	dead.Close()
	// The checks of 10.30.0.11 reach the listener, the others a closed port.
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		to := down
		if strings.HasPrefix(addr, "10.30.0.11:") {
			to = up
		}
		var d net.Dialer
		return d.DialContext(ctx, network, to)
	}
	port := 80
	yaml := fmt.Sprintf(`
interfaces: [{name: eth0}]
services:
  - name: web
    vip: 198.51.100.10
    port: %d
    health: {type: tcp, interval: 20ms, timeout: 10ms, rise: 1, fall: 2}
    backends: [{address: 10.30.0.11}, {address: 10.30.0.12}]
  - name: dead
    vip: 198.51.100.11
    port: %d
    all_down: drop
    health: {type: tcp, interval: 20ms, timeout: 10ms, rise: 1, fall: 2}
    backends: [{address: 10.30.0.13}]
`, port, port)
	e := newEnvWith(t, yaml, Options{HealthDial: health.Options{Dial: dial}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		f := e.dp.last()
		if f.Services[0].Backends[1].State == "disabled" && f.Services[0].Backends[0].State == "active" && f.Services[1].Backends[0].State == "disabled" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health never reached the dataplane: %+v", f.Services)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var bv BackendView
	r := e.do("GET", "/api/v1/services/web/backends/10.30.0.12", "")
	if json.Unmarshal(r.body, &bv) != nil || bv.Health.State != "down" || bv.Health.LastError == "" || bv.State != "active" {
		t.Fatalf("health view %s", r.body)
	}
	var rep HealthReport
	r = e.do("GET", "/api/v1/health", "")
	if json.Unmarshal(r.body, &rep) != nil || !reflect.DeepEqual(rep.AllDown, []string{"dead"}) {
		t.Fatalf("health report %s", r.body)
	}
	// all_down: serve keeps the one backend of a service in when it is down.
	if r := e.do("PATCH", "/api/v1/services/dead", ""); r.status != 405 {
		t.Fatalf("%d", r.status)
	}
	m := e.do("GET", "/metrics", "")
	for _, want := range []string{`xlb_backend_health{backend="10.30.0.12",service="web",state="down"} 1`, `xlb_all_backends_down_total{policy="drop"} 1`, "xlb_dropped_packets_total{reason=\"bad_l4\"} 3", "go_goroutines"} {
		if !strings.Contains(string(m.body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, m.body)
		}
	}
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	e := newEnv(t, baseConfig)
	r := e.do("GET", "/api/v1/openapi.json", "")
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi: %v %s", err, r.body[:min(200, len(r.body))])
	}
	for _, rt := range e.srv.routes {
		item, ok := doc.Paths[rt.pattern]
		if !ok {
			t.Errorf("route %s missing from the document", rt.pattern)
			continue
		}
		for m := range rt.methods {
			if _, ok := item[strings.ToLower(m)]; !ok {
				t.Errorf("%s %s missing from the document", m, rt.pattern)
			}
			// Every documented operation answers something other than 404/405.
			res := newEnv(t, baseConfig).do(m, strings.NewReplacer("{name}", "web", "{backend}", "10.30.0.11").Replace(rt.pattern), "")
			if res.status == 404 || res.status == 405 {
				t.Errorf("%s %s: %d", m, rt.pattern, res.status)
			}
		}
	}
	if len(doc.Paths) != len(e.srv.routes) {
		t.Errorf("document has %d paths, the server %d routes", len(doc.Paths), len(e.srv.routes))
	}
	var full map[string]any
	_ = json.Unmarshal(r.body, &full)
	schemas := full["components"].(map[string]any)["schemas"].(map[string]any)
	props := schemas["Backend"].(map[string]any)["properties"].(map[string]any)
	for _, k := range []string{"address", "port", "weight", "state", "health", "flows"} {
		if _, ok := props[k]; !ok {
			t.Errorf("Backend schema lacks %q", k)
		}
	}
}

func TestLookupStatsFlows(t *testing.T) {
	e := newEnv(t, baseConfig)
	r := e.do("GET", "/api/v1/lookup?protocol=tcp&src=10.10.0.2:4000&dst=198.51.100.10:80", "")
	var lr LookupResult
	if json.Unmarshal(r.body, &lr) != nil || lr.Backend != "10.30.0.11" || lr.Action != "forward" || !strings.Contains(lr.Why, "maglev") {
		t.Fatalf("lookup %d %s", r.status, r.body)
	}
	r = e.do("GET", "/api/v1/stats", "")
	if !strings.Contains(string(r.body), `"rx_packets"`) || strings.Contains(string(r.body), "RxPackets") {
		t.Fatalf("stats not snake_case: %s", r.body)
	}
	r = e.do("GET", "/api/v1/flows?service=web&limit=5", "")
	if !strings.Contains(string(r.body), `"client": "10.10.0.2:4000"`) {
		t.Fatalf("flows %s", r.body)
	}
	if r = e.do("GET", "/api/v1/flows?service=nope", ""); r.status != 404 {
		t.Fatalf("flows of an unknown service: %d", r.status)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r = e.do("GET", p, ""); r.status != 200 {
			t.Fatalf("%s: %d", p, r.status)
		}
	}
}

func TestDiff(t *testing.T) {
	a, _ := config.Parse([]byte(baseConfig), "yaml")
	b := a.Clone()
	b.Services[0].Backends = b.Services[0].Backends[:1]
	w := 5
	b.Services[0].Backends[0].Weight = &w
	b.Services = append(b.Services, config.Service{Name: "new"})
	got := Diff(a, b)
	want := []string{"service new added", "web: backend 10.30.0.11 changed", "web: backend 10.30.0.12 removed"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if got := Diff(a, a); !reflect.DeepEqual(got, []string{"nothing changed"}) {
		t.Fatalf("Diff(a, a) = %v", got)
	}
}

func TestReloadOfAnEmptyFileSaysSo(t *testing.T) {
	e := newEnv(t, baseConfig)
	before := e.srv.Config()
	f, err := config.Parse([]byte("\n"), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = e.srv.Reload(f)
	var fe *config.FieldError
	if !errors.As(err, &fe) || fe.Field != "interfaces" || strings.Contains(err.Error(), "restart") {
		t.Fatalf("Reload(empty) = %v", err)
	}
	if !reflect.DeepEqual(before, e.srv.Config()) {
		t.Fatal("an empty file changed the configuration")
	}
	// A real change through Reload is applied and logged as a diff.
	g, _ := config.Parse([]byte(strings.Replace(baseConfig, "{address: 10.30.0.12}", "{address: 10.30.0.12, weight: 5}", 1)), "yaml")
	g.API.StateFile = e.state
	if err := e.srv.Reload(g); err != nil {
		t.Fatal(err)
	}
	if w := *e.dp.last().Services[0].Backends[1].Weight; w != 5 {
		t.Fatalf("weight %d after Reload", w)
	}
}
