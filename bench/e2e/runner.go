package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure Run.
type Options struct {
	// XLB is the xlb binary run as `xlb run` in the lb namespace.
	XLB string
	// Reps is how many times every case runs (default 3); the cases of
	// one repetition run one after the other, then the next repetition.
	Reps int
	// Window is the counting window of a UDP case (default 5 s), Warmup
	// the time before it (default 1 s). ConnWindow is wrk's duration
	// (default 5 s).
	Window, Warmup, ConnWindow time.Duration
	// Rate paces the generator (frames/s, all threads); 0 sends as fast
	// as it can (saturation).
	Rate int
	// PacedRate adds cases at this offered rate (xlb dsr in both modes,
	// the bare forwarder, kernel forwarding), where loss and CPU per
	// packet mean more than at saturation; 0: none.
	PacedRate int
	// GenCPU runs the generator, the sink's NAPIs and, for the
	// connection-level runs, wrk and nginx; LBCPU the balancer and its
	// NAPIs. Defaults 0 and 1.
	GenCPU, LBCPU int
	// Only, when set, keeps the cases whose name contains one of these.
	Only []string
	// NoConn skips the connection-level runs; NoReplay the in-process
	// replay scaling; NoMultiQueue the two-worker case.
	NoConn, NoReplay, NoMultiQueue bool
	// Replay runs `xlb bench replay` in process with the given workers.
	Replay func(workers int) (ReplayRun, error)
	// Progress gets one line per case.
	Progress io.Writer
	// Dir is a scratch directory (default a new temporary one).
	Dir string
}

// udpCase is one UDP forwarding case.
type udpCase struct {
	Name string
	pathSpec
	Rate int // paced rate of this case; 0: Options.Rate
	// SameCPU runs the generator on the balancer's CPU at nice 10: it
	// sends only when the balancer leaves it the CPU (closed loop).
	SameCPU bool
}

// SameCPUSuffix ends the names of the cases whose generator shares the
// balancer's CPU.
const SameCPUSuffix = ", generator on its CPU"

// UDPCases are the forwarding cases in the order they run.
func udpCases(o Options) []udpCase {
	cs := []udpCase{
		{Name: "xlb dsr", pathSpec: pathSpec{Kind: KindXLB, Mode: "dsr", Workers: 1}},
		{Name: "xlb dsr --poll", pathSpec: pathSpec{Kind: KindXLB, Mode: "dsr", Poll: true, Workers: 1}},
		{Name: "xlb nat", pathSpec: pathSpec{Kind: KindXLB, Mode: "nat", Workers: 1}},
		{Name: "xlb fullnat", pathSpec: pathSpec{Kind: KindXLB, Mode: "fullnat", Workers: 1}},
		{Name: "xlb tunnel", pathSpec: pathSpec{Kind: KindXLB, Mode: "tunnel", Workers: 1}},
		{Name: "xlb l3dsr", pathSpec: pathSpec{Kind: KindXLB, Mode: "l3dsr", Workers: 1}},
		{Name: "bare AF_XDP forwarder", pathSpec: pathSpec{Kind: KindBare, Workers: 1}},
		{Name: "XDP forwarder (in kernel)", pathSpec: pathSpec{Kind: KindXDP, Workers: 1}},
		{Name: "kernel IP forwarding", pathSpec: pathSpec{Kind: KindKernel, Workers: 1}},
		{Name: "nftables DNAT", pathSpec: pathSpec{Kind: KindNft, Workers: 1}},
	}
	if !o.NoMultiQueue {
		cs = append(cs, udpCase{Name: MultiQueueCase, pathSpec: pathSpec{Kind: KindXLB, Mode: "dsr", Workers: 2}})
	}
	for _, c := range cs[:10] {
		if c.Name == "xlb dsr" || c.Kind == KindBare {
			c.Name += SameCPUSuffix
			c.SameCPU = true
			cs = append(cs, c)
		}
	}
	if o.PacedRate > 0 {
		for _, c := range cs[:10] {
			if c.Name == "xlb dsr" || c.Name == "xlb dsr --poll" || c.Kind == KindBare || c.Kind == KindKernel {
				c.Name += fmt.Sprintf(", paced %s/s", si(float64(o.PacedRate)))
				c.Rate = o.PacedRate
				cs = append(cs, c)
			}
		}
	}
	return filterCases(cs, o.Only, func(c udpCase) string { return c.Name })
}

// MultiQueueCase is the name of the two-worker case.
const MultiQueueCase = "xlb dsr, 2 workers"

type connCase struct {
	Name string
	pathSpec
}

func connCases(o Options) []connCase {
	cs := []connCase{
		{Name: "xlb fullnat", pathSpec: pathSpec{Kind: KindXLB, Mode: "fullnat", Workers: 1, TCP: true}},
		{Name: "haproxy (mode tcp)", pathSpec: pathSpec{Kind: KindHAP, TCP: true}},
		{Name: "nftables DNAT", pathSpec: pathSpec{Kind: KindNft, TCP: true}},
	}
	return filterCases(cs, o.Only, func(c connCase) string { return c.Name })
}

func filterCases[T any](cs []T, only []string, name func(T) string) []T {
	if len(only) == 0 {
		return cs
	}
	var out []T
	for _, c := range cs {
		for _, o := range only {
			if strings.Contains(name(c), o) {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

func (o *Options) defaults() {
	if o.Reps <= 0 {
		o.Reps = 3
	}
	if o.Window <= 0 {
		o.Window = 5 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = time.Second
	}
	if o.ConnWindow <= 0 {
		o.ConnWindow = 5 * time.Second
	}
	if o.GenCPU == 0 && o.LBCPU == 0 {
		o.LBCPU = 1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Run builds the topology, runs every case o.Reps times, interleaved,
// tears everything down and returns the measurements. A case that fails
// is recorded with its error and the run goes on; Run fails only when the
// harness itself cannot work (no namespaces, no live frames).
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if runtime.NumCPU() < 2 || o.GenCPU == o.LBCPU {
		return nil, fmt.Errorf("e2e: needs two CPUs, one for the generator and one for the balancer (have %d)", runtime.NumCPU())
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "xlb-e2e-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		o.Dir = d
	}
	res := &Result{Started: time.Now().UTC(), Settings: Settings{
		Reps: o.Reps, WindowSeconds: o.Window.Seconds(), WarmupSeconds: o.Warmup.Seconds(), ConnSeconds: o.ConnWindow.Seconds(),
		Rate: o.Rate, PacedRate: o.PacedRate, FrameBytes: FrameLen, Flows: 10000, GenCPU: o.GenCPU, LBCPU: o.LBCPU,
	}, Host: hostInfo()}
	res.Host.LoadBefore = loadAverage()
	start := time.Now()
	r := &runner{o: o, res: res, start: start, beds: map[int]*bed{}}
	defer r.teardown()
	// The single-queue bed first: it checks that the harness can work.
	if _, err := r.bed(ctx, 1); err != nil {
		return nil, err
	}

	udp := udpCases(o)
	conn := connCases(o)
	if o.NoConn {
		conn = nil
	}
	if len(conn) > 0 {
		if missing := missingTools("wrk", "nginx", "haproxy", "nft", "taskset"); len(missing) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("connection-level runs skipped: %s not installed (apt-get install wrk haproxy nginx nftables)", strings.Join(missing, ", ")))
			conn = nil
		}
	}
	for _, c := range udp {
		if c.Kind == KindNft {
			if _, err := lookTool("nft"); err != nil {
				res.Notes = append(res.Notes, "nftables cases skipped: nft not installed (apt-get install nftables)")
				udp = filterOut(udp, KindNft)
				break
			}
		}
	}
	r.total = o.Reps * (len(udp) + 2*len(conn))
	if o.Replay != nil && !o.NoReplay {
		r.total += 2 * o.Reps
	}
	for rep := 1; rep <= o.Reps; rep++ {
		for _, c := range udp {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			run := r.udp(ctx, c, rep)
			res.UDP = append(res.UDP, run)
			r.progress("rep %d/%d %-34s %s", rep, o.Reps, c.Name, run.line())
		}
	}
	if len(conn) > 0 {
		if err := r.startNginx(); err != nil {
			res.Notes = append(res.Notes, "connection-level runs skipped: "+err.Error())
			conn = nil
		}
	}
	for rep := 1; rep <= o.Reps && len(conn) > 0; rep++ {
		for _, c := range conn {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			for _, run := range r.conn(ctx, c, rep) {
				res.Conn = append(res.Conn, run)
				r.progress("rep %d/%d %-34s %s", rep, o.Reps, c.Name+map[bool]string{true: " keep-alive", false: " close"}[run.KeepAlive], run.line())
			}
		}
	}
	if o.Replay != nil && !o.NoReplay {
		for rep := 1; rep <= o.Reps; rep++ {
			for _, w := range []int{1, 2} {
				run, err := o.Replay(w)
				run.Workers, run.Rep = w, rep
				if err != nil {
					run.Error = err.Error()
				}
				res.Replay = append(res.Replay, run)
				r.progress("rep %d/%d %-34s %s", rep, o.Reps, fmt.Sprintf("replay, %d worker(s)", w), run.line())
			}
		}
	}
	res.Host.LoadAfter = loadAverage()
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func filterOut(cs []udpCase, kind string) []udpCase {
	var out []udpCase
	for _, c := range cs {
		if c.Kind != kind {
			out = append(out, c)
		}
	}
	return out
}

func missingTools(names ...string) []string {
	var out []string
	for _, n := range names {
		if _, err := lookTool(n); err != nil {
			out = append(out, n)
		}
	}
	return out
}

type runner struct {
	o     Options
	res   *Result
	start time.Time
	done  int
	total int
	beds  map[int]*bed // by queue count
	nginx *proc
}

// bed is a built topology with its sink, and an XDP_PASS program on
// the client. Single-worker cases run on veths with one queue each (a
// frame the kernel sends, TCP for wrk, would otherwise land on a queue
// without a socket half of the time); the two-worker case on veths with
// two.
type bed struct {
	topo   *Topology
	sink   *Sink
	client func() error // detaches the client's XDP_PASS
}

// bed returns the bed with queues queues, building it on first use.
func (r *runner) bed(ctx context.Context, queues int) (*bed, error) {
	if b := r.beds[queues]; b != nil {
		return b, nil
	}
	t, err := Build(ctx, queues)
	if err != nil {
		return nil, err
	}
	b := &bed{topo: t}
	if err := b.setup(ctx, r); err != nil {
		b.close()
		return nil, err
	}
	r.beds[queues] = b
	return b, nil
}

func (b *bed) close() {
	if b.sink != nil {
		b.sink.Close()
	}
	if b.client != nil {
		b.client()
	}
	b.topo.Close()
}

func (r *runner) progress(format string, args ...any) {
	r.done++
	fmt.Fprintf(r.o.Progress, "[%2d/%d %4.0fs] %s\n", r.done, r.total, time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// setup attaches the sink and an XDP_PASS program on the client (so its
// veth has NAPIs, threaded and pinned with the generator's CPU: what the
// lb sends the client does not run on the lb's CPU).
func (b *bed) setup(ctx context.Context, r *runner) error {
	t := b.topo
	var err error
	if b.sink, err = NewSink(t.Sink, SinkIf); err != nil {
		return err
	}
	pass, err := loadXDP("e2e_pass", passProgram())
	if err != nil {
		return err
	}
	ix, err := t.Client.Ifindex(ClientIf)
	if err != nil {
		pass.Close()
		return err
	}
	var closeLink func() error
	err = t.Client.Do(func() error {
		l, err := attachNative(pass, ix)
		if err == nil {
			closeLink = l.Close
		}
		return err
	})
	if err != nil {
		pass.Close()
		return err
	}
	b.client = func() error { err := closeLink(); pass.Close(); return err }
	if _, err := t.SetThreaded(ctx, t.Client, ClientIf, []int{r.o.GenCPU}); err != nil {
		return err
	}
	g, err := r.newGenerator(b, []int{r.o.GenCPU}, 0)
	if err != nil {
		return err
	}
	defer g.Close()
	return g.CheckLiveFrames()
}

func (r *runner) teardown() {
	if r.nginx != nil {
		r.nginx.stop()
		r.nginx = nil
	}
	for q, b := range r.beds {
		b.close()
		delete(r.beds, q)
	}
}

func (r *runner) newGenerator(b *bed, cpus []int, rate int) (*Generator, error) {
	nice := 0
	if len(cpus) > 1 || len(cpus) == 1 && cpus[0] == r.o.LBCPU {
		nice = genNice()
	}
	t := b.topo
	ix, err := t.Client.Ifindex(ClientIf)
	if err != nil {
		return nil, err
	}
	return NewGenerator(GenConfig{
		Frame: GenFrame{SrcMAC: t.ClientMAC, DstMAC: t.LBFrontMAC, Src: ClientAddr, Dst: VIP, DstPort: UDPPort, Flows: 10000},
		NS:    t.Client, Ifindex: ix, CPUs: cpus, Rate: rate, Nice: nice,
	})
}

// placement returns the CPUs of the balancer, of the generator and of
// the sink's NAPIs.
func (r *runner) placement(workers int, sameCPU bool) (lb, gen, sink []int) {
	if workers >= 2 {
		both := []int{r.o.GenCPU, r.o.LBCPU}
		return both, both, both
	}
	if sameCPU {
		return []int{r.o.LBCPU}, []int{r.o.LBCPU}, []int{r.o.GenCPU}
	}
	return []int{r.o.LBCPU}, []int{r.o.GenCPU}, []int{r.o.GenCPU}
}

// pinNAPIs makes the lb's and the sink's NAPIs threaded and pins them:
// the lb's with the balancer, the sink's with the generator (each queue's
// with its worker when there are two).
func (r *runner) pinNAPIs(ctx context.Context, b *bed, running *running, workers int, sameCPU bool) (lbThreads, sinkThreads []int, err error) {
	t := b.topo
	lbCPUs, _, sinkCPUs := r.placement(workers, sameCPU)
	for _, ifname := range running.xdpIfs {
		pids, err := t.SetThreaded(ctx, t.LB, ifname, lbCPUs)
		if err != nil {
			return nil, nil, err
		}
		lbThreads = append(lbThreads, pids...)
	}
	sinkThreads, err = t.SetThreaded(ctx, t.Sink, SinkIf, sinkCPUs)
	return lbThreads, sinkThreads, err
}

// udp runs one UDP case.
func (r *runner) udp(ctx context.Context, c udpCase, rep int) UDPRun {
	run := UDPRun{Case: c.Name, Kind: c.Kind, Mode: c.Mode, Poll: c.Poll, Workers: max(c.Workers, 1), SameCPU: c.SameCPU, Rep: rep}
	fail := func(err error) UDPRun {
		run.Error = err.Error()
		return run
	}
	lbCPUs, genCPUs, _ := r.placement(run.Workers, c.SameCPU)
	b, err := r.bed(ctx, run.Workers)
	if err != nil {
		return fail(err)
	}
	e := &env{topo: b.topo, xlbBin: r.o.XLB, dir: r.o.Dir, lbCPUs: lbCPUs}
	p, err := e.start(ctx, c.pathSpec)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := p.stop(); err != nil && run.Error == "" {
			run.Error = err.Error()
		}
	}()
	lbThreads, sinkThreads, err := r.pinNAPIs(ctx, b, p, run.Workers, c.SameCPU)
	if err != nil {
		return fail(err)
	}
	rate := r.o.Rate
	if c.Rate > 0 {
		rate = c.Rate
	}
	run.Rate = rate
	gen, err := r.newGenerator(b, genCPUs, rate)
	if err != nil {
		return fail(err)
	}
	defer gen.Close()
	gen.Start()
	select {
	case <-time.After(r.o.Warmup):
	case <-ctx.Done():
		return fail(errors.Join(ctx.Err(), gen.Stop()))
	}
	snap := func() (s udpSnap) {
		s.at = time.Now()
		s.sent, _ = gen.Sent()
		s.got, _ = b.sink.Counted()
		s.cpu, _ = ReadCPUTimes()
		s.gen = gen.CPUTime()
		for _, pid := range p.procs {
			d, _ := processCPU(pid)
			s.lbTasks += d
		}
		for _, th := range p.threads {
			d, _ := taskCPU(th[0], th[1])
			s.lbTasks += d
		}
		for _, pid := range lbThreads {
			d, _ := processCPU(pid)
			s.lbTasks += d
		}
		for _, pid := range sinkThreads {
			d, _ := processCPU(pid)
			s.sinkTasks += d
		}
		if p.stats != nil {
			s.stats = p.stats()
		}
		return s
	}
	s0 := snap()
	select {
	case <-time.After(r.o.Window):
	case <-ctx.Done():
		return fail(errors.Join(ctx.Err(), gen.Stop()))
	}
	s1 := snap()
	if err := gen.Stop(); err != nil {
		return fail(err)
	}
	secs := s1.at.Sub(s0.at).Seconds()
	run.Seconds = secs
	run.Offered = s1.sent - s0.sent
	run.Forwarded = s1.got - s0.got
	run.OfferedPPS = float64(run.Offered) / secs
	run.ForwardedPPS = float64(run.Forwarded) / secs
	if run.Offered > 0 {
		run.Loss = 1 - float64(run.Forwarded)/float64(run.Offered)
	}
	cpu := s1.cpu.Sub(s0.cpu)
	busy := cpu.On(lbCPUs)
	// With two workers the generator and the sink share their CPUs,
	// and a SameCPU generator the balancer's: take their threads' time
	// out.
	if run.Workers >= 2 {
		busy -= (s1.gen - s0.gen) + (s1.sinkTasks - s0.sinkTasks)
	} else if c.SameCPU {
		busy -= s1.gen - s0.gen
	}
	tasks := s1.lbTasks - s0.lbTasks
	run.CPUSeconds = busy.Seconds()
	run.TaskSeconds = tasks.Seconds()
	run.GeneratorSeconds = (s1.gen - s0.gen).Seconds()
	run.OtherCPU = (busy - tasks).Seconds() / secs
	if run.Forwarded > 0 {
		run.NsPerPacket = float64(busy.Nanoseconds()) / float64(run.Forwarded)
		run.TaskNsPerPacket = float64(tasks.Nanoseconds()) / float64(run.Forwarded)
	}
	if s1.stats != nil {
		run.Stats = map[string]uint64{}
		for k, v := range s1.stats {
			run.Stats[k] = v - s0.stats[k]
		}
	}
	if run.Forwarded == 0 {
		run.Error = "nothing reached the sink"
	}
	return run
}

type udpSnap struct {
	at                      time.Time
	sent, got               uint64
	cpu                     CPUTimes
	gen, lbTasks, sinkTasks time.Duration
	stats                   map[string]uint64
}

// ---- connection level ----

// startNginx starts nginx on both backend addresses in the sink
// namespace, on the generator's CPU.
func (r *runner) startNginx() error {
	dir := r.o.Dir + "/nginx"
	if err := os.MkdirAll(dir+"/logs", 0o755); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`worker_processes 1;
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log;
events { worker_connections 8192; }
http {
	access_log off;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	keepalive_requests 1000000;
	server {
		listen %[2]s:80 reuseport;
		listen %[3]s:80 reuseport;
		location / { return 200 "ok\n"; }
	}
}
`, dir, Backends[0], Backends[1])
	if err := os.WriteFile(dir+"/nginx.conf", []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := startIn(r.beds[1].topo.Sink, []int{r.o.GenCPU}, "nginx", "-p", dir, "-c", dir+"/nginx.conf", "-e", dir+"/logs/error.log")
	if err != nil {
		return err
	}
	r.nginx = p
	if err := waitTCP(context.Background(), r.beds[1].topo.Sink, Backends[1].String()+":80", 5*time.Second); err != nil {
		return fmt.Errorf("nginx: %w\n%s", err, p.logs.tail(2000))
	}
	return nil
}

// conn runs wrk through one path, with keep-alive and with
// `Connection: close`.
func (r *runner) conn(ctx context.Context, c connCase, rep int) []ConnRun {
	runs := []ConnRun{{Case: c.Name, KeepAlive: true, Rep: rep}, {Case: c.Name, KeepAlive: false, Rep: rep}}
	fail := func(err error) []ConnRun {
		for i := range runs {
			if runs[i].Error == "" && runs[i].Requests == 0 {
				runs[i].Error = err.Error()
			}
		}
		return runs
	}
	lbCPUs, _, _ := r.placement(1, false)
	b := r.beds[1]
	e := &env{topo: b.topo, xlbBin: r.o.XLB, dir: r.o.Dir, lbCPUs: lbCPUs}
	p, err := e.start(ctx, c.pathSpec)
	if err != nil {
		return fail(err)
	}
	defer p.stop()
	if _, _, err := r.pinNAPIs(ctx, b, p, 1, false); err != nil {
		return fail(err)
	}
	if err := waitTCP(ctx, b.topo.Client, VIP.String()+":80", 5*time.Second); err != nil {
		return fail(err)
	}
	for i := range runs {
		args := []string{"-t1", "-c32", fmt.Sprintf("-d%ds", int(r.o.ConnWindow.Seconds())), "--latency"}
		if !runs[i].KeepAlive {
			args = append(args, "-H", "Connection: close")
		}
		args = append(args, "http://"+VIP.String()+"/")
		out, err := runWrk(ctx, b.topo, r.o.GenCPU, args)
		if err != nil {
			runs[i].Error = err.Error()
			continue
		}
		if err := parseWrk(out, &runs[i]); err != nil {
			runs[i].Error = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return runs
}

func runWrk(ctx context.Context, t *Topology, cpu int, args []string) (string, error) {
	ts, err := lookTool("taskset")
	if err != nil {
		return "", err
	}
	wrk, err := lookTool("wrk")
	if err != nil {
		return "", err
	}
	ipBin, err := lookTool("ip")
	if err != nil {
		return "", err
	}
	full := append([]string{"netns", "exec", t.Client.NS, ts, "-c", fmt.Sprint(cpu), wrk}, args...)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, ipBin, full...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("wrk: %w: %s", err, out)
	}
	return string(out), nil
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, kv := range bi.Settings {
			switch {
			case kv.Key == "vcs.revision" && len(kv.Value) >= 12:
				rev = kv.Value[:12]
			case kv.Key == "vcs.modified" && kv.Value == "true":
				dirty = "+dirty"
			}
		}
		if rev != "" {
			h.Commit = rev + dirty
		}
	}
	if h.Commit == "" {
		// Built with -buildvcs=false: ask git about the current directory.
		if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
			h.Commit = strings.TrimSpace(string(out))
			if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
				h.Commit += "+dirty"
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}

func genNice() int {
	if v, err := strconv.Atoi(os.Getenv("XLB_E2E_NICE")); err == nil {
		return v
	}
	return 10
}
