package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/check/*.golden from this run")

// TestCheckUsage: -h prints the usage and exits 0; a bad flag exits 2.
func TestCheckUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := checkCmd([]string{"-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "usage: xlb check") {
		t.Errorf("-h: exit %d, stderr %q", code, errb.String())
	}
	errb.Reset()
	if code := checkCmd([]string{"--help"}, &out, &errb); code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	if code := checkCmd([]string{"--bogus"}, &out, &errb); code != 2 {
		t.Errorf("--bogus: exit %d, want 2", code)
	}
	if code := checkCmd([]string{"--timeout", "0s"}, &out, &errb); code != 2 {
		t.Errorf("--timeout 0s: exit %d, want 2", code)
	}
	if code := checkCmd([]string{"extra"}, &out, &errb); code != 2 {
		t.Errorf("an argument: exit %d, want 2", code)
	}
}

// TestCheck is the proof of `xlb check`: the real binary, run inside the
// lb namespace of a good and of a broken one-arm topology (and with a
// configuration that does not load), prints what the golden files in
// testdata/check/ hold, after normalisation (see normaliseCheck), and
// exits 0, 1 and 1. Rewrite the goldens with -update.
func TestCheck(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Good: one arm, dsr and fullnat (health-checked), the SNAT address on
	// the lb, offloads off (netns default), every backend on the segment.
	good := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeFullNAT, Backends: 2})
	write("good.yaml", fmt.Sprintf(`interfaces:
  - {name: eth0, xdp: native}
lb:
  workers: auto
  snat: {addresses: [%s], ports: 10000-30000}
api: {listen: 127.0.0.1:9901}
services:
  - name: web
    vip: %s
    port: 80
    mode: dsr
    backends: [{address: %s}, {address: %s}]
  - name: api
    vip: %s
    port: 8080
    mode: fullnat
    health: {type: tcp, interval: 2s, timeout: 1s}
    backends: [{address: %s, port: 8080}, {address: %s, port: 8080}]
`, good.SNAT, good.VIP, good.Backends[0].Addr, good.Backends[1].Addr, good.VIP, good.Backends[0].Addr, good.Backends[1].Addr))
	before := hostState(t, good.LB)
	checkGolden(t, good, dir, "good", 0, "--config", "good.yaml", "--timeout", "1s")
	if after := hostState(t, good.LB); after != before {
		t.Errorf("xlb check changed the lb namespace:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// Broken: an interface that does not exist, lb.workers 4 (through
	// --set) with one rx queue, tx checksum offload left on, a backend
	// nobody answers ARP for, an SNAT address on no interface that xlb may
	// not add.
	broken := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 1, TxChecksumOffload: true})
	write("broken.yaml", fmt.Sprintf(`interfaces:
  - {name: eth0, xdp: native}
  - {name: eth9, xdp: native}
lb:
  workers: 1
  snat: {addresses: [10.30.0.201], ports: 10000-30000}
  manage_addresses: false
api: {listen: 127.0.0.1:9901}
services:
  - name: web
    vip: %s
    port: 80
    mode: dsr
    backends: [{address: %s}, {address: 10.30.0.99}]
  - name: api
    vip: %s
    port: 8080
    mode: fullnat
    backends: [{address: %s, port: 8080}]
`, broken.VIP, broken.Backends[0].Addr, broken.VIP, broken.Backends[0].Addr))
	checkGolden(t, broken, dir, "broken", 1, "--config", "broken.yaml", "--timeout", "1s", "--set", "lb.workers=4")

	// A configuration that does not load: the config line, and the checks
	// that need none.
	write("invalid.yaml", "interfaces: [{name: eth0}]\nlb: {wrokers: 2}\n")
	checkGolden(t, broken, dir, "invalid", 1, "--config", "invalid.yaml")
}

// checkGolden runs `xlb check args...` in tp's lb namespace from dir and
// compares its normalised output with testdata/check/<name>.golden.
func checkGolden(t *testing.T, tp *netns.Topology, dir, name string, wantCode int, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", tp.LB.NS, xlbBin, "check"}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Logf("%s: exit %d in %v", name, code, time.Since(start).Round(time.Millisecond))
	got := normaliseCheck(stdout.String())
	path := filepath.Join("testdata", "check", name+".golden")
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: xlb check output differs from %s (-update rewrites it)\ngot:\n%s\nwant:\n%s\nstderr:\n%s", name, path, got, want, stderr.String())
	}
	if code != wantCode {
		t.Errorf("%s: exit %d, want %d\n%s%s", name, code, wantCode, stdout.String(), stderr.String())
	}
}

// normaliseCheck replaces what differs between machines and runs:
//
//   - MAC addresses (every veth gets a random one) become xx:xx:xx:xx:xx:xx;
//   - RLIMIT_MEMLOCK's value (the test runner's ulimit -l) becomes <limit>;
//   - net.core.bpf_jit_enable=1 or 2 becomes =N (both are on; inside a
//     namespace the sysctl is hidden and the probe line is printed anyway);
//   - CPU numbers ("CPU 0", "CPU 0-1") become "CPU N": lb.cpus is unset, so
//     worker i is on CPU i of the CPUs this process may use.
func normaliseCheck(s string) string {
	for _, r := range []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`(?i)\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`), "xx:xx:xx:xx:xx:xx"},
		{regexp.MustCompile(`RLIMIT_MEMLOCK (unlimited|\d+ (bytes|KiB|MiB|GiB))`), "RLIMIT_MEMLOCK <limit>"},
		{regexp.MustCompile(`bpf_jit_enable=[12]\b`), "bpf_jit_enable=N"},
		{regexp.MustCompile(`\bCPUs? [0-9][0-9,-]*`), "CPU N"},
	} {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}

// hostState is what xlb check must leave alone in a namespace: links
// (XDP programs, MTU, state), addresses, routes, offloads, sysctls.
func hostState(t *testing.T, h *netns.Host) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-d", "link", "show"}, {"ip", "addr", "show"}, {"ip", "route", "show"},
		{"ethtool", "-k", "eth0"}, {"sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.ipv4.ip_local_port_range"},
		{"cat", "/sys/class/net/eth0/threaded", "/sys/class/net/eth0/napi_defer_hard_irqs", "/sys/class/net/eth0/gro_flush_timeout"},
	} {
		out, err := h.Run(context.Background(), args[0], args[1:]...)
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(args, " "), err)
		}
		b.Write(out)
	}
	return b.String()
}

// TestCheckNAPIPlacement runs xlb check next to a running xlb whose
// interface has threaded NAPI: with the NAPI kthread pinned to the
// worker's CPU it warns (interrupt deferral does not help: a veth's NAPI
// cannot be busy-polled), with the kthread on another CPU it does not.
func TestCheckNAPIPlacement(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	worker, other := cpuPair(t)
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 2})
	cfg := busyPollConfig(t, tp, worker)
	lb := startXLBWith(t, tp, cfg, "--poll")
	setupNAPI(t, tp, napiSetup{threaded: true})
	kthread := pinNAPIThread(t, tp, worker)
	napiLine := func() string {
		t.Helper()
		out, err := tp.LB.Run(context.Background(), xlbBin, "check", "--config", cfg, "--timeout", "1s")
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, "napi "+tp.LBClientIface+":") {
				t.Log(l)
				return l
			}
		}
		t.Fatalf("no napi line in\n%s", out)
		return ""
	}
	onWorker := fmt.Sprintf("kthread napi/%s-", tp.LBClientIface)
	if l := napiLine(); !strings.HasPrefix(l, "! ") || !strings.Contains(l, onWorker) ||
		!strings.Contains(l, fmt.Sprintf("(pid %d) can run on worker CPU %d", kthread, worker)) || !strings.Contains(l, "taskset -pc") {
		t.Errorf("kthread on the worker's CPU: %s", l)
	}
	setupNAPI(t, tp, napiSetup{deferral: true})
	if l := napiLine(); !strings.HasPrefix(l, "! ") || !strings.Contains(l, "cannot busy-poll it") {
		t.Errorf("with deferral: %s", l)
	}
	if out, err := tp.LB.Run(context.Background(), "sh", "-c", "echo 0 > /sys/class/net/"+tp.LBClientIface+"/napi_defer_hard_irqs"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	pinNAPIThread(t, tp, other)
	if l := napiLine(); !strings.HasPrefix(l, "✔ ") || !strings.Contains(l, fmt.Sprintf("on CPU %d: off the worker CPUs (%d)", other, worker)) {
		t.Errorf("kthread on another CPU: %s", l)
	}
	lb.stop(t)
}
