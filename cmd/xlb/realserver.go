package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/realserver"
)

// vipFlags collects repeated --vip values (each a comma-separated list).
type vipFlags []string

func (v *vipFlags) String() string { return strings.Join(*v, ",") }

func (v *vipFlags) Set(s string) error {
	*v = append(*v, s)
	return nil
}

const realserverUsage = `usage: xlb realserver --interface IF --mode tunnel|l3dsr|dsr --vip VIP[=DSCP][,...] [flags]
       xlb realserver --check  (same flags: is this host ready? exit 1 if not)
       xlb realserver --stats --interface IF [--json]
       xlb realserver --undo --interface IF  (undo what a crashed run left)

Runs on a backend: puts the VIPs on lo, sets the ARP sysctls (and relaxes a
strict rp_filter), and in tunnel and l3dsr modes attaches an XDP program to
IF that decapsulates the balancer's tunnel packets or maps its DSCP codes back
to the VIPs. Everything is undone on SIGTERM/SIGINT, or on the next start
after a crash. See docs/realserver.md.

flags:
`

func realserverCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb realserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	usage := func(w io.Writer) {
		fs.SetOutput(w)
		fmt.Fprint(w, realserverUsage)
		fs.PrintDefaults()
	}
	fs.Usage = func() {} // printed below, to stdout for --help
	cfgPath := fs.String("config", "", "YAML configuration file (flags override it)")
	iface := fs.String("interface", "", "interface the balancer's packets arrive on")
	mode := fs.String("mode", "", "tunnel, l3dsr or dsr (as the balancer's service)")
	var vips vipFlags
	fs.Var(&vips, "vip", "VIP[=DSCP][,VIP[=DSCP]...]: service addresses (repeatable); DSCP is the l3dsr code")
	dscp := fs.Int("dscp", 0, "l3dsr code of the VIPs given without =DSCP")
	xdp := fs.String("xdp", "", "XDP attach mode: auto, native or generic (default auto)")
	stateFile := fs.String("state-file", "", "state file (default "+realserver.StateDir+"/realserver-IF.json)")
	statsEvery := fs.Duration("stats-interval", 0, "how often counters are logged at debug level (default 10s)")
	check := fs.Bool("check", false, "report whether this host accepts the traffic, one line per check; exit 1 if not")
	stats := fs.Bool("stats", false, "print the counters of the program attached to --interface")
	asJSON := fs.Bool("json", false, "with --stats: print JSON")
	undoOnly := fs.Bool("undo", false, "undo what a realserver that did not stop cleanly left behind, then exit")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "json", "log format: json or console")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return 0
		}
		usage(stderr)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlb realserver: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "xlb realserver: --log-level: %v\n", err)
		return 2
	}
	var out io.Writer = stderr
	if *format == "console" {
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	} else if *format != "json" {
		fmt.Fprintf(stderr, "xlb realserver: --log-format: %q is not json or console\n", *format)
		return 2
	}
	log := zerolog.New(out).Level(lvl).With().Timestamp().Str("cmd", "realserver").Logger()

	var cfg realserver.Config
	if *cfgPath != "" {
		if cfg, err = realserver.LoadFile(*cfgPath); err != nil {
			fmt.Fprintf(stderr, "xlb realserver: %v\n", err)
			return 2
		}
	}
	if *iface != "" {
		cfg.Interface = *iface
	}
	if *stats {
		return realserverStats(cfg.Interface, *asJSON, stdout, stderr)
	}
	if *mode != "" {
		cfg.Mode = realserver.Mode(*mode)
	}
	if len(vips) > 0 {
		cfg.VIPs = nil
		for _, s := range vips {
			vs, err := realserver.ParseVIPs(s, *dscp)
			if err != nil {
				fmt.Fprintf(stderr, "xlb realserver: --vip: %v\n", err)
				return 2
			}
			cfg.VIPs = append(cfg.VIPs, vs...)
		}
	}
	if *xdp != "" {
		if cfg.XDP, err = bpf.ParseAttachMode(*xdp); err != nil {
			fmt.Fprintf(stderr, "xlb realserver: --xdp: %v\n", err)
			return 2
		}
	}
	if *stateFile != "" {
		cfg.StateFile = *stateFile
	}
	if *statsEvery != 0 {
		cfg.StatsInterval = *statsEvery
	}
	if *undoOnly {
		return realserverUndo(cfg, log, stderr)
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "xlb realserver: %v\n", err)
		return 2
	}
	if *check {
		if realserver.PrintChecks(stdout, &cfg, realserver.Check(&cfg)) {
			return 1
		}
		return 0
	}

	s, err := realserver.Start(cfg, log)
	if err != nil {
		log.Error().Msg(err.Error())
		if errors.Is(err, bpf.ErrNotSupported) || os.Geteuid() != 0 {
			return 77
		}
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-sig
		log.Info().Str("signal", s.String()).Msg("shutting down")
		cancel()
	}()
	s.Serve(ctx)
	if err := s.Stop(); err != nil {
		log.Error().Msg("undo: " + err.Error())
		return 1
	}
	return 0
}

// realserverStats prints the counters of the program attached to iface.
func realserverStats(iface string, asJSON bool, stdout, stderr io.Writer) int {
	if iface == "" {
		fmt.Fprintln(stderr, "xlb realserver --stats: --interface is required")
		return 2
	}
	c, err := realserver.Stats(iface)
	if err != nil {
		fmt.Fprintf(stderr, "xlb realserver --stats: %v\n", err)
		return 1
	}
	m := c.Map()
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(m)
		return 0
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(stdout, "%s: %d handled (decapsulated or rewritten)\n", iface, c.Handled())
	for _, k := range keys {
		fmt.Fprintf(stdout, "  %-20s %d\n", k, m[k])
	}
	return 0
}

// realserverUndo undoes a previous run's state file without starting.
func realserverUndo(cfg realserver.Config, log zerolog.Logger, stderr io.Writer) int {
	if cfg.Interface == "" && cfg.StateFile == "" {
		fmt.Fprintln(stderr, "xlb realserver --undo: --interface or --state-file is required")
		return 2
	}
	if cfg.StateFile == "" {
		cfg.StateFile = realserver.DefaultStateFile(cfg.Interface)
	}
	if err := realserver.RecoverLocked(cfg.StateFile, log); err != nil {
		fmt.Fprintf(stderr, "xlb realserver --undo: %v\n", err)
		return 1
	}
	return 0
}
