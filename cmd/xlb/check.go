package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/preflight"
	"github.com/xlb/xlb/mgmt"
)

const checkHelp = `usage: xlb check [flags]

Checks this host against the configuration before xlb runs here, and
prints one line per check: ✔ fine, ! works but costs something, ✘ xlb run
would not start. Every ! and ✘ says how to fix it. It changes nothing on
the host (next hops are resolved as a ping would resolve them).

Run it where xlb runs: as root, in the same network namespace
(ip netns exec NS xlb check …). The configuration is read as xlb run
reads it (--config, XLB_* environment variables, --set, and the services
of api.state_file when it exists).

Exit status: 0 when no check failed (warnings allowed), 1 when one did,
2 on a usage error. docs/check.md describes every check.

Flags:
`

func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/xlb/xlb.yaml", "configuration file")
	timeout := fs.Duration("timeout", preflight.DefaultResolveTimeout, "how long to wait for the backends' next hops to resolve")
	sets := setFlags{}
	fs.Var(sets, "set", "override a configuration key, e.g. --set lb.workers=2 (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), checkHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlb check: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "xlb check: --timeout must be positive\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	o := preflight.Options{ConfigPath: *cfgPath, ResolveTimeout: *timeout}
	f, err := config.LoadWith(*cfgPath, sets)
	if err == nil {
		var source string
		if source, _, err = mgmt.Boot(f); err == nil && strings.HasPrefix(source, "state file ") {
			o.StateFile = f.API.StateFile
		}
	}
	o.LoadError = err
	rs := preflight.Run(ctx, f, o)
	preflight.Format(stdout, rs)
	if preflight.Failed(rs) {
		return 1
	}
	return 0
}
