package preflight

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/napi"
)

// fakeRoot lays out files (path relative to the root -> content) in a
// temporary directory, for Options.SysRoot and ProcRoot.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, v := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// want checks a result's status and that its detail and fix contain the
// given pieces.
func want(t *testing.T, r Result, st Status, detail, fix string) {
	t.Helper()
	if r.Status != st || !strings.Contains(r.Detail, detail) || !strings.Contains(r.Fix, fix) {
		t.Errorf("%s: %v %q fix %q\nwant %v with %q, fix with %q", r.Name, r.Status, r.Detail, r.Fix, st, detail, fix)
	}
	if st == OK && r.Fix != "" {
		t.Errorf("%s: OK with a fix %q", r.Name, r.Fix)
	}
	if st != OK && r.Fix == "" {
		t.Errorf("%s: %v without a fix", r.Name, st)
	}
}

func TestFormat(t *testing.T) {
	var b bytes.Buffer
	Format(&b, []Result{
		{Name: "interface eth0", Detail: "Ethernet, 1 rx queue, MTU 1500"},
		{Name: "interface eth9", Status: Fail, Detail: "not found in this network namespace", Fix: "correct interfaces[1].name"},
		{Name: "ip_forward", Status: Warn, Detail: "net.ipv4.ip_forward=1", Fix: "sysctl -w net.ipv4.ip_forward=0"},
	})
	const golden = `✔ interface eth0: Ethernet, 1 rx queue, MTU 1500
✘ interface eth9: not found in this network namespace — fix: correct interfaces[1].name
! ip_forward:     net.ipv4.ip_forward=1 — fix: sysctl -w net.ipv4.ip_forward=0

✘ 1 blocking problem, 1 warning: xlb run would not start
`
	if b.String() != golden {
		t.Errorf("got\n%s\nwant\n%s", b.String(), golden)
	}
	b.Reset()
	Format(&b, []Result{{Name: "a", Detail: "fine"}})
	if b.String() != "✔ a: fine\n\n✔ every check passed\n" {
		t.Errorf("all OK: %q", b.String())
	}
	if Failed([]Result{{Status: Warn}, {Status: OK}}) || !Failed([]Result{{Status: Fail}}) {
		t.Error("Failed: only a Fail fails")
	}
}

func TestPrivileges(t *testing.T) {
	status := func(uid int, caps uint64) string {
		return fmt.Sprintf("Name:\txlb\nUid:\t%d\t%d\t%d\t%d\nCapInh:\t0000000000000000\nCapEff:\t%016x\n", uid, uid, uid, uid, caps)
	}
	all := uint64(1)<<41 - 1
	for _, tc := range []struct {
		name, status string
		st           Status
		detail, fix  string
	}{
		{"root", status(0, all), OK, "root, with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF", ""},
		{"root, CAP_SYS_ADMIN instead of CAP_BPF and CAP_PERFMON", status(0, 1<<capNetAdmin|1<<capNetRaw|1<<capSysAdmin), OK, "root, with CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_ADMIN", ""},
		{"user", status(1000, 0), Fail, "running as uid 1000: xlb needs root with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON", "run it as root"},
		{"root without net admin and bpf", status(0, 1<<capNetRaw|1<<capPerfmon), Fail, "without CAP_NET_ADMIN, CAP_BPF (or CAP_SYS_ADMIN) (", "--cap-add"},
		// The appliance's unit measured it: CAP_BPF alone does not load the steering program.
		{"root without CAP_PERFMON", status(0, 1<<capNetAdmin|1<<capNetRaw|1<<capBPF), Fail, "without CAP_PERFMON (or CAP_SYS_ADMIN) (", "CAP_BPF and CAP_PERFMON"},
		{"the appliance's unit: exactly the four", status(0, 0x000000c000003000), OK, "root, with CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &checker{o: Options{ProcRoot: fakeRoot(t, map[string]string{"self/status": tc.status})}}
			r := c.privileges()
			want(t, r, tc.st, tc.detail, tc.fix)
			if !r.Blocking {
				t.Error("privileges is a blocking check")
			}
		})
	}
	c := &checker{o: Options{ProcRoot: t.TempDir()}}
	want(t, c.privileges(), Warn, "cannot tell", "root")
}

func TestJIT(t *testing.T) {
	want(t, jitResult("1", nil, false, nil), OK, "on (net.core.bpf_jit_enable=1)", "")
	want(t, jitResult("2", nil, false, nil), OK, "with debug output", "")
	want(t, jitResult("0", nil, false, nil), Warn, "interpreter", "bpf_jit_enable=1")
	notHere := os.ErrNotExist
	want(t, jitResult("", notHere, true, nil), OK, "a test program was JIT-compiled", "")
	want(t, jitResult("", notHere, false, nil), Warn, "was not JIT-compiled", "bpf_jit_enable=1")
	want(t, jitResult("", notHere, false, unix.EPERM), Warn, "cannot tell", "sysctl net.core.bpf_jit_enable")

	// Through the checker: the sysctl when it is visible, without loading anything.
	c := &checker{o: Options{ProcRoot: fakeRoot(t, map[string]string{"sys/net/core/bpf_jit_enable": "0\n"})}}
	want(t, c.jit(), Warn, "net.core.bpf_jit_enable=0", "sysctl")
}

func TestProbeJIT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading a BPF program needs root")
	}
	jited, err := probeJIT()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("/proc/sys/net/core/bpf_jit_enable"); err == nil && strings.TrimSpace(string(b)) != "0" && !jited {
		t.Errorf("bpf_jit_enable=%s but the probe was not JIT-compiled", b)
	}
	t.Logf("JIT-compiled: %v", jited)
}

func TestAFXDP(t *testing.T) {
	want(t, afxdpResult(nil), OK, "AF_XDP sockets", "")
	want(t, afxdpResult(unix.EAFNOSUPPORT), Fail, "CONFIG_XDP_SOCKETS", "CONFIG_XDP_SOCKETS=y")
	want(t, afxdpResult(unix.EPERM), Warn, "not allowed", "root")
}

func TestMemlock(t *testing.T) {
	const umem = 32 << 20
	want(t, memlockResult(8<<20, true, true, umem), OK, "RLIMIT_MEMLOCK 8 MiB (informational: BPF memory is charged to the memory cgroup since Linux 5.11, and with CAP_IPC_LOCK the AF_XDP UMEM of 32 MiB", "")
	want(t, memlockResult(8<<20, false, true, umem), Warn, "less than the AF_XDP UMEM (32 MiB)", "ulimit -l unlimited")
	want(t, memlockResult(64<<20, false, true, umem), OK, "the AF_XDP UMEM of 32 MiB fits", "")
	want(t, memlockResult(64<<10, true, false, umem), Warn, "before Linux 5.11", "LimitMEMLOCK=infinity")
	want(t, memlockResult(unix.RLIM_INFINITY, false, false, umem), OK, "RLIMIT_MEMLOCK unlimited", "")
	for release, ok := range map[string]bool{"6.18.44-fc": true, "5.11.0": true, "5.10.200": false, "4.19": false, "x": false} {
		if kernelAtLeast(release, 5, 11) != ok {
			t.Errorf("kernelAtLeast(%q, 5, 11) != %v", release, ok)
		}
	}
	if bytesString(1536) != "1536 bytes" || bytesString(2<<30) != "2 GiB" || bytesString(64<<10) != "64 KiB" {
		t.Error("bytesString")
	}
}

func eth(name string, mtu int) *ifaceInfo {
	return &ifaceInfo{cfg: config.Interface{Name: name}, driver: "veth", queues: 1,
		ni: &net.Interface{Index: 7, Name: name, MTU: mtu, Flags: net.FlagUp, HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 7}}}
}

func TestInterface(t *testing.T) {
	want(t, ifaceResult(eth("eth0", 1500), "interfaces[0].name"), OK, "Ethernet, driver veth, 1 rx queue, MTU 1500", "")
	want(t, ifaceResult(eth("eth0", maxMTU), "interfaces[0].name"), OK, fmt.Sprintf("MTU %d", maxMTU), "")
	want(t, ifaceResult(eth("eth0", 9000), "interfaces[0].name"), Fail,
		"MTU 9000: too big for a 4096-byte AF_XDP frame, which holds at most MTU 3570 (4096 - 256 - 256 headroom - 14 Ethernet header)", "ip link set eth0 mtu 3570")
	tun := eth("tun0", 1500)
	tun.ni.HardwareAddr = nil
	want(t, ifaceResult(tun, "interfaces[0].name"), Fail, "not an Ethernet interface", "interfaces[0].name")
	down := eth("eth0", 1500)
	down.ni.Flags = 0
	want(t, ifaceResult(down, "interfaces[0].name"), Warn, "down", "ip link set eth0 up")

	c := &checker{f: &config.File{Interfaces: []config.Interface{{Name: "eth9"}}}}
	want(t, c.iface(&ifaceInfo{idx: 1, cfg: config.Interface{Name: "eth9"}}), Fail, "not found in this network namespace", "correct interfaces[1].name")

	// rx queues from sysfs, refused when sysfs shows another namespace.
	sys := fakeRoot(t, map[string]string{
		"class/net/eth0/ifindex": "7\n", "class/net/eth0/queues/rx-0/x": "", "class/net/eth0/queues/rx-1/x": "",
		"class/net/eth0/queues/tx-0/x": "", "class/net/eth1/ifindex": "3\n",
	})
	if n, err := rxQueues(sys, &net.Interface{Index: 7, Name: "eth0"}); n != 2 || err != nil {
		t.Errorf("eth0: %d rx queues, %v; want 2", n, err)
	}
	if _, err := rxQueues(sys, &net.Interface{Index: 8, Name: "eth1"}); err == nil || !strings.Contains(err.Error(), "another namespace") {
		t.Errorf("eth1 with another ifindex: %v", err)
	}
	if _, err := rxQueues(sys, &net.Interface{Index: 9, Name: "eth2"}); err == nil || !strings.Contains(err.Error(), "ip netns exec") {
		t.Errorf("eth2 missing from sysfs: %v", err)
	}
	other := eth("eth1", 1500)
	other.qerr = errors.New("another namespace")
	want(t, ifaceResult(other, "interfaces[0].name"), Warn, "rx queues unknown", "ip netns exec")
}

func TestXDP(t *testing.T) {
	withMode := func(mode string) *ifaceInfo {
		i := eth("eth0", 1500)
		i.cfg.XDP = mode
		return i
	}
	veth := napi.XDPBasic | napi.XDPRedirect | napi.XDPRxSG
	want(t, xdpResult(withMode("native"), "interfaces[0].xdp", veth, nil), OK, "native XDP supported (xdp: native), AF_XDP copy mode (no zero-copy in driver veth)", "")
	want(t, xdpResult(withMode(""), "interfaces[0].xdp", veth|napi.XDPXSKZeroCopy, nil), OK, "(xdp: auto), AF_XDP zero-copy supported", "")
	want(t, xdpResult(withMode("generic"), "interfaces[0].xdp", veth, nil), Warn, "generic XDP builds an skb", "interfaces[0].xdp: native")
	want(t, xdpResult(withMode("native"), "interfaces[0].xdp", napi.XDPBasic, nil), Fail, "attaching with xdp: native fails", "interfaces[0].xdp: auto or generic")
	want(t, xdpResult(withMode("auto"), "interfaces[0].xdp", napi.XDPBasic, nil), Warn, "xlb runs generic XDP", "native XDP")
	want(t, xdpResult(withMode("native"), "interfaces[0].xdp", 0, nil), Warn, "reports no XDP features", "auto")
	want(t, xdpResult(withMode("native"), "interfaces[0].xdp", 0, unix.ENOENT), Warn, "does not report xdp-features", "auto")
}

func TestOffloads(t *testing.T) {
	tx := map[string]feature{"tx-checksum-ip-generic": {active: true, changeable: true}}
	ifc := eth("eth0", 1500)
	want(t, txChecksumResult(ifc, "interfaces[0].checksum", tx, true), Warn,
		"tx checksum offload is on — senders on this host (veth peers, containers, VMs) hand xlb partial checksums: with interfaces[0].checksum: verify each new flow's first packet fails",
		"ethtool -K eth0 tx off (and on the sending side of a veth), or interfaces[0].checksum: fix")
	want(t, txChecksumResult(ifc, "interfaces[0].checksum", map[string]feature{"tx-checksum-ipv4": {active: true}}, true), Warn,
		"partial checksums", "interfaces[0].checksum: fix (the driver does not let")
	want(t, txChecksumResult(ifc, "interfaces[0].checksum", tx, false), OK, "a physical NIC", "")
	want(t, txChecksumResult(ifc, "interfaces[0].checksum", map[string]feature{"tx-checksum-ip-generic": {changeable: true}}, true), OK, "tx checksum offload off", "")
	trust := eth("eth0", 1500)
	trust.cfg.Checksum = "trust"
	want(t, txChecksumResult(trust, "interfaces[0].checksum", tx, true), Warn, "trust xlb forwards them unfinished", "tx off")
	fix := eth("eth0", 1500)
	fix.cfg.Checksum = "fix"
	want(t, txChecksumResult(fix, "interfaces[0].checksum", tx, true), OK, "fix recomputes", "")

	on := feature{active: true, changeable: true}
	want(t, groResult("eth0", map[string]feature{}, true), OK, "GRO off, LRO off", "")
	want(t, groResult("eth0", map[string]feature{"rx-gro": on}, true), OK, "GRO on, LRO off (native XDP sees each frame before GRO)", "")
	want(t, groResult("eth0", map[string]feature{"rx-gro": on}, false), Warn, "generic XDP runs after GRO", "ethtool -K eth0 gro off")
	want(t, groResult("eth0", map[string]feature{"rx-lro": on}, true), Warn, "LRO on: the NIC merges segments", "lro off")
	want(t, groResult("eth0", map[string]feature{"rx-gro-hw": on}, true), Warn, "hardware GRO on", "rx-gro-hw off")
}

func TestEthtoolFeatures(t *testing.T) {
	// Two features in block 0 and one in block 1 (bit 32).
	names := make([]byte, 33*ethGStringLen)
	copy(names[0:], "tx-checksum-ipv4")
	copy(names[1*ethGStringLen:], "rx-gro")
	copy(names[32*ethGStringLen:], "rx-lro")
	blocks := make([]byte, 2*featureBlockSz)
	ne := binary.NativeEndian.PutUint32
	ne(blocks[0:], 0b01)                // available: tx-checksum-ipv4
	ne(blocks[8:], 0b11)                // active: both
	ne(blocks[featureBlockSz+8:], 0b01) // active: rx-lro
	got := parseFeatures(names, 33, blocks)
	wantF := map[string]feature{"tx-checksum-ipv4": {true, true}, "rx-gro": {true, false}, "rx-lro": {true, false}}
	if len(got) != len(wantF) {
		t.Errorf("got %v, want %v", got, wantF)
	}
	for k, v := range wantF {
		if got[k] != v {
			t.Errorf("%s: %+v, want %+v", k, got[k], v)
		}
	}
	// The real ioctl on lo, in this process's namespace (no privilege needed).
	feats, err := ethtoolFeatures("lo")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := feats["rx-gro"]; !ok || len(feats) < 20 {
		t.Errorf("lo: %d features, no rx-gro: %v", len(feats), feats)
	}
	if _, err := ethtoolFeatures("nosuchif0"); err == nil {
		t.Error("features of a missing interface: no error")
	}
}

func TestWorkers(t *testing.T) {
	check := func(workers string, queues ...int) []Result {
		c := &checker{o: Options{Blocking: true}, f: &config.File{LB: config.LB{Workers: config.Workers(workers)}}}
		for i, q := range queues {
			ifc := eth(fmt.Sprintf("eth%d", i), 1500)
			ifc.queues = q
			c.ifaces = append(c.ifaces, ifc)
		}
		return c.workers()
	}
	want(t, check("auto", 4, 2)[0], OK, "2 workers (lb.workers: auto = the fewest rx queues, 2 on eth1)", "")
	want(t, check("4", 1)[0], Fail, "lb.workers is 4 but eth0 has 1 rx queue", "ethtool -L eth0 combined 4 (if the NIC has that many queues), or lb.workers: auto (= 1 here)")
	want(t, check("2", 4)[0], Warn, "the frames of queues 2-3 reach no worker", "ethtool -L eth0 combined 2")
	want(t, check("2", 2)[0], OK, "2 workers (lb.workers: 2; the fewest rx queues: 2 on eth0)", "")
	if r := check("4", 1); !r[0].Blocking || len(r) != 1 {
		t.Errorf("blocking-only: %+v", r)
	}

	if got := workerCPUs(3, nil, 2); !slices.Equal(got, []int{0, 1, 0}) {
		t.Errorf("worker i on CPU i mod 2: %v", got)
	}
	if got := workerCPUs(3, []int{4, 6}, 8); !slices.Equal(got, []int{4, 6, 4}) {
		t.Errorf("lb.cpus: %v", got)
	}
	allowed := func(cpu int) bool { return cpu < 4 }
	want(t, cpusResult([]int{0, 1}, allowed, false), OK, "pinned to CPU 0-1 (worker i on CPU i)", "")
	want(t, cpusResult([]int{2, 5}, allowed, true), Warn, "worker 1 on CPU 5 outside this process's CPU set", "lb.cpus")
	want(t, cpusResult([]int{1, 1}, allowed, true), Warn, "workers 0 and 1 on CPU 1", "one CPU per worker")
	if cpuList([]int{3, 0, 1, 2, 8, 10, 11}) != "0-3,8,10-11" {
		t.Error(cpuList([]int{3, 0, 1, 2, 8, 10, 11}))
	}
	if got, err := parseCPUList("0-3,8,10-11\n"); err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 8, 10, 11}) {
		t.Errorf("parseCPUList: %v %v", got, err)
	}
	if _, err := parseCPUList("3-1"); err == nil {
		t.Error("parseCPUList(3-1): no error")
	}
}

func TestNAPI(t *testing.T) {
	proc := fakeRoot(t, map[string]string{
		"interrupts": "           CPU0       CPU1       CPU2       CPU3\n" +
			" 24:          1          0          0          0  IO-APIC   5-edge      ACPI:Ged\n" +
			" 45:        100          0          0          0  PCI-MSIX-0000:00:03.0   1-edge      eth0-TxRx-0\n" +
			" 46:          0        100          0          0  PCI-MSIX-0000:00:03.0   2-edge      eth0-TxRx-1\n" +
			" 47:          0          0          0          0  PCI-MSIX-0000:00:03.0   0-edge      eth0\n" +
			" 48:          0          0          0          0  PCI-MSIX-0000:00:04.0   1-edge      eth01-TxRx-0\n" +
			"NMI:          0          0          0          0   Non-maskable interrupts\n",
		"irq/45/smp_affinity_list":       "0-3\n",
		"irq/45/effective_affinity_list": "2\n",
		"irq/46/smp_affinity_list":       "0\n",
		"irq/46/effective_affinity_list": "",
		"1234/comm":                      "napi/eth0-8193\n",
		"1234/status":                    "Name:\tnapi/eth0-8193\nCpus_allowed_list:\t1\n",
		"1300/comm":                      "kworker/0:1\n",
	})
	names := interruptNames(proc)
	if got := irqsNamed(names, "eth0"); !slices.Equal(got, []int{45, 46, 47}) {
		t.Errorf("eth0 IRQs %v, want 45-47", got)
	}
	if got := irqAffinity(proc, 45); !slices.Equal(got, []int{2}) {
		t.Errorf("IRQ 45: %v, want its effective affinity 2", got)
	}
	if got := irqAffinity(proc, 46); !slices.Equal(got, []int{0}) {
		t.Errorf("IRQ 46: %v, want smp_affinity_list 0", got)
	}
	if got := kthreadsNamed(proc, "eth0"); !slices.Equal(got, []int{1234}) {
		t.Errorf("kthreads %v", got)
	}
	if got := allowedList(proc, 1234); !slices.Equal(got, []int{1}) {
		t.Errorf("kthread CPUs %v", got)
	}

	irqs := []irqInfo{{45, "eth0-TxRx-0", []int{2}}, {46, "eth0-TxRx-1", []int{0}}}
	kt := []kthreadInfo{{1234, "napi/eth0-8193", []int{1}}}
	want(t, napiResult(napiFacts{name: "eth0"}), OK, "no NAPI interrupt or kthread of its own", "")
	want(t, napiResult(napiFacts{name: "eth0", irqs: irqs[:1], kthreads: kt, workers: []int{0}, free: []int{1, 2, 3}}), OK,
		"IRQ 45 (eth0-TxRx-0) on CPU 2, kthread napi/eth0-8193 (pid 1234) on CPU 1: off the worker CPUs (0)", "")
	want(t, napiResult(napiFacts{name: "eth0", irqs: irqs, kthreads: kt, workers: []int{0, 1}, free: []int{2, 3}}), Warn,
		"IRQ 46 (eth0-TxRx-1) can run on worker CPU 0, kthread napi/eth0-8193 (pid 1234) can run on worker CPU 1: the worker shares that CPU with it and busy-polls it, but without interrupt deferral",
		"(echo 2-3 > /proc/irq/46/smp_affinity_list; taskset -pc 2-3 1234; and keep irqbalance away from it)")
	want(t, napiResult(napiFacts{name: "eth0", irqs: irqs, workers: []int{0}, deferIRQs: "2", groFlush: "200000"}), OK,
		"the worker busy-polls that NAPI itself (SO_PREFER_BUSY_POLL), and napi_defer_hard_irqs=2, gro_flush_timeout=200000", "")
	want(t, napiResult(napiFacts{name: "eth0", irqs: irqs, workers: []int{0}, deferIRQs: "2", groFlush: "200000", poll: true}), Warn,
		"with lb.poll, does not busy-poll it", "napi_defer_hard_irqs")
	// A veth's threaded NAPI: no interrupt, nothing to busy-poll, deferral or not.
	r := napiResult(napiFacts{name: "eth0", kthreads: kt, workers: []int{1}, free: []int{0}, deferIRQs: "2", groFlush: "200000"})
	want(t, r, Warn, "cannot busy-poll it (the driver links no NAPI to its queues, as veth)", "move it off the workers (taskset -pc 0 1234) or set lb.cpus")
	if strings.Contains(r.Fix, "napi_defer_hard_irqs") {
		t.Errorf("deferral offered for a NAPI busy polling cannot take over: %s", r.Fix)
	}
}

func TestIPForwardAndRPFilter(t *testing.T) {
	want(t, ipForwardResult("0", "", false), OK, "net.ipv4.ip_forward=0: frames xlb does not take are dropped", "")
	want(t, ipForwardResult("1", "", false), Warn, "are forwarded by the kernel instead of being dropped", "sysctl -w net.ipv4.ip_forward=0")
	want(t, ipForwardResult("0", "1", false), Warn, "net.ipv6.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=0")
	want(t, ipForwardResult("0", "", true), Warn, "nat backends use the lb as their gateway", "ip_forward=1")
	want(t, ipForwardResult("1", "", true), OK, "routes the nat backends' other traffic", "")

	want(t, rpFilterResult("eth0", 0, 0, true, true), OK, "off (0: the larger of conf.all=0 and conf.eth0=0)", "")
	want(t, rpFilterResult("eth0", 2, 1, true, true), OK, "loose (2", "")
	want(t, rpFilterResult("eth0", 0, 1, true, true), Warn, "strict (1", "rp_filter=2")
	want(t, rpFilterResult("eth0", 1, 0, true, false), OK, "fine while replies", "")
	want(t, rpFilterResult("eth0", 1, 1, false, true), OK, "strict (1", "")

	// Through the checker, with a fake procfs.
	proc := fakeRoot(t, map[string]string{
		"sys/net/ipv4/ip_forward": "1\n", "sys/net/ipv6/conf/all/forwarding": "0\n",
		"sys/net/ipv4/conf/all/rp_filter": "1\n", "sys/net/ipv4/conf/eth0/rp_filter": "0\n",
	})
	c := &checker{o: Options{ProcRoot: proc}, f: &config.File{
		Interfaces: []config.Interface{{Name: "eth0", Role: "client"}, {Name: "eth1", Role: "backend"}},
		Services:   []config.Service{{Name: "web", VIP: "2001:db8::10", Mode: "fullnat"}},
	}}
	want(t, c.ipForward(), Warn, "net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=0", "ip_forward=0")
	want(t, c.rpFilter(eth("eth0", 1500)), Warn, "strict (1: the larger of conf.all=1 and conf.eth0=0)", "loose")
	want(t, c.rpFilter(eth("eth1", 1500)), Warn, "cannot read", "")
}

func ipNet(s string) net.Addr {
	p := netip.MustParsePrefix(s)
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func TestSNAT(t *testing.T) {
	proc := fakeRoot(t, map[string]string{"sys/net/ipv4/ip_local_port_range": "32768\t60999\n"})
	no := false
	run := func(addrs []string, ports string, manage *bool, onIface ...string) []Result {
		ifc := eth("eth0", 1500)
		ifc.addrs = []net.Addr{ipNet("10.30.0.2/24")}
		for _, a := range onIface {
			ifc.addrs = append(ifc.addrs, ipNet(a))
		}
		f := &config.File{Interfaces: []config.Interface{{Name: "eth0"}}, LB: config.LB{SNAT: config.SNAT{Addresses: addrs, Ports: ports}, ManageAddresses: manage}}
		f.Defaults()
		c := &checker{o: Options{ProcRoot: proc}, f: f, ifaces: []*ifaceInfo{ifc}}
		return c.snat()
	}
	if rs := run(nil, "", nil); len(rs) != 0 {
		t.Errorf("no SNAT addresses: %+v", rs)
	}
	rs := run([]string{"10.30.0.200"}, "10000-30000", nil, "10.30.0.200/32")
	want(t, rs[0], OK, "on eth0", "")
	want(t, rs[1], OK, "10000-30000, clear of the kernel's ephemeral ports 32768-60999", "")
	rs = run([]string{"10.30.0.200"}, "", nil)
	want(t, rs[0], OK, "not on eth0 yet: xlb adds it at start", "")
	want(t, rs[1], OK, "1024-32767: lb.snat.ports is unset and an SNAT address is local", "")
	rs = run([]string{"10.30.0.201"}, "10000-30000", &no)
	want(t, rs[0], Fail, "not on eth0 and lb.manage_addresses is false", "ip addr add 10.30.0.201/32 dev eth0, or lb.manage_addresses: true")
	want(t, rs[1], OK, "no SNAT address is local", "")
	rs = run([]string{"10.30.0.200"}, "20000-40000", nil, "10.30.0.200/32")
	want(t, rs[1], Fail, "lb.snat.ports: 20000-40000 overlaps the kernel's ephemeral ports 32768-60999", "lb.snat.ports: 1024-32767")
	for _, r := range rs {
		if !r.Blocking {
			t.Errorf("%s: SNAT checks are blocking", r.Name)
		}
	}
}

func TestConfig(t *testing.T) {
	c := &checker{o: Options{ConfigPath: "xlb.yaml", LoadError: errors.Join(
		&config.FieldError{Field: "lb.wrokers", Reason: "unknown key"},
		&config.FieldError{Field: "api.lisen", Reason: "unknown key"})}}
	rs := c.config()
	if len(rs) != 2 {
		t.Fatalf("a joined error: %d results, want one per error", len(rs))
	}
	want(t, rs[0], Fail, "lb.wrokers: unknown key", "correct lb.wrokers in xlb.yaml")
	c = &checker{o: Options{ConfigPath: "/nope.yaml", LoadError: os.ErrNotExist}}
	want(t, c.config()[0], Fail, "file does not exist", "--config")

	f := &config.File{Interfaces: []config.Interface{{Name: "eth0"}}, Services: []config.Service{{Name: "web", VIP: "198.51.100.10", Port: 80,
		Backends: []config.Backend{{Address: "10.30.0.11"}, {Address: "198.51.100.10"}}}}}
	f.Defaults()
	c = &checker{o: Options{ConfigPath: "xlb.yaml"}, f: f}
	want(t, c.config()[0], Fail, "services[0].backends[1].address: 198.51.100.10 is the service's own vip", "correct services[0].backends[1].address in xlb.yaml")
	f.Services[0].Backends = f.Services[0].Backends[:1]
	c.o.StateFile = "/var/lib/xlb/state.json"
	want(t, c.config()[0], OK, "xlb.yaml: 1 interface, 1 service, 1 backend (services from the state file /var/lib/xlb/state.json)", "")
}

// TestRunBlocking runs the blocking checks against fake roots: a missing
// interface fails, and nothing slow (resolution) runs.
func TestRunBlocking(t *testing.T) {
	proc := fakeRoot(t, map[string]string{"self/status": "Uid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n"})
	f := &config.File{Interfaces: []config.Interface{{Name: "xlbnosuch0"}}, Services: []config.Service{{Name: "web", VIP: "198.51.100.10", Port: 80,
		Backends: []config.Backend{{Address: "10.30.0.11"}}}}}
	rs := Run(context.Background(), f, Options{Blocking: true, ProcRoot: proc, SysRoot: t.TempDir(), ConfigPath: "x.yaml"})
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
		if !r.Blocking {
			t.Errorf("%s is not a blocking check", r.Name)
		}
	}
	if w := []string{"config", "privileges", "af_xdp", "interface xlbnosuch0", "workers"}; !slices.Equal(names, w) {
		t.Errorf("blocking checks %v, want %v", names, w)
	}
	if !Failed(rs) {
		t.Error("a missing interface did not fail")
	}
	// Without a configuration: the config line and the host checks.
	rs = Run(context.Background(), nil, Options{Blocking: true, ProcRoot: proc, LoadError: os.ErrNotExist})
	if len(rs) != 3 || rs[0].Status != Fail {
		t.Errorf("no configuration: %+v", rs)
	}
}
