package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/daemon"
	"github.com/xlb/xlb/internal/preflight"
	"github.com/xlb/xlb/internal/sdnotify"
	"github.com/xlb/xlb/internal/version"
	"github.com/xlb/xlb/mgmt"
)

// setFlags collects repeated --set key=value overrides.
type setFlags map[string]string

func (s setFlags) String() string { return fmt.Sprint(map[string]string(s)) }

func (s setFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", v)
	}
	s[k] = val
	return nil
}

const runHelp = `usage: xlb run [flags]

Runs the load balancer: attaches the XDP steering program to the
configured interfaces, starts one pinned worker per rx queue, and serves
the REST API (api.listen, default 127.0.0.1:8080).

Configuration comes from --config, overridden by XLB_* environment
variables and then by --set. Services come from api.state_file when it
exists (the latest accepted through the API), else from the file.

Signals: SIGHUP re-reads the file and applies its services (the same
validation as PUT /api/v1/config; a bad file changes nothing);
SIGTERM/SIGINT stop the workers, detach the programs and exit 0. Signals
that arrive during start-up are acted on once it finishes.

Environment:
  XLB_API_TOKEN       bearer token for API changes (instead of api.token_file)
  XLB_BPFFS           the BPF filesystem the steering programs' links are pinned
                      in (default /sys/fs/bpf), so traffic is held, not handed to
                      the kernel, while xlb restarts
%s
Flags:
`

func runCmd(args []string, stdout, stderr io.Writer) int {
	// Signals from the first instruction: none may kill the process
	// before it can act on it.
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)

	fs := flag.NewFlagSet("xlb run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/xlb/xlb.yaml", "configuration file")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "json", "log format: json or console")
	poll := fs.Bool("poll", false, "sleep in poll(2) when idle instead of busy-polling")
	workers := fs.String("workers", "", "override lb.workers")
	sets := setFlags{}
	fs.Var(sets, "set", "override a configuration key, e.g. --set lb.poll=true (repeatable)")
	fs.Usage = func() {
		var env strings.Builder
		for _, k := range config.EnvKeys {
			fmt.Fprintf(&env, "  XLB_%-17s overrides %s\n", strings.ToUpper(strings.ReplaceAll(k, ".", "_")), k)
		}
		fmt.Fprintf(fs.Output(), runHelp, env.String())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *workers != "" {
		sets["lb.workers"] = *workers
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(stderr, "xlb run: --log-level: %v\n", err)
		return 2
	}
	var out io.Writer = stderr
	switch *format {
	case "console":
		noColor := true
		if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			noColor = false
		}
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339, NoColor: noColor}
	case "json":
	default:
		fmt.Fprintf(stderr, "xlb run: --log-format: %q is not json or console\n", *format)
		return 2
	}
	log := zerolog.New(out).Level(lvl).With().Timestamp().Logger()
	log.Info().Str("version", version.Version).Int("pid", os.Getpid()).Msg("xlb starting")

	// Until the balancer runs, a SIGTERM/SIGINT cancels the start-up (torn
	// down cleanly, exit 0) and a SIGHUP is remembered and applied once
	// running.
	startCtx, cancelStart := context.WithCancel(context.Background())
	defer cancelStart()
	var early struct {
		sync.Mutex
		hup  bool
		term os.Signal
	}
	startDone := make(chan struct{})
	watcher := make(chan struct{})
	go func() {
		defer close(watcher)
		for {
			select {
			case <-startDone:
				return
			case s := <-sig:
				early.Lock()
				if s == syscall.SIGHUP {
					early.hup = true
					log.Info().Msg("SIGHUP during start-up: it is applied once xlb runs")
				} else if early.term == nil {
					early.term = s
					log.Info().Str("signal", s.String()).Msg("stopping: signal during start-up")
					cancelStart()
				}
				early.Unlock()
			}
		}
	}()
	// endStartup stops the watcher and reports a terminating signal.
	endStartup := func() os.Signal {
		close(startDone)
		<-watcher
		early.Lock()
		defer early.Unlock()
		return early.term
	}

	f, err := config.LoadWith(*cfgPath, sets)
	if err != nil {
		log.Error().Msg(err.Error())
		return 1
	}
	source, gen, err := mgmt.Boot(f)
	if err != nil {
		log.Error().Msg(err.Error())
		return 1
	}
	log.Info().Str("services_from", source).Msg("configuration loaded")
	token, allowNoToken, err := apiToken(f)
	if err != nil {
		log.Error().Msg(err.Error())
		return 1
	}
	// The blocking pre-flight checks (xlb check) first: a failure says
	// what to fix instead of failing somewhere inside the start-up.
	if rs := preflight.Run(context.Background(), f, preflight.Options{Blocking: true, ConfigPath: *cfgPath}); preflight.Failed(rs) {
		code := 1
		for _, r := range rs {
			if r.Status == preflight.Fail {
				log.Error().Str("fix", r.Fix).Msg(r.Name + ": " + r.Detail)
				if r.Name == "privileges" {
					code = 77
				}
			}
		}
		return code
	}
	d, err := daemon.Start(daemon.Options{File: f, Log: log, Poll: *poll, Context: startCtx})
	if err != nil {
		if term := endStartup(); term != nil {
			log.Info().Str("signal", term.String()).Msg("xlb stopped before it ran")
			return 0
		}
		log.Error().Msg(err.Error())
		if errors.Is(err, daemon.ErrPrivileges) {
			return 77
		}
		return 1
	}
	// The other checks, as warnings (after start: a veth has its NAPI
	// only once XDP is attached).
	go func(f *config.File) {
		for _, r := range preflight.Run(context.Background(), f, preflight.Options{ConfigPath: *cfgPath}) {
			if r.Status == preflight.Warn {
				log.Warn().Str("fix", r.Fix).Msg(r.Name + ": " + r.Detail)
			}
		}
	}(f.Clone())
	srv, err := mgmt.New(mgmt.Options{Config: f, Generation: gen, Dataplane: d, Token: token, AllowNoToken: allowNoToken, Log: log})
	if err != nil {
		log.Error().Msg(err.Error())
		d.Stop()
		return 1
	}
	stopAll := func() {
		srv.Close()
		d.Stop()
	}
	var hs *http.Server
	if addr := srv.Config().API.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Error().Str("listen", addr).Msg(fmt.Sprintf("api.listen: %v", err))
			stopAll()
			return 1
		}
		hs = &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second}
		a := srv.Config().API
		if a.TLSCert != "" || a.TLSKey != "" {
			cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
			if err != nil {
				log.Error().Msg(fmt.Sprintf("api.tls_cert / api.tls_key: %v", err))
				stopAll()
				return 1
			}
			hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
			ln = tls.NewListener(ln, hs.TLSConfig)
		}
		// Read before Serve starts: Serve configures HTTP/2, which sets a
		// nil TLSConfig to an empty one (the log said tls:true on plain
		// HTTP when the goroutine ran first).
		useTLS := hs.TLSConfig != nil
		go func() { _ = hs.Serve(ln) }()
		log.Info().Str("listen", ln.Addr().String()).Bool("tls", useTLS).Msg("api listening")
	}
	// systemd (Type=notify): ready now, and watchdog pings while running;
	// both do nothing outside systemd.
	wd := make(chan struct{})
	defer close(wd)
	_ = sdnotify.Ready("serving")
	go sdnotify.Watchdog(wd, nil)
	term := endStartup()
	early.Lock()
	hup := early.hup
	early.Unlock()
	if term != nil {
		log.Info().Str("signal", term.String()).Msg("shutting down (signal during start-up)")
	} else if hup {
		nf, err := config.LoadWith(*cfgPath, sets)
		if err == nil {
			err = srv.Reload(nf)
		}
		if err != nil {
			log.Error().Msg("reload (SIGHUP during start-up) refused, running configuration kept: " + err.Error())
		}
	}
	for term == nil {
		s := <-sig
		if s == syscall.SIGHUP {
			nf, err := config.LoadWith(*cfgPath, sets)
			if err == nil {
				err = srv.Reload(nf)
			}
			if err != nil {
				log.Error().Msg("reload refused, running configuration kept: " + err.Error())
			}
			continue
		}
		log.Info().Str("signal", s.String()).Msg("shutting down")
		break
	}
	if hs != nil {
		_ = hs.Close()
	}
	stopAll()
	return 0
}

// apiToken reads the API token: XLB_API_TOKEN, else api.token_file. With
// neither, changes are allowed only when the API listens on loopback.
func apiToken(f *config.File) (token string, allowNone bool, err error) {
	if t := strings.TrimSpace(os.Getenv("XLB_API_TOKEN")); t != "" {
		return t, false, nil
	}
	if p := f.API.TokenFile; p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false, &config.FieldError{Field: "api.token_file", Value: p, Reason: fmt.Sprintf("cannot read the API token: %v", err)}
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", false, &config.FieldError{Field: "api.token_file", Value: p, Reason: "the file is empty"}
		}
		return t, false, nil
	}
	listen := f.API.Listen
	if listen == "" {
		listen = config.DefaultAPIListen
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", false, &config.FieldError{Field: "api.listen", Value: listen, Reason: "not host:port"}
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() || host == "localhost" {
		return "", true, nil
	}
	return "", false, nil
}
