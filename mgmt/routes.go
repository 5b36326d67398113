package mgmt

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/mgmt/health"
	"github.com/xlb/xlb/mgmt/web"
)

// route is one path of the API with a handler per method. The same table
// registers the handlers and writes the OpenAPI document.
type route struct {
	pattern string // ServeMux pattern without a method
	summary string
	methods map[string]op
}

type op struct {
	h       http.HandlerFunc
	summary string
	change  bool   // needs the token
	body    string // request schema name ("" = none)
	resp    string // 2xx response schema name
	status  int    // success status
	query   []string
}

func (s *Server) routeTable() []route {
	return []route{
		{"/healthz", "liveness", map[string]op{"GET": {h: s.getHealthz, summary: "the process is alive", resp: "Text", status: 200}}},
		{"/readyz", "readiness", map[string]op{"GET": {h: s.getReadyz, summary: "the dataplane runs the accepted configuration", resp: "Text", status: 200}}},
		{"/metrics", "Prometheus metrics", map[string]op{"GET": {h: s.getMetrics, summary: "metrics in the Prometheus text format", resp: "Text", status: 200}}},
		{"/api/v1/openapi.json", "this document", map[string]op{"GET": {h: s.getOpenAPI, summary: "the OpenAPI 3.1 description of this API", resp: "Object", status: 200}}},
		{"/api/v1/stats", "counters", map[string]op{"GET": {h: s.getStats, summary: "every counter, summed over workers", resp: "Stats", status: 200}}},
		{"/api/v1/health", "health checks", map[string]op{"GET": {h: s.getHealth, summary: "every backend's health and the checker's counters", resp: "HealthReport", status: 200}}},
		{"/api/v1/flows", "connection table sample", map[string]op{"GET": {h: s.getFlows, summary: "a sample of the connection table", resp: "FlowList", status: 200, query: []string{"service", "limit"}}}},
		{"/api/v1/lookup", "flow lookup", map[string]op{"GET": {h: s.getLookup, summary: "which backend the real pipeline picks for a flow, and why", resp: "Lookup", status: 200, query: []string{"protocol", "src", "dst"}}}},
		{"/api/v1/config", "the whole configuration", map[string]op{
			"GET": {h: s.getConfig, summary: "the accepted configuration (JSON, or YAML with Accept: application/yaml)", resp: "Config", status: 200},
			"PUT": {h: s.putConfig, summary: "replace the configuration, validated as one unit", change: true, body: "Config", resp: "Config", status: 200},
		}},
		{"/api/v1/services", "services", map[string]op{
			"GET":  {h: s.listServices, summary: "every service with its backends' state", resp: "ServiceList", status: 200},
			"POST": {h: s.postService, summary: "add a service", change: true, body: "Service", resp: "Service", status: 201},
		}},
		{"/api/v1/services/{name}", "one service", map[string]op{
			"GET":    {h: s.getService, summary: "a service", resp: "Service", status: 200},
			"PUT":    {h: s.putService, summary: "replace a service (its name stays)", change: true, body: "Service", resp: "Service", status: 200},
			"DELETE": {h: s.deleteService, summary: "remove a service", change: true, status: 204},
		}},
		{"/api/v1/services/{name}/backends", "a service's backends", map[string]op{
			"GET":  {h: s.listBackends, summary: "a service's backends", resp: "BackendList", status: 200},
			"POST": {h: s.postBackend, summary: "add a backend", change: true, body: "Backend", resp: "Backend", status: 201},
		}},
		{"/api/v1/services/{name}/backends/{backend}", "one backend ({backend}: address, or address:port / [address]:port)", map[string]op{
			"GET":    {h: s.getBackend, summary: "a backend", resp: "Backend", status: 200},
			"PUT":    {h: s.putBackend, summary: "replace a backend", change: true, body: "Backend", resp: "Backend", status: 200},
			"PATCH":  {h: s.patchBackend, summary: "change weight and/or state", change: true, body: "BackendPatch", resp: "Backend", status: 200},
			"DELETE": {h: s.deleteBackend, summary: "remove a backend", change: true, status: 204},
		}},
	}
}

func (s *Server) buildMux() *http.ServeMux {
	mux := http.NewServeMux()
	for _, rt := range s.routes {
		rt := rt
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			o, ok := rt.methods[r.Method]
			if !ok && r.Method == http.MethodHead {
				o, ok = rt.methods[http.MethodGet]
			}
			if !ok {
				w.Header().Set("Allow", allow(rt.methods))
				writeProblem(w, r, problem(http.StatusMethodNotAllowed, "%s is not allowed on %s (allowed: %s)", r.Method, rt.pattern, allow(rt.methods)))
				return
			}
			if p := s.authorize(r, o.change); p != nil {
				if p.Status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="xlb"`)
				}
				writeProblem(w, r, p)
				return
			}
			o.h(w, r)
		})
	}
	dashboard := web.Handler() // GET / and its assets; any other path is the 404 below
	mux.Handle("GET /{$}", dashboard)
	mux.Handle("GET "+web.AssetPrefix, dashboard)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, problem(http.StatusNotFound, "no such resource: %s (the API is under /api/v1; see /api/v1/openapi.json)", r.URL.Path))
	})
	return mux
}

func allow(m map[string]op) string {
	var ms []string
	for k := range m {
		ms = append(ms, k)
	}
	sort.Strings(ms)
	return strings.Join(ms, ", ")
}

// authorize checks the bearer token: always for changes, for reads when
// api.auth_reads is set. The comparison takes constant time.
func (s *Server) authorize(r *http.Request, change bool) *Problem {
	s.mu.Lock()
	authReads := s.cfg.API.AuthReads
	s.mu.Unlock()
	if !change && !authReads {
		return nil
	}
	if s.o.Token == "" {
		if s.o.AllowNoToken {
			return nil
		}
		return problem(http.StatusUnauthorized, "no API token is configured (api.token_file or XLB_API_TOKEN), so changes are refused")
	}
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return problem(http.StatusUnauthorized, "missing bearer token (Authorization: Bearer <token>)")
	}
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256([]byte(s.o.Token))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return problem(http.StatusUnauthorized, "wrong bearer token")
	}
	return nil
}

// etagOf is a strong ETag over an object's JSON form.
func etagOf(v any) string {
	b, _ := json.Marshal(v)
	h := sha256.Sum256(b)
	return `"` + hex.EncodeToString(h[:12]) + `"`
}

// ifMatch returns 412 when the request's If-Match names another version.
func ifMatch(r *http.Request, current string) *Problem {
	im := r.Header.Get("If-Match")
	if im == "" || im == "*" {
		return nil
	}
	for _, t := range strings.Split(im, ",") {
		if strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(t), "W/")) == current {
			return nil
		}
	}
	p := problem(http.StatusPreconditionFailed, "If-Match %s does not match the current version %s: it changed since you read it", im, current)
	return p
}

func writeJSON(w http.ResponseWriter, status int, etag string, v any) {
	w.Header().Set("Content-Type", "application/json")
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ---- views: configuration objects plus read-only fields ----

// BackendView is a backend as the API shows it.
type BackendView struct {
	config.Backend
	Health   *HealthView `json:"health,omitempty"`
	Flows    int64       `json:"flows"`
	Counters ObjStats    `json:"counters"`
}

// HealthView is a backend's health as the API shows it.
type HealthView struct {
	State      string    `json:"state"` // up | down | unknown
	Since      time.Time `json:"since,omitzero"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	LatencyMS  float64   `json:"latency_ms,omitempty"`
	HeldUntil  time.Time `json:"held_until,omitzero"`
	Checked    bool      `json:"checked"` // false: the service has no health check
	// Datapath is the datapath probe of a tunnel or l3dsr backend
	// (datapath.go); State above is then down when either is down.
	Datapath *DatapathView `json:"datapath,omitempty"`
}

// ServiceView is a service as the API shows it.
type ServiceView struct {
	config.Service
	Backends []BackendView `json:"backends"`
	Counters ObjStats      `json:"counters"`
	AllDown  bool          `json:"all_backends_down,omitempty"`
}

// serviceIn is what POST/PUT accept: a service, read-only fields ignored.
type serviceIn struct {
	config.Service
	Backends          []backendIn     `json:"backends"`
	Counters          json.RawMessage `json:"counters,omitempty"`
	AllBackendsDownRO json.RawMessage `json:"all_backends_down,omitempty"`
}

type backendIn struct {
	config.Backend
	Health   json.RawMessage `json:"health,omitempty"`
	Flows    json.RawMessage `json:"flows,omitempty"`
	Counters json.RawMessage `json:"counters,omitempty"`
}

func (in *serviceIn) service() config.Service {
	svc := in.Service
	svc.Backends = make([]config.Backend, len(in.Backends))
	for i := range in.Backends {
		svc.Backends[i] = in.Backends[i].Backend
	}
	return svc
}

func (s *Server) backendView(svc *config.Service, b *config.Backend, st *Stats) BackendView {
	v := BackendView{Backend: *b}
	checked := svc.Health.Type != "" && svc.Health.Type != "none"
	hv := &HealthView{State: "unknown", Checked: checked}
	if !checked {
		hv.State = "up"
	}
	if hs, ok := s.health.Status(targetKey(svc.Name, b)); ok {
		hv.State, hv.Since, hv.LastCheck, hv.LastResult, hv.LastError, hv.LatencyMS, hv.HeldUntil =
			hs.State.String(), hs.Since, hs.LastCheck, hs.LastResult, hs.LastError, hs.LatencyMS, hs.HeldUntil
	}
	s.datapathView(svc, b, hv) // datapath.go
	if b.State == "disabled" {
		hv.State, hv.LastResult = "unknown", "not checked: disabled"
	}
	v.Health = hv
	if st != nil {
		if ss, ok := st.Services[svc.Name]; ok {
			v.Counters = ss.Backends[b.Key()]
			v.Flows = v.Counters.Flows
		}
	}
	return v
}

func (s *Server) serviceView(svc *config.Service, st *Stats) ServiceView {
	v := ServiceView{Service: *svc, Backends: []BackendView{}}
	for j := range svc.Backends {
		v.Backends = append(v.Backends, s.backendView(svc, &svc.Backends[j], st))
	}
	if st != nil {
		v.Counters = st.Services[svc.Name].ObjStats
	}
	v.AllDown = s.allDown[svc.Name]
	return v
}

// findService returns the index of the named service, or -1.
func findService(f *config.File, name string) int {
	for i := range f.Services {
		if f.Services[i].Name == name {
			return i
		}
	}
	return -1
}

// serviceIndex returns the index of the named service, or a 404 problem.
func serviceIndex(f *config.File, name string) (int, *Problem) {
	i := findService(f, name)
	if i < 0 {
		return -1, problem(http.StatusNotFound, "no service %q", name)
	}
	return i, nil
}

// backendIndex resolves {name} and {backend} in f: the service's index i
// and its backend's index j (see findBackend), or the problem of the
// first that is not there.
func backendIndex(f *config.File, name, key string) (i, j int, p *Problem) {
	if i, p = serviceIndex(f, name); p != nil {
		return -1, -1, p
	}
	if j, p = findBackend(&f.Services[i], key); p != nil {
		return -1, -1, p
	}
	return i, j, nil
}

// lockService takes s.mu and returns the named service of s.cfg with
// s.mu held. If there is no such service it releases s.mu, writes a 404
// problem and returns nil.
func (s *Server) lockService(w http.ResponseWriter, r *http.Request, name string) *config.Service {
	s.mu.Lock()
	i, p := serviceIndex(s.cfg, name)
	if p != nil {
		s.mu.Unlock()
		writeProblem(w, r, p)
		return nil
	}
	return &s.cfg.Services[i]
}

// findBackend resolves {backend}: an address (unique in the service) or
// address:port.
func findBackend(svc *config.Service, key string) (int, *Problem) {
	if ap, err := netip.ParseAddrPort(key); err == nil {
		for j := range svc.Backends {
			b := &svc.Backends[j]
			if a, err := netip.ParseAddr(b.Address); err == nil && a.Unmap() == ap.Addr().Unmap() && b.Port == int(ap.Port()) {
				return j, nil
			}
		}
		return -1, problem(http.StatusNotFound, "service %q has no backend %s", svc.Name, key)
	}
	a, err := netip.ParseAddr(key)
	if err != nil {
		p := problem(http.StatusBadRequest, "backend %q is not an address, address:port or [address]:port", key)
		p.Field, p.Value = "backend", key
		return -1, p
	}
	found := -1
	for j := range svc.Backends {
		if x, err := netip.ParseAddr(svc.Backends[j].Address); err == nil && x.Unmap() == a.Unmap() {
			if found >= 0 {
				return -1, problem(http.StatusBadRequest, "service %q has %s on several ports: name it as address:port", svc.Name, key)
			}
			found = j
		}
	}
	if found < 0 {
		return -1, problem(http.StatusNotFound, "service %q has no backend %s", svc.Name, key)
	}
	return found, nil
}

// decode reads the request body into v (see readBody); on failure it
// answers with the problem and counts the refusal.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any, yamlOK bool) bool {
	if p := readBody(w, r, v, yamlOK); p != nil {
		s.ctr.refused.Add(1)
		writeProblem(w, r, p)
		return false
	}
	return true
}

// ---- handlers ----

func (s *Server) getHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, "ok")
}

func (s *Server) getReadyz(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeProblem(w, r, problem(http.StatusServiceUnavailable, "the dataplane is not running the accepted configuration"))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintln(w, "ready")
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, "", s.o.Dataplane.Stats())
}

// HealthReport is GET /api/v1/health.
type HealthReport struct {
	Backends map[string]health.Status `json:"backends"` // "service/backend"
	Counters health.Counters          `json:"counters"`
	AllDown  []string                 `json:"all_down_services"`
}

func (s *Server) getHealth(w http.ResponseWriter, r *http.Request) {
	rep := HealthReport{Backends: s.health.All(), Counters: s.health.Counters(), AllDown: []string{}}
	s.mu.Lock()
	for n := range s.allDown {
		rep.AllDown = append(rep.AllDown, n)
	}
	s.mu.Unlock()
	sort.Strings(rep.AllDown)
	writeJSON(w, http.StatusOK, "", rep)
}

func (s *Server) getFlows(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 10000 {
			p := problem(http.StatusBadRequest, "limit: %q is not a number 1..10000", l)
			p.Field, p.Value = "limit", l
			writeProblem(w, r, p)
			return
		}
		limit = n
	}
	name := q.Get("service")
	if name != "" {
		s.mu.Lock()
		_, p := serviceIndex(s.cfg, name)
		s.mu.Unlock()
		if p != nil {
			writeProblem(w, r, p)
			return
		}
	}
	flows, err := s.o.Dataplane.Flows(name, limit)
	if err != nil {
		writeProblem(w, r, problem(http.StatusInternalServerError, "%v", err))
		return
	}
	if flows == nil {
		flows = []Flow{}
	}
	writeJSON(w, http.StatusOK, "", map[string]any{"flows": flows})
}

// LookupResult is GET /api/v1/lookup.
type LookupResult struct {
	Service  string `json:"service,omitempty"`
	Mode     string `json:"mode,omitempty"`
	Backend  string `json:"backend,omitempty"`
	Action   string `json:"action"` // forward | drop | pass | reply
	Reason   string `json:"reason,omitempty"`
	Existing bool   `json:"existing"`
	Why      string `json:"why"`
}

func (s *Server) getLookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(field, format string, args ...any) {
		p := problem(http.StatusBadRequest, field+": "+format, args...)
		p.Field, p.Value = field, q.Get(field)
		writeProblem(w, r, p)
	}
	var t dataplane.Tuple
	switch q.Get("protocol") {
	case "tcp", "":
		t.Proto = 6
	case "udp":
		t.Proto = 17
	default:
		bad("protocol", "%q is not tcp or udp", q.Get("protocol"))
		return
	}
	src, err := netip.ParseAddrPort(q.Get("src"))
	if err != nil {
		bad("src", "%q is not address:port", q.Get("src"))
		return
	}
	dst, err := netip.ParseAddrPort(q.Get("dst"))
	if err != nil {
		bad("dst", "%q is not address:port", q.Get("dst"))
		return
	}
	if src.Addr().Unmap().Is4() != dst.Addr().Unmap().Is4() {
		bad("dst", "src and dst must be of one address family")
		return
	}
	t.Src, t.SrcPort, t.Dst, t.DstPort = src.Addr(), src.Port(), dst.Addr(), dst.Port()
	d, err := s.o.Dataplane.Lookup(t)
	if err != nil {
		writeProblem(w, r, problem(http.StatusBadRequest, "%v", err))
		return
	}
	res := LookupResult{Service: d.Service, Backend: d.Backend, Existing: d.Existing, Action: actionName(d.Action)}
	if d.Service != "" {
		res.Mode = d.Mode.String()
	}
	if d.Reason != dataplane.ReasonNone {
		res.Reason = d.Reason.String()
	}
	switch {
	case d.Backend != "" && d.Existing:
		res.Why = fmt.Sprintf("the flow is in the connection table with backend %s", d.Backend)
	case d.Backend != "":
		s.mu.Lock()
		sched := ""
		if i := findService(s.cfg, d.Service); i >= 0 {
			sched = s.cfg.Services[i].Scheduler
		}
		s.mu.Unlock()
		res.Why = fmt.Sprintf("new flow: the %s scheduler of service %s picks %s", sched, d.Service, d.Backend)
	case d.Reason != dataplane.ReasonNone:
		res.Why = fmt.Sprintf("the pipeline would %s it: %s", res.Action, d.Reason)
	default:
		res.Why = "the pipeline would " + res.Action + " it"
	}
	writeJSON(w, http.StatusOK, "", res)
}

func actionName(a dataplane.Action) string {
	switch a {
	case dataplane.ActTx:
		return "forward"
	case dataplane.ActDrop:
		return "drop"
	case dataplane.ActPass:
		return "pass"
	}
	return strings.ToLower(fmt.Sprint(a))
}

func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg := s.Config()
	etag := etagOf(cfg)
	if wantsYAML(r) {
		b, err := toYAML(cfg)
		if err != nil {
			writeProblem(w, r, problem(http.StatusInternalServerError, "%v", err))
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("ETag", etag)
		if r.URL.Query().Get("download") != "" {
			w.Header().Set("Content-Disposition", `attachment; filename="xlb.yaml"`)
		}
		_, _ = w.Write(b)
		return
	}
	writeJSON(w, http.StatusOK, etag, cfg)
}

func wantsYAML(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return f == "yaml"
	}
	a := r.Header.Get("Accept")
	return strings.Contains(a, "yaml") && !strings.Contains(a, "json")
}

func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	var in config.File
	if !s.decode(w, r, &in, true) {
		return
	}
	p := s.change(nil, func(c *config.File) *Problem {
		if p := ifMatch(r, etagOf(c)); p != nil {
			return p
		}
		*c = *in.Clone()
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	cfg := s.Config()
	writeJSON(w, http.StatusOK, etagOf(cfg), cfg)
}

func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	st := s.o.Dataplane.Stats()
	s.mu.Lock()
	out := make([]ServiceView, 0, len(s.cfg.Services))
	for i := range s.cfg.Services {
		out = append(out, s.serviceView(&s.cfg.Services[i], &st))
	}
	etag := etagOf(s.cfg.Services)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, etag, map[string]any{"services": out})
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	s.respondService(w, r, r.PathValue("name"), http.StatusOK)
}

// svcPrefix strips "services[i]." from error paths about service name.
func svcPrefix(name string) func(*config.File) string {
	return func(c *config.File) string {
		if i := findService(c, name); i >= 0 {
			return fmt.Sprintf("services[%d]", i)
		}
		return ""
	}
}

func (s *Server) postService(w http.ResponseWriter, r *http.Request) {
	var in serviceIn
	if !s.decode(w, r, &in, false) {
		return
	}
	svc := in.service()
	p := s.change(svcPrefix(svc.Name), func(c *config.File) *Problem {
		if svc.Name != "" && findService(c, svc.Name) >= 0 {
			p := problem(http.StatusConflict, "a service named %q exists", svc.Name)
			p.Field, p.Value = "name", svc.Name
			return p
		}
		c.Services = append(c.Services, svc)
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	w.Header().Set("Location", "/api/v1/services/"+url.PathEscape(svc.Name))
	s.respondService(w, r, svc.Name, http.StatusCreated)
}

// respondService writes the view of the named service with status, or a
// 404 problem.
func (s *Server) respondService(w http.ResponseWriter, r *http.Request, name string, status int) {
	st := s.o.Dataplane.Stats()
	svc := s.lockService(w, r, name)
	if svc == nil {
		return
	}
	v := s.serviceView(svc, &st)
	etag := etagOf(*svc)
	s.mu.Unlock()
	writeJSON(w, status, etag, v)
}

func (s *Server) putService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var in serviceIn
	if !s.decode(w, r, &in, false) {
		return
	}
	svc := in.service()
	if svc.Name == "" {
		svc.Name = name
	}
	p := s.change(svcPrefix(name), func(c *config.File) *Problem {
		i := findService(c, name)
		if i < 0 {
			return problem(http.StatusNotFound, "no service %q (create it with POST /api/v1/services)", name)
		}
		if p := ifMatch(r, etagOf(c.Services[i])); p != nil {
			return p
		}
		if svc.Name != name {
			p := problem(http.StatusBadRequest, "name: %q differs from the service in the path %q (a service cannot be renamed)", svc.Name, name)
			p.Field, p.Value = "name", svc.Name
			return p
		}
		c.Services[i] = svc
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	s.respondService(w, r, name, http.StatusOK)
}

func (s *Server) deleteService(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := s.change(nil, func(c *config.File) *Problem {
		i, p := serviceIndex(c, name)
		if p != nil {
			return p
		}
		if p := ifMatch(r, etagOf(c.Services[i])); p != nil {
			return p
		}
		c.Services = append(c.Services[:i], c.Services[i+1:]...)
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listBackends(w http.ResponseWriter, r *http.Request) {
	st := s.o.Dataplane.Stats()
	svc := s.lockService(w, r, r.PathValue("name"))
	if svc == nil {
		return
	}
	out := make([]BackendView, 0, len(svc.Backends))
	for j := range svc.Backends {
		out = append(out, s.backendView(svc, &svc.Backends[j], &st))
	}
	etag := etagOf(svc.Backends)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, etag, map[string]any{"backends": out})
}

// backendPrefix strips "services[i].backends[j]." from error paths.
func backendPrefix(name, key string) func(*config.File) string {
	return func(c *config.File) string {
		i := findService(c, name)
		if i < 0 {
			return ""
		}
		for j := range c.Services[i].Backends {
			if c.Services[i].Backends[j].Key() == key {
				return fmt.Sprintf("services[%d].backends[%d]", i, j)
			}
		}
		return fmt.Sprintf("services[%d]", i)
	}
}

func (s *Server) respondBackend(w http.ResponseWriter, r *http.Request, name, key string, status int) {
	st := s.o.Dataplane.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	i, j, p := backendIndex(s.cfg, name, key)
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	svc := &s.cfg.Services[i]
	writeJSON(w, status, etagOf(svc.Backends[j]), s.backendView(svc, &svc.Backends[j], &st))
}

func (s *Server) getBackend(w http.ResponseWriter, r *http.Request) {
	s.respondBackend(w, r, r.PathValue("name"), r.PathValue("backend"), http.StatusOK)
}

func (s *Server) postBackend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var in backendIn
	if !s.decode(w, r, &in, false) {
		return
	}
	b := in.Backend
	b.Defaults()
	p := s.change(backendPrefix(name, b.Key()), func(c *config.File) *Problem {
		i, p := serviceIndex(c, name)
		if p != nil {
			return p
		}
		for _, x := range c.Services[i].Backends {
			if x.Key() == b.Key() {
				p := problem(http.StatusConflict, "service %q already has backend %s", name, b.Key())
				p.Field, p.Value = "address", b.Address
				return p
			}
		}
		c.Services[i].Backends = append(c.Services[i].Backends, b)
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	w.Header().Set("Location", "/api/v1/services/"+url.PathEscape(name)+"/backends/"+url.PathEscape(b.Key()))
	s.respondBackend(w, r, name, b.Key(), http.StatusCreated)
}

// BackendPatch is what PATCH takes: any of weight and state.
type BackendPatch struct {
	Weight *int    `json:"weight,omitempty"`
	State  *string `json:"state,omitempty"` // active | draining | disabled
}

func (s *Server) editBackend(w http.ResponseWriter, r *http.Request, edit func(b *config.Backend) *Problem) {
	name, key := r.PathValue("name"), r.PathValue("backend")
	newKey := key
	p := s.change(backendPrefix(name, key), func(c *config.File) *Problem {
		i, j, p := backendIndex(c, name, key)
		if p != nil {
			return p
		}
		b := &c.Services[i].Backends[j]
		if p := ifMatch(r, etagOf(*b)); p != nil {
			return p
		}
		if p := edit(b); p != nil {
			return p
		}
		newKey = b.Key()
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	s.respondBackend(w, r, name, newKey, http.StatusOK)
}

func (s *Server) putBackend(w http.ResponseWriter, r *http.Request) {
	var in backendIn
	if !s.decode(w, r, &in, false) {
		return
	}
	s.editBackend(w, r, func(b *config.Backend) *Problem {
		nb := in.Backend
		if nb.Key() != b.Key() {
			p := problem(http.StatusBadRequest, "address/port %s differ from the backend in the path %s (remove it and add the new one)", nb.Key(), b.Key())
			p.Field, p.Value = "address", nb.Address
			return p
		}
		*b = nb
		return nil
	})
}

func (s *Server) patchBackend(w http.ResponseWriter, r *http.Request) {
	var in BackendPatch
	if !s.decode(w, r, &in, false) {
		return
	}
	if in.Weight == nil && in.State == nil {
		writeProblem(w, r, problem(http.StatusBadRequest, "PATCH takes weight and/or state"))
		return
	}
	s.editBackend(w, r, func(b *config.Backend) *Problem {
		if in.Weight != nil {
			wt := *in.Weight
			b.Weight = &wt
		}
		if in.State != nil {
			b.State = *in.State
		}
		return nil
	})
}

func (s *Server) deleteBackend(w http.ResponseWriter, r *http.Request) {
	name, key := r.PathValue("name"), r.PathValue("backend")
	p := s.change(nil, func(c *config.File) *Problem {
		i, j, p := backendIndex(c, name, key)
		if p != nil {
			return p
		}
		if p := ifMatch(r, etagOf(c.Services[i].Backends[j])); p != nil {
			return p
		}
		c.Services[i].Backends = append(c.Services[i].Backends[:j], c.Services[i].Backends[j+1:]...)
		return nil
	})
	if p != nil {
		writeProblem(w, r, p)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
