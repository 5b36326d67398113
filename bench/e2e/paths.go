package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/cpu"
	"github.com/xlb/xlb/internal/napi"
	"github.com/xlb/xlb/internal/netns"
	"github.com/xlb/xlb/internal/xsk"
)

// A path is what runs on the lb for one case: xlb, a baseline, or the
// kernel. start sets it up; the running path says which tasks are the
// balancer's (for the CPU accounting) and how to take it down again,
// leaving the lb namespace as Build left it.

// UDPPort is the port of the UDP service (discard).
const UDPPort = 9

// Path kinds.
const (
	KindXLB    = "xlb"    // xlb run, as a subprocess in the lb namespace
	KindBare   = "bare"   // bare AF_XDP forwarder on internal/xsk (MAC rewrite only)
	KindXDP    = "xdp"    // in-kernel XDP forwarder (DNAT + MAC rewrite + XDP_REDIRECT)
	KindKernel = "kernel" // plain kernel IP forwarding
	KindNft    = "nft"    // nftables DNAT (numgen, 2 backends)
	KindHAP    = "haproxy"
)

// pathSpec says what to run on the lb.
type pathSpec struct {
	Kind    string
	Mode    string // xlb: dsr, nat, fullnat, tunnel, l3dsr
	Poll    bool   // xlb: --poll
	Workers int    // xlb: lb.workers (and queues used)
	TCP     bool   // connection-level: serve TCP VIP:80 instead of UDP VIP:9
}

// running is a started path.
type running struct {
	procs   []int    // balancer processes
	threads [][2]int // balancer threads of this process: pid, tid
	xdpIfs  []string // lb interfaces with an XDP program (they have NAPIs)
	stop    func() error
	// stats returns the path's own counters, if it has any.
	stats func() map[string]uint64
}

// env is what paths need.
type env struct {
	topo   *Topology
	xlbBin string
	dir    string // scratch directory
	lbCPUs []int  // CPUs of the balancer's workers
	logf   func(format string, args ...any)
}

func (e *env) start(ctx context.Context, p pathSpec) (*running, error) {
	switch p.Kind {
	case KindXLB:
		return e.startXLB(ctx, p)
	case KindBare:
		return e.startBare(p)
	case KindXDP:
		return e.startXDPForwarder()
	case KindKernel, KindNft, KindHAP:
		return e.startKernel(ctx, p)
	}
	return nil, fmt.Errorf("e2e: unknown path kind %q", p.Kind)
}

// ---- xlb ----

const xlbAPI = "127.0.0.1:9900" // inside the lb namespace

func (e *env) xlbConfig(p pathSpec) string {
	t := e.topo
	var b strings.Builder
	fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native, role: client}\n  - {name: %s, xdp: native, role: backend}\n", LBFrontIf, LBBackIf)
	fmt.Fprintf(&b, "lb:\n  workers: %d\n  conntrack: {capacity: 262144, state_dir: %s}\n", max(p.Workers, 1), filepath.Join(e.dir, "ct"))
	if len(e.lbCPUs) > 1 {
		fmt.Fprintf(&b, "  cpus: %s\n", strings.ReplaceAll(fmt.Sprint(e.lbCPUs), " ", ", "))
	}
	switch p.Mode {
	case "fullnat":
		fmt.Fprintf(&b, "  snat: {addresses: [%s], ports: 1024-32767}\n", SNATAddr)
	case "tunnel":
		fmt.Fprintf(&b, "  tunnel_source: %s\n", LBBack)
	}
	fmt.Fprintf(&b, "api: {listen: %s}\n", xlbAPI)
	proto, port := "udp", UDPPort
	if p.TCP {
		proto, port = "tcp", 80
	}
	fmt.Fprintf(&b, "services:\n  - name: bench\n    vip: %s\n    port: %d\n    protocol: %s\n    mode: %s\n", VIP, port, proto, p.Mode)
	if p.Mode == "l3dsr" {
		b.WriteString("    dscp: 8\n")
	}
	b.WriteString("    backends:\n")
	for _, a := range Backends {
		fmt.Fprintf(&b, "      - {address: %s, port: %d, mac: \"%s\"}\n", a, port, t.SinkMAC)
	}
	return b.String()
}

// xlbStats reads xlb's totals, runner and socket counters from its API.
func (e *env) xlbStats() (map[string]uint64, error) {
	resp, err := e.topo.LB.HTTPClient(2 * time.Second).Get("http://" + xlbAPI + "/api/v1/stats")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st struct {
		Totals  map[string]uint64         `json:"totals"`
		Runners map[string]uint64         `json:"runners"`
		Sockets map[string]map[string]any `json:"sockets"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return nil, err
	}
	out := map[string]uint64{}
	for _, k := range []string{"rx_packets", "tx_packets", "dropped", "passed"} {
		out[k] = st.Totals[k]
	}
	for k, v := range st.Runners {
		if v != 0 {
			out["runner_"+k] = v
		}
	}
	for _, s := range st.Sockets {
		for _, k := range []string{"rx_ring_full", "rx_fill_ring_empty_descs", "rx_dropped"} {
			if v, ok := s[k].(float64); ok {
				out["socket_"+k] += uint64(v)
			}
		}
	}
	return out, nil
}

func (e *env) startXLB(ctx context.Context, p pathSpec) (*running, error) {
	cfg := filepath.Join(e.dir, "xlb.yaml")
	if err := os.WriteFile(cfg, []byte(e.xlbConfig(p)), 0o644); err != nil {
		return nil, err
	}
	ipBin, err := lookTool("ip")
	if err != nil {
		return nil, err
	}
	cpus := make([]string, len(e.lbCPUs))
	for i, c := range e.lbCPUs {
		cpus[i] = fmt.Sprint(c)
	}
	args := []string{"netns", "exec", e.topo.LB.NS, e.xlbBin, "run", "--config", cfg, "--log-format", "console"}
	if len(cpus) == 1 {
		// --set cannot give a list ("0,1" is read as one element):
		// several CPUs are in the file.
		args = append(args, "--set", "lb.cpus="+cpus[0])
	}
	if p.Poll {
		args = append(args, "--poll")
	}
	cmd := exec.Command(ipBin, args...)
	logs := &syncBuf{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("e2e: start xlb: %w", err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	stop := func() error {
		defer os.RemoveAll(filepath.Join(e.dir, "ct")) // the next xlb starts with an empty table
		select {
		case <-done:
			return nil
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
			if waitErr != nil {
				return fmt.Errorf("e2e: xlb exit: %w\n%s", waitErr, logs.tail(2000))
			}
			return nil
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("e2e: xlb did not stop on SIGTERM\n%s", logs.tail(2000))
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := e.xlbStats(); err == nil {
			break
		}
		select {
		case <-done:
			return nil, fmt.Errorf("e2e: xlb exited: %v\n%s", waitErr, logs.tail(3000))
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), stop())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("e2e: xlb did not come up\n%s", logs.tail(3000)), stop())
		}
	}
	// `ip netns exec` execs xlb in place: the child is xlb.
	return &running{procs: []int{cmd.Process.Pid}, xdpIfs: []string{LBFrontIf, LBBackIf}, stop: stop, stats: func() map[string]uint64 {
		st, _ := e.xlbStats()
		return st
	}}, nil
}

// ---- bare AF_XDP forwarder ----

// startBare runs the baseline AF_XDP forwarder in this process: xlb's
// steering program on the client side steers VIP:9 to a socket on queue
// 0; a loop pinned to the lb's CPU rewrites the MAC addresses and sends
// each frame out of a socket on the backend side (same UMEM, no copy),
// with the I/O loop of dataplane.Runner (batches of 64, fill ring kept
// at 4000, sched_yield when empty, poll(2) after 1 ms idle) and nothing
// else: no parsing, no conntrack, no scheduling.
func (e *env) startBare(p pathSpec) (*running, error) {
	t := e.topo
	front, err := t.LB.Ifindex(LBFrontIf)
	if err != nil {
		return nil, err
	}
	back, err := t.LB.Ifindex(LBBackIf)
	if err != nil {
		return nil, err
	}
	var (
		steer  *bpf.Steering
		att    *bpf.Attachment
		u      *xsk.UMEM
		rx, tx *xsk.Socket
	)
	closeAll := func() {
		if att != nil {
			att.Close()
		}
		for _, s := range []*xsk.Socket{rx, tx} {
			if s != nil {
				s.Close()
			}
		}
		if u != nil {
			u.Close()
		}
		if steer != nil {
			steer.Close()
		}
	}
	err = t.LB.Do(func() error {
		var err error
		if steer, err = bpf.LoadSteering(bpf.SteeringOptions{MaxQueues: t.Queues}); err != nil {
			return err
		}
		if err := steer.AddVIP(VIP, UDPPort, bpf.ProtoUDP); err != nil {
			return err
		}
		if u, err = xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 16384}); err != nil {
			return err
		}
		if rx, err = xsk.Open(front, 0, u, xsk.Options{}); err != nil {
			return err
		}
		if tx, err = xsk.Open(back, 0, u, xsk.Options{}); err != nil {
			return err
		}
		if err := steer.SetSocket(0, rx.FD()); err != nil {
			return err
		}
		att, err = steer.Attach(front, bpf.Native)
		return err
	})
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("e2e: bare forwarder: %w", err)
	}
	// The NAPI deferral xlb's daemon sets in its default (busy) mode, so
	// both veths batch alike.
	undefer, err := e.deferNAPI([]string{LBFrontIf, LBBackIf})
	if err != nil {
		closeAll()
		return nil, err
	}
	var stopFlag atomic.Bool
	var fwd atomic.Uint64
	tidc := make(chan int, 1)
	done := make(chan struct{})
	dst, src := [6]byte(t.SinkMAC), [6]byte(t.LBBackMAC)
	go func() {
		defer close(done)
		runtime.LockOSThread() // and never unlocked: the thread was pinned, it exits with the goroutine
		_ = cpu.Pin(e.lbCPUs[0])
		tidc <- unix.Gettid()
		bareLoop(rx, tx, u, dst, src, &stopFlag, &fwd)
	}()
	tid := <-tidc
	return &running{
		threads: [][2]int{{os.Getpid(), tid}},
		xdpIfs:  []string{LBFrontIf},
		stop: func() error {
			stopFlag.Store(true)
			<-done
			closeAll()
			return undefer()
		},
		stats: func() map[string]uint64 {
			m := map[string]uint64{"tx_packets": fwd.Load()}
			if st, err := rx.Stats(); err == nil {
				m["socket_rx_ring_full"] = st.RxRingFull
				m["socket_rx_fill_ring_empty_descs"] = st.RxFillRingEmptyDescs
			}
			return m
		},
	}, nil
}

func bareLoop(rx, tx *xsk.Socket, u *xsk.UMEM, dst, src [6]byte, stop *atomic.Bool, fwd *atomic.Uint64) {
	const batch, fillTarget = 64, 4000
	descs := make([]xsk.Desc, batch)
	addrs := make([]uint64, 4*batch)
	mem := u.Bytes()
	poller := xsk.NewPoller([]*xsk.Socket{rx})
	posted := 0
	refill := func() {
		for need := fillTarget - posted; need > 0; {
			k := u.AllocBatch(addrs[:min(need, len(addrs))])
			if k == 0 {
				return
			}
			f := rx.Fill(addrs[:k])
			if f < k {
				u.FreeBatch(addrs[f:k])
			}
			posted += f
			need -= k
			if f < k {
				return
			}
		}
	}
	refill()
	lastRx := time.Now()
	for !stop.Load() {
		n := rx.Receive(descs)
		posted -= n
		for i := 0; i < n; i++ {
			f := mem[descs[i].Addr : descs[i].Addr+12]
			copy(f[0:6], dst[:])
			copy(f[6:12], src[:])
		}
		if n > 0 {
			sent := tx.Transmit(descs[:n])
			for _, d := range descs[sent:n] {
				u.Free(d.Addr)
			}
			fwd.Add(uint64(sent))
		}
		for {
			k := tx.Complete(addrs)
			if k == 0 {
				break
			}
			u.FreeBatch(addrs[:k])
		}
		if posted <= fillTarget-batch {
			refill()
		}
		switch {
		case n > 0:
			lastRx = time.Now()
		case time.Since(lastRx) >= time.Millisecond:
			_ = poller.Wait(100 * time.Millisecond)
		default:
			poller.Yield()
		}
	}
}

// deferNAPI writes the NAPI deferral napi.Configure writes (what xlb's
// daemon sets in busy mode) on the lb's interfaces, through `ip netns
// exec` so that /sys is the lb's, and returns how to clear it again.
func (e *env) deferNAPI(ifs []string) (func() error, error) {
	set := func(irqs uint32, timeout time.Duration) error {
		var cmds []string
		for _, ifname := range ifs {
			cmds = append(cmds, fmt.Sprintf("echo %d > /sys/class/net/%s/napi_defer_hard_irqs && echo %d > /sys/class/net/%s/gro_flush_timeout",
				irqs, ifname, timeout.Nanoseconds(), ifname))
		}
		_, err := e.topo.LB.Run(context.Background(), "sh", "-c", strings.Join(cmds, " && "))
		return err
	}
	if err := set(napi.DefaultDeferHardIRQs, napi.DefaultGROFlushTimeout); err != nil {
		return nil, fmt.Errorf("e2e: NAPI deferral: %w", errors.Join(err, set(0, 0)))
	}
	return func() error { return set(0, 0) }, nil
}

// ---- in-kernel XDP forwarder ----

func (e *env) startXDPForwarder() (*running, error) {
	t := e.topo
	front, err := t.LB.Ifindex(LBFrontIf)
	if err != nil {
		return nil, err
	}
	back, err := t.LB.Ifindex(LBBackIf)
	if err != nil {
		return nil, err
	}
	prog, err := loadXDP("e2e_xdpfwd", forwarderProgram(ForwarderConfig{VIP: VIP, Port: UDPPort, Backends: Backends,
		SrcMAC: t.LBBackMAC, DstMAC: t.SinkMAC, Ifindex: back}))
	if err != nil {
		return nil, err
	}
	var l link.Link
	if err := t.LB.Do(func() error { var err error; l, err = attachNative(prog, front); return err }); err != nil {
		prog.Close()
		return nil, err
	}
	return &running{xdpIfs: []string{LBFrontIf}, stop: func() error {
		err := l.Close()
		prog.Close()
		return err
	}}, nil
}

// ---- the kernel: forwarding, nftables DNAT, haproxy ----

// startKernel attaches XDP_PASS programs to both lb interfaces (a veth
// has a NAPI, the one its native XDP runs in, only with a program, and
// the generator's redirected frames need it), and sets up kernel
// forwarding, nftables DNAT or haproxy.
func (e *env) startKernel(ctx context.Context, p pathSpec) (_ *running, err error) {
	t := e.topo
	var undo []func() error
	r := &running{xdpIfs: []string{LBFrontIf, LBBackIf}}
	r.stop = func() error {
		var errs []error
		for i := len(undo) - 1; i >= 0; i-- {
			errs = append(errs, undo[i]())
		}
		undo = nil
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.stop())
		}
	}()
	pass, err := loadXDP("e2e_pass", passProgram())
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() error { return pass.Close() })
	for _, ifname := range r.xdpIfs {
		ix, err := t.LB.Ifindex(ifname)
		if err != nil {
			return nil, err
		}
		var l link.Link
		if err := t.LB.Do(func() error { var err error; l, err = attachNative(pass, ix); return err }); err != nil {
			return nil, err
		}
		undo = append(undo, l.Close)
	}
	lbIP := func(args ...string) error {
		_, err := ip(ctx, append([]string{"-n", t.LB.NS}, args...)...)
		return err
	}
	switch p.Kind {
	case KindKernel, KindNft:
		if err := t.LB.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
			return nil, err
		}
		undo = append(undo, func() error { return t.LB.Sysctl("net/ipv4/ip_forward", "0") })
	}
	switch p.Kind {
	case KindKernel:
		if err := lbIP("route", "add", VIP.String()+"/32", "via", Backends[0].String()); err != nil {
			return nil, err
		}
		undo = append(undo, func() error { return lbIP("route", "del", VIP.String()+"/32") })
	case KindNft:
		rules := fmt.Sprintf(`table ip xlbbench {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr %[1]s udp dport %[2]d dnat to numgen inc mod 2 map { 0 : %[3]s, 1 : %[4]s }
		ip daddr %[1]s tcp dport 80 dnat to numgen inc mod 2 map { 0 : %[3]s, 1 : %[4]s }
	}
}
`, VIP, UDPPort, Backends[0], Backends[1])
		f := filepath.Join(e.dir, "nft.rules")
		if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
			return nil, err
		}
		if _, err := t.LB.Run(ctx, "nft", "-f", f); err != nil {
			return nil, fmt.Errorf("e2e: nftables: %w", err)
		}
		undo = append(undo, func() error {
			_, err := t.LB.Run(context.Background(), "nft", "delete", "table", "ip", "xlbbench")
			return err
		})
	case KindHAP:
		if err := lbIP("addr", "add", VIP.String()+"/32", "dev", "lo"); err != nil {
			return nil, err
		}
		undo = append(undo, func() error { return lbIP("addr", "del", VIP.String()+"/32", "dev", "lo") })
		cfg := fmt.Sprintf(`global
	nbthread 1
	maxconn 8000
defaults
	mode tcp
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend fe
	bind %s:80
	default_backend be
backend be
	balance roundrobin
	server b1 %s:80
	server b2 %s:80
`, VIP, Backends[0], Backends[1])
		f := filepath.Join(e.dir, "haproxy.cfg")
		if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
			return nil, err
		}
		proc, err := startIn(t.LB, e.lbCPUs, "haproxy", "-f", f, "-db")
		if err != nil {
			return nil, err
		}
		undo = append(undo, proc.stop)
		r.procs = append(r.procs, proc.pid())
		if err := waitTCP(ctx, t.LB, VIP.String()+":80", 5*time.Second); err != nil {
			return nil, fmt.Errorf("e2e: haproxy: %w\n%s", err, proc.logs.tail(2000))
		}
	}
	return r, nil
}

// ---- processes in namespaces ----

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuf) tail(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	str := s.b.String()
	if len(str) > n {
		str = "…" + str[len(str)-n:]
	}
	return str
}

// proc is a process started in a namespace.
type proc struct {
	cmd  *exec.Cmd
	logs *syncBuf
	done chan error
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("e2e: %s did not stop on SIGTERM", filepath.Base(p.cmd.Args[len(p.cmd.Args)-1]))
	}
}

// startIn starts name with args in h's namespace, pinned to cpus
// (`ip netns exec NS taskset -c CPUS name args...`: both exec in place,
// so the child's PID is the program's).
func startIn(h *netns.Host, cpus []int, name string, args ...string) (*proc, error) {
	ipBin, err := lookTool("ip")
	if err != nil {
		return nil, err
	}
	bin, err := lookTool(name)
	if err != nil {
		return nil, err
	}
	ts, err := lookTool("taskset")
	if err != nil {
		return nil, err
	}
	list := make([]string, len(cpus))
	for i, c := range cpus {
		list[i] = fmt.Sprint(c)
	}
	full := append([]string{"netns", "exec", h.NS, ts, "-c", strings.Join(list, ","), bin}, args...)
	p := &proc{cmd: exec.Command(ipBin, full...), logs: &syncBuf{}, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("e2e: start %s: %w", name, err)
	}
	go func() { p.done <- p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitTCP waits until addr accepts connections from inside h.
func waitTCP(ctx context.Context, h *netns.Host, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := h.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not accept connections: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
