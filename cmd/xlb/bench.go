package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/xlb/xlb/bench"
	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
)

const benchUsage = `usage:
  xlb bench replay --config FILE --pcap IN [--write OUT] [--loops N] [--workers N] [--json]
  xlb bench gen-pcap --out FILE [--flows N] [--packets N] [--v6 SHARE] [--junk SHARE] [--seed N]
`

func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "replay":
		return replayCmd(args[1:], stdout, stderr)
	case "gen-pcap":
		return genCmd(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "xlb bench: unknown command %q\n%s", args[0], benchUsage)
	return 2
}

// replaySnapshot compiles a configuration file for replay: one synthetic
// interface stands in for the NICs.
func replaySnapshot(path string) (*dataplane.Snapshot, *conntrack.Table, error) {
	f, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	mtu := f.LB.MTU
	if mtu == 0 {
		mtu = 1500
	}
	spec.Ifaces = []dataplane.Iface{{MAC: [6]byte{2, 0, 0, 0, 0, 0xaa}, MTU: mtu}}
	snap, err := dataplane.Build(spec, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	ct, err := conntrack.New(ctc, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return snap, ct, nil
}

func replayCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb bench replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := fs.String("config", "", "configuration file (services, backends, lb settings)")
	in := fs.String("pcap", "", "pcap to replay")
	out := fs.String("write", "", "write every transmitted frame to this pcap")
	loops := fs.Int("loops", 1, "passes over the capture")
	workers := fs.Int("workers", 1, "workers sharing one conntrack table")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfg == "" || *in == "" {
		fmt.Fprintln(stderr, "xlb bench replay: --config and --pcap are required")
		return 2
	}
	if *loops < 1 || *workers < 1 {
		fmt.Fprintln(stderr, "xlb bench replay: --loops and --workers must be at least 1")
		return 2
	}
	snap, ct, err := replaySnapshot(*cfg)
	if err != nil {
		fmt.Fprintln(stderr, "xlb bench replay:", err)
		return 1
	}
	pf, err := os.Open(*in)
	if err != nil {
		fmt.Fprintln(stderr, "xlb bench replay:", err)
		return 1
	}
	capt, err := bench.ReadPcap(pf)
	pf.Close()
	if err != nil {
		fmt.Fprintln(stderr, "xlb bench replay:", err)
		return 1
	}
	opts := bench.ReplayOptions{Loops: *loops, Workers: *workers}
	var wf *os.File
	if *out != "" {
		if wf, err = os.Create(*out); err != nil {
			fmt.Fprintln(stderr, "xlb bench replay:", err)
			return 1
		}
		opts.Write = wf
	}
	res, err := bench.Replay(snap, ct, capt, opts)
	if wf != nil {
		err = errors.Join(err, wf.Close())
	}
	if err != nil {
		fmt.Fprintln(stderr, "xlb bench replay:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
		return 0
	}
	fmt.Fprintf(stdout, "packets      %d (%d frames × %d loops, %d workers)\n", res.Packets, len(capt.Frames), *loops, res.Workers)
	fmt.Fprintf(stdout, "ns/packet    %.1f\n", res.NsPerPacket)
	fmt.Fprintf(stdout, "Mpps         %.2f (wall clock)\n", res.Mpps)
	if res.AllocsPerPacket >= 0 {
		fmt.Fprintf(stdout, "allocs/pkt   %.4f\n", res.AllocsPerPacket)
	} else {
		fmt.Fprintln(stdout, "allocs/pkt   not measured with --write")
	}
	fmt.Fprintf(stdout, "verdicts     tx %d, pass %d, drop %d\n", res.Verdicts["tx"], res.Verdicts["pass"], res.Verdicts["drop"])
	var rs []string
	for k, v := range res.Reasons {
		rs = append(rs, fmt.Sprintf("%s %d", k, v))
	}
	sort.Strings(rs)
	if len(rs) > 0 {
		fmt.Fprintf(stdout, "reasons      %s\n", strings.Join(rs, ", "))
	}
	fmt.Fprintf(stdout, "new flows    %d (stateless %d), conntrack entries %d\n", res.NewFlows, res.Stateless, res.ConntrackLen)
	if *out != "" {
		fmt.Fprintf(stdout, "written      %d frames to %s\n", res.Written, *out)
	}
	return 0
}

func genCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb bench gen-pcap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output pcap")
	var o bench.GenOptions
	fs.IntVar(&o.Flows, "flows", 1000, "TCP connections")
	fs.IntVar(&o.Packets, "packets", 0, "approximate total packets (default 20 × flows)")
	fs.Float64Var(&o.V6Share, "v6", 0.2, "share of IPv6 flows")
	fs.Float64Var(&o.JunkShare, "junk", 0.01, "share of junk frames")
	fs.Float64Var(&o.ZipfS, "zipf", 1.2, "Zipf exponent of flow popularity (> 1)")
	fs.Uint64Var(&o.Seed, "seed", 1, "random seed")
	port := fs.Uint("port", 80, "VIP port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" {
		fmt.Fprintln(stderr, "xlb bench gen-pcap: --out is required")
		return 2
	}
	if *port == 0 || *port > 65535 {
		fmt.Fprintln(stderr, "xlb bench gen-pcap: --port must be 1..65535")
		return 2
	}
	o.Port = uint16(*port)
	if o.V6Share == 0 {
		o.V6Share = -1
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(stderr, "xlb bench gen-pcap:", err)
		return 1
	}
	st, err := bench.Generate(f, o)
	if err = errors.Join(err, f.Close()); err != nil {
		fmt.Fprintln(stderr, "xlb bench gen-pcap:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: %d packets, %d flows (%d IPv6), %d junk\n", *out, st.Packets, st.Flows, st.V6Flows, st.Junk)
	return 0
}
