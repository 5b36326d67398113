// Command xlb-demo is `make demo`: it builds a namespace topology (client,
// router, xlb, three backends), runs the real `xlb run` in it and sends
// HTTP through the VIP in each forwarding mode. It lives apart from the
// xlb binary so the product links no test harness.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/mgmt"
)

// demoConfig is the built-in configuration of `xlb demo`, completed with
// the topology's interface names and addresses.
const demoConfig = `# xlb demo configuration (built in)
interfaces:
  - {name: %s, xdp: native}
lb:
  workers: 1
  conntrack: {capacity: 65536}
%sapi: {listen: 127.0.0.1:9900}
services:
  - name: web
    vip: %s
    port: 80
    protocol: tcp
    mode: %s
    scheduler: maglev
    backends:
%s`

func main() { os.Exit(demoCmd(os.Args[1:], os.Stdout, os.Stderr)) }

func demoCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("xlb-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	modes := fs.String("modes", "dsr,nat,fullnat", "forwarding modes to show, in order")
	requests := fs.Int("requests", 12, "HTTP requests per mode")
	xlb := fs.String("xlb", "", "the xlb binary (default: xlb next to this program)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := netns.Available(); err != nil {
		fmt.Fprintf(stderr, "xlb demo: %v (the demo needs root and iproute2)\n", err)
		return 1
	}
	self := *xlb
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(stderr, "xlb-demo:", err)
			return 1
		}
		self = filepath.Join(filepath.Dir(exe), "xlb")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	for _, mode := range strings.Split(*modes, ",") {
		if err := demoMode(ctx, self, strings.TrimSpace(mode), *requests, stdout); err != nil {
			fmt.Fprintf(stderr, "xlb demo (%s): %v\n", mode, err)
			return 1
		}
	}
	return 0
}

func demoMode(ctx context.Context, self, mode string, requests int, out io.Writer) error {
	fmt.Fprintf(out, "\n=== mode %s: client 10.10.0.2 → router → VIP 198.51.100.10:80 → xlb (AF_XDP) → 3 backends\n", mode)
	tp, err := netns.Build(ctx, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 3})
	if err != nil {
		return err
	}
	defer tp.Close()
	if err := tp.ServeHTTPBackends(); err != nil {
		return err
	}
	port := 80
	if mode == "nat" || mode == "fullnat" {
		port = 8080
	}
	var bes strings.Builder
	for _, b := range tp.Backends {
		fmt.Fprintf(&bes, "      - {address: %s, port: %d, weight: 100}\n", b.Addr, port)
	}
	dir, err := os.MkdirTemp("", "xlb-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "xlb.yaml")
	snat := ""
	if mode == "fullnat" {
		snat = fmt.Sprintf("  snat: {addresses: [%s], ports: 10000-30000}\n", tp.SNAT)
	}
	cfg := fmt.Sprintf(demoConfig, tp.LBClientIface, snat, tp.VIP, mode, bes.String())
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	logs, err := os.Create(filepath.Join(dir, "xlb.log"))
	if err != nil {
		return err
	}
	defer logs.Close()
	cmd := exec.Command("ip", "netns", "exec", tp.LB.NS, self, "run", "--config", cfgPath, "--poll", "--log-format", "console")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
	}
	defer stop()
	api := tp.LB.HTTPClient(2 * time.Second)
	stats := func() (mgmt.Stats, error) {
		var st mgmt.Stats
		resp, err := api.Get("http://127.0.0.1:9900/api/v1/stats")
		if err != nil {
			return st, err
		}
		defer resp.Body.Close()
		return st, json.NewDecoder(resp.Body).Decode(&st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := stats(); err == nil {
			break
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logs.Name())
			return fmt.Errorf("xlb exited: %v\n%s", err, b)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs.Name())
			return fmt.Errorf("xlb did not come up:\n%s", b)
		}
	}
	client := tp.HTTPClient(3 * time.Second)
	for i := 1; i <= requests; i++ {
		resp, err := client.Get("http://" + tp.VIP.String() + "/")
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		var r netns.HTTPReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		fmt.Fprintf(out, "  GET http://%s/  #%-2d → answered by %s (%s), which saw the client as %s\n", tp.VIP, i, r.Backend, r.Local, r.Remote)
	}
	if err := tp.Client.Ping(ctx, tp.VIP); err == nil {
		fmt.Fprintf(out, "  ping %s → answered by xlb\n", tp.VIP)
	}
	st, err := stats()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "  xlb counters: rx %d pkts, tx %d pkts, new flows %d, replies translated %d, echo replies %d, dropped %d, passed %d\n",
		st.Totals.RxPackets, st.Totals.TxPackets, st.Totals.NewFlows, st.Totals.Replies, st.Totals.EchoReplies, st.Totals.Dropped, st.Totals.Passed)
	var names []string
	for n := range st.Services["web"].Backends {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := st.Services["web"].Backends[n]
		fmt.Fprintf(out, "    backend %-16s packets %-5d new flows %d\n", n, c.Packets, c.NewFlows)
	}
	switch mode {
	case "dsr":
		fmt.Fprintln(out, "  (dsr: replies went from the backends straight to the router; xlb saw only the client's packets)")
	case "fullnat":
		fmt.Fprintln(out, "  (fullnat: the backends saw xlb's SNAT address, and replied to it)")
	case "nat":
		fmt.Fprintln(out, "  (nat: the backends saw the real client and replied through xlb, their gateway)")
	}
	return nil
}
