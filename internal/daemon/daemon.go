// Package daemon is `xlb run`: it loads the configuration, attaches the XDP
// steering program to every configured interface, opens one AF_XDP socket
// per interface and queue (the sockets of a queue share one UMEM so a frame
// received on one interface is sent from another without a copy), builds
// the dataplane Snapshot with next-hop MACs from the kernel's neighbour and
// route tables, and runs one pinned worker per queue. Reload validates the
// new configuration before applying it; Stop detaches everything.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/cpu"
	"github.com/xlb/xlb/internal/neigh"
	"github.com/xlb/xlb/internal/xsk"
)

// Options configure a Daemon.
type Options struct {
	ConfigPath string
	Overrides  map[string]string // key=value overrides from flags (viper keys)
	Log        zerolog.Logger
	// Poll selects poll-with-wakeup workers instead of busy polling.
	Poll bool
	// NeighborRefresh is how often next hops are re-resolved (default 10s).
	NeighborRefresh time.Duration
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
	opts        Options
	log         zerolog.Logger
	file        *config.File
	ifaces      []*iface
	ct          *conntrack.Table
	ctc         conntrack.Config
	snap        atomic.Pointer[dataplane.Snapshot]
	workers     []*dataplane.Worker
	runners     []*dataplane.Runner
	umems       []*xsk.UMEM
	socks       []*xsk.Socket
	resolver    *neigh.Resolver
	wg          sync.WaitGroup
	mu          sync.Mutex // serialises Reload and the neighbour refresh
	stopRefresh chan struct{}
	started     time.Time
}

// ErrPrivileges is returned when the process lacks the capabilities xlb
// needs (CAP_NET_ADMIN, CAP_BPF/CAP_SYS_ADMIN, CAP_NET_RAW).
var ErrPrivileges = errors.New("xlb needs root (CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW) to attach XDP programs and open AF_XDP sockets")

// Start loads the configuration and brings the dataplane up. On error
// everything already set up is torn down again.
func Start(opts Options) (*Daemon, error) {
	if opts.NeighborRefresh <= 0 {
		opts.NeighborRefresh = 10 * time.Second
	}
	d := &Daemon{opts: opts, log: opts.Log, started: time.Now(), stopRefresh: make(chan struct{})}
	if err := d.start(); err != nil {
		d.teardown()
		return nil, err
	}
	return d, nil
}

func (d *Daemon) start() (err error) {
	opts := d.opts
	f, err := config.LoadWith(opts.ConfigPath, opts.Overrides)
	if err != nil {
		return err
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		return fmt.Errorf("config %s: %w", opts.ConfigPath, err)
	}
	if len(f.Interfaces) == 0 {
		return fmt.Errorf("config %s: interfaces: at least one interface is required", opts.ConfigPath)
	}
	d.file = f
	if os.Geteuid() != 0 {
		return ErrPrivileges
	}
	for i, ic := range f.Interfaces {
		ni, err := net.InterfaceByName(ic.Name)
		if err != nil {
			return fmt.Errorf("interfaces[%d].name: interface %q not found in this network namespace", i, ic.Name)
		}
		if len(ni.HardwareAddr) != 6 {
			return fmt.Errorf("interfaces[%d].name: %q is not an Ethernet interface", i, ic.Name)
		}
		d.ifaces = append(d.ifaces, &iface{cfg: ic, net: ni})
	}
	if d.resolver, err = neigh.NewResolver(); err != nil {
		return fmt.Errorf("neighbour resolver: %w", err)
	}
	queues, err := d.queueCount()
	if err != nil {
		return err
	}
	d.ctc = ctc
	if d.ct, err = conntrack.New(ctc, d.now()); err != nil {
		return fmt.Errorf("conntrack: %w", err)
	}
	full, err := d.buildSnapshot(spec, nil)
	if err != nil {
		return err
	}
	d.snap.Store(full)
	// Steering program per interface (each has its own XSKMAP).
	for _, ifc := range d.ifaces {
		if ifc.steering, err = bpf.LoadSteering(bpf.SteeringOptions{MaxQueues: max(queues, 1)}); err != nil {
			if errors.Is(err, os.ErrPermission) {
				return ErrPrivileges
			}
			return fmt.Errorf("interface %s: load steering program: %w", ifc.net.Name, err)
		}
		if err := ifc.steering.Replace(d.rules(full, ifc)); err != nil {
			return fmt.Errorf("interface %s: steering rules: %w", ifc.net.Name, err)
		}
	}
	// Sockets: one UMEM per queue, shared by that queue's sockets on every interface.
	for q := 0; q < queues; q++ {
		// Per port: 2048 frames posted to the fill ring plus the rx and tx
		// rings' worth in flight.
		u, err := xsk.NewUMEM(xsk.UMEMConfig{FrameCount: uint32(8192 * len(d.ifaces))})
		if err != nil {
			return fmt.Errorf("queue %d: umem: %w", q, err)
		}
		d.umems = append(d.umems, u)
		var ports []dataplane.Port
		for i, ifc := range d.ifaces {
			s, err := xsk.Open(ifc.net.Index, q, u, xsk.Options{})
			if err != nil {
				if errors.Is(err, os.ErrPermission) {
					return ErrPrivileges
				}
				return fmt.Errorf("interface %s queue %d: af_xdp socket: %w", ifc.net.Name, q, err)
			}
			d.socks = append(d.socks, s)
			if err := ifc.steering.SetSocket(q, s.FD()); err != nil {
				return fmt.Errorf("interface %s queue %d: register socket: %w", ifc.net.Name, q, err)
			}
			ports = append(ports, dataplane.Port{Sock: s, Iface: i})
			d.log.Info().Str("interface", ifc.net.Name).Int("queue", q).Str("mode", modeName(s.Mode())).Msg("af_xdp socket bound")
		}
		w := dataplane.NewWorker(d.ct, 0)
		d.workers = append(d.workers, w)
		core := q % cpu.Count()
		if cpus := d.file.LB.CPUs; len(cpus) > 0 {
			core = cpus[q%len(cpus)]
		}
		r := dataplane.NewRunner(dataplane.RunnerConfig{Worker: w, UMEM: u, Ports: ports, Snap: &d.snap, Poll: opts.Poll || f.LB.Poll,
			FillTarget: 4000, Clock: d.now, OnStart: func() {
				if err := cpu.Pin(core); err != nil {
					d.log.Warn().Err(err).Int("queue", q).Msg("cannot pin worker")
				}
			}})
		d.runners = append(d.runners, r)
	}
	// Attach last, once sockets are ready to take traffic.
	for _, ifc := range d.ifaces {
		mode, err := bpf.ParseAttachMode(ifc.cfg.XDP)
		if err != nil {
			return fmt.Errorf("interface %s: xdp: %w", ifc.net.Name, err)
		}
		if ifc.attach, err = ifc.steering.Attach(ifc.net.Index, mode); err != nil {
			return fmt.Errorf("interface %s: attach xdp (%s): %w", ifc.net.Name, ifc.cfg.XDP, err)
		}
		d.log.Info().Str("interface", ifc.net.Name).Str("xdp", attachName(ifc.attach.Mode())).Msg("steering program attached")
	}
	for _, r := range d.runners {
		d.wg.Add(1)
		go func(r *dataplane.Runner) {
			defer d.wg.Done()
			r.Run()
		}(r)
	}
	d.wg.Add(1)
	go d.refreshLoop()
	d.log.Info().Int("workers", len(d.runners)).Int("services", len(full.Spec().Services)).Msg("xlb running")
	return nil
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

// queueCount decides the number of workers: lb.workers, or the smallest rx
// queue count of the interfaces.
func (d *Daemon) queueCount() (int, error) {
	n := 1 << 30
	for _, ifc := range d.ifaces {
		m, _ := filepath.Glob(filepath.Join("/sys/class/net", ifc.net.Name, "queues", "rx-*"))
		n = min(n, max(len(m), 1))
	}
	if w := d.file.LB.Workers; w != "" && w != "auto" {
		k, err := strconv.Atoi(w)
		if err != nil || k < 1 {
			return 0, fmt.Errorf("lb.workers: %q is not auto or a positive number", w)
		}
		if k > n {
			return 0, fmt.Errorf("lb.workers: %d workers but the interfaces have only %d rx queues", k, n)
		}
		n = k
	}
	return n, nil
}

// buildSnapshot completes spec with the real interfaces and next hops and
// compiles it.
func (d *Daemon) buildSnapshot(spec dataplane.Spec, prev *dataplane.Snapshot) (*dataplane.Snapshot, error) {
	clientIf := 0
	for i, ifc := range d.ifaces {
		spec.Ifaces = append(spec.Ifaces, dataplane.Iface{MAC: [6]byte(ifc.net.HardwareAddr), MTU: ifc.net.MTU})
		if ifc.cfg.Role == "client" {
			clientIf = i
		}
	}
	spec.RouterIface = clientIf
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if spec.Router == ([6]byte{}) {
		// The next hop towards clients: the client-side interface's default gateway.
		if mac, err := d.gatewayMAC(ctx, d.ifaces[clientIf].net.Index); err == nil {
			spec.Router = mac
		} else {
			d.log.Warn().Err(err).Msg("no default gateway MAC: set lb.router for nat/fullnat replies and ICMP")
		}
	}
	for si := range spec.Services {
		for bi := range spec.Services[si].Backends {
			b := &spec.Services[si].Backends[bi]
			if b.MAC != ([6]byte{}) {
				continue
			}
			mac, ifindex, err := d.resolver.Resolve(ctx, b.Address)
			if err == nil && len(mac) != 6 {
				err = fmt.Errorf("next hop of %s has a %d-byte link-layer address", b.Address, len(mac))
			}
			if err != nil {
				// Keep what worked before rather than flap to the router.
				if prev != nil {
					if old := prev.BackendByKey(spec.Services[si].Name, netip.AddrPortFrom(b.Address, b.Port)); old != nil {
						b.MAC, b.Iface = old.Egress.Dst, int(old.Iface)
						continue
					}
				}
				d.log.Warn().Err(err).Str("backend", b.Address.String()).Msg("cannot resolve next hop; using the router")
				continue
			}
			b.MAC = [6]byte(mac)
			for i, ifc := range d.ifaces {
				if ifc.net.Index == ifindex {
					b.Iface = i
				}
			}
		}
	}
	s, err := dataplane.Build(spec, prev)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (d *Daemon) gatewayMAC(ctx context.Context, ifindex int) ([6]byte, error) {
	for _, probe := range []netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("2001:db8::fffe")} {
		rt, err := d.resolver.Route(probe)
		if err != nil || !rt.Gateway.IsValid() || rt.Ifindex != ifindex {
			continue
		}
		mac, _, err := d.resolver.Resolve(ctx, rt.Gateway)
		if err != nil {
			return [6]byte{}, err
		}
		if len(mac) != 6 {
			return [6]byte{}, fmt.Errorf("gateway %s has a %d-byte link-layer address", rt.Gateway, len(mac))
		}
		return [6]byte(mac), nil
	}
	return [6]byte{}, errors.New("no default route on the client-side interface")
}

// rules are the steering rules for a snapshot: every service's VIP, port
// and protocol and ICMP to it; the SNAT addresses; and for nat services
// their backends as reply sources.
func (d *Daemon) rules(s *dataplane.Snapshot, ifc *iface) bpf.RuleSet {
	var rs bpf.RuleSet
	spec := s.Spec()
	seenICMP := map[netip.Addr]bool{}
	for _, svc := range spec.Services {
		vip := svc.VIP.Unmap()
		rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Port: svc.Port, Proto: svc.Proto})
		if svc.FragHash && svc.Port != 0 {
			// Later fragments carry no port: the program matches them
			// against port-0 rules only.
			rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Proto: svc.Proto})
		}
		if !seenICMP[vip] {
			seenICMP[vip] = true
			p := bpf.ProtoICMP
			if vip.Is6() {
				p = bpf.ProtoICMPv6
			}
			rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: vip, Proto: p})
		}
		if svc.Mode == dataplane.ModeNAT {
			for _, b := range svc.Backends {
				port := b.Port
				if port == 0 {
					port = svc.Port // no translation: replies come from the service port
				}
				rs.BackendSources = append(rs.BackendSources, bpf.Rule{Addr: b.Address.Unmap(), Port: port, Proto: svc.Proto})
			}
		}
	}
	for _, a := range append(append([]netip.Addr(nil), spec.SNAT4...), spec.SNAT6...) {
		rs.Destinations = append(rs.Destinations, bpf.Rule{Addr: a, Proto: bpf.ProtoTCP}, bpf.Rule{Addr: a, Proto: bpf.ProtoUDP})
	}
	if addrs, err := ifc.net.Addrs(); err == nil {
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				rs.Local = append(rs.Local, p.Addr().Unmap())
			}
		}
	}
	return rs
}

// Reload reads the configuration file again and applies it if it is valid;
// otherwise the running configuration stays and the error says why.
// Interfaces, workers and conntrack settings need a restart.
func (d *Daemon) Reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	f, err := config.LoadWith(d.opts.ConfigPath, d.opts.Overrides)
	if err != nil {
		return err
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		return fmt.Errorf("config %s: %w", d.opts.ConfigPath, err)
	}
	// The conntrack table (its size, timeouts and SNAT pool) lives as long
	// as the process; entries index its SNAT addresses.
	if !reflect.DeepEqual(ctc, d.ctc) {
		return fmt.Errorf("config %s: lb.conntrack, lb.snat and lb.hash_seed changes need a restart (running values kept)", d.opts.ConfigPath)
	}
	if !reflect.DeepEqual(f.Interfaces, d.file.Interfaces) || f.LB.Workers != d.file.LB.Workers {
		return fmt.Errorf("config %s: interfaces and lb.workers changes need a restart (running values kept)", d.opts.ConfigPath)
	}
	prev := d.snap.Load()
	s, err := d.buildSnapshot(spec, prev)
	if err != nil {
		return fmt.Errorf("config %s: %w", d.opts.ConfigPath, err)
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
	d.file = f
	d.log.Info().Uint64("generation", s.Gen).Int("services", len(spec.Services)).Msg("configuration reloaded")
	return nil
}

// refreshLoop re-resolves next hops so a backend's changed MAC is followed.
func (d *Daemon) refreshLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.opts.NeighborRefresh)
	defer t.Stop()
	for {
		select {
		case <-d.stopRefresh:
			return
		case <-t.C:
			d.mu.Lock()
			prev := d.snap.Load()
			if s, err := d.rebuildFromFile(prev); err == nil && s != nil {
				d.snap.Store(s)
			}
			d.mu.Unlock()
		}
	}
}

// rebuildFromFile recompiles the running file with fresh next hops; nil
// when nothing changed.
func (d *Daemon) rebuildFromFile(prev *dataplane.Snapshot) (*dataplane.Snapshot, error) {
	spec, _, err := d.file.Compile()
	if err != nil {
		return nil, err
	}
	s, err := d.buildSnapshot(spec, prev)
	if err != nil {
		return nil, err
	}
	changed := false
	for i := range s.Backends {
		if i >= len(prev.Backends) || s.Backends[i].Egress != prev.Backends[i].Egress {
			changed = true
		}
	}
	if s.Reply != prev.Reply {
		changed = true
	}
	if !changed {
		return nil, nil
	}
	d.log.Info().Msg("next hops changed")
	return s, nil
}

// Snapshot returns the running snapshot.
func (d *Daemon) Snapshot() *dataplane.Snapshot { return d.snap.Load() }

// Stop stops the workers, detaches the XDP programs and closes everything.
func (d *Daemon) Stop() {
	close(d.stopRefresh)
	for _, r := range d.runners {
		r.Stop()
	}
	d.wg.Wait()
	d.teardown()
	d.log.Info().Msg("xlb stopped")
}

func (d *Daemon) teardown() {
	for _, ifc := range d.ifaces {
		if ifc.attach != nil {
			_ = ifc.attach.Close()
			ifc.attach = nil
		}
	}
	for _, s := range d.socks {
		_ = s.Close()
	}
	d.socks = nil
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
	if d.resolver != nil {
		_ = d.resolver.Close()
		d.resolver = nil
	}
}

// APIListen is the api.listen address of the running configuration.
func (d *Daemon) APIListen() string { return d.file.API.Listen }
