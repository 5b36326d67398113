package preflight

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/napi"
	"github.com/xlb/xlb/internal/xsk"
)

// The AF_XDP frame the daemon's UMEMs use (xsk defaults) and the largest
// MTU whose frames fit in it: the kernel copies a received frame after
// Headroom + XDP_PACKET_HEADROOM bytes and drops what does not fit.
const (
	frameSize = xsk.DefaultFrameSize
	maxMTU    = frameSize - xsk.DefaultHeadroom - xsk.XDPPacketHeadroom - 14 // 14: the Ethernet header
)

// lookup finds the configured interfaces and their rx queues.
func (c *checker) lookup() {
	for i, ic := range c.f.Interfaces {
		ifc := &ifaceInfo{idx: i, cfg: ic}
		c.ifaces = append(c.ifaces, ifc)
		ifc.ni, ifc.err = net.InterfaceByName(ic.Name)
		if ifc.err != nil {
			ifc.ni = nil
			continue
		}
		ifc.addrs, _ = ifc.ni.Addrs()
		ifc.queues, ifc.qerr = rxQueues(c.o.SysRoot, ifc.ni)
		if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
			if di, err := unix.IoctlGetEthtoolDrvinfo(fd, ic.Name); err == nil {
				ifc.driver = unix.ByteSliceToString(di.Driver[:])
			}
			unix.Close(fd)
		}
	}
}

// rxQueues counts sys/class/net/<if>/queues/rx-*, after checking that the
// sysfs is this network namespace's (same ifindex).
func rxQueues(sysRoot string, ni *net.Interface) (int, error) {
	dir := filepath.Join(sysRoot, "class", "net", ni.Name)
	b, err := os.ReadFile(filepath.Join(dir, "ifindex"))
	if err != nil {
		return 0, fmt.Errorf("%s is not in %s/class/net: it shows another network namespace (run under ip netns exec, which mounts the namespace's own /sys)", ni.Name, sysRoot)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(ni.Index) {
		return 0, fmt.Errorf("%s/class/net/%s is another namespace's interface (run under ip netns exec, which mounts the namespace's own /sys)", sysRoot, ni.Name)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "queues", "rx-*"))
	return max(len(m), 1), nil
}

func (c *checker) ifaceKey(ifc *ifaceInfo, k string) string {
	return key("interfaces[%d].%s", ifc.idx, k)
}

// iface checks that the interface exists, is Ethernet, is up and has an
// MTU whose frames fit the AF_XDP frame.
func (c *checker) iface(ifc *ifaceInfo) Result {
	r := Result{Name: "interface " + ifc.cfg.Name, Blocking: true}
	if ifc.ni == nil {
		r.Status = Fail
		r.Detail = "not found in this network namespace"
		r.Fix = fmt.Sprintf("ip link lists the interfaces here: correct %s, or run xlb check where xlb runs (ip netns exec NS xlb check …)", c.ifaceKey(ifc, "name"))
		return r
	}
	return ifaceResult(ifc, c.ifaceKey(ifc, "name"))
}

func ifaceResult(ifc *ifaceInfo, nameKey string) Result {
	r := Result{Name: "interface " + ifc.cfg.Name, Blocking: true}
	ni := ifc.ni
	if len(ni.HardwareAddr) != 6 {
		r.Status = Fail
		r.Detail = "not an Ethernet interface (no 6-byte MAC address): xlb rewrites Ethernet frames"
		r.Fix = "use an Ethernet interface (a NIC, bond, VLAN or veth) in " + nameKey
		return r
	}
	var parts []string
	parts = append(parts, "Ethernet")
	if ifc.driver != "" {
		parts = append(parts, "driver "+ifc.driver)
	}
	if ifc.qerr == nil {
		parts = append(parts, plural(ifc.queues, "rx queue"))
	}
	parts = append(parts, fmt.Sprintf("MTU %d", ni.MTU))
	r.Detail = strings.Join(parts, ", ")
	switch {
	case ni.MTU > maxMTU:
		r.Status = Fail
		r.Detail += fmt.Sprintf(": too big for a %d-byte AF_XDP frame, which holds at most MTU %d (%d - %d - %d headroom - 14 Ethernet header)",
			frameSize, maxMTU, frameSize, xsk.DefaultHeadroom, xsk.XDPPacketHeadroom)
		r.Fix = fmt.Sprintf("ip link set %s mtu %d (or lower)", ni.Name, maxMTU)
	case ifc.qerr != nil:
		r.Status = Warn
		r.Detail += "; rx queues unknown: " + ifc.qerr.Error()
		r.Fix = "run xlb check under ip netns exec NS"
	case ni.Flags&net.FlagUp == 0:
		r.Status = Warn
		r.Detail += "; the interface is down"
		r.Fix = "ip link set " + ni.Name + " up"
	}
	return r
}

// xdp reads the driver's xdp-features (netdev netlink, Linux 6.3+): native
// XDP needs BASIC and REDIRECT; XSK_ZEROCOPY is AF_XDP zero-copy. Nothing
// is attached: attaching resets some drivers' rings.
func (c *checker) xdp(ifc *ifaceInfo) Result {
	d, err := napi.GetDevice(ifc.ni.Index)
	return xdpResult(ifc, c.ifaceKey(ifc, "xdp"), d.XDPFeatures, err)
}

func xdpResult(ifc *ifaceInfo, xdpKey string, feat napi.XDPFeatures, err error) Result {
	r := Result{Name: "xdp " + ifc.cfg.Name, Blocking: true}
	mode := ifc.cfg.XDP
	if mode == "" {
		mode = "auto"
	}
	driver := "the driver"
	if ifc.driver != "" {
		driver = "driver " + ifc.driver
	}
	if err != nil {
		r.Status = Warn
		r.Detail = fmt.Sprintf("cannot tell whether %s runs XDP natively: the kernel does not report xdp-features (Linux 6.3+): %v", driver, err)
		r.Fix = fmt.Sprintf("%s: auto falls back to generic XDP when native attach fails", xdpKey)
		return r
	}
	zc := "AF_XDP copy mode (no zero-copy in " + driver + ")"
	if feat.ZeroCopy() {
		zc = "AF_XDP zero-copy supported"
	}
	switch {
	case feat.Native() && mode == "generic":
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s runs XDP natively, but %s is generic: generic XDP builds an skb for every frame first, several times slower", driver, xdpKey)
		r.Fix = xdpKey + ": native (or auto)"
	case feat.Native():
		r.Detail = fmt.Sprintf("native XDP supported (xdp: %s), %s", mode, zc)
	case feat == 0:
		r.Status = Warn
		r.Detail = driver + " reports no XDP features: it has no native XDP, or predates xdp-features"
		r.Fix = xdpKey + ": auto tries native and falls back to generic XDP (slower)"
	case mode == "native":
		r.Status = Fail
		r.Detail = fmt.Sprintf("%s has no native XDP with redirect (features: %v): attaching with xdp: native fails", driver, feat)
		r.Fix = xdpKey + ": auto or generic (generic XDP is several times slower), or a NIC whose driver has native XDP"
	default:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s has no native XDP with redirect (features: %v): xlb runs generic XDP, several times slower", driver, feat)
		r.Fix = "a NIC whose driver has native XDP (basic and redirect)"
	}
	return r
}

// feature is one ethtool feature's state.
type feature struct {
	active, changeable bool
}

// offloads reports tx checksum offload and GRO/LRO, read with the
// ETHTOOL_GFEATURES ioctl (what `ethtool -k` shows).
func (c *checker) offloads(ifc *ifaceInfo) []Result {
	feats, err := ethtoolFeatures(ifc.cfg.Name)
	if err != nil {
		return []Result{{Name: "offloads " + ifc.cfg.Name, Status: Warn, Detail: fmt.Sprintf("cannot read them: %v", err),
			Fix: "ethtool -k " + ifc.cfg.Name + " shows them"}}
	}
	_, serr := os.Stat(c.o.sys("class", "net", ifc.cfg.Name, "device"))
	virtual := serr != nil
	native := true
	if ifc.cfg.XDP == "generic" {
		native = false
	} else if d, err := napi.GetDevice(ifc.ni.Index); err == nil && !d.XDPFeatures.Native() {
		native = false
	}
	return []Result{txChecksumResult(ifc, c.ifaceKey(ifc, "checksum"), feats, virtual), groResult(ifc.cfg.Name, feats, native)}
}

// txChecksumResult: a sender on this host (a veth peer, a container, a VM)
// with tx checksum offload on hands the frame over with only the
// pseudo-header sum (CHECKSUM_PARTIAL); xlb sees the bytes as they are.
func txChecksumResult(ifc *ifaceInfo, csumKey string, feats map[string]feature, virtual bool) Result {
	name := ifc.cfg.Name
	r := Result{Name: "tx checksum " + name}
	on, changeable := false, false
	for _, f := range []string{"tx-checksum-ipv4", "tx-checksum-ipv6", "tx-checksum-ip-generic"} {
		on = on || feats[f].active
		changeable = changeable || feats[f].changeable
	}
	mode := ifc.cfg.Checksum
	if mode == "" {
		mode = "verify"
	}
	switch {
	case !on:
		r.Detail = "tx checksum offload off"
	case mode == "fix":
		r.Detail = "tx checksum offload on; " + csumKey + ": fix recomputes every frame's checksum"
	case !virtual:
		r.Detail = "tx checksum offload on (a physical NIC: frames from the wire carry complete checksums)"
	default:
		r.Status = Warn
		r.Detail = "tx checksum offload is on — senders on this host (veth peers, containers, VMs) hand xlb partial checksums: " +
			map[string]string{
				"verify": "with " + csumKey + ": verify each new flow's first packet fails the check and is dropped (bad_checksum)",
				"trust":  "with " + csumKey + ": trust xlb forwards them unfinished and the backends drop them",
			}[mode]
		r.Fix = fmt.Sprintf("ethtool -K %s tx off (and on the sending side of a veth), or %s: fix", name, csumKey)
		if !changeable {
			r.Fix = csumKey + ": fix (the driver does not let tx checksumming be turned off)"
		}
	}
	return r
}

// groResult: LRO and hardware GRO merge segments in the NIC, before XDP;
// software GRO runs after native XDP but before generic XDP.
func groResult(name string, feats map[string]feature, native bool) Result {
	r := Result{Name: "gro/lro " + name}
	lro, hwgro, gro := feats["rx-lro"].active, feats["rx-gro-hw"].active, feats["rx-gro"].active
	onoff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	r.Detail = fmt.Sprintf("GRO %s, LRO %s", onoff(gro), onoff(lro))
	if hwgro {
		r.Detail += ", hardware GRO on"
	}
	switch {
	case lro || hwgro:
		r.Status = Warn
		r.Detail += ": the NIC merges segments before XDP — native XDP attach turns LRO off or is refused, and generic XDP sees frames larger than the AF_XDP frame"
		r.Fix = fmt.Sprintf("ethtool -K %s lro off rx-gro-hw off", name)
	case gro && !native:
		r.Status = Warn
		r.Detail += ": generic XDP runs after GRO and sees merged frames larger than the MTU, which do not fit the AF_XDP frame and are dropped"
		r.Fix = fmt.Sprintf("ethtool -K %s gro off", name)
	case gro:
		r.Detail += " (native XDP sees each frame before GRO)"
	}
	return r
}

// workerCount is the number of workers xlb run starts: lb.workers, or the
// fewest rx queues of the interfaces (0 when unknown).
func (c *checker) workerCount() int {
	n := 0
	for _, ifc := range c.ifaces {
		if ifc.ni != nil && ifc.qerr == nil && (n == 0 || ifc.queues < n) {
			n = ifc.queues
		}
	}
	if k, err := strconv.Atoi(string(c.f.LB.Workers)); err == nil && k > 0 {
		return k
	}
	return n
}

// workerCPUs are the CPUs the workers are pinned to: lb.cpus[i % len], or
// CPU i modulo the CPUs this process may use (as internal/daemon pins).
func workerCPUs(n int, cpus []int, count int) []int {
	out := make([]int, n)
	for q := range out {
		if len(cpus) > 0 {
			out[q] = cpus[q%len(cpus)]
		} else {
			out[q] = q % max(count, 1)
		}
	}
	return out
}

func allowedCPUs() (unix.CPUSet, int) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return set, 1
	}
	return set, set.Count()
}

// workers checks lb.workers against the rx queues (blocking) and, when not
// only the blocking checks run, where the workers are pinned.
func (c *checker) workers() []Result {
	r := Result{Name: "workers", Blocking: true}
	fewest, on := 0, ""
	for _, ifc := range c.ifaces {
		if ifc.ni != nil && ifc.qerr == nil && (fewest == 0 || ifc.queues < fewest) {
			fewest, on = ifc.queues, ifc.cfg.Name
		}
	}
	w := string(c.f.LB.Workers)
	k, err := strconv.Atoi(w)
	switch {
	case fewest == 0:
		r.Status = Warn
		r.Detail = "rx queues unknown (see the interfaces above): cannot check lb.workers: " + w
		r.Fix = "fix the interfaces first"
		return []Result{r}
	case w == "auto" || w == "":
		k = fewest
		r.Detail = fmt.Sprintf("%s (lb.workers: auto = the fewest rx queues, %d on %s)", plural(k, "worker"), fewest, on)
	case err != nil:
		return nil // the config line reports it
	case k > fewest:
		r.Status = Fail
		r.Detail = fmt.Sprintf("lb.workers is %d but %s has %s: a worker needs an rx queue on every interface", k, on, plural(fewest, "rx queue"))
		r.Fix = fmt.Sprintf("ethtool -L %s combined %d (if the NIC has that many queues), or lb.workers: auto (= %d here)", on, k, fewest)
		return []Result{r}
	default:
		r.Detail = fmt.Sprintf("%s (lb.workers: %d; the fewest rx queues: %d on %s)", plural(k, "worker"), k, fewest, on)
		if k < fewest {
			r.Status = Warn
			r.Detail += fmt.Sprintf(": the NIC spreads flows over all %d queues (RSS), and the frames of queues %d-%d reach no worker: the steering program drops them (counted as held, while its pinned link holds) or hands them to the kernel, which drops them (or forwards them, with ip_forward=1)", fewest, k, fewest-1)
			r.Fix = fmt.Sprintf("ethtool -L %s combined %d, or lb.workers: auto", on, k)
		}
	}
	if c.o.Blocking {
		return []Result{r}
	}
	set, count := allowedCPUs()
	return []Result{r, cpusResult(workerCPUs(k, c.f.LB.CPUs, count), set.IsSet, len(c.f.LB.CPUs) > 0)}
}

// cpusResult checks where the workers are pinned: CPUs this process may
// use, one worker per CPU.
func cpusResult(cpus []int, allowed func(int) bool, explicit bool) Result {
	r := Result{Name: "worker cpus"}
	var bad, shared []string
	owner := map[int]int{}
	for q, cpu := range cpus {
		if !allowed(cpu) {
			bad = append(bad, fmt.Sprintf("worker %d on CPU %d", q, cpu))
		}
		if o, dup := owner[cpu]; dup {
			shared = append(shared, fmt.Sprintf("workers %d and %d on CPU %d", o, q, cpu))
		} else {
			owner[cpu] = q
		}
	}
	src := "worker i on CPU i"
	if explicit {
		src = "lb.cpus"
	}
	r.Detail = fmt.Sprintf("pinned to CPU %s (%s)", cpuList(cpus), src)
	switch {
	case len(bad) > 0:
		r.Status = Warn
		r.Detail += ": " + list(bad) + " outside this process's CPU set (taskset, cgroup cpuset): pinning fails and the worker floats"
		r.Fix = "lb.cpus: CPUs from this process's set (taskset -p $$ shows it)"
	case len(shared) > 0:
		r.Status = Warn
		r.Detail += ": " + list(shared) + ": each busy-polls a whole CPU, so they take turns"
		r.Fix = "lb.cpus with one CPU per worker, or fewer workers"
	}
	return r
}

// cpuList formats CPUs as "0-3,8" (sorted, deduplicated).
func cpuList(cpus []int) string {
	s := slices.Clone(cpus)
	slices.Sort(s)
	s = slices.Compact(s)
	var out []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j > i {
			out = append(out, fmt.Sprintf("%d-%d", s[i], s[j]))
		} else {
			out = append(out, strconv.Itoa(s[i]))
		}
		i = j + 1
	}
	return strings.Join(out, ",")
}

// parseCPUList parses "0-3,8" (smp_affinity_list, Cpus_allowed_list).
func parseCPUList(s string) ([]int, error) {
	var out []int
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(part, "-")
		lo, err := strconv.Atoi(a)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil || hi < lo {
				return nil, fmt.Errorf("cpu list %q: bad range %q", s, part)
			}
		}
		for x := lo; x <= hi; x++ {
			out = append(out, x)
		}
	}
	return out, nil
}

// readTrim reads a small file and trims it.
func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}
