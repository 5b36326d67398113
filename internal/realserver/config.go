package realserver

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"

	"github.com/xlb/xlb/dataplane/bpf"
)

// Mode is the forwarding mode of the services this backend serves; it
// must match the balancer's services[].mode.
type Mode string

// Modes.
const (
	ModeDSR    Mode = "dsr"    // VIP on lo and ARP sysctls; no program
	ModeTunnel Mode = "tunnel" // plus the decapsulating program
	ModeL3DSR  Mode = "l3dsr"  // plus the DSCP→VIP program
)

// ParseMode parses "dsr", "tunnel" or "l3dsr".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeDSR, ModeTunnel, ModeL3DSR:
		return m, nil
	}
	return "", fmt.Errorf("mode %q: want tunnel, l3dsr or dsr", s)
}

// needsProgram reports whether the mode loads the XDP program.
func (m Mode) needsProgram() bool { return m == ModeTunnel || m == ModeL3DSR }

// VIP is one service address this backend answers for. DSCP is its l3dsr
// code (0 in the other modes).
type VIP struct {
	Addr netip.Addr
	DSCP uint8
}

func (v VIP) String() string {
	if v.DSCP != 0 {
		return fmt.Sprintf("%s=%d", v.Addr, v.DSCP)
	}
	return v.Addr.String()
}

// Prefix is the VIP as a host prefix (/32 or /128), as it goes on lo.
func (v VIP) Prefix() netip.Prefix { return netip.PrefixFrom(v.Addr, v.Addr.BitLen()) }

// Config is what `xlb realserver` runs with.
type Config struct {
	Interface string         // the interface the balancer's packets arrive on
	Mode      Mode           // tunnel, l3dsr or dsr
	VIPs      []VIP          // at least one
	XDP       bpf.AttachMode // how the program is attached (tunnel, l3dsr)
	// StateFile records every change before it is made, so a later start
	// can undo the changes of one that crashed. Default DefaultStateFile.
	StateFile string
	// StatsInterval is how often the counters are logged at debug level
	// (and the host's addresses re-read). Default 10s.
	StatsInterval time.Duration
}

// ParseVIPs parses the --vip syntax: a comma-separated list of
// ADDR[=DSCP] (whitespace around items is ignored). dscp is the default
// code for VIPs that carry none (0: none).
func ParseVIPs(s string, dscp int) ([]VIP, error) {
	var out []VIP
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		v, err := parseVIP(item, dscp)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func parseVIP(item string, dscp int) (VIP, error) {
	as, cs, hasCode := strings.Cut(item, "=")
	a, err := netip.ParseAddr(strings.TrimSpace(as))
	if err != nil {
		return VIP{}, fmt.Errorf("vip %q: %w", item, err)
	}
	if a.Zone() != "" {
		return VIP{}, fmt.Errorf("vip %q: an address with a zone cannot be a VIP", item)
	}
	a = a.Unmap()
	if hasCode {
		if dscp, err = strconv.Atoi(strings.TrimSpace(cs)); err != nil {
			return VIP{}, fmt.Errorf("vip %q: DSCP %q is not a number", item, cs)
		}
		if dscp < 1 || dscp > 63 {
			return VIP{}, fmt.Errorf("vip %q: DSCP %d is not a code 1..63", item, dscp)
		}
	}
	if dscp < 0 || dscp > 63 {
		return VIP{}, fmt.Errorf("--dscp %d is not a code 1..63", dscp)
	}
	return VIP{Addr: a, DSCP: uint8(dscp)}, nil
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	var errs []error
	if c.Interface == "" {
		errs = append(errs, errors.New("interface: missing (--interface IF)"))
	} else if c.Interface == "lo" || strings.ContainsAny(c.Interface, "/ ") || len(c.Interface) > 15 {
		errs = append(errs, fmt.Errorf("interface %q: want the backend's network interface", c.Interface))
	}
	if _, err := ParseMode(string(c.Mode)); err != nil {
		errs = append(errs, err)
	}
	if len(c.VIPs) == 0 {
		errs = append(errs, errors.New("vips: none (--vip VIP[,VIP...])"))
	}
	seen := map[netip.Addr]bool{}
	codes := map[[2]int]netip.Addr{}
	for _, v := range c.VIPs {
		if !v.Addr.IsValid() || v.Addr.IsUnspecified() || v.Addr.IsLoopback() || v.Addr.IsMulticast() || v.Addr.IsLinkLocalUnicast() {
			errs = append(errs, fmt.Errorf("vip %s: not a unicast service address", v))
			continue
		}
		if seen[v.Addr] {
			errs = append(errs, fmt.Errorf("vip %s: listed twice", v.Addr))
		}
		seen[v.Addr] = true
		switch {
		case c.Mode == ModeL3DSR && v.DSCP == 0:
			errs = append(errs, fmt.Errorf("vip %s: l3dsr needs its DSCP code (--vip %s=N or --dscp N)", v.Addr, v.Addr))
		case c.Mode != ModeL3DSR && v.DSCP != 0:
			errs = append(errs, fmt.Errorf("vip %s: a DSCP code only means something in l3dsr mode", v))
		}
		if c.Mode == ModeL3DSR && v.DSCP != 0 {
			k := [2]int{v.Addr.BitLen(), int(v.DSCP)}
			if o, dup := codes[k]; dup {
				errs = append(errs, fmt.Errorf("vip %s: code %d already maps to %s (codes are unique per address family)", v.Addr, v.DSCP, o))
			}
			codes[k] = v.Addr
		}
	}
	if c.StatsInterval < 0 {
		errs = append(errs, fmt.Errorf("stats_interval %v: negative", c.StatsInterval))
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 10 * time.Second
	}
	if c.StateFile == "" {
		c.StateFile = DefaultStateFile(c.Interface)
	}
	return errors.Join(errs...)
}

// String is the configuration in the --vip syntax, for logs.
func (c *Config) String() string {
	var vs []string
	for _, v := range c.VIPs {
		vs = append(vs, v.String())
	}
	return fmt.Sprintf("interface %s, mode %s, vips %s", c.Interface, c.Mode, strings.Join(vs, ","))
}

// fileConfig is the YAML file's shape; see docs/realserver.md.
type fileConfig struct {
	Interface     string        `mapstructure:"interface"`
	Mode          string        `mapstructure:"mode"`
	VIPs          []string      `mapstructure:"vips"`
	DSCP          int           `mapstructure:"dscp"`
	XDP           string        `mapstructure:"xdp"`
	StateFile     string        `mapstructure:"state_file"`
	StatsInterval time.Duration `mapstructure:"stats_interval"`
}

// LoadFile reads a YAML configuration file:
//
//	interface: eth0
//	mode: l3dsr            # tunnel | l3dsr | dsr
//	dscp: 10               # default code for VIPs written without =N
//	vips: [198.51.100.10, "2001:db8:100::10=12"]
//	xdp: auto              # native | generic | auto
//	state_file: /run/xlb/realserver-eth0.json
//	stats_interval: 10s
//
// Unknown keys are errors. The result is not validated yet.
func LoadFile(path string) (Config, error) {
	v := viper.New()
	v.SetConfigFile(path)
	if ext := filepath.Ext(path); ext != ".yaml" && ext != ".yml" {
		v.SetConfigType("yaml")
	}
	if err := v.ReadInConfig(); err != nil {
		return Config{}, fmt.Errorf("read %s: %w", path, err)
	}
	var f fileConfig
	if err := v.UnmarshalExact(&f); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	c := Config{Interface: f.Interface, Mode: Mode(f.Mode), StateFile: f.StateFile, StatsInterval: f.StatsInterval}
	for _, s := range f.VIPs {
		vs, err := ParseVIPs(s, f.DSCP)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", path, err)
		}
		c.VIPs = append(c.VIPs, vs...)
	}
	if f.XDP != "" {
		m, err := bpf.ParseAttachMode(f.XDP)
		if err != nil {
			return Config{}, fmt.Errorf("%s: xdp: %w", path, err)
		}
		c.XDP = m
	}
	return c, nil
}
