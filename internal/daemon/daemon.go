// Package daemon is the kernel-facing half of `xlb run`: it attaches the
// XDP steering program to every configured interface, opens one AF_XDP
// socket per interface and queue (the sockets of a queue share one UMEM so
// a frame received on one interface is sent from another without a copy),
// finds next hops in the kernel's route and neighbour tables, and runs one
// pinned worker per queue. It implements mgmt.Dataplane: the management
// plane hands it validated configurations through Apply, and reads
// counters, flows and lookups back. It never parses HTTP.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/conntrack/shm"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/cpu"
	"github.com/xlb/xlb/internal/napi"
	"github.com/xlb/xlb/internal/neigh"
	"github.com/xlb/xlb/internal/preflight"
	"github.com/xlb/xlb/internal/xsk"
	"github.com/xlb/xlb/mgmt"
)

var _ mgmt.Dataplane = (*Daemon)(nil)

// Options configure a Daemon.
type Options struct {
	// File is the configuration to run (services already chosen by
	// mgmt.Boot).
	File *config.File
	Log  zerolog.Logger
	// Poll selects poll-with-wakeup workers instead of busy polling.
	Poll bool
	// NeighborRefresh is how often next hops are re-resolved (default 10s).
	NeighborRefresh time.Duration
	// Context ends a start-up early (a SIGTERM during it): Start then
	// tears down what it set up and returns the context's error.
	Context context.Context
	// StartupResolve bounds how long Start waits for the backends' next
	// hops before it runs without the unresolved ones (default 2s).
	StartupResolve time.Duration
}

// iface is an interface the daemon owns.
type iface struct {
	cfg      config.Interface
	net      *net.Interface
	steering *bpf.Steering
	attach   *bpf.Attachment
}

// Daemon is a running balancer.
type Daemon struct {
	opts      Options
	log       zerolog.Logger
	mu        sync.Mutex   // serialises Apply and next-hop rebuilds
	file      *config.File // the applied (effective) configuration
	ifaces    []*iface
	ct        *conntrack.Table
	ctFile    *shm.Table // the table's shared-memory file (nil: process memory)
	savedIDs  []byte     // the service/backend IDs last saved beside it
	ctc       conntrack.Config
	snatPorts [2]uint16
	snap      atomic.Pointer[dataplane.Snapshot]
	workers   []*dataplane.Worker
	runners   []*dataplane.Runner
	umems     []*xsk.UMEM
	socks     []*xsk.Socket
	hops      *hopTable
	added     []managedAddr  // addresses xlb added (lb.manage_addresses)
	napiUndo  []func() error // restore the interfaces' NAPI deferral settings
	wg        sync.WaitGroup
	quit      chan struct{}
	started   time.Time
}

// ErrPrivileges is returned when the process lacks the privileges xlb
// needs: uid 0 with preflight.NeededCapabilities (CAP_NET_ADMIN,
// CAP_NET_RAW, CAP_BPF, CAP_PERFMON). Start wraps it with what this
// process lacks.
var ErrPrivileges = errors.New("xlb needs root with " + preflight.NeededCapabilities + " to attach XDP programs and open AF_XDP sockets")

// errPrivileges is ErrPrivileges with what this process lacks, when
// /proc/self/status says.
func errPrivileges() error {
	missing, err := preflight.MissingCapabilities()
	if err != nil || len(missing) == 0 {
		return ErrPrivileges
	}
	return fmt.Errorf("%w; this process lacks %s", ErrPrivileges, strings.Join(missing, ", "))
}

// Start brings the dataplane up with opts.File. On error everything
// already set up is torn down again.
func Start(opts Options) (*Daemon, error) {
	if opts.NeighborRefresh <= 0 {
		opts.NeighborRefresh = 10 * time.Second
	}
	if opts.StartupResolve <= 0 {
		opts.StartupResolve = 2 * time.Second
	}
	d := &Daemon{opts: opts, log: opts.Log, started: time.Now(), quit: make(chan struct{})}
	if err := d.start(); err != nil {
		d.teardown()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start() (err error) {
	if d.opts.File == nil {
		return errors.New("daemon: no configuration")
	}
	f := d.opts.File.Clone()
	f.Defaults()
	comp, err := f.CompileAll()
	if err != nil {
		return err
	}
	if len(f.Interfaces) == 0 {
		return &config.FieldError{Field: "interfaces", Reason: "at least one interface is required"}
	}
	d.file = f.Clone()
	if os.Geteuid() != 0 {
		return errPrivileges()
	}
	for i, ic := range f.Interfaces {
		ni, err := net.InterfaceByName(ic.Name)
		if err != nil {
			return &config.FieldError{Field: fmt.Sprintf("interfaces[%d].name", i), Value: ic.Name,
				Reason: fmt.Sprintf("interface %q not found in this network namespace (ip link shows what exists)", ic.Name)}
		}
		if len(ni.HardwareAddr) != 6 {
			return &config.FieldError{Field: fmt.Sprintf("interfaces[%d].name", i), Value: ic.Name,
				Reason: fmt.Sprintf("%q is not an Ethernet interface", ic.Name)}
		}
		if ic.Role == "" {
			ic.Role = "both"
		}
		d.ifaces = append(d.ifaces, &iface{cfg: ic, net: ni})
	}
	resolver, err := neigh.NewResolver()
	if err != nil {
		return fmt.Errorf("neighbour resolver: %w", err)
	}
	d.hops = newHopTable(resolver, d.log)
	queues, err := d.queueCount()
	if err != nil {
		return err
	}
	d.cleanupCrashedAddrs()
	if err := d.manageAddrs(comp.Spec, f.LB.ManagesAddresses()); err != nil {
		return err
	}
	d.ctc = comp.Conntrack
	if d.snatPorts, err = d.snatRange(f, comp.Spec); err != nil {
		return err
	}
	d.ctc.SNATPortMin, d.ctc.SNATPortMax = d.snatPorts[0], d.snatPorts[1]
	if err := d.openTable(f); err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	// Resolve every next hop once, in parallel and bounded, so the first
	// packets find their backends; what does not resolve in time keeps
	// resolving in the background.
	ctx := d.opts.Context
	if ctx == nil {
		ctx = context.Background()
	}
	d.hops.resolveAll(ctx, d.addresses(comp), d.opts.StartupResolve)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("start-up interrupted: %w", err)
	}
	full, err := d.buildSnapshot(comp, d.seedIDs())
	if err != nil {
		return err
	}
	d.snap.Store(full)
	for _, ifc := range d.ifaces {
		if ifc.steering, err = bpf.LoadSteering(bpf.SteeringOptions{MaxQueues: max(queues, 1)}); err != nil {
			if errors.Is(err, os.ErrPermission) {
				return errPrivileges()
			}
			return fmt.Errorf("interface %s: load steering program: %w", ifc.net.Name, err)
		}
		if err := ifc.steering.Replace(d.rules(full, ifc)); err != nil {
			return fmt.Errorf("interface %s: steering rules: %w", ifc.net.Name, err)
		}
	}
	poll := d.opts.Poll || f.LB.Poll
	for q := 0; q < queues; q++ {
		if err := d.addQueue(q, poll, f); err != nil {
			return err
		}
	}
	// Busy polling: the NAPI deferral the kernel pairs with preferred
	// busy polling, so the worker drives its queue's NAPI instead of the
	// interrupt (restored at exit).
	if !poll {
		for _, ifc := range d.ifaces {
			undo, err := napi.Configure(ifc.net.Name, napi.Options{})
			if err != nil {
				d.log.Warn().Err(err).Str("interface", ifc.net.Name).Msg("NAPI deferral not set")
				continue
			}
			d.napiUndo = append(d.napiUndo, undo)
		}
	}
	// Attach last, once sockets are ready to take traffic. On a BPF
	// filesystem the link is pinned, so the program outlives the process
	// (crash, restart, upgrade) and holds the traffic it steers (drops it,
	// the peers retransmit) until the next xlb replaces it atomically in
	// the same link, or for steeringHold after xlb last ran; see
	// dataplane/bpf's package documentation.
	const steeringHold = 2 * time.Minute
	pins, perr := bpf.PinDir()
	if perr != nil {
		d.log.Warn().Err(perr).Msg("steering programs not pinned: while xlb restarts the kernel gets its traffic, and resets fullnat flows")
	} else {
		var names []string
		for _, ifc := range d.ifaces {
			names = append(names, ifc.net.Name)
		}
		removed, err := bpf.SweepPins(pins, names)
		if err != nil {
			d.log.Warn().Err(err).Msg("pinned steering programs not swept")
		}
		for _, p := range removed {
			d.log.Info().Str("pin", p).Msg("removed the pinned steering program of an interface no longer configured or gone")
		}
	}
	for _, ifc := range d.ifaces {
		mode, err := bpf.ParseAttachMode(ifc.cfg.XDP)
		if err != nil {
			return fmt.Errorf("interface %s: xdp: %w", ifc.net.Name, err)
		}
		if pins == "" {
			ifc.attach, err = ifc.steering.Attach(ifc.net.Index, mode)
		} else {
			ifc.attach, err = ifc.steering.AttachPinned(ifc.net.Index, mode, filepath.Join(pins, ifc.net.Name), steeringHold)
		}
		if err != nil {
			return fmt.Errorf("interface %s: attach xdp (%s): %w", ifc.net.Name, ifc.cfg.XDP, err)
		}
		ev := d.log.Info()
		if ifc.attach.Takeover() == bpf.ModeChanged {
			ev = d.log.Warn()
		}
		if p := ifc.attach.Pin(); p != "" {
			ev = ev.Str("pin", p).Str("previous", ifc.attach.Takeover().String())
		}
		ev.Str("interface", ifc.net.Name).Str("xdp", attachName(ifc.attach.Mode())).Msg("steering program attached")
	}
	d.afterAttach()
	for _, r := range d.runners {
		d.wg.Add(1)
		go func(r *dataplane.Runner) {
			defer d.wg.Done()
			r.Run()
		}(r)
	}
	d.wg.Add(4)
	go d.refreshLoop()
	go d.resolvedLoop()
	go d.watchLoop()
	go d.neighborLoop()
	d.log.Info().Int("workers", len(d.runners)).Int("services", len(comp.Spec.Services)).Msg("xlb running")
	return nil
}

// addQueue opens the AF_XDP socket of rx queue q on every interface (one
// UMEM shared by them), registers each in its interface's XSKMAP, and
// makes the queue's worker and runner (started later by start).
func (d *Daemon) addQueue(q int, poll bool, f *config.File) error {
	// Per port: 2048 frames posted to the fill ring plus the rx and tx
	// rings' worth in flight.
	u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: uint32(8192 * len(d.ifaces))})
	if err != nil {
		return fmt.Errorf("queue %d: umem: %w", q, err)
	}
	d.umems = append(d.umems, u)
	var ports []dataplane.Port
	for i, ifc := range d.ifaces {
		s, err := xsk.Open(ifc.net.Index, q, u, xsk.Options{DisableBusyPoll: poll})
		if err != nil {
			if errors.Is(err, os.ErrPermission) {
				return errPrivileges()
			}
			if errors.Is(err, os.ErrExist) || strings.Contains(err.Error(), "busy") {
				if other := otherXLB(); other != "" {
					return fmt.Errorf("another xlb%s owns %s queue %d (af_xdp bind: %w); stop it first, or give this one other interfaces",
						other, ifc.net.Name, q, err)
				}
				return fmt.Errorf("interface %s queue %d: af_xdp socket: %w (another AF_XDP program owns this queue)", ifc.net.Name, q, err)
			}
			return fmt.Errorf("interface %s queue %d: af_xdp socket: %w", ifc.net.Name, q, err)
		}
		d.socks = append(d.socks, s)
		if on, why := s.BusyPoll(); !poll && !on && why != nil {
			d.log.Warn().Err(why).Str("interface", ifc.net.Name).Int("queue", q).Msg("preferred busy polling refused: the worker spins and yields instead")
		}
		if err := ifc.steering.SetSocket(q, s.FD()); err != nil {
			return fmt.Errorf("interface %s queue %d: register socket: %w", ifc.net.Name, q, err)
		}
		ports = append(ports, dataplane.Port{Sock: s, Iface: i})
		d.log.Info().Str("interface", ifc.net.Name).Int("queue", q).Str("mode", modeName(s.Mode())).Msg("af_xdp socket bound")
	}
	w := dataplane.NewWorker(d.ct, 0)
	d.workers = append(d.workers, w)
	core := q % cpu.Count()
	if cpus := f.LB.CPUs; len(cpus) > 0 {
		core = cpus[q%len(cpus)]
	}
	r := dataplane.NewRunner(dataplane.RunnerConfig{Worker: w, UMEM: u, Ports: ports, Snap: &d.snap, Poll: poll,
		FillTarget: 4000, Clock: d.now, OnStart: func() {
			if err := cpu.Pin(core); err != nil {
				d.log.Warn().Err(err).Int("queue", q).Msg("cannot pin worker")
			}
		}})
	d.runners = append(d.runners, r)
	return nil
}

// otherXLB names another running xlb process, for the "queue busy" error.
func otherXLB() string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && filepath.Base(args[0]) == "xlb" && args[1] == "run" {
			return fmt.Sprintf(" (pid %d)", pid)
		}
	}
	return ""
}

func modeName(m xsk.Mode) string {
	if m == xsk.ZeroCopy {
		return "zero-copy"
	}
	return "copy"
}

func attachName(m bpf.AttachMode) string {
	switch m {
	case bpf.Native:
		return "native"
	case bpf.Generic:
		return "generic"
	}
	return "auto"
}

var clockStart = time.Now()

// now is the dataplane's monotonic clock in nanoseconds.
func (d *Daemon) now() int64 { return int64(time.Since(clockStart)) + int64(time.Second) }

// sysClassNet is where rxQueues counts queues (a variable for tests).
var sysClassNet = "/sys/class/net"

// rxQueues is the number of rx queues of an interface
// (sys/class/net/<if>/queues/rx-*), at least 1.
func rxQueues(name string) int {
	m, _ := filepath.Glob(filepath.Join(sysClassNet, name, "queues", "rx-*"))
	return max(len(m), 1)
}

// queueCount decides the number of workers: lb.workers, or the smallest rx
// queue count of the interfaces.
func (d *Daemon) queueCount() (int, error) {
	n := 1 << 30
	for _, ifc := range d.ifaces {
		n = min(n, rxQueues(ifc.net.Name))
	}
	if w := d.file.LB.Workers; w != "" && w != "auto" {
		k, err := strconv.Atoi(string(w))
		if err != nil || k < 1 {
			return 0, &config.FieldError{Field: "lb.workers", Value: string(w), Reason: fmt.Sprintf("%q is not auto or a positive number", w)}
		}
		if k > n {
			return 0, &config.FieldError{Field: "lb.workers", Value: string(w),
				Reason: fmt.Sprintf("%d workers but the interfaces have only %d rx queues (ethtool -L <if> combined %d, or lb.workers: auto)", k, n, k)}
		}
		n = k
	}
	return n, nil
}

// afterAttach counts the rx queues again once the steering program is
// attached: some drivers change them then. virtio-net with more queue pairs
// than CPUs enables one more pair per CPU for XDP transmit, and the device
// spreads received frames over those rx queues too. They cannot simply get
// sockets: their transmit side is virtio-net's XDP transmit queue, which
// has no NAPI of its own, and an AF_XDP socket's frames stall there. So
// xlb says which queues get no socket and how to avoid them (all queue
// pairs in use: ethtool -L <if> combined <max>; XDP transmit then shares
// them); the steering program counts their frames as no_socket and passes
// them to the kernel.
func (d *Daemon) afterAttach() {
	bound := len(d.runners)
	for _, ifc := range d.ifaces {
		n := rxQueues(ifc.net.Name)
		mx, cur, err := preflight.MaxCombinedChannels(ifc.net.Name)
		if err != nil {
			mx, cur = 0, 0
		}
		if msg, fix := unboundQueues(ifc.net.Name, bound, n, mx, cur); msg != "" {
			d.log.Warn().Str("interface", ifc.net.Name).Int("rx_queues", n).Int("workers", bound).Str("fix", fix).Msg(msg)
		}
	}
}

// unboundQueues explains an interface that has n rx queues with the
// steering program attached while xlb has sockets on queues 0..bound-1
// (maxCombined and combined: its channels, 0 when unknown); "" when every
// queue has a socket.
func unboundQueues(ifname string, bound, n, maxCombined, combined int) (msg, fix string) {
	if n <= bound {
		return "", ""
	}
	msg = fmt.Sprintf("%s has %d rx queues with the steering program attached and xlb has sockets on queues 0-%d: the frames the NIC puts on queues %d-%d reach no worker (the steering program counts them as no_socket and passes them to the kernel)",
		ifname, n, bound-1, bound, n-1)
	switch {
	case maxCombined > combined && combined == bound:
		// virtio-net: the spare queue pairs became XDP transmit queues.
		msg += fmt.Sprintf("; the driver enabled %d of its spare queue pairs for XDP transmit when the program was attached (virtio-net does when it has more queue pairs than CPUs)", n-bound)
		fix = fmt.Sprintf("ethtool -L %s combined %d (all its queue pairs, before xlb starts: XDP transmit then shares them), then restart xlb", ifname, maxCombined)
	case maxCombined >= n:
		fix = fmt.Sprintf("ethtool -L %s combined %d before xlb starts, or lb.workers: auto", ifname, n)
	default:
		fix = "lb.workers: auto, and the same number of rx queues on every interface"
	}
	return msg, fix
}

// snatRange decides the SNAT port range (config.SNATPortRange): when an
// SNAT address is one of the interfaces' own addresses, the SNAT range must
// stay out of net.ipv4.ip_local_port_range.
func (d *Daemon) snatRange(f *config.File, spec dataplane.Spec) ([2]uint16, error) {
	local := map[netip.Addr]bool{}
	for _, ifc := range d.ifaces {
		for _, a := range ifaceAddrs(ifc.net) {
			local[a] = true
		}
	}
	var owned []netip.Addr
	var names []string
	for _, a := range append(append([]netip.Addr(nil), spec.SNAT4...), spec.SNAT6...) {
		if local[a] {
			owned = append(owned, a)
			names = append(names, a.String())
		}
	}
	var kernel [2]uint16
	if len(owned) > 0 {
		kernel[0], kernel[1] = ephemeralRange()
	}
	r, moved, err := config.SNATPortRange(d.opts.File.LB.SNAT.Ports, owned, kernel) // as written: f has defaults filled in
	if moved {
		d.log.Info().Strs("snat", names).Uint16("from", r[0]).Uint16("to", r[1]).
			Msg("SNAT addresses are local: SNAT ports stay below net.ipv4.ip_local_port_range so the kernel's own connections keep working")
	}
	return r, err
}

// ephemeralRange reads net.ipv4.ip_local_port_range (which IPv6 uses too).
func ephemeralRange() (uint16, uint16) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768, 60999
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768, 60999
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 32768, 60999
	}
	return uint16(lo), uint16(hi)
}

func ifaceAddrs(ni *net.Interface) []netip.Addr {
	var out []netip.Addr
	addrs, err := ni.Addrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out
}

// rules are the steering rules of a snapshot on one interface.
func (d *Daemon) rules(s *dataplane.Snapshot, ifc *iface) bpf.RuleSet {
	return s.SteeringRules(ifaceAddrs(ifc.net), d.snatPorts)
}

// Apply makes cfg the running configuration (mgmt.Dataplane). It never
// waits for the network: next hops come from the cache, and backends
// whose next hop is not known yet take no new flows until the background
// resolution finds it.
func (d *Daemon) Apply(cfg *config.File) error {
	comp, err := cfg.CompileForBuild()
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if keys := config.RestartKeys(d.file, cfg); len(keys) > 0 {
		return fmt.Errorf("changing %s needs a restart (running values kept)", strings.Join(keys, ", "))
	}
	prev := d.snap.Load()
	s, err := d.buildSnapshot(comp, prev)
	if err != nil {
		return cfg.Translate(err)
	}
	// One-arm VIPs in a connected subnet come and go with their services.
	if err := d.manageAddrs(comp.Spec, cfg.LB.ManagesAddresses()); err != nil {
		return err
	}
	for i, ifc := range d.ifaces {
		if err := ifc.steering.Replace(d.rules(s, ifc)); err != nil {
			// Put the old rules back everywhere: the old snapshot is still running.
			for _, done := range d.ifaces[:i+1] {
				_ = done.steering.Replace(d.rules(prev, done))
			}
			return fmt.Errorf("interface %s: steering rules: %w", ifc.net.Name, err)
		}
	}
	d.snap.Store(s)
	d.file = cfg.Clone()
	d.log.Debug().Uint64("generation", s.Gen).Int("services", len(comp.Spec.Services)).Msg("configuration applied")
	return nil
}

// rebuild recompiles the applied configuration with fresh next hops and
// swaps it in when an egress changed.
func (d *Daemon) rebuild() {
	d.mu.Lock()
	defer d.mu.Unlock()
	comp, err := d.file.CompileAll()
	if err != nil {
		return
	}
	prev := d.snap.Load()
	s, err := d.buildSnapshot(comp, prev)
	if err != nil {
		d.log.Error().Err(err).Msg("next-hop rebuild failed")
		return
	}
	changed := s.Reply != prev.Reply
	for i := range s.Backends {
		if i >= len(prev.Backends) || s.Backends[i].Egress != prev.Backends[i].Egress ||
			s.Backends[i].State != prev.Backends[i].State || s.Backends[i].Iface != prev.Backends[i].Iface {
			changed = true
		}
	}
	if changed {
		d.snap.Store(s)
		d.log.Info().Uint64("generation", s.Gen).Msg("next hops changed")
	}
}

// refreshLoop re-resolves every next hop periodically so a backend's
// changed MAC is followed.
func (d *Daemon) refreshLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.NeighborRefresh)
	defer t.Stop()
	for {
		select {
		case <-d.quit:
			return
		case <-t.C:
			d.mu.Lock()
			comp, err := d.file.CompileAll()
			d.mu.Unlock()
			if err == nil {
				d.hops.refresh(d.addresses(comp))
			}
		}
	}
}

// neighborLoop follows the kernel's neighbour and route tables by
// rtnetlink notification, so a backend's changed MAC or a next hop that
// stopped answering is acted on within milliseconds rather than at the
// next periodic refresh.
func (d *Daemon) neighborLoop() {
	defer d.wg.Done()
	w, err := neigh.Watch()
	if err != nil {
		d.log.Warn().Err(err).Msg("no neighbour notifications: next hops are refreshed every " + d.opts.NeighborRefresh.String() + " only")
		return
	}
	defer w.Close()
	for {
		select {
		case <-d.quit:
			return
		default:
		}
		evs, err := w.Next()
		if errors.Is(err, neigh.ErrOverrun) {
			d.refreshNow()
			continue
		}
		if err != nil {
			d.log.Warn().Err(err).Msg("neighbour notifications ended")
			return
		}
		changed, routes := false, false
		for _, ev := range evs {
			if ev.Route {
				routes = true
				continue
			}
			if d.hops.onNeighbor(ev) {
				changed = true
			}
		}
		if changed {
			d.rebuild()
		}
		if routes {
			d.refreshNow()
		}
	}
}

// refreshNow re-resolves every next hop in the background.
func (d *Daemon) refreshNow() {
	d.mu.Lock()
	comp, err := d.file.CompileForBuild()
	d.mu.Unlock()
	if err == nil {
		d.hops.refresh(d.addresses(comp))
	}
}

// resolvedLoop rebuilds whenever background resolution learnt something.
func (d *Daemon) resolvedLoop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.quit:
			return
		case <-d.hops.changed:
			d.rebuild()
		}
	}
}

// Snapshot returns the running snapshot.
func (d *Daemon) Snapshot() *dataplane.Snapshot { return d.snap.Load() }

// Stop stops the workers and closes everything. A pinned steering program
// stays attached, holding xlb's traffic for the next xlb (see start);
// one that is not pinned is detached.
func (d *Daemon) Stop() {
	close(d.quit)
	for _, r := range d.runners {
		r.Stop()
	}
	d.wg.Wait()
	d.teardown()
	d.log.Info().Msg("xlb stopped")
}

func (d *Daemon) teardown() {
	if len(d.added) > 0 {
		d.unmanageAddrs()
	}
	// A pinned program is left attached (Release), also when start-up
	// failed: a flow the connection table kept is resumed by the next xlb.
	// The pins are removed by the operator (docs/deployment.md) or swept
	// by an xlb that no longer has the interface.
	for _, ifc := range d.ifaces {
		if ifc.attach != nil {
			if p := ifc.attach.Pin(); p != "" {
				d.log.Info().Str("interface", ifc.net.Name).Str("pin", p).Dur("hold", ifc.attach.Hold()).
					Msg("steering program left attached: it holds xlb's traffic for the next xlb (rm the pin to detach it)")
			}
			if err := ifc.attach.Release(); err != nil {
				d.log.Warn().Err(err).Str("interface", ifc.net.Name).Msg("steering program")
			}
			ifc.attach = nil
		}
	}
	for _, s := range d.socks {
		_ = s.Close()
	}
	d.socks = nil
	for _, undo := range d.napiUndo {
		if err := undo(); err != nil {
			d.log.Warn().Err(err).Msg("restoring NAPI settings")
		}
	}
	d.napiUndo = nil
	for _, u := range d.umems {
		_ = u.Close()
	}
	d.umems = nil
	for _, ifc := range d.ifaces {
		if ifc.steering != nil {
			_ = ifc.steering.Close()
			ifc.steering = nil
		}
	}
	if d.hops != nil {
		d.hops.close()
	}
	d.closeTable()
}

// SocketModes reports each AF_XDP socket's mode ("eth0/0": "copy").
func (d *Daemon) SocketModes() map[string]string {
	m := map[string]string{}
	for _, sk := range d.socks {
		m[sockName(sk)] = modeName(sk.Mode())
	}
	return m
}

func sockName(sk *xsk.Socket) string {
	name := strconv.Itoa(sk.Ifindex())
	if ifi, err := net.InterfaceByIndex(sk.Ifindex()); err == nil {
		name = ifi.Name
	}
	return fmt.Sprintf("%s/%d", name, sk.Queue())
}
