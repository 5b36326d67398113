package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"strings"

	"github.com/xlb/xlb/bench"
)

const benchUsage = `usage:
  xlb bench replay --config FILE --pcap IN [--write OUT] [--loops N] [--workers N] [--json]
  xlb bench gen-pcap --out FILE [--flows N] [--packets N] [--v6 SHARE] [--junk SHARE] [--seed N] [--vip A] [--vip6 A] [--port N]

replay runs the real pipeline (decode, VIP lookup, conntrack, scheduler,
rewrite) over a pcap, in process, and reports CPU time per packet and
throughput; gen-pcap writes realistic client traffic to replay. The
configurations in testdata/replay/*.yaml (one per mode) match what
gen-pcap generates by default (VIPs 198.51.100.10 and 2001:db8:100::10,
port 80). "xlb bench <command> --help" describes each.
`

func benchCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, benchUsage)
		return 0
	case "replay":
		return replayCmd(args[1:], stdout, stderr)
	case "gen-pcap":
		return genCmd(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "xlb bench: unknown command %q\n%s", args[0], benchUsage)
	return 2
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
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: xlb bench replay --config FILE --pcap IN [flags]

Runs the real pipeline over every frame of IN, in process (no NIC, no
kernel), with the services of FILE (testdata/replay/<mode>.yaml match the
traffic "xlb bench gen-pcap" writes). Prints the packets, the CPU time per
packet (ns/packet: the workers' busy time divided by the packets; with N
workers each packet still costs that much of one core), the throughput
(Mpps, wall clock, all workers together), allocations, and the verdicts by
reason. Frames that match no service are passed, which is cheap: if most
are, the configuration does not match the capture.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
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
	snap, ct, err := bench.LoadConfig(*cfg)
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
	fmt.Fprintf(stdout, "ns/packet    %.1f (CPU time per packet, per worker)\n", res.NsPerPacket)
	fmt.Fprintf(stdout, "Mpps         %.2f (wall-clock throughput, all workers)\n", res.Mpps)
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
	if miss := res.Reasons["no_service"]; res.Packets > 0 && miss*2 > res.Packets {
		fmt.Fprintf(stderr, "xlb bench replay: warning: %d of %d packets (%.0f%%) match no service in %s: the figures measure the pass path, not load balancing. "+
			"Check that the configuration's VIPs and ports are those of the capture (gen-pcap: --vip, --vip6, --port; testdata/replay/*.yaml match its defaults)\n",
			miss, res.Packets, 100*float64(miss)/float64(res.Packets), *cfg)
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
	vip := fs.String("vip", "198.51.100.10", "IPv4 VIP the clients connect to")
	vip6 := fs.String("vip6", "2001:db8:100::10", "IPv6 VIP the clients connect to")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: xlb bench gen-pcap --out FILE [flags]

Writes client → VIP traffic for "xlb bench replay": full TCP connections
(SYN, data, FIN) from many clients with Zipf-popular flows, a share over
IPv6 and a share of junk frames. By default the clients connect to
198.51.100.10:80 and [2001:db8:100::10]:80, which is what the
configurations in testdata/replay/*.yaml (one per forwarding mode) serve;
with other --vip/--vip6/--port values, replay with a configuration whose
services match them.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var err error
	if o.VIP4, err = netip.ParseAddr(*vip); err != nil || !o.VIP4.Is4() {
		fmt.Fprintf(stderr, "xlb bench gen-pcap: --vip: %q is not an IPv4 address\n", *vip)
		return 2
	}
	if o.VIP6, err = netip.ParseAddr(*vip6); err != nil || !o.VIP6.Is6() {
		fmt.Fprintf(stderr, "xlb bench gen-pcap: --vip6: %q is not an IPv6 address\n", *vip6)
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
