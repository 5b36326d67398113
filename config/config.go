// Package config is xlb's configuration: the file schema (the same objects
// the REST API serves), reading it (YAML, JSON or TOML through viper,
// overridable by XLB_* environment variables and --set), strict JSON/YAML
// decoding for the API, validation, and compiling it into the dataplane
// Spec and conntrack Config.
//
// It is the one place that names configuration keys: every error is a
// [*FieldError] carrying the key path the file uses
// (`services[0].backends[1].address`) and the bad value; errors from the
// dataplane and conntrack packages, which speak in terms of their own
// structs, are translated here. Unknown keys are errors too, so a typo
// never silently falls back to a default.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
)

// File is the configuration file, key for key (see docs/DESIGN.md).
type File struct {
	Interfaces []Interface `mapstructure:"interfaces" json:"interfaces"`
	LB         LB          `mapstructure:"lb" json:"lb"`
	API        API         `mapstructure:"api" json:"api"`
	Services   []Service   `mapstructure:"services" json:"services"`
}

// Interface is a NIC xlb owns the packet path of.
type Interface struct {
	Name string `mapstructure:"name" json:"name"`
	XDP  string `mapstructure:"xdp" json:"xdp,omitempty"` // native | generic | auto
	// Role is "client", "backend" or "both" (one-arm, the default).
	Role string `mapstructure:"role" json:"role,omitempty"`
	// Checksum is what xlb does with the TCP/UDP checksums of frames from
	// this interface: verify (the default) checks the first packet of each
	// new flow, fix recomputes every one (for senders that leave checksums
	// to offload), trust forwards them as they are.
	Checksum string `mapstructure:"checksum" json:"checksum,omitempty"`
}

// ChecksumMode parses interfaces[].checksum ("" = verify).
func ChecksumMode(s string) (dataplane.ChecksumMode, error) {
	switch s {
	case "", "verify":
		return dataplane.ChecksumVerify, nil
	case "fix":
		return dataplane.ChecksumFix, nil
	case "trust":
		return dataplane.ChecksumTrust, nil
	}
	return 0, fmt.Errorf("%q is not verify, fix or trust", s)
}

// LB holds the balancer-wide settings.
type LB struct {
	Workers       Workers   `mapstructure:"workers" json:"workers,omitempty"` // "auto" or a number
	TunnelSource  string    `mapstructure:"tunnel_source" json:"tunnel_source,omitempty"`
	TunnelSource6 string    `mapstructure:"tunnel_source6" json:"tunnel_source6,omitempty"`
	SNAT          SNAT      `mapstructure:"snat" json:"snat"`
	Conntrack     Conntrack `mapstructure:"conntrack" json:"conntrack"`
	MaglevSize    uint32    `mapstructure:"maglev_size" json:"maglev_size,omitempty"`
	HashSeed      uint64    `mapstructure:"hash_seed" json:"hash_seed,omitempty"`
	Router        string    `mapstructure:"router" json:"router,omitempty"` // next-hop MAC override towards clients
	MTU           int       `mapstructure:"mtu" json:"mtu,omitempty"`       // bench replay only; xlb run uses each interface's MTU
	// CPUs pins worker i to CPUs[i % len]; empty pins worker i to CPU i
	// (modulo the CPUs available). Set it to keep workers off the CPUs that
	// take the NIC's interrupts.
	CPUs []int `mapstructure:"cpus" json:"cpus,omitempty"`
	// Poll makes idle workers sleep in poll(2) instead of busy-polling
	// (lower CPU use, more latency). `xlb run --poll` sets it too.
	Poll bool `mapstructure:"poll" json:"poll,omitempty"`
	// ManageAddresses (default true) lets xlb add its SNAT addresses, and
	// in one-arm mode VIPs inside a connected subnet, to the interfaces at
	// start and on changes, and remove them on exit (also after a crash,
	// at the next start). With false, a missing one refuses the start.
	ManageAddresses *bool `mapstructure:"manage_addresses" json:"manage_addresses,omitempty"`
}

// ManagesAddresses is lb.manage_addresses with its default (true).
func (l LB) ManagesAddresses() bool { return l.ManageAddresses == nil || *l.ManageAddresses }

// SNAT is the fullnat source address pool.
type SNAT struct {
	Addresses []string `mapstructure:"addresses" json:"addresses,omitempty"`
	Ports     string   `mapstructure:"ports" json:"ports,omitempty"` // "1024-65535"
}

// Conntrack sizes the flow table and its timeouts.
type Conntrack struct {
	Capacity       int      `mapstructure:"capacity" json:"capacity,omitempty"`
	TCPSyn         Duration `mapstructure:"tcp_syn" json:"tcp_syn,omitempty"`
	TCPEstablished Duration `mapstructure:"tcp_established" json:"tcp_established,omitempty"`
	TCPClosing     Duration `mapstructure:"tcp_closing" json:"tcp_closing,omitempty"`
	UDP            Duration `mapstructure:"udp" json:"udp,omitempty"`
	// StateDir is where the connection table lives, in a shared-memory
	// file that outlives the process (a restart, an upgrade or a crash
	// keeps every flow); a tmpfs. Default "/run/xlb".
	StateDir string `mapstructure:"state_dir" json:"state_dir,omitempty"`
	// SynBudget is the share of each conntrack shard, in percent (1-100),
	// that half-open (SYN-only) entries may take; they are evicted first,
	// oldest first. Default 25.
	SynBudget int `mapstructure:"syn_budget" json:"syn_budget,omitempty"`
}

// API configures the management API.
type API struct {
	Listen    string `mapstructure:"listen" json:"listen,omitempty"`
	TokenFile string `mapstructure:"token_file" json:"token_file,omitempty"`
	StateFile string `mapstructure:"state_file" json:"state_file,omitempty"`
	// AuthReads requires the token for reads too (changes always need it).
	AuthReads bool   `mapstructure:"auth_reads" json:"auth_reads,omitempty"`
	TLSCert   string `mapstructure:"tls_cert" json:"tls_cert,omitempty"`
	TLSKey    string `mapstructure:"tls_key" json:"tls_key,omitempty"`
}

// Service is one load-balanced service.
type Service struct {
	Name      string `mapstructure:"name" json:"name"`
	VIP       string `mapstructure:"vip" json:"vip"`
	Port      int    `mapstructure:"port" json:"port"`
	Protocol  string `mapstructure:"protocol" json:"protocol,omitempty"`
	Mode      string `mapstructure:"mode" json:"mode,omitempty"`
	Scheduler string `mapstructure:"scheduler" json:"scheduler,omitempty"`
	DSCP      int    `mapstructure:"dscp" json:"dscp,omitempty"`
	FragHash  bool   `mapstructure:"frag_hash" json:"frag_hash,omitempty"`
	// TunnelMSS clamps the MSS of TCP SYNs sent to tunnel backends:
	// off (default), auto or a number (tunnelmss.go).
	TunnelMSS TunnelMSS `mapstructure:"tunnel_mss" json:"tunnel_mss,omitempty"`
	// AllDown is what happens to new flows when every backend of the
	// service is down by health check: "serve" (the default) schedules
	// over the health-checked-down backends anyway (fail open: a broken
	// check should not take the whole service down), "drop" drops them.
	// Disabled backends are never served.
	AllDown  string    `mapstructure:"all_down" json:"all_down,omitempty"`
	Health   Health    `mapstructure:"health" json:"health"`
	Backends []Backend `mapstructure:"backends" json:"backends"`
}

// Health is a service's health check (run by the management plane).
type Health struct {
	Type     string   `mapstructure:"type" json:"type,omitempty"` // tcp | http | https | udp | none
	Port     int      `mapstructure:"port" json:"port,omitempty"` // 0 = the backend's port
	Path     string   `mapstructure:"path" json:"path,omitempty"`
	Host     string   `mapstructure:"host" json:"host,omitempty"`
	Expect   int      `mapstructure:"expect" json:"expect,omitempty"`
	Send     string   `mapstructure:"send" json:"send,omitempty"`
	Receive  string   `mapstructure:"receive" json:"receive,omitempty"`
	Interval Duration `mapstructure:"interval" json:"interval,omitempty"`
	Timeout  Duration `mapstructure:"timeout" json:"timeout,omitempty"`
	Rise     int      `mapstructure:"rise" json:"rise,omitempty"`
	Fall     int      `mapstructure:"fall" json:"fall,omitempty"`
	// Dampening holds a flapping backend down (see mgmt/health).
	Dampening Dampening `mapstructure:"dampening" json:"dampening"`
	// Datapath is the datapath probe of tunnel and l3dsr backends: "auto"
	// (the default, also "") probes them, "off" does not (mgmt/datapath.go).
	Datapath string `mapstructure:"datapath" json:"datapath,omitempty"`
}

// Dampening configures flap damping: more than Flaps state changes within
// Window hold the backend down for Hold. Flaps -1 turns it off.
type Dampening struct {
	Flaps  int      `mapstructure:"flaps" json:"flaps,omitempty"`
	Window Duration `mapstructure:"window" json:"window,omitempty"`
	Hold   Duration `mapstructure:"hold" json:"hold,omitempty"`
}

// Backend is one real server.
type Backend struct {
	Address string `mapstructure:"address" json:"address"`
	Port    int    `mapstructure:"port" json:"port,omitempty"`
	Weight  *int   `mapstructure:"weight" json:"weight,omitempty"` // default 100
	State   string `mapstructure:"state" json:"state,omitempty"`   // active | draining | disabled
	MAC     string `mapstructure:"mac" json:"mac,omitempty"`
	// Interface names the egress interface; empty = the route's.
	Interface string `mapstructure:"interface" json:"interface,omitempty"`
}

// Key is the backend's identity within its service: its address, or
// address:port when it has a port ("10.0.0.11", "10.0.0.11:8080",
// "[2001:db8::11]:8080"). The API addresses backends by it.
func (b *Backend) Key() string {
	a, err := netip.ParseAddr(b.Address)
	if err != nil {
		return b.Address
	}
	a = a.Unmap()
	if b.Port == 0 {
		return a.String()
	}
	return netip.AddrPortFrom(a, uint16(b.Port)).String()
}

// Workers is lb.workers: "auto" or a number, written either way.
type Workers string

// UnmarshalJSON takes a string ("auto", "2") or a number (2).
func (w *Workers) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*w = Workers(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("lb.workers: %s is not auto or a number", b)
	}
	*w = Workers(n.String())
	return nil
}

// Duration is a time.Duration written as "2s" in files and JSON.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String writes "1m0s"-style text.
func (d Duration) String() string { return time.Duration(d).String() }

// valueError is a parse error that knows the bad value.
type valueError struct {
	value, reason string
}

func (e *valueError) Error() string { return e.reason }

// MarshalText writes "1m0s"-style text.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads "2s", "1m30s" or a bare number of seconds.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		*d = Duration(n * float64(time.Second))
		return nil
	}
	return &valueError{value: s, reason: fmt.Sprintf("%q is not a duration like 2s or 1m30s", s)}
}

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid configuration")

// FieldError names the configuration key at fault and its bad value. It
// is the one error type for bad configuration, from the file, the API or
// the command line.
type FieldError struct {
	Field  string // key path: services[0].backends[1].address
	Value  string // the offending value as written ("" when none applies)
	Reason string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// fieldErr builds a FieldError; value is shown in the reason when it is
// not already quoted there.
func fieldErr(field string, value any, format string, args ...any) error {
	v := ""
	if value != nil {
		v = fmt.Sprint(value)
	}
	return &FieldError{Field: field, Value: v, Reason: fmt.Sprintf(format, args...)}
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
		if err := checkOverrideKey(k); err != nil {
			return nil, err
		}
		v.Set(k, overrideValue(k, val))
	}
	return decode(v)
}

// overrideValue is the value of --set key=val: for a key that holds a
// list (lb.cpus, lb.snat.addresses), the comma-separated elements, in
// brackets or not ("0,1", "[0, 1]"); otherwise val as given.
func overrideValue(key, val string) any {
	t := reflect.TypeOf(File{})
	for _, part := range strings.Split(key, ".") {
		f, ok := fieldByTag(t, part)
		if !ok {
			return val // unknown keys are reported by decode
		}
		t = f.Type
	}
	if t.Kind() != reflect.Slice || t.Elem().Kind() == reflect.Struct {
		return val
	}
	val = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(val), "["), "]")
	if strings.TrimSpace(val) == "" {
		return []string{}
	}
	parts := strings.Split(val, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// fieldByTag finds the field of struct type t whose mapstructure name is
// name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return reflect.StructField{}, false
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
		if tag == name {
			return f, true
		}
		if tag == "" && f.Anonymous {
			if g, ok := fieldByTag(f.Type, name); ok {
				return g, true
			}
		}
	}
	return reflect.StructField{}, false
}

// checkOverrideKey refuses --set keys that index into lists (viper cannot
// set "services.0.port"; it would create a map with key "0").
func checkOverrideKey(k string) error {
	for _, part := range strings.Split(k, ".") {
		if _, err := strconv.Atoi(part); err == nil {
			return &FieldError{Field: k, Reason: "--set cannot change one element of a list (" + part + "); edit the file or use the API"}
		}
	}
	return nil
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

// EnvKeys are the keys XLB_* environment variables may override (dots as
// underscores: XLB_LB_TUNNEL_SOURCE), listed by `xlb run --help`.
var EnvKeys = []string{"lb.workers", "lb.tunnel_source", "lb.tunnel_source6", "lb.maglev_size", "lb.hash_seed",
	"lb.router", "lb.mtu", "lb.poll", "lb.snat.ports", "api.listen", "api.token_file", "api.state_file", "api.auth_reads",
	"api.tls_cert", "api.tls_key"}

func decode(v *viper.Viper) (*File, error) {
	// Environment overrides for the scalar keys viper knows only when asked.
	for _, k := range EnvKeys {
		_ = v.BindEnv(k)
	}
	var f File
	hook := viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(mapstructure.TextUnmarshallerHookFunc(),
		mapstructure.StringToSliceHookFunc(",")))
	if err := v.UnmarshalExact(&f, hook); err != nil {
		return nil, decodeError(err)
	}
	if v.IsSet("lb.conntrack.capacity") && f.LB.Conntrack.Capacity == 0 {
		// 0 cannot mean "default" when written out: it would be a table
		// with no room, which is surely not what was meant.
		return nil, fieldErr("lb.conntrack.capacity", 0, "0 leaves no room for flows (omit the key for the default %d)", conntrack.DefaultConfig().Capacity)
	}
	return &f, nil
}

// decodeError turns mapstructure's errors into FieldErrors with the key
// path and the bad value.
func decodeError(err error) error {
	var errs []error
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var de *mapstructure.DecodeError
		if !errors.As(e, &de) {
			errs = append(errs, e)
			return
		}
		name, inner := de.Name(), de.Unwrap()
		msg := inner.Error()
		if keys, ok := strings.CutPrefix(msg, "has invalid keys: "); ok {
			for _, k := range strings.Split(keys, ", ") {
				errs = append(errs, &FieldError{Field: joinKey(name, k), Value: k, Reason: "unknown key"})
			}
			return
		}
		var pe *mapstructure.ParseError
		if errors.As(inner, &pe) {
			errs = append(errs, fieldErr(name, pe.Value, "%q is not a valid %s", fmt.Sprint(pe.Value), typeWord(pe.Expected.Type())))
			return
		}
		var ue *mapstructure.UnconvertibleTypeError
		if errors.As(inner, &ue) {
			errs = append(errs, fieldErr(name, ue.Value, "%v is not a valid %s", ue.Value, typeWord(ue.Expected.Type())))
			return
		}
		var ve *valueError
		if errors.As(inner, &ve) {
			errs = append(errs, &FieldError{Field: name, Value: ve.value, Reason: ve.reason})
			return
		}
		errs = append(errs, &FieldError{Field: name, Reason: msg})
	}
	walk(err)
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

func typeWord(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint32, reflect.Uint64, reflect.Uint16:
		if t == reflect.TypeOf(Duration(0)) {
			return "duration (like 2s)"
		}
		return "number"
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Slice:
		return "list"
	case reflect.Struct, reflect.Map:
		return "mapping"
	}
	return t.String()
}

// DefaultAPIListen is api.listen when unset.
const DefaultAPIListen = "127.0.0.1:8080"

// Defaults fills unset keys with their defaults.
func (f *File) Defaults() {
	if f.API.Listen == "" {
		f.API.Listen = DefaultAPIListen
	}
	d := conntrack.DefaultConfig()
	ct := &f.LB.Conntrack
	if ct.TCPSyn == 0 {
		ct.TCPSyn = Duration(d.TCPSyn)
	}
	if ct.TCPEstablished == 0 {
		ct.TCPEstablished = Duration(d.TCPEstablished)
	}
	if ct.TCPClosing == 0 {
		ct.TCPClosing = Duration(d.TCPClosing)
	}
	if ct.UDP == 0 {
		ct.UDP = Duration(d.UDP)
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
		if f.Interfaces[i].Checksum == "" {
			f.Interfaces[i].Checksum = "verify"
		}
	}
	for i := range f.Services {
		f.Services[i].Defaults()
	}
}

// Defaults fills a service's unset keys.
func (s *Service) Defaults() {
	if s.Protocol == "" {
		s.Protocol = "tcp"
	}
	if s.Mode == "" {
		s.Mode = "dsr"
	}
	if s.Scheduler == "" {
		s.Scheduler = "maglev"
	}
	if s.AllDown == "" {
		s.AllDown = "serve"
	}
	for j := range s.Backends {
		s.Backends[j].Defaults()
	}
}

// Defaults fills a backend's unset keys.
func (b *Backend) Defaults() {
	if b.Weight == nil {
		w := 100
		b.Weight = &w
	}
	if b.State == "" {
		b.State = "active"
	}
	if b.State == "down" { // the name before "disabled"
		b.State = "disabled"
	}
}

// Clone returns a deep copy of f.
func (f *File) Clone() *File {
	g := *f
	g.Interfaces = append([]Interface(nil), f.Interfaces...)
	g.LB.CPUs = append([]int(nil), f.LB.CPUs...)
	g.LB.SNAT.Addresses = append([]string(nil), f.LB.SNAT.Addresses...)
	if f.LB.ManageAddresses != nil {
		m := *f.LB.ManageAddresses
		g.LB.ManageAddresses = &m
	}
	g.Services = make([]Service, len(f.Services))
	for i := range f.Services {
		g.Services[i] = f.Services[i].Clone()
	}
	return &g
}

// Clone returns a deep copy of s.
func (s Service) Clone() Service {
	bs := make([]Backend, len(s.Backends))
	for j, b := range s.Backends {
		if b.Weight != nil {
			w := *b.Weight
			b.Weight = &w
		}
		bs[j] = b
	}
	s.Backends = bs
	return s
}

func parseAddr(field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if s == "" {
			return netip.Addr{}, fieldErr(field, "", "missing (an IPv4 or IPv6 address)")
		}
		return netip.Addr{}, fieldErr(field, s, "%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

func parseMAC(field, s string) ([6]byte, error) {
	var m [6]byte
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return m, fieldErr(field, s, "%q is not a MAC address like 02:00:00:00:00:01", s)
	}
	copy(m[:], hw)
	return m, nil
}

// Compiled is the result of Compile.
type Compiled struct {
	Spec      dataplane.Spec
	Conntrack conntrack.Config
	// BackendIfaces are the per-backend interface names
	// (Services[i].Backends[j].Interface) for the daemon to resolve.
	BackendIfaces map[[2]int]string
}

// Compile checks the file and returns the dataplane Spec (without
// interfaces, which the daemon fills from the real NICs) and the conntrack
// Config. It does not modify f.
func (f *File) Compile() (dataplane.Spec, conntrack.Config, error) {
	c, err := f.CompileAll()
	return c.Spec, c.Conntrack, err
}

// CompileAll is Compile with everything the daemon needs.
func (f *File) CompileAll() (Compiled, error) { return f.compileAll(true) }

// CompileForBuild is CompileAll without the checks that span services
// (duplicate VIPs, DSCP codes, SNAT vs VIP), for a caller that calls
// dataplane.Build next, which makes them anyway: Translate turns Build's
// errors into key paths. It saves a second pass over a large
// configuration.
func (f *File) CompileForBuild() (Compiled, error) { return f.compileAll(false) }

// Translate turns an error of dataplane.Build on f's compiled Spec into a
// FieldError with the file's key path.
func (f *File) Translate(err error) error {
	var se *dataplane.SpecError
	if !errors.As(err, &se) {
		return err
	}
	var snatFile [2][]int
	for i, s := range f.LB.SNAT.Addresses {
		if a, e := netip.ParseAddr(s); e == nil && a.Unmap().Is4() {
			snatFile[0] = append(snatFile[0], i)
		} else {
			snatFile[1] = append(snatFile[1], i)
		}
	}
	g := f.Clone()
	g.Defaults()
	return specError(err, g, snatFile)
}

func (f *File) compileAll(cross bool) (Compiled, error) {
	var c Compiled
	spec := &c.Spec
	ctc := conntrack.DefaultConfig()
	f = f.Clone() // Defaults fills nested values
	f.Defaults()
	names := map[string]int{}
	for i, ifc := range f.Interfaces {
		fld := fmt.Sprintf("interfaces[%d]", i)
		if ifc.Name == "" {
			return c, fieldErr(fld+".name", "", "must not be empty")
		}
		if j, dup := names[ifc.Name]; dup {
			return c, fieldErr(fld+".name", ifc.Name, "%q is already interfaces[%d]", ifc.Name, j)
		}
		names[ifc.Name] = i
		switch ifc.XDP {
		case "native", "generic", "auto":
		default:
			return c, fieldErr(fld+".xdp", ifc.XDP, "%q is not native, generic or auto", ifc.XDP)
		}
		switch ifc.Role {
		case "both", "client", "backend":
		default:
			return c, fieldErr(fld+".role", ifc.Role, "%q is not both, client or backend", ifc.Role)
		}
		if _, err := ChecksumMode(ifc.Checksum); err != nil {
			return c, fieldErr(fld+".checksum", ifc.Checksum, "%v", err)
		}
	}
	if f.LB.Workers != "auto" {
		if n, err := strconv.Atoi(string(f.LB.Workers)); err != nil || n < 1 || n > 1024 {
			return c, fieldErr("lb.workers", f.LB.Workers, "%q is not auto or a number 1..1024", f.LB.Workers)
		}
	}
	for i, n := range f.LB.CPUs {
		if n < 0 || n >= runtime.NumCPU() {
			return c, fieldErr(fmt.Sprintf("lb.cpus[%d]", i), n, "CPU %d does not exist (this machine has CPUs 0..%d)", n, runtime.NumCPU()-1)
		}
	}
	var err error
	if f.LB.TunnelSource != "" {
		if spec.TunnelSource4, err = parseAddr("lb.tunnel_source", f.LB.TunnelSource); err != nil {
			return c, err
		}
		if !spec.TunnelSource4.Is4() {
			return c, fieldErr("lb.tunnel_source", f.LB.TunnelSource, "%s is not IPv4 (use lb.tunnel_source6)", spec.TunnelSource4)
		}
	}
	if f.LB.TunnelSource6 != "" {
		if spec.TunnelSource6, err = parseAddr("lb.tunnel_source6", f.LB.TunnelSource6); err != nil {
			return c, err
		}
		if !spec.TunnelSource6.Is6() {
			return c, fieldErr("lb.tunnel_source6", f.LB.TunnelSource6, "%s is not IPv6", spec.TunnelSource6)
		}
	}
	var snatFile [2][]int // file index of SNAT4[k] and SNAT6[k]
	for i, s := range f.LB.SNAT.Addresses {
		fld := fmt.Sprintf("lb.snat.addresses[%d]", i)
		a, err := parseAddr(fld, s)
		if err != nil {
			return c, err
		}
		if err := unicast(fld, a); err != nil {
			return c, err
		}
		if a.Is4() {
			spec.SNAT4 = append(spec.SNAT4, a)
			ctc.SNATIPs4 = append(ctc.SNATIPs4, a.As4())
			snatFile[0] = append(snatFile[0], i)
		} else {
			spec.SNAT6 = append(spec.SNAT6, a)
			ctc.SNATIPs6 = append(ctc.SNATIPs6, a.As16())
			snatFile[1] = append(snatFile[1], i)
		}
	}
	plo, phi, err := PortRange(f.LB.SNAT.Ports)
	if err != nil {
		return c, fieldErr("lb.snat.ports", f.LB.SNAT.Ports, "%v", err)
	}
	ctc.SNATPortMin, ctc.SNATPortMax = plo, phi
	ct := f.LB.Conntrack
	if ct.Capacity < 0 {
		return c, fieldErr("lb.conntrack.capacity", ct.Capacity, "%d is negative", ct.Capacity)
	}
	if ct.Capacity > 0 {
		ctc.Capacity = ct.Capacity
	}
	ctc.TCPSyn, ctc.TCPEstablished, ctc.TCPClosing, ctc.UDP = ct.TCPSyn.D(), ct.TCPEstablished.D(), ct.TCPClosing.D(), ct.UDP.D()
	ctc.Seed = f.LB.HashSeed ^ 0x9e3779b97f4a7c15
	if err := ctc.Validate(); err != nil {
		var ce *conntrack.ConfigError
		if errors.As(err, &ce) {
			return c, fieldErr(conntrackKey(ce.Field), nil, "%s", ce.Reason)
		}
		return c, fieldErr("lb.conntrack", nil, "%v", err)
	}
	c.Conntrack = ctc
	if f.LB.Router != "" {
		if spec.Router, err = parseMAC("lb.router", f.LB.Router); err != nil {
			return c, err
		}
	}
	if f.LB.MTU < 576 || f.LB.MTU > 9216 {
		return c, fieldErr("lb.mtu", f.LB.MTU, "%d is outside 576..9216", f.LB.MTU)
	}
	spec.MaglevSize, spec.HashSeed = f.LB.MaglevSize, f.LB.HashSeed
	c.BackendIfaces = map[[2]int]string{}
	for i := range f.Services {
		ss, err := f.Services[i].compile(fmt.Sprintf("services[%d]", i))
		if err != nil {
			return c, err
		}
		for j, b := range f.Services[i].Backends {
			if b.Interface != "" {
				if _, ok := names[b.Interface]; !ok {
					return c, fieldErr(fmt.Sprintf("services[%d].backends[%d].interface", i, j), b.Interface,
						"%q is not one of the configured interfaces", b.Interface)
				}
				c.BackendIfaces[[2]int{i, j}] = b.Interface
			}
		}
		spec.Services = append(spec.Services, ss)
	}
	// The dataplane checks what spans services (duplicates, DSCP codes,
	// SNAT vs VIP); check it now with a stand-in interface so every
	// problem is reported with its key path before anything runs.
	probe := *spec
	probe.Ifaces = make([]dataplane.Iface, max(len(f.Interfaces), 1))
	for i := range probe.Ifaces {
		probe.Ifaces[i].MTU = 1500
	}
	if !cross {
		return c, nil
	}
	if err := dataplane.Validate(probe); err != nil {
		return c, specError(err, f, snatFile)
	}
	return c, nil
}

// PortRange parses "lo-hi".
func PortRange(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	plo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	phi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if !ok || err1 != nil || err2 != nil || plo == 0 || plo > phi {
		return 0, 0, fmt.Errorf("%q is not a port range like 1024-65535", s)
	}
	return uint16(plo), uint16(phi), nil
}

func conntrackKey(field string) string {
	switch field {
	case "Capacity":
		return "lb.conntrack.capacity"
	case "TCPSyn":
		return "lb.conntrack.tcp_syn"
	case "TCPEstablished":
		return "lb.conntrack.tcp_established"
	case "TCPClosing":
		return "lb.conntrack.tcp_closing"
	case "UDP":
		return "lb.conntrack.udp"
	case "SNATPortMin", "SNATPortMax":
		return "lb.snat.ports"
	case "SNATIPs4", "SNATIPs6":
		return "lb.snat.addresses"
	}
	return "lb.conntrack." + strings.ToLower(field)
}

// specKeys maps dataplane Spec field names to file keys.
var specKeys = map[string]string{
	"Name": "name", "VIP": "vip", "Port": "port", "Proto": "protocol", "Mode": "mode", "Scheduler": "scheduler",
	"DSCP": "dscp", "FragHash": "frag_hash", "Backends": "backends", "Address": "address", "Weight": "weight",
	"State": "state", "MAC": "mac", "Iface": "interface", "TunnelMSS": "tunnel_mss",
}

// specError translates a dataplane.SpecError into the file's key path.
func specError(err error, f *File, snatFile [2][]int) error {
	var se *dataplane.SpecError
	if !errors.As(err, &se) {
		return fieldErr("", nil, "%v", err)
	}
	switch se.Field {
	case "SNAT4", "SNAT6":
		i := se.Index
		if fam := map[string]int{"SNAT4": 0, "SNAT6": 1}[se.Field]; i >= 0 && i < len(snatFile[fam]) {
			i = snatFile[fam][i]
		}
		return fieldErr(fmt.Sprintf("lb.snat.addresses[%d]", i), f.LB.SNAT.Addresses[i], "%s", se.Reason)
	case "TunnelSource4":
		return fieldErr("lb.tunnel_source", f.LB.TunnelSource, "%s", se.Reason)
	case "TunnelSource6":
		return fieldErr("lb.tunnel_source6", f.LB.TunnelSource6, "%s", se.Reason)
	case "Ifaces", "RouterIface":
		return fieldErr("interfaces", nil, "%s", se.Reason)
	case "Backends":
		if strings.Contains(se.Reason, "maglev: size") {
			return fieldErr("lb.maglev_size", f.LB.MaglevSize, "%s", se.Reason)
		}
	}
	path := ""
	var value any
	if se.Service >= 0 {
		path = fmt.Sprintf("services[%d]", se.Service)
		if se.Backend >= 0 {
			path += fmt.Sprintf(".backends[%d]", se.Backend)
		}
	}
	key := specKeys[se.Field]
	if key == "" {
		key = strings.ToLower(se.Field)
	}
	if se.Service >= 0 && se.Service < len(f.Services) {
		s := &f.Services[se.Service]
		if se.Backend >= 0 && se.Backend < len(s.Backends) {
			value = fieldValue(&s.Backends[se.Backend], key)
		} else {
			value = fieldValue(s, key)
		}
	}
	return fieldErr(joinKey(path, key), value, "%s", se.Reason)
}

// fieldValue reads the value of the struct field tagged key.
func fieldValue(obj any, key string) any {
	v := reflect.ValueOf(obj).Elem()
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("mapstructure") == key {
			fv := v.Field(i)
			if fv.Kind() == reflect.Pointer {
				if fv.IsNil() {
					return nil
				}
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Slice || fv.Kind() == reflect.Struct {
				return nil
			}
			return fv.Interface()
		}
	}
	return nil
}

// unicast refuses addresses that cannot be a VIP or an SNAT address.
func unicast(field string, a netip.Addr) error {
	switch {
	case a.IsUnspecified():
		return fieldErr(field, a, "%s is the unspecified address", a)
	case a.IsMulticast():
		return fieldErr(field, a, "%s is a multicast address", a)
	case a.IsLoopback():
		return fieldErr(field, a, "%s is a loopback address", a)
	case a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fieldErr(field, a, "%s is the broadcast address", a)
	}
	return nil
}

// Validate checks one service on its own (the API checks a whole File
// with Compile before anything is applied).
func (s *Service) Validate() error {
	c := s.Clone()
	c.Defaults()
	_, err := c.compile("")
	return err
}

func (s *Service) compile(fld string) (dataplane.ServiceSpec, error) {
	var ss dataplane.ServiceSpec
	var err error
	k := func(key string) string { return joinKey(fld, key) }
	if s.Name == "" {
		return ss, fieldErr(k("name"), "", "must not be empty")
	}
	if strings.ContainsAny(s.Name, "/?#% \t\n") || len(s.Name) > 64 {
		return ss, fieldErr(k("name"), s.Name, "%q must be at most 64 characters without spaces, /, ?, # or %%", s.Name)
	}
	ss.Name = s.Name
	if ss.VIP, err = parseAddr(k("vip"), s.VIP); err != nil {
		return ss, err
	}
	if err := unicast(k("vip"), ss.VIP); err != nil {
		return ss, err
	}
	if s.Port < 0 || s.Port > 65535 {
		return ss, fieldErr(k("port"), s.Port, "%d is not a port 0..65535 (0 = every port)", s.Port)
	}
	ss.Port = uint16(s.Port)
	switch s.Protocol {
	case "tcp":
		ss.Proto = 6
	case "udp":
		ss.Proto = 17
	default:
		return ss, fieldErr(k("protocol"), s.Protocol, "%q is not tcp or udp", s.Protocol)
	}
	if ss.Mode, err = dataplane.ParseMode(s.Mode); err != nil {
		return ss, fieldErr(k("mode"), s.Mode, "%v", err)
	}
	if ss.Scheduler, err = dataplane.ParseScheduler(s.Scheduler); err != nil {
		return ss, fieldErr(k("scheduler"), s.Scheduler, "%v", err)
	}
	if s.DSCP < 0 || s.DSCP > 63 {
		return ss, fieldErr(k("dscp"), s.DSCP, "%d is not a DSCP code 0..63", s.DSCP)
	}
	ss.DSCP = uint8(s.DSCP)
	ss.FragHash = s.FragHash
	if err := s.compileTunnelMSS(k("tunnel_mss"), &ss); err != nil {
		return ss, err
	}
	switch s.AllDown {
	case "serve", "drop":
	default:
		return ss, fieldErr(k("all_down"), s.AllDown, "%q is not serve or drop", s.AllDown)
	}
	if err := s.Health.validate(k("health"), s.Port); err != nil {
		return ss, err
	}
	anyWeight := len(s.Backends) == 0
	for j := range s.Backends {
		b := &s.Backends[j]
		bf := k(fmt.Sprintf("backends[%d]", j))
		var bs dataplane.BackendSpec
		if bs.Address, err = parseAddr(bf+".address", b.Address); err != nil {
			return ss, err
		}
		if bs.Address == ss.VIP {
			return ss, fieldErr(bf+".address", b.Address, "%s is the service's own vip", b.Address)
		}
		if err := unicast(bf+".address", bs.Address); err != nil {
			return ss, err
		}
		if b.Port < 0 || b.Port > 65535 {
			return ss, fieldErr(bf+".port", b.Port, "%d is not a port 0..65535", b.Port)
		}
		bs.Port = uint16(b.Port)
		if *b.Weight < 0 || *b.Weight > 1<<16 {
			return ss, fieldErr(bf+".weight", *b.Weight, "%d is outside 0..65536", *b.Weight)
		}
		if *b.Weight > 0 {
			anyWeight = true
		}
		bs.Weight = uint32(*b.Weight)
		switch b.State {
		case "active":
			bs.State = dataplane.StateActive
		case "draining":
			bs.State = dataplane.StateDraining
		case "disabled":
			bs.State = dataplane.StateDown
		default:
			return ss, fieldErr(bf+".state", b.State, "%q is not active, draining or disabled", b.State)
		}
		if b.MAC != "" {
			if bs.MAC, err = parseMAC(bf+".mac", b.MAC); err != nil {
				return ss, err
			}
		}
		ss.Backends = append(ss.Backends, bs)
	}
	if !anyWeight {
		return ss, fieldErr(k("backends"), nil, "every backend has weight 0: the service could never take a flow")
	}
	return ss, nil
}

func (h *Health) validate(fld string, svcPort int) error {
	k := func(key string) string { return joinKey(fld, key) }
	if h.Datapath != "" && h.Datapath != "auto" && h.Datapath != "off" {
		return fieldErr(k("datapath"), h.Datapath, "%q is not auto or off", h.Datapath)
	}
	switch h.Type {
	case "", "none":
		return nil
	case "tcp", "http", "https", "udp":
	default:
		return fieldErr(k("type"), h.Type, "%q is not tcp, http, https, udp or none", h.Type)
	}
	if h.Port < 0 || h.Port > 65535 {
		return fieldErr(k("port"), h.Port, "%d is not a port", h.Port)
	}
	if svcPort == 0 && h.Port == 0 {
		return fieldErr(k("port"), 0, "a service on every port needs health.port")
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"interval", h.Interval}, {"timeout", h.Timeout}, {"dampening.window", h.Dampening.Window}, {"dampening.hold", h.Dampening.Hold}} {
		if d.v < 0 {
			return fieldErr(k(d.key), d.v, "%s is negative", d.v.D())
		}
	}
	if h.Interval != 0 && h.Interval.D() < 10*time.Millisecond {
		return fieldErr(k("interval"), h.Interval, "%s is shorter than 10ms", h.Interval.D())
	}
	if h.Timeout != 0 && h.Interval != 0 && h.Timeout > h.Interval {
		return fieldErr(k("timeout"), h.Timeout, "%s is longer than the interval %s", h.Timeout.D(), h.Interval.D())
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"rise", h.Rise}, {"fall", h.Fall}} {
		if n.v < 0 || n.v > 100 {
			return fieldErr(k(n.key), n.v, "%d is outside 1..100", n.v)
		}
	}
	if h.Expect != 0 && (h.Expect < 100 || h.Expect > 599) {
		return fieldErr(k("expect"), h.Expect, "%d is not an HTTP status code", h.Expect)
	}
	if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
		return fieldErr(k("path"), h.Path, "%q must start with /", h.Path)
	}
	if h.Dampening.Flaps < -1 {
		return fieldErr(k("dampening.flaps"), h.Dampening.Flaps, "%d: use -1 to turn dampening off", h.Dampening.Flaps)
	}
	return nil
}

// RestartKeys lists the keys whose change needs a restart, comparing a
// running configuration with a new one (services and api.auth_reads are
// applied live).
func RestartKeys(old, new *File) []string {
	var keys []string
	if !reflect.DeepEqual(norm(old.Interfaces), norm(new.Interfaces)) {
		keys = append(keys, "interfaces")
	}
	o, n := old.settings(), new.settings()
	if o.LB.Workers != n.LB.Workers {
		keys = append(keys, "lb.workers")
	}
	if !reflect.DeepEqual(o.LB.CPUs, n.LB.CPUs) && (len(o.LB.CPUs) > 0 || len(n.LB.CPUs) > 0) {
		keys = append(keys, "lb.cpus")
	}
	if o.LB.ManagesAddresses() != n.LB.ManagesAddresses() {
		keys = append(keys, "lb.manage_addresses")
	}
	if o.LB.Poll != n.LB.Poll {
		keys = append(keys, "lb.poll")
	}
	if !reflect.DeepEqual(o.LB.SNAT, n.LB.SNAT) && (len(o.LB.SNAT.Addresses) > 0 || len(n.LB.SNAT.Addresses) > 0 || o.LB.SNAT.Ports != n.LB.SNAT.Ports) {
		keys = append(keys, "lb.snat")
	}
	if o.LB.Conntrack != n.LB.Conntrack {
		keys = append(keys, "lb.conntrack")
	}
	if o.LB.HashSeed != n.LB.HashSeed {
		keys = append(keys, "lb.hash_seed")
	}
	if o.LB.MaglevSize != n.LB.MaglevSize {
		keys = append(keys, "lb.maglev_size")
	}
	if o.API.Listen != n.API.Listen {
		keys = append(keys, "api.listen")
	}
	if o.API.TLSCert != n.API.TLSCert || o.API.TLSKey != n.API.TLSKey {
		keys = append(keys, "api.tls_cert")
	}
	if o.API.TokenFile != n.API.TokenFile {
		keys = append(keys, "api.token_file")
	}
	if o.API.StateFile != n.API.StateFile {
		keys = append(keys, "api.state_file")
	}
	return keys
}

// settings is a copy of f without services, defaults filled in.
func (f *File) settings() *File {
	g := &File{Interfaces: f.Interfaces, LB: f.LB, API: f.API}
	g.LB.CPUs = append([]int(nil), f.LB.CPUs...)
	g.LB.SNAT.Addresses = append([]string(nil), f.LB.SNAT.Addresses...)
	g.Interfaces = append([]Interface(nil), f.Interfaces...)
	g.Defaults()
	return g
}

func norm(ifs []Interface) []Interface {
	out := append([]Interface{}, ifs...)
	for i := range out {
		if out[i].XDP == "" {
			out[i].XDP = "auto"
		}
		if out[i].Role == "" {
			out[i].Role = "both"
		}
		if out[i].Checksum == "" {
			out[i].Checksum = "verify"
		}
	}
	return out
}
