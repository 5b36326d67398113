package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/internal/daemon"
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

func runCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "/etc/xlb/xlb.yaml", "configuration file")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	format := fs.String("log-format", "json", "log format: json or console")
	poll := fs.Bool("poll", false, "sleep in poll(2) when idle instead of busy-polling")
	workers := fs.String("workers", "", "override lb.workers")
	sets := setFlags{}
	fs.Var(sets, "set", "override a configuration key, e.g. --set lb.poll=true (repeatable)")
	if err := fs.Parse(args); err != nil {
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
	if *format == "console" {
		out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.RFC3339}
	} else if *format != "json" {
		fmt.Fprintf(stderr, "xlb run: --log-format: %q is not json or console\n", *format)
		return 2
	}
	log := zerolog.New(out).Level(lvl).With().Timestamp().Logger()
	d, err := daemon.Start(daemon.Options{ConfigPath: *cfg, Overrides: sets, Log: log, Poll: *poll})
	if err != nil {
		log.Error().Msg(err.Error())
		if errors.Is(err, daemon.ErrPrivileges) {
			return 77
		}
		return 1
	}
	var srv *http.Server
	if addr := d.APIListen(); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Error().Str("listen", addr).Msg(fmt.Sprintf("api: %v", err))
			d.Stop()
			return 1
		}
		srv = &http.Server{Handler: d.Handler(), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		log.Info().Str("listen", ln.Addr().String()).Msg("status api listening")
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for s := range sig {
		if s == syscall.SIGHUP {
			if err := d.Reload(); err != nil {
				log.Error().Msg("reload refused, running configuration kept: " + err.Error())
			}
			continue
		}
		log.Info().Str("signal", s.String()).Msg("shutting down")
		break
	}
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	d.Stop()
	return 0
}
