// Command xlbctl is the operator's CLI over xlb's REST API: services and
// backends (add, remove, drain, enable, disable, weight), counters, the
// connection table, flow lookups, health checks and the whole
// configuration. It is only an HTTP client: it never talks to the data
// plane, and everything it shows comes from the API (docs/xlbctl.md).
//
// Exit status: 0 on success, 1 when the API refuses a request or cannot be
// reached, 2 on a usage error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/xlb/xlb/internal/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

const defaultAPI = "http://127.0.0.1:8080"

// app is one invocation: its global options and its I/O.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string

	apiURL    string
	tokenFile string
	format    string // fmtTable, fmtJSON, fmtYAML
	formatSet bool   // -o was given
	timeout   time.Duration
	caFile    string

	c *client // made on first use by (*app).client
}

// run is main without the process: it returns the exit status.
func run(args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, format: fmtTable, timeout: 10 * time.Second}
	err := a.main(args)
	var ue *usageError
	var ae *apiError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "xlbctl: %s\n", ue.msg)
		switch {
		case ue.cmd != nil:
			fmt.Fprintf(stderr, "usage: xlbctl %s\nRun 'xlbctl %s --help' for its flags.\n", ue.cmd.synopsis(), ue.cmd.path)
		case ue.group != "":
			fmt.Fprintf(stderr, "usage: xlbctl %s <%s> [flags] [arguments]\nRun 'xlbctl %s --help' for more.\n", ue.group, strings.Join(groupVerbs(ue.group), "|"), ue.group)
		default:
			fmt.Fprint(stderr, "usage: xlbctl [global flags] <command> [flags] [arguments]\nRun 'xlbctl --help' for the commands.\n")
		}
		return 2
	case errors.As(err, &ae):
		fmt.Fprintf(stderr, "xlbctl: %v\n", ae)
		if ae.Status == 401 && a.token() == "" {
			fmt.Fprintln(stderr, "xlbctl: no token was sent: set XLB_API_TOKEN or --token-file")
		}
		if len(ae.Problem.RestartKeys) > 0 {
			fmt.Fprintf(stderr, "xlbctl: these keys need a restart of xlb: %s\n", strings.Join(ae.Problem.RestartKeys, ", "))
		}
		return 1
	}
	fmt.Fprintf(stderr, "xlbctl: %v\n", err)
	return 1
}

func (a *app) main(args []string) error {
	rest, err := a.globals(args)
	if err != nil {
		return err
	}
	if len(rest) == 0 {
		return &usageError{msg: "no command"}
	}
	name := rest[0]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) > 1 {
			if c := findCommand(rest[1:]); c != nil {
				c.printHelp(a.stdout)
				return errHelp
			}
			if g := findGroup(rest[1]); g != "" && len(rest) == 2 {
				printGroupHelp(a.stdout, g)
				return errHelp
			}
			return &usageError{msg: fmt.Sprintf("help: no command %q", strings.Join(rest[1:], " "))}
		}
		fmt.Fprint(a.stdout, mainHelp)
		return errHelp
	}
	if strings.HasPrefix(name, "-") {
		return &usageError{msg: fmt.Sprintf("unknown global flag %s", name)}
	}
	if g := findGroup(name); g != "" {
		if len(rest) < 2 {
			return &usageError{group: g, msg: fmt.Sprintf("%s: missing subcommand", g)}
		}
		sub := rest[1]
		if sub == "-h" || sub == "-help" || sub == "--help" || sub == "help" {
			printGroupHelp(a.stdout, g)
			return errHelp
		}
		c := findCommand(rest[:2])
		if c == nil {
			return &usageError{group: g, msg: fmt.Sprintf("%s: unknown subcommand %q", g, sub)}
		}
		return c.run(a, c, rest[2:])
	}
	c := findCommand(rest[:1])
	if c == nil {
		return &usageError{msg: fmt.Sprintf("unknown command %q", name)}
	}
	return c.run(a, c, rest[1:])
}

// globals takes the global flags out of args, wherever they are (before
// or after the command, up to a "--"), and returns the rest.
func (a *app) globals(args []string) ([]string, error) {
	var rest []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			rest = append(rest, arg)
			continue
		}
		var dst *string
		switch name {
		case "api":
			dst = &a.apiURL
		case "token-file":
			dst = &a.tokenFile
		case "o", "output":
			dst = &a.format
			a.formatSet = true
		case "timeout", "cacert":
		default:
			rest = append(rest, arg)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, &usageError{msg: fmt.Sprintf("flag needs an argument: %s", arg)}
			}
			i++
			val = args[i]
		}
		switch name {
		case "timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return nil, &usageError{msg: fmt.Sprintf("--timeout %q is not a positive duration like 10s", val)}
			}
			a.timeout = d
		case "cacert":
			a.caFile = val
		default:
			*dst = val
		}
	}
	switch a.format {
	case fmtTable, fmtJSON, fmtYAML:
	default:
		return nil, &usageError{msg: fmt.Sprintf("-o %q is not table, json or yaml", a.format)}
	}
	return rest, nil
}

// token is the bearer token: --token-file, else XLB_API_TOKEN.
func (a *app) token() string {
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	return strings.TrimSpace(a.getenv("XLB_API_TOKEN"))
}

// client returns the API client, made on first use.
func (a *app) client() (*client, error) {
	if a.c != nil {
		return a.c, nil
	}
	if a.tokenFile != "" {
		b, err := os.ReadFile(a.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		if strings.TrimSpace(string(b)) == "" {
			return nil, fmt.Errorf("--token-file %s is empty", a.tokenFile)
		}
	}
	base := a.apiURL
	if base == "" {
		base = a.getenv("XLB_API")
	}
	if base == "" {
		base = defaultAPI
	}
	c, err := newClient(base, a.token(), a.timeout, a.caFile)
	if err != nil {
		return nil, err
	}
	a.c = c
	return c, nil
}

func versionString() string { return version.Version }

const mainHelp = `usage: xlbctl [global flags] <command> [flags] [arguments]

xlbctl is the operator's CLI over xlb's REST API.

Services and backends:
  service list                       every service, its VIP and its backends' state
  service get NAME                   one service and its backends
  service add [flags] | -f FILE      add a service (flags, or a YAML/JSON service object)
  service rm NAME                    remove a service
  backend list SERVICE               a service's backends: weight, state, health, flows
  backend add SERVICE ADDR[:PORT]    add a backend [--weight N] [--state S] [--mac M] [--interface IF]
  backend rm SERVICE BACKEND         remove a backend
  backend drain SERVICE BACKEND      keep its flows, send it no new ones
  backend enable SERVICE BACKEND     make it active
  backend disable SERVICE BACKEND    take it out of service; its flows move elsewhere
  backend weight SERVICE BACKEND N   set its weight (0..65536)

Observing:
  stats                              counters: totals, drops and passes by reason, per service
  flows [--service S] [--limit N]    a sample of the connection table
  lookup --protocol tcp|udp --src IP:PORT --dst VIP:PORT
                                     which backend the real pipeline picks for a flow, and why
  health                             every backend's health-check state

Configuration:
  config get                         the running configuration (YAML; -o json for JSON)
  config apply -f FILE               replace the configuration (YAML or JSON; -f - reads stdin)

  version [--server]                 xlbctl's version (and the API's)

BACKEND is a backend's address, or address:port / [address]:port when the
service has that address on several ports.

Global flags (before or after the command):
  --api URL          the xlb API (default $XLB_API, else http://127.0.0.1:8080)
  --token-file FILE  file holding the bearer token for changes (default: $XLB_API_TOKEN)
  -o table|json|yaml output format (default table; json and yaml print the API's document)
  --timeout D        time limit of each request (default 10s)
  --cacert FILE      CA certificates to trust for an https:// API

Exit status: 0 success, 1 the API refused the request or could not be
reached, 2 usage error. 'xlbctl <command> --help' shows a command's flags.
`
