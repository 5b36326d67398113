package preflight

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/neigh"
)

// Status is a check's verdict.
type Status int

const (
	OK   Status = iota // ✔ nothing to do
	Warn               // ! xlb runs, but something is slower, fragile or surprising
	Fail               // ✘ xlb run would not start (or not forward at all)
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Fail:
		return "fail"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Mark is the status's one-character sign in the report.
func (s Status) Mark() string {
	switch s {
	case OK:
		return "✔"
	case Warn:
		return "!"
	}
	return "✘"
}

// Result is one line of the report.
type Result struct {
	Name   string // what was checked: "interface eth0", "backend 10.0.0.11"
	Status Status
	Detail string // what was found, and for a warning what it costs
	Fix    string // what to do; empty for OK
	// Blocking marks the checks `xlb run` makes before it starts
	// (Options.Blocking); only they ever fail.
	Blocking bool
}

// Options configure Run. The zero value runs every check on the real
// host with the defaults.
type Options struct {
	// Blocking runs only the blocking checks: the fast ones `xlb run`
	// makes before it starts (no neighbour resolution).
	Blocking bool
	// ResolveTimeout bounds the resolution of all next hops together
	// (default DefaultResolveTimeout).
	ResolveTimeout time.Duration
	// ConfigPath is the file the configuration came from, for the report.
	ConfigPath string
	// LoadError is the error reading the configuration gave; Run reports
	// it as the config line (and runs what needs no configuration when
	// the file is nil).
	LoadError error
	// StateFile names the state file the services came from (mgmt.Boot),
	// if they did.
	StateFile string
	// SysRoot and ProcRoot are where sysfs and procfs are read (default
	// "/sys" and "/proc"); tests point them at fakes. Run under `ip netns
	// exec` so that /sys is the namespace's own.
	SysRoot, ProcRoot string
}

// DefaultResolveTimeout is Options.ResolveTimeout when zero.
const DefaultResolveTimeout = 2 * time.Second

func (o Options) withDefaults() Options {
	if o.ResolveTimeout <= 0 {
		o.ResolveTimeout = DefaultResolveTimeout
	}
	if o.SysRoot == "" {
		o.SysRoot = "/sys"
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	return o
}

func (o Options) proc(p ...string) string {
	return filepath.Join(append([]string{o.ProcRoot}, p...)...)
}

func (o Options) sys(p ...string) string {
	return filepath.Join(append([]string{o.SysRoot}, p...)...)
}

// Run checks the host against the configuration f (nil when it could not
// be read: then only what needs no configuration is checked) and returns
// one Result per check, in report order. It never changes the host: it
// reads sysfs, procfs and netlink, and asks the kernel to resolve next
// hops (an ARP request or neighbour solicitation, as `ping` would cause).
func Run(ctx context.Context, f *config.File, o Options) []Result {
	o = o.withDefaults()
	c := &checker{ctx: ctx, o: o, f: f}
	if f != nil {
		c.f = f.Clone()
		c.f.Defaults()
	}
	rs := c.config()
	rs = append(rs, c.privileges())
	if !o.Blocking {
		rs = append(rs, c.jit())
	}
	rs = append(rs, c.afxdp())
	if c.f == nil {
		return rs
	}
	c.lookup()
	if !o.Blocking {
		c.resolver, c.resolverErr = neigh.NewResolver()
		if c.resolver != nil {
			defer c.resolver.Close()
		}
		c.routeBackends()
	}
	for _, ifc := range c.ifaces {
		rs = append(rs, c.iface(ifc))
		if ifc.ni == nil {
			continue
		}
		rs = append(rs, c.xdp(ifc))
		if o.Blocking {
			continue
		}
		rs = append(rs, c.offloads(ifc)...)
		rs = append(rs, c.napiPlacement(ifc), c.rpFilter(ifc))
	}
	rs = append(rs, c.workers()...)
	if !o.Blocking {
		rs = append(rs, c.memlock(), c.ipForward())
	}
	rs = append(rs, c.snat()...)
	if !o.Blocking {
		rs = append(rs, c.nextHops()...)
	}
	return rs
}

// Failed reports whether a check failed: `xlb check` exits 1 and `xlb
// run` does not start.
func Failed(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

// Format writes the report: one aligned line per result, "✔ name: detail",
// with " — fix: …" after a warning or failure, and a summary line.
func Format(w io.Writer, rs []Result) {
	width := 0
	for _, r := range rs {
		width = max(width, len([]rune(r.Name))+1)
	}
	var fails, warns int
	for _, r := range rs {
		line := fmt.Sprintf("%s %-*s %s", r.Status.Mark(), width, r.Name+":", r.Detail)
		if r.Status != OK && r.Fix != "" {
			line += " — fix: " + r.Fix
		}
		fmt.Fprintln(w, line)
		switch r.Status {
		case Fail:
			fails++
		case Warn:
			warns++
		}
	}
	switch {
	case fails > 0:
		fmt.Fprintf(w, "\n✘ %s, %s: xlb run would not start\n", plural(fails, "blocking problem"), plural(warns, "warning"))
	case warns > 0:
		fmt.Fprintf(w, "\n! %s: xlb run starts and logs them\n", plural(warns, "warning"))
	default:
		fmt.Fprintf(w, "\n✔ every check passed\n")
	}
}

func plural(n int, what string) string {
	if n == 0 {
		return "no " + what + "s"
	}
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// checker holds what the checks share.
type checker struct {
	ctx context.Context
	o   Options
	f   *config.File // defaults filled in; nil without a configuration

	ifaces      []*ifaceInfo
	resolver    *neigh.Resolver
	resolverErr error
	routes      map[string]routeInfo // backend address -> its route
}

// ifaceInfo is a configured interface as found on the host.
type ifaceInfo struct {
	idx    int // index in f.Interfaces
	cfg    config.Interface
	ni     *net.Interface // nil when missing
	err    error
	queues int   // rx queues; 0 when unknown
	qerr   error // why queues is unknown
	driver string
	addrs  []net.Addr
}

func (c *checker) config() []Result {
	fix := func(err error) string {
		var fe *config.FieldError
		if errors.As(err, &fe) && fe.Field != "" {
			return fmt.Sprintf("correct %s in %s (or the --set / XLB_* override that sets it)", fe.Field, c.path())
		}
		return "check the file given to --config (default /etc/xlb/xlb.yaml): it must exist and be YAML, JSON or TOML"
	}
	if c.o.LoadError != nil {
		var rs []Result
		for _, e := range unjoin(c.o.LoadError) {
			rs = append(rs, Result{Name: "config", Status: Fail, Detail: e.Error(), Fix: fix(e), Blocking: true})
		}
		return rs
	}
	if c.f == nil {
		return []Result{{Name: "config", Status: Fail, Detail: "no configuration", Fix: fix(nil), Blocking: true}}
	}
	if _, err := c.f.CompileAll(); err != nil {
		return []Result{{Name: "config", Status: Fail, Detail: err.Error(), Fix: fix(err), Blocking: true}}
	}
	if len(c.f.Interfaces) == 0 {
		return []Result{{Name: "config", Status: Fail, Detail: "interfaces: at least one interface is required",
			Fix: "list the NICs xlb owns under interfaces:", Blocking: true}}
	}
	backends := 0
	for _, s := range c.f.Services {
		backends += len(s.Backends)
	}
	d := fmt.Sprintf("%s: %s, %s, %s", c.path(), plural(len(c.f.Interfaces), "interface"),
		plural(len(c.f.Services), "service"), plural(backends, "backend"))
	if c.o.StateFile != "" {
		d += " (services from the state file " + c.o.StateFile + ")"
	}
	return []Result{{Name: "config", Status: OK, Detail: d, Blocking: true}}
}

func (c *checker) path() string {
	if c.o.ConfigPath == "" {
		return "the configuration"
	}
	return c.o.ConfigPath
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// hasMode reports whether a service uses one of modes.
func (c *checker) hasMode(modes ...string) bool {
	for _, s := range c.f.Services {
		for _, m := range modes {
			if s.Mode == m {
				return true
			}
		}
	}
	return false
}

// key is a configuration key path for messages.
func key(format string, args ...any) string { return fmt.Sprintf(format, args...) }

func list(xs []string) string { return strings.Join(xs, ", ") }
