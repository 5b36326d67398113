// Command xlb-bench is `make bench-e2e`: xlb measured end to end over veth
// against the kernel's own balancers and a bare AF_XDP forwarder, in
// network namespaces it builds and tears down. It lives apart from the xlb
// binary because it links the namespace harness, which the product must
// not.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xlb/xlb/bench"
	"github.com/xlb/xlb/bench/e2e"
)

const e2eHelp = `usage: xlb-bench [flags]

Measures xlb end to end over veth against baselines, in network namespaces
it builds and tears down (root; nothing touches the root namespace):

  client ⇄ lb ⇄ sink

A generator in the client namespace (an XDP program run with
BPF_F_TEST_XDP_LIVE_FRAMES on CPU 0, 60-byte UDP over 10 000 flows) sends
to the lb; an XDP program on the sink counts what arrives. On the lb, in
turn: xlb in each mode (a subprocess, "xlb run"; dsr also with --poll),
the bare AF_XDP forwarder, an in-kernel XDP forwarder, kernel IP
forwarding and nftables DNAT, on CPU 1 with their NAPIs, as fast as the
generator can send (saturation); xlb dsr and the bare forwarder again
with the generator on the balancer's CPU at nice 10 (closed loop); some of
them paced to --paced-rate;
then xlb with two
workers on two queues, wrk to nginx through xlb fullnat, haproxy and
nftables (keep-alive and Connection: close), and the in-process replay with
1 and 2 workers. Every case runs --reps times, interleaved.

Writes e2e-<time>.json, .md and .svg to --results and rewrites the part of
--docs between its bench-e2e markers. --report-only redoes the Markdown,
the SVG and --docs from the newest JSON in --results (or --from).

Flags:
`

func main() { os.Exit(e2eCmd(os.Args[1:], os.Stdout, os.Stderr)) }

func e2eCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o e2e.Options
	fs.IntVar(&o.Reps, "reps", 3, "repetitions of every case")
	fs.DurationVar(&o.Window, "window", 5*time.Second, "counting window of a UDP case")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "warm-up before the window")
	fs.DurationVar(&o.ConnWindow, "conn-window", 5*time.Second, "duration of a wrk run")
	fs.IntVar(&o.Rate, "rate", 0, "pace the generator to this many frames/s (0: as fast as it can)")
	fs.IntVar(&o.PacedRate, "paced-rate", 100000, "also run xlb dsr, the bare forwarder and kernel forwarding at this rate (0: not)")
	only := fs.String("only", "", "comma-separated substrings: run only the cases whose name contains one")
	fs.BoolVar(&o.NoConn, "no-conn", false, "skip the connection-level (wrk) runs")
	fs.BoolVar(&o.NoReplay, "no-replay", false, "skip the in-process replay runs")
	fs.BoolVar(&o.NoMultiQueue, "no-multiqueue", false, "skip the two-worker case")
	results := fs.String("results", "bench/results", "directory for the result files")
	docs := fs.String("docs", "docs/BENCHMARKS.md", "Markdown file whose bench-e2e section to rewrite (empty: none)")
	replayCfg := fs.String("replay-config", "testdata/replay/dsr.yaml", "configuration for the replay runs")
	xlbBin := fs.String("xlb", "", "xlb binary to run as the balancer (default: xlb next to this program)")
	reportOnly := fs.Bool("report-only", false, "only regenerate the Markdown, SVG and docs from a JSON result")
	from := fs.String("from", "", "with --report-only: the JSON result (default: the newest in --results)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), e2eHelp)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "xlb-bench: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *reportOnly {
		path := *from
		if path == "" {
			p, err := e2e.Newest(*results)
			if err != nil {
				fmt.Fprintln(stderr, "xlb-bench:", err)
				return 1
			}
			path = p
		}
		res, err := e2e.Load(path)
		if err != nil {
			fmt.Fprintln(stderr, "xlb-bench:", err)
			return 1
		}
		return e2eWrite(res, filepath.Dir(path), *docs, stdout, stderr)
	}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "xlb-bench: needs root (network namespaces, XDP, AF_XDP)")
		return 77
	}
	if *xlbBin == "" {
		p, err := os.Executable()
		p = filepath.Join(filepath.Dir(p), "xlb")
		if err != nil {
			fmt.Fprintln(stderr, "xlb-bench:", err)
			return 1
		}
		*xlbBin = p
	}
	o.XLB = *xlbBin
	o.Progress = stdout
	if _, err := os.Stat(*replayCfg); err == nil {
		replay, err := e2eReplay(*replayCfg)
		if err != nil {
			fmt.Fprintln(stderr, "xlb-bench:", err)
			return 1
		}
		o.Replay = replay
	} else if !o.NoReplay {
		fmt.Fprintf(stderr, "xlb-bench: %s not found: replay runs skipped (run from the repository, or --replay-config)\n", *replayCfg)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	fmt.Fprintf(stdout, "xlb-bench: %d repetitions, %v windows; every case prints a line\n", o.Reps, o.Window)
	res, err := e2e.Run(ctx, o)
	if err != nil && res == nil {
		fmt.Fprintln(stderr, "xlb-bench:", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(stderr, "xlb-bench: interrupted:", err)
	}
	if code := e2eWrite(res, *results, *docs, stdout, stderr); code != 0 || err != nil {
		return max(code, 1)
	}
	return 0
}

// e2eWrite saves the result files and updates the docs section.
func e2eWrite(res *e2e.Result, dir, docs string, stdout, stderr io.Writer) int {
	files, err := e2e.Save(res, dir)
	if err != nil {
		fmt.Fprintln(stderr, "xlb-bench:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nwrote %s, %s, %s\n", e2e.Markdown(res, ""), files.JSON, files.Markdown, files.SVG)
	if docs != "" {
		rel, err := filepath.Rel(filepath.Dir(docs), files.SVG)
		if err != nil {
			rel = files.SVG
		}
		if err := e2e.UpdateDoc(docs, e2e.Markdown(res, filepath.ToSlash(rel))); err != nil {
			fmt.Fprintln(stderr, "xlb-bench:", err)
			return 1
		}
		fmt.Fprintf(stdout, "updated %s\n", docs)
	}
	return 0
}

// e2eReplay returns the replay runs: the pipeline over generated traffic
// (gen-pcap defaults, 10 000 flows), in process, with 1 or 2 workers.
func e2eReplay(cfg string) (func(workers int) (e2e.ReplayRun, error), error) {
	var buf bytes.Buffer
	if _, err := bench.Generate(&buf, bench.GenOptions{Flows: 10000, Packets: 200000, Seed: 1}); err != nil {
		return nil, err
	}
	capt, err := bench.ReadPcap(&buf)
	if err != nil {
		return nil, err
	}
	return func(workers int) (e2e.ReplayRun, error) {
		snap, ct, err := bench.LoadConfig(cfg)
		if err != nil {
			return e2e.ReplayRun{}, err
		}
		r, err := bench.Replay(snap, ct, capt, bench.ReplayOptions{Loops: 10, Workers: workers})
		if err != nil {
			return e2e.ReplayRun{}, err
		}
		return e2e.ReplayRun{Packets: r.Packets, Mpps: r.Mpps, NsPerPacket: r.NsPerPacket}, nil
	}, nil
}
