// Package config reads xlb's configuration file (YAML, JSON or TOML
// through viper, overridable by XLB_* environment variables), checks it,
// and turns it into the dataplane Spec and conntrack Config. Every error
// names the offending key in the form the file uses, e.g.
// `services[0].backends[1].address`; unknown keys are errors too, so a
// typo never silently falls back to a default.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
)

// File is the configuration file, key for key (see docs/DESIGN.md).
type File struct {
	Interfaces []Interface `mapstructure:"interfaces"`
	LB         LB          `mapstructure:"lb"`
	API        API         `mapstructure:"api"`
	Services   []Service   `mapstructure:"services"`
}

// Interface is a NIC xlb owns the packet path of.
type Interface struct {
	Name string `mapstructure:"name"`
	XDP  string `mapstructure:"xdp"` // native | generic | auto
	// Role is "client", "backend" or "both" (one-arm, the default).
	Role string `mapstructure:"role"`
}

// LB holds the balancer-wide settings.
type LB struct {
	Workers       string    `mapstructure:"workers"` // "auto" or a number
	TunnelSource  string    `mapstructure:"tunnel_source"`
	TunnelSource6 string    `mapstructure:"tunnel_source6"`
	SNAT          SNAT      `mapstructure:"snat"`
	Conntrack     Conntrack `mapstructure:"conntrack"`
	MaglevSize    uint32    `mapstructure:"maglev_size"`
	HashSeed      uint64    `mapstructure:"hash_seed"`
	Router        string    `mapstructure:"router"` // next-hop MAC override towards clients
	MTU           int       `mapstructure:"mtu"`    // bench replay only; xlb run uses each interface's MTU
	// CPUs pins worker i to CPUs[i % len]; empty pins worker i to CPU i
	// (modulo the CPUs available). Set it to keep workers off the CPUs that
	// take the NIC's interrupts.
	CPUs []int `mapstructure:"cpus"`
	// Poll makes idle workers sleep in poll(2) instead of busy-polling
	// (lower CPU use, more latency). `xlb run --poll` sets it too.
	Poll bool `mapstructure:"poll"`
}

// SNAT is the fullnat source address pool.
type SNAT struct {
	Addresses []string `mapstructure:"addresses"`
	Ports     string   `mapstructure:"ports"` // "1024-65535"
}

// Conntrack sizes the flow table and its timeouts.
type Conntrack struct {
	Capacity       int           `mapstructure:"capacity"`
	TCPSyn         time.Duration `mapstructure:"tcp_syn"`
	TCPEstablished time.Duration `mapstructure:"tcp_established"`
	TCPClosing     time.Duration `mapstructure:"tcp_closing"`
	UDP            time.Duration `mapstructure:"udp"`
}

// API configures the management API.
type API struct {
	Listen    string `mapstructure:"listen"`
	TokenFile string `mapstructure:"token_file"`
	StateFile string `mapstructure:"state_file"`
}

// Service is one load-balanced service.
type Service struct {
	Name      string    `mapstructure:"name"`
	VIP       string    `mapstructure:"vip"`
	Port      int       `mapstructure:"port"`
	Protocol  string    `mapstructure:"protocol"`
	Mode      string    `mapstructure:"mode"`
	Scheduler string    `mapstructure:"scheduler"`
	DSCP      int       `mapstructure:"dscp"`
	FragHash  bool      `mapstructure:"frag_hash"`
	Health    Health    `mapstructure:"health"`
	Backends  []Backend `mapstructure:"backends"`
}

// Health is a service's health check (run by the management plane).
type Health struct {
	Type     string        `mapstructure:"type"`
	Path     string        `mapstructure:"path"`
	Interval time.Duration `mapstructure:"interval"`
	Timeout  time.Duration `mapstructure:"timeout"`
	Rise     int           `mapstructure:"rise"`
	Fall     int           `mapstructure:"fall"`
}

// Backend is one real server.
type Backend struct {
	Address string `mapstructure:"address"`
	Port    int    `mapstructure:"port"`
	Weight  *int   `mapstructure:"weight"` // default 100
	State   string `mapstructure:"state"`  // active | draining | down
	MAC     string `mapstructure:"mac"`
}

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid configuration")

// FieldError names the configuration key at fault.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Load reads a configuration file. Environment variables XLB_<KEY> (dots
// as underscores, e.g. XLB_LB_TUNNEL_SOURCE) override scalar keys.
func Load(path string) (*File, error) { return LoadWith(path, nil) }

// LoadWith is Load with overrides from command-line flags (viper keys such
// as "lb.workers"), which win over the file and the environment.
func LoadWith(path string, overrides map[string]string) (*File, error) {
	v := viper.New()
	v.SetConfigFile(path)
	v.SetEnvPrefix("XLB")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	if err := v.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	for k, val := range overrides {
		v.Set(k, val)
	}
	return decode(v)
}

// Parse reads a configuration from bytes of the given format ("yaml",
// "json", "toml").
func Parse(data []byte, format string) (*File, error) {
	v := viper.New()
	v.SetConfigType(format)
	if err := v.ReadConfig(strings.NewReader(string(data))); err != nil {
		return nil, fmt.Errorf("config: parse: %w", err)
	}
	return decode(v)
}

func decode(v *viper.Viper) (*File, error) {
	// Environment overrides for the scalar keys viper knows only when asked.
	for _, k := range []string{"lb.workers", "lb.tunnel_source", "lb.tunnel_source6", "lb.maglev_size", "lb.hash_seed",
		"lb.router", "lb.mtu", "lb.poll", "lb.snat.ports", "api.listen", "api.token_file", "api.state_file"} {
		_ = v.BindEnv(k)
	}
	var f File
	if err := v.UnmarshalExact(&f); err != nil {
		return nil, fmt.Errorf("config: %w: %s", ErrInvalid, unknownKeys(err))
	}
	return &f, nil
}

// unknownKeys shortens mapstructure's error text to the useful part.
func unknownKeys(err error) string {
	s := err.Error()
	s = strings.ReplaceAll(s, "decoding failed due to the following error(s):\n\n", "")
	return strings.TrimSpace(s)
}

// Defaults fills unset keys with their defaults.
func (f *File) Defaults() {
	d := conntrack.DefaultConfig()
	ct := &f.LB.Conntrack
	if ct.Capacity == 0 {
		ct.Capacity = d.Capacity
	}
	if ct.TCPSyn == 0 {
		ct.TCPSyn = d.TCPSyn
	}
	if ct.TCPEstablished == 0 {
		ct.TCPEstablished = d.TCPEstablished
	}
	if ct.TCPClosing == 0 {
		ct.TCPClosing = d.TCPClosing
	}
	if ct.UDP == 0 {
		ct.UDP = d.UDP
	}
	if f.LB.SNAT.Ports == "" {
		f.LB.SNAT.Ports = "1024-65535"
	}
	if f.LB.Workers == "" {
		f.LB.Workers = "auto"
	}
	if f.LB.MTU == 0 {
		f.LB.MTU = 1500
	}
	for i := range f.Interfaces {
		if f.Interfaces[i].XDP == "" {
			f.Interfaces[i].XDP = "auto"
		}
		if f.Interfaces[i].Role == "" {
			f.Interfaces[i].Role = "both"
		}
	}
	for i := range f.Services {
		s := &f.Services[i]
		if s.Protocol == "" {
			s.Protocol = "tcp"
		}
		if s.Mode == "" {
			s.Mode = "dsr"
		}
		if s.Scheduler == "" {
			s.Scheduler = "maglev"
		}
		for j := range s.Backends {
			b := &s.Backends[j]
			if b.Weight == nil {
				w := 100
				b.Weight = &w
			}
			if b.State == "" {
				b.State = "active"
			}
		}
	}
}

func parseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fieldErr(field, "invalid IP address %q", s)
	}
	return a.Unmap(), nil
}

func parseMAC(field, s string) ([6]byte, error) {
	var m [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m, fieldErr(field, "invalid MAC address %q", s)
	}
	copy(m[:], hw)
	return m, nil
}

// Compile checks the file and returns the dataplane Spec (without
// interfaces, which the daemon fills from the real NICs) and the conntrack
// Config. It does not modify f.
func (f *File) Compile() (dataplane.Spec, conntrack.Config, error) {
	var spec dataplane.Spec
	ctc := conntrack.DefaultConfig()
	g := *f // Defaults fills nested values: work on a deep enough copy
	g.Interfaces = append([]Interface(nil), f.Interfaces...)
	g.Services = append([]Service(nil), f.Services...)
	for i := range g.Services {
		g.Services[i].Backends = append([]Backend(nil), g.Services[i].Backends...)
	}
	g.Defaults()
	f = &g
	for i, ifc := range f.Interfaces {
		fld := fmt.Sprintf("interfaces[%d]", i)
		if ifc.Name == "" {
			return spec, ctc, fieldErr(fld+".name", "must not be empty")
		}
		switch ifc.XDP {
		case "native", "generic", "auto":
		default:
			return spec, ctc, fieldErr(fld+".xdp", "%q is not native, generic or auto", ifc.XDP)
		}
		switch ifc.Role {
		case "both", "client", "backend":
		default:
			return spec, ctc, fieldErr(fld+".role", "%q is not both, client or backend", ifc.Role)
		}
	}
	if f.LB.Workers != "auto" {
		if n, err := strconv.Atoi(f.LB.Workers); err != nil || n < 1 || n > 1024 {
			return spec, ctc, fieldErr("lb.workers", "%q is not auto or a number 1..1024", f.LB.Workers)
		}
	}
	var err error
	if f.LB.TunnelSource != "" {
		if spec.TunnelSource4, err = parseAddr("lb.tunnel_source", f.LB.TunnelSource); err != nil {
			return spec, ctc, err
		}
		if !spec.TunnelSource4.Is4() {
			return spec, ctc, fieldErr("lb.tunnel_source", "%s is not IPv4 (use lb.tunnel_source6)", spec.TunnelSource4)
		}
	}
	if f.LB.TunnelSource6 != "" {
		if spec.TunnelSource6, err = parseAddr("lb.tunnel_source6", f.LB.TunnelSource6); err != nil {
			return spec, ctc, err
		}
		if !spec.TunnelSource6.Is6() {
			return spec, ctc, fieldErr("lb.tunnel_source6", "%s is not IPv6", spec.TunnelSource6)
		}
	}
	for i, s := range f.LB.SNAT.Addresses {
		a, err := parseAddr(fmt.Sprintf("lb.snat.addresses[%d]", i), s)
		if err != nil {
			return spec, ctc, err
		}
		if a.Is4() {
			spec.SNAT4 = append(spec.SNAT4, a)
			ctc.SNATIPs4 = append(ctc.SNATIPs4, a.As4())
		} else {
			spec.SNAT6 = append(spec.SNAT6, a)
			ctc.SNATIPs6 = append(ctc.SNATIPs6, a.As16())
		}
	}
	lo, hi, ok := strings.Cut(f.LB.SNAT.Ports, "-")
	plo, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	phi, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || plo == 0 || plo > phi {
		return spec, ctc, fieldErr("lb.snat.ports", "%q is not a range like 1024-65535", f.LB.SNAT.Ports)
	}
	ctc.SNATPortMin, ctc.SNATPortMax = uint16(plo), uint16(phi)
	ct := f.LB.Conntrack
	ctc.Capacity, ctc.TCPSyn, ctc.TCPEstablished, ctc.TCPClosing, ctc.UDP = ct.Capacity, ct.TCPSyn, ct.TCPEstablished, ct.TCPClosing, ct.UDP
	ctc.Seed = f.LB.HashSeed ^ 0x9e3779b97f4a7c15
	if err := ctc.Validate(); err != nil {
		var ce *conntrack.ConfigError
		if errors.As(err, &ce) {
			return spec, ctc, fieldErr("lb.conntrack."+ce.Field, "%s", ce.Reason)
		}
		return spec, ctc, fieldErr("lb.conntrack", "%v", err)
	}
	if f.LB.Router != "" {
		if spec.Router, err = parseMAC("lb.router", f.LB.Router); err != nil {
			return spec, ctc, err
		}
	}
	if f.LB.MTU < 576 || f.LB.MTU > 9216 {
		return spec, ctc, fieldErr("lb.mtu", "%d is outside 576..9216", f.LB.MTU)
	}
	spec.MaglevSize, spec.HashSeed = f.LB.MaglevSize, f.LB.HashSeed
	for i := range f.Services {
		ss, err := f.Services[i].compile(fmt.Sprintf("services[%d]", i))
		if err != nil {
			return spec, ctc, err
		}
		spec.Services = append(spec.Services, ss)
	}
	return spec, ctc, nil
}

func (s *Service) compile(fld string) (dataplane.ServiceSpec, error) {
	var ss dataplane.ServiceSpec
	var err error
	if s.Name == "" {
		return ss, fieldErr(fld+".name", "must not be empty")
	}
	ss.Name = s.Name
	if ss.VIP, err = parseAddr(fld+".vip", s.VIP); err != nil {
		return ss, err
	}
	if s.Port < 0 || s.Port > 65535 {
		return ss, fieldErr(fld+".port", "%d is not a port (0 = every port)", s.Port)
	}
	ss.Port = uint16(s.Port)
	switch s.Protocol {
	case "tcp":
		ss.Proto = 6
	case "udp":
		ss.Proto = 17
	default:
		return ss, fieldErr(fld+".protocol", "%q is not tcp or udp", s.Protocol)
	}
	if ss.Mode, err = dataplane.ParseMode(s.Mode); err != nil {
		return ss, fieldErr(fld+".mode", "%v", err)
	}
	if ss.Scheduler, err = dataplane.ParseScheduler(s.Scheduler); err != nil {
		return ss, fieldErr(fld+".scheduler", "%v", err)
	}
	if s.DSCP < 0 || s.DSCP > 63 {
		return ss, fieldErr(fld+".dscp", "%d is not a DSCP code 0..63", s.DSCP)
	}
	ss.DSCP = uint8(s.DSCP)
	ss.FragHash = s.FragHash
	if h := s.Health; h.Type != "" {
		switch h.Type {
		case "http", "tcp", "udp", "none":
		default:
			return ss, fieldErr(fld+".health.type", "%q is not http, tcp, udp or none", h.Type)
		}
		if h.Interval < 0 || h.Timeout < 0 || h.Rise < 0 || h.Fall < 0 {
			return ss, fieldErr(fld+".health", "interval, timeout, rise and fall must not be negative")
		}
	}
	for j := range s.Backends {
		b := &s.Backends[j]
		bf := fmt.Sprintf("%s.backends[%d]", fld, j)
		var bs dataplane.BackendSpec
		if bs.Address, err = parseAddr(bf+".address", b.Address); err != nil {
			return ss, err
		}
		if b.Port < 0 || b.Port > 65535 {
			return ss, fieldErr(bf+".port", "%d is not a port", b.Port)
		}
		bs.Port = uint16(b.Port)
		if *b.Weight < 0 || *b.Weight > 1<<16 {
			return ss, fieldErr(bf+".weight", "%d is outside 0..65536", *b.Weight)
		}
		bs.Weight = uint32(*b.Weight)
		if bs.State, err = dataplane.ParseBackendState(b.State); err != nil {
			return ss, fieldErr(bf+".state", "%v", err)
		}
		if b.MAC != "" {
			if bs.MAC, err = parseMAC(bf+".mac", b.MAC); err != nil {
				return ss, err
			}
		}
		ss.Backends = append(ss.Backends, bs)
	}
	return ss, nil
}
