package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/napi"
	"github.com/xlb/xlb/internal/netns"
)

// The topology: three namespaces in a line, joined by veth pairs with
// Queues rx and tx queues each, every offload off (TSO/GSO/GRO and
// checksums: a veth hands frames to its peer's NAPI, where native XDP
// runs, only when the sender has no TSO), IPv6 off, nothing in the root
// namespace.
//
//	client c0 10.10.0.2/24 ── eth0 10.10.0.1/24  lb  eth1 10.30.0.1/24 ── s0 10.30.0.11/24, .12/24  sink
//	       default via .1                 default via 10.10.0.2                  default via 10.30.0.1
//
// The sink holds both backend addresses; the VIP (198.51.100.10) is
// configured nowhere, except on the lb's lo for haproxy.
var (
	VIP        = netip.MustParseAddr("198.51.100.10")
	ClientAddr = netip.MustParseAddr("10.10.0.2")
	LBFront    = netip.MustParseAddr("10.10.0.1")
	LBBack     = netip.MustParseAddr("10.30.0.1")
	Backends   = [2]netip.Addr{netip.MustParseAddr("10.30.0.11"), netip.MustParseAddr("10.30.0.12")}
	SNATAddr   = netip.MustParseAddr("10.30.0.200")
)

// Interface names.
const (
	ClientIf  = "c0"
	LBFrontIf = "eth0"
	LBBackIf  = "eth1"
	SinkIf    = "s0"
)

// Topology is a built client ⇄ lb ⇄ sink line. Close deletes it.
type Topology struct {
	Prefix             string
	Queues             int
	Client, LB, Sink   *netns.Host
	ClientMAC, SinkMAC net.HardwareAddr
	LBFrontMAC         net.HardwareAddr
	LBBackMAC          net.HardwareAddr

	made []string
	lock *os.File
}

// lockDir and the "xlb-<8 hex>-" prefix are those of internal/netns: a
// live topology holds an flock on lockDir/<prefix>lock, and netns.Build
// deletes the namespaces of a prefix whose lock nobody holds (a run that
// was killed).
const lockDir = "/run/xlb-netns"

// Build builds the topology with queues rx/tx queues on every veth.
func Build(ctx context.Context, queues int) (_ *Topology, err error) {
	if queues < 1 {
		queues = 1
	}
	if err := netns.Available(); err != nil {
		return nil, err
	}
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := lookTool(tool); err != nil {
			return nil, fmt.Errorf("e2e: %s not found: %w", tool, err)
		}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	t := &Topology{Prefix: "xlb-" + hex.EncodeToString(rnd[:]) + "-", Queues: queues}
	if err := t.takeLock(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
		}
	}()
	host := func(role string) *netns.Host {
		return &netns.Host{Name: role, NS: t.Prefix + "e2e" + role, Ifaces: map[string]netns.Iface{}}
	}
	t.Client, t.LB, t.Sink = host("client"), host("lb"), host("sink")
	for _, h := range []*netns.Host{t.Client, t.LB, t.Sink} {
		if _, err := ip(ctx, "netns", "add", h.NS); err != nil {
			return nil, err
		}
		t.made = append(t.made, h.NS)
		err := h.Do(func() error {
			for _, kv := range [][2]string{
				{"net/ipv6/conf/all/disable_ipv6", "1"}, {"net/ipv6/conf/default/disable_ipv6", "1"},
				{"net/ipv4/conf/all/rp_filter", "0"}, {"net/ipv4/conf/default/rp_filter", "0"},
				{"net/ipv4/conf/all/accept_redirects", "0"}, {"net/ipv4/conf/default/accept_redirects", "0"},
				{"net/ipv4/conf/all/send_redirects", "0"}, {"net/ipv4/conf/default/send_redirects", "0"},
				{"net/ipv4/ip_forward", "0"},
			} {
				if err := os.WriteFile("/proc/sys/"+kv[0], []byte(kv[1]), 0); err != nil {
					return fmt.Errorf("e2e: %s: sysctl %s: %w", h.NS, kv[0], err)
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	q := fmt.Sprint(queues)
	for _, l := range []struct {
		a     *netns.Host
		aName string
		b     *netns.Host
		bName string
	}{{t.Client, ClientIf, t.LB, LBFrontIf}, {t.LB, LBBackIf, t.Sink, SinkIf}} {
		if _, err := ip(ctx, "-n", l.a.NS, "link", "add", l.aName, "numtxqueues", q, "numrxqueues", q, "type", "veth",
			"peer", "name", l.bName, "numtxqueues", q, "numrxqueues", q, "netns", l.b.NS); err != nil {
			return nil, err
		}
	}
	for _, s := range []struct {
		h      *netns.Host
		ifname string
		addrs  []string
		gw     netip.Addr
	}{
		{t.Client, ClientIf, []string{"10.10.0.2/24"}, LBFront},
		{t.LB, LBFrontIf, []string{"10.10.0.1/24"}, ClientAddr},
		{t.LB, LBBackIf, []string{"10.30.0.1/24"}, netip.Addr{}},
		{t.Sink, SinkIf, []string{"10.30.0.11/24", "10.30.0.12/24"}, LBBack},
	} {
		if _, err := t.run(ctx, s.h, "ethtool", "-K", s.ifname, "tx", "off", "rx", "off", "gro", "off", "tso", "off", "gso", "off"); err != nil {
			return nil, err
		}
		for _, a := range s.addrs {
			if _, err := ip(ctx, "-n", s.h.NS, "addr", "add", a, "dev", s.ifname); err != nil {
				return nil, err
			}
		}
		for _, dev := range []string{"lo", s.ifname} {
			if _, err := ip(ctx, "-n", s.h.NS, "link", "set", dev, "up"); err != nil {
				return nil, err
			}
		}
		if s.gw.IsValid() {
			if _, err := ip(ctx, "-n", s.h.NS, "route", "add", "default", "via", s.gw.String()); err != nil {
				return nil, err
			}
		}
	}
	for _, m := range []struct {
		h      *netns.Host
		ifname string
		dst    *net.HardwareAddr
	}{{t.Client, ClientIf, &t.ClientMAC}, {t.Sink, SinkIf, &t.SinkMAC}, {t.LB, LBFrontIf, &t.LBFrontMAC}, {t.LB, LBBackIf, &t.LBBackMAC}} {
		if *m.dst, err = m.h.MAC(m.ifname); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Topology) takeLock() error {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return fmt.Errorf("e2e: lock dir: %w", err)
	}
	tmp := filepath.Join(lockDir, t.Prefix+"tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("e2e: lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("e2e: lock %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(lockDir, t.Prefix+"lock")); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("e2e: lock file: %w", err)
	}
	t.lock = f
	return nil
}

// Close deletes the namespaces (and with them every interface, program
// and address in them). Processes started in them must be stopped first.
func (t *Topology) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(t.made) - 1; i >= 0; i-- {
		if _, err := ip(ctx, "netns", "del", t.made[i]); err != nil {
			if _, serr := os.Stat(filepath.Join("/run/netns", t.made[i])); serr == nil {
				errs = append(errs, err)
			}
		}
	}
	t.made = nil
	if t.lock != nil && len(errs) == 0 {
		os.Remove(filepath.Join(lockDir, t.Prefix+"lock"))
		t.lock.Close()
		t.lock = nil
	}
	return errors.Join(errs...)
}

// run runs a command inside h's namespace (ip netns exec, which also
// mounts that namespace's /sys).
func (t *Topology) run(ctx context.Context, h *netns.Host, name string, args ...string) ([]byte, error) {
	return h.Run(ctx, name, args...)
}

// SetThreaded switches the NAPIs of h's interface to threaded mode and
// pins their kthreads: the NAPI of rx queue i to cpus[i % len(cpus)]. A
// veth has NAPIs only while an XDP program is attached to it (and new ones
// every time one is attached), so call it after attaching. It returns the
// kthreads' PIDs.
func (t *Topology) SetThreaded(ctx context.Context, h *netns.Host, ifname string, cpus []int) ([]int, error) {
	if _, err := t.run(ctx, h, "sh", "-c", "echo 1 > /sys/class/net/"+ifname+"/threaded"); err != nil {
		return nil, fmt.Errorf("e2e: %s %s: threaded NAPI: %w", h.Name, ifname, err)
	}
	ix, err := h.Ifindex(ifname)
	if err != nil {
		return nil, err
	}
	var list []napi.NAPI
	// The kthreads appear with the mode switch; give them a moment.
	for try := 0; try < 50; try++ {
		err = h.Do(func() error {
			var err error
			list, err = napi.List(ix)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("e2e: %s %s: list NAPIs: %w", h.Name, ifname, err)
		}
		if len(list) > 0 && !slices.ContainsFunc(list, func(n napi.NAPI) bool { return n.PID <= 0 }) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("e2e: %s %s has no NAPI (no XDP program attached?)", h.Name, ifname)
	}
	// veth adds its queues' NAPIs in queue order with increasing ids.
	slices.SortFunc(list, func(a, b napi.NAPI) int { return int(a.ID) - int(b.ID) })
	var pids []int
	for i, n := range list {
		if n.PID <= 0 {
			return nil, fmt.Errorf("e2e: %s %s: NAPI %d has no kthread", h.Name, ifname, n.ID)
		}
		var set unix.CPUSet
		set.Set(cpus[i%len(cpus)])
		if err := unix.SchedSetaffinity(n.PID, &set); err != nil {
			return nil, fmt.Errorf("e2e: pin NAPI kthread %d to cpu %d: %w", n.PID, cpus[i%len(cpus)], err)
		}
		pids = append(pids, n.PID)
	}
	return pids, nil
}

// ip runs ip(8).
func ip(ctx context.Context, args ...string) ([]byte, error) {
	p, err := lookTool("ip")
	if err != nil {
		return nil, err
	}
	return runCmd(ctx, p, args...)
}

func runCmd(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// lookTool finds a tool in PATH or in the sbin directories root's tools
// live in.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH, /usr/sbin or /sbin", name)
}
