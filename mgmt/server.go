package mgmt

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/mgmt/health"
)

// Options configure a Server.
type Options struct {
	// Config is the running configuration, its services already chosen by
	// Boot (the state file's, when there is one). The Dataplane runs it.
	Config *config.File
	// Generation is the state file's change counter at start.
	Generation uint64
	Dataplane  Dataplane
	// Token is the bearer token every change needs ("" = none: changes are
	// refused unless AllowNoToken).
	Token string
	// AllowNoToken lets changes through without a token when Token is
	// empty (a loopback-only API, where anyone on the host is root anyway).
	AllowNoToken bool
	Log          zerolog.Logger
	// HealthDial overrides the health checks' dialer (tests).
	HealthDial health.Options
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
}

// Server is the management plane: the REST API, the configuration store
// and its persistence, health checks and metrics. It never touches the
// kernel: every change goes through the Dataplane.
type Server struct {
	o      Options
	log    zerolog.Logger
	health *health.Manager
	mux    *http.ServeMux
	routes []route

	mu      sync.Mutex   // serialises changes: cfg, gen, the state file, Apply
	cfg     *config.File // accepted configuration (defaults filled in)
	gen     uint64
	allDown map[string]bool // services serving over all-down backends (all_down: serve)

	ready       atomic.Bool
	reapply     chan struct{}
	quit        chan struct{}
	wg          sync.WaitGroup
	ctr         counters
	metricsOnce sync.Once
	metrics     http.Handler
}

// counters are the management plane's own totals.
type counters struct {
	changes      atomic.Uint64 // accepted changes
	refused      atomic.Uint64 // changes refused (4xx)
	failed       atomic.Uint64 // changes that failed in the dataplane or the state file (5xx)
	healthApply  atomic.Uint64 // recompiles caused by health transitions
	allDownServe atomic.Uint64 // times a service entered all-down and served anyway
	allDownDrop  atomic.Uint64 // times a service entered all-down and dropped
}

// New starts the management plane over a running Dataplane: it applies
// the configuration once (so health and the state file agree with what
// runs) and starts the health checks.
func New(o Options) (*Server, error) {
	if o.Config == nil || o.Dataplane == nil {
		return nil, errors.New("mgmt: Config and Dataplane are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cfg := o.Config.Clone()
	cfg.Defaults()
	if _, err := cfg.CompileAll(); err != nil {
		return nil, fmt.Errorf("mgmt: %w", err)
	}
	s := &Server{o: o, log: o.Log, cfg: cfg, gen: o.Generation, allDown: map[string]bool{},
		reapply: make(chan struct{}, 1), quit: make(chan struct{})}
	ho := o.HealthDial
	ho.Log = o.Log.With().Str("component", "health").Logger()
	ho.OnChange = func(string, health.Status) {
		select {
		case s.reapply <- struct{}{}:
		default:
		}
	}
	s.health = health.NewManager(ho)
	s.health.Set(targets(cfg))
	if err := o.Dataplane.Apply(s.effective(cfg)); err != nil {
		s.health.Close()
		return nil, fmt.Errorf("mgmt: apply: %w", err)
	}
	s.ready.Store(true)
	s.wg.Add(1)
	go s.healthLoop()
	s.routes = s.routeTable()
	s.mux = s.buildMux()
	return s, nil
}

// Close stops the health checks.
func (s *Server) Close() {
	close(s.quit)
	s.wg.Wait()
	s.health.Close()
}

// Handler is the HTTP handler of the API, /metrics, /healthz and /readyz.
func (s *Server) Handler() http.Handler { return s.mux }

// Config returns a copy of the accepted configuration.
func (s *Server) Config() *config.File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.Clone()
}

// healthLoop recompiles the dataplane when a health state changes.
func (s *Server) healthLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.quit:
			return
		case <-s.reapply:
		}
		s.mu.Lock()
		err := s.o.Dataplane.Apply(s.effective(s.cfg))
		s.mu.Unlock()
		s.ctr.healthApply.Add(1)
		if err != nil {
			s.log.Error().Err(err).Msg("applying a health change failed; the previous backend set stays")
		}
	}
}

// targetKey names a backend's health target.
func targetKey(svc string, b *config.Backend) string { return svc + "/" + b.Key() }

// targets lists the health checks cfg asks for: every backend of a
// service with a health check, except disabled ones.
func targets(cfg *config.File) []health.Target {
	var ts []health.Target
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		if svc.Health.Type == "" || svc.Health.Type == "none" {
			continue
		}
		spec := healthSpec(&svc.Health)
		for j := range svc.Backends {
			b := &svc.Backends[j]
			if b.State == "disabled" {
				continue
			}
			a, err := netip.ParseAddr(b.Address)
			if err != nil {
				continue
			}
			port := b.Port
			if port == 0 {
				port = svc.Port
			}
			ts = append(ts, health.Target{Key: targetKey(svc.Name, b), Addr: netip.AddrPortFrom(a.Unmap(), uint16(port)), Spec: spec})
		}
	}
	return append(ts, datapathTargets(cfg)...) // datapath.go
}

func healthSpec(h *config.Health) health.Spec {
	return health.Spec{Type: h.Type, Port: uint16(h.Port), Path: h.Path, Host: h.Host, Expect: h.Expect, Send: h.Send,
		Receive: h.Receive, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise, Fall: h.Fall,
		FlapLimit: h.Dampening.Flaps, FlapWindow: h.Dampening.Window.D(), Hold: h.Dampening.Hold.D()}
}

// effective is cfg as the dataplane must run it: backends down by health
// check become "disabled", unless every backend of the service is down and
// the service says all_down: serve. Callers hold s.mu.
func (s *Server) effective(cfg *config.File) *config.File {
	e := cfg.Clone()
	for i := range e.Services {
		svc := &e.Services[i]
		if !checked(svc) { // datapath.go: an ordinary check or datapath probes
			delete(s.allDown, svc.Name)
			continue
		}
		var down []int
		live := 0
		for j := range svc.Backends {
			b := &svc.Backends[j]
			if b.State == "disabled" {
				continue
			}
			live++
			if s.backendDown(svc, b) { // datapath.go
				down = append(down, j)
			}
		}
		all := live > 0 && len(down) == live
		if all && !s.allDown[svc.Name] {
			if svc.AllDown == "drop" {
				s.ctr.allDownDrop.Add(1)
				s.log.Error().Str("service", svc.Name).Msg("every backend is down by health check: dropping new flows (all_down: drop)")
			} else {
				s.ctr.allDownServe.Add(1)
				s.log.Error().Str("service", svc.Name).Msg("every backend is down by health check: serving them all anyway (all_down: serve)")
			}
		}
		if all {
			s.allDown[svc.Name] = true
		} else {
			delete(s.allDown, svc.Name)
		}
		if all && svc.AllDown != "drop" {
			continue
		}
		for _, j := range down {
			svc.Backends[j].State = "disabled"
		}
	}
	return e
}

// errRestart is returned by change when a key that needs a restart would
// change.
type restartError struct{ keys []string }

func (e *restartError) Error() string {
	return fmt.Sprintf("changing %v needs a restart of xlb; the running values are kept", e.keys)
}

// change applies mutate to a copy of the accepted configuration and, if
// the result is valid, makes it live: apply to the dataplane, write the
// state file, then accept. prefix is stripped from error paths (the
// object the request is about). On any error the running configuration
// stays exactly as it was.
func (s *Server) change(prefix func(*config.File) string, mutate func(*config.File) *Problem) *Problem {
	s.mu.Lock()
	defer s.mu.Unlock()
	cand := s.cfg.Clone()
	if p := mutate(cand); p != nil {
		s.ctr.refused.Add(1)
		return p
	}
	cand.Defaults()
	if keys := config.RestartKeys(s.cfg, cand); len(keys) > 0 {
		s.ctr.refused.Add(1)
		p := problem(http.StatusConflict, "%v", &restartError{keys})
		p.RestartKeys = keys
		return p
	}
	// Apply validates the whole configuration (config.CompileAll's
	// checks) before it touches anything: a FieldError is the request's
	// fault (400), anything else the dataplane's (500).
	old := s.cfg
	if err := s.o.Dataplane.Apply(s.effective(cand)); err != nil {
		var fe *config.FieldError
		if errors.As(err, &fe) {
			s.ctr.refused.Add(1)
			pre := ""
			if prefix != nil {
				pre = prefix(cand)
			}
			return fieldProblem(err, pre)
		}
		s.ctr.failed.Add(1)
		return problem(http.StatusInternalServerError, "the dataplane refused the change (running configuration kept): %v", err)
	}
	if path := cand.API.StateFile; path != "" {
		if err := WriteState(path, &State{Generation: s.gen + 1, Services: cand.Services}); err != nil {
			s.ctr.failed.Add(1)
			if rerr := s.o.Dataplane.Apply(s.effective(old)); rerr != nil {
				s.log.Error().Err(rerr).Msg("restoring the previous configuration after a state-file error failed")
			}
			return problem(http.StatusInternalServerError, "the change could not be persisted, so it was undone: %v", err)
		}
	}
	s.cfg = cand
	s.gen++
	s.health.Set(targets(cand))
	s.ctr.changes.Add(1)
	return nil
}

// Reload applies a whole configuration file (SIGHUP): its services
// replace the running ones through the same path as PUT /api/v1/config.
func (s *Server) Reload(f *config.File) error {
	if len(f.Interfaces) == 0 {
		// Say what is wrong with the file rather than that every key
		// that needs a restart "changed".
		return &config.FieldError{Field: "interfaces", Reason: "the file lists no interfaces (is it empty or cut short?); nothing was changed"}
	}
	before := s.Config()
	p := s.change(nil, func(c *config.File) *Problem {
		*c = *f.Clone()
		return nil
	})
	if p != nil {
		if p.Field != "" {
			return &config.FieldError{Field: p.Field, Value: p.Value, Reason: p.Detail}
		}
		return p
	}
	s.log.Info().Strs("changes", Diff(before, s.Config())).Msg("configuration reloaded")
	return nil
}

// Diff describes what changed between two configurations' services, for
// the log: "service web added", "web: backend 10.0.0.3 removed", ... or
// "nothing changed".
func Diff(a, b *config.File) []string {
	var out []string
	as, bs := map[string]*config.Service{}, map[string]*config.Service{}
	for i := range a.Services {
		as[a.Services[i].Name] = &a.Services[i]
	}
	for i := range b.Services {
		bs[b.Services[i].Name] = &b.Services[i]
	}
	for n := range as {
		if bs[n] == nil {
			out = append(out, "service "+n+" removed")
		}
	}
	for n, sb := range bs {
		sa := as[n]
		if sa == nil {
			out = append(out, "service "+n+" added")
			continue
		}
		ba, bb := map[string]config.Backend{}, map[string]config.Backend{}
		for _, x := range sa.Backends {
			ba[x.Key()] = x
		}
		for _, x := range sb.Backends {
			bb[x.Key()] = x
		}
		for k := range ba {
			if _, ok := bb[k]; !ok {
				out = append(out, n+": backend "+k+" removed")
			}
		}
		for k, x := range bb {
			y, ok := ba[k]
			switch {
			case !ok:
				out = append(out, n+": backend "+k+" added")
			case etagOf(x) != etagOf(y):
				out = append(out, n+": backend "+k+" changed")
			}
		}
		sa2, sb2 := *sa, *sb
		sa2.Backends, sb2.Backends = nil, nil
		if etagOf(sa2) != etagOf(sb2) {
			out = append(out, "service "+n+" changed")
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		out = []string{"nothing changed"}
	}
	return out
}
