package dataplane

import (
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/xsk"
)

// Port is one AF_XDP socket of a worker: the worker receives on it and
// transmits on it the frames whose Result.Iface is Iface.
type Port struct {
	Sock  *xsk.Socket
	Iface int // index into Spec.Ifaces
}

// RunnerConfig wires a Worker to its sockets.
type RunnerConfig struct {
	Worker *Worker
	UMEM   *xsk.UMEM // shared by every Port of this worker
	Ports  []Port    // one per interface, all on the same queue
	Snap   *atomic.Pointer[Snapshot]
	// Poll makes the worker sleep in poll(2) (up to PollTimeout at a
	// time) as soon as its rx rings stay empty for a few passes.
	//
	// Without Poll the worker busy-polls: while its rx rings are empty it
	// keeps asking the kernel for frames from its own context (Receive's
	// recvfrom, which runs the queue's NAPI when the socket busy-polls,
	// see xsk.Options.DisableBusyPoll), yielding the CPU between passes
	// to any NAPI kthread or ksoftirqd that shares it; only after
	// IdleAfter without a frame does it sleep in poll(2), and the first
	// frame brings it back to busy polling.
	Poll        bool
	PollTimeout time.Duration
	// IdleAfter is how long a busy-polling worker polls empty rx rings
	// before it sleeps (default DefaultIdleAfter; negative: never sleep).
	IdleAfter time.Duration
	// FillTarget is how many frames each socket keeps posted for receive
	// (default 2048; at most the fill ring size, and the UMEM must hold
	// FillTarget per port plus what is in flight on rx and tx).
	FillTarget int
	// Clock returns monotonic nanoseconds; nil means time since start.
	Clock func() int64
	// OnStart runs on the worker's locked OS thread before the loop (the
	// daemon pins the thread to a CPU there).
	OnStart func()
}

// DefaultIdleAfter is RunnerConfig.IdleAfter's default: long enough to
// ride out the gaps of a steady flow, short enough that an idle worker
// costs next to nothing.
const DefaultIdleAfter = time.Millisecond

// pollSpins is how many empty passes a Poll worker makes before sleeping.
const pollSpins = 64

// RunnerStats are a runner's I/O counters (the pipeline's are in
// Worker.Counters).
type RunnerStats struct {
	RxBatches    uint64
	TxDropped    uint64 // tx ring full: frames freed instead of sent
	PassDropped  uint64 // frames the pipeline would pass to the kernel: AF_XDP cannot, so they are freed
	FillStarved  uint64 // times a fill ring could not be topped up
	CompletedTxs uint64
	Sleeps       uint64 // times the worker went to sleep in poll(2)
}

// Runner moves frames between AF_XDP sockets and a Worker. Run it on its
// own goroutine; it locks that goroutine to an OS thread.
type Runner struct {
	cfg  RunnerConfig
	stop atomic.Bool
	// stats are written by Run's goroutine only, once per pass (Store of
	// Load+n: no locked instruction), and read by Stats from anywhere.
	stats struct {
		rxBatches, txDropped, passDropped, fillStarved, completed, sleeps atomic.Uint64
	}
}

// NewRunner checks cfg and returns a Runner.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.FillTarget <= 0 {
		cfg.FillTarget = 2048
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 100 * time.Millisecond
	}
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = DefaultIdleAfter
	}
	if cfg.Clock == nil {
		start := time.Now()
		cfg.Clock = func() int64 { return int64(time.Since(start)) + int64(time.Second) }
	}
	return &Runner{cfg: cfg}
}

// Stop asks Run to return after its current batch.
func (r *Runner) Stop() { r.stop.Store(true) }

// Stats returns the runner's I/O counters.
func (r *Runner) Stats() RunnerStats {
	return RunnerStats{r.stats.rxBatches.Load(), r.stats.txDropped.Load(), r.stats.passDropped.Load(),
		r.stats.fillStarved.Load(), r.stats.completed.Load(), r.stats.sleeps.Load()}
}

// Run moves frames until Stop. It returns when stopped.
func (r *Runner) Run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	c := &r.cfg
	if c.OnStart != nil {
		c.OnStart()
	}
	l := r.newLoop()
	for !r.stop.Load() {
		l.step()
	}
}

// step is one iteration of Run: a pass over the ports, then, if it found
// nothing, what an idle worker does (see RunnerConfig.Poll).
func (l *loop) step() {
	c := l.c
	now := c.Clock()
	if l.once(c.Snap.Load(), now) > 0 {
		l.lastRx, l.empty = now, 0
		return
	}
	l.empty++
	switch {
	case c.Poll && l.empty <= pollSpins:
	case c.Poll || (c.IdleAfter >= 0 && now-l.lastRx >= int64(c.IdleAfter)):
		// Sleep until a socket is readable. The first frame makes
		// the next pass busy again; a timeout only makes it look.
		bump(&l.r.stats.sleeps, 1)
		_ = l.poller.Wait(c.PollTimeout)
	default:
		// Busy: the pass's Receive already asked the kernel; let a
		// NAPI thread that shares this CPU run before asking again.
		l.poller.Yield()
	}
}

func bump(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

// loop is the state of Run: buffers allocated once, reused every pass.
type loop struct {
	r         *Runner
	c         *RunnerConfig
	u         *xsk.UMEM
	mem       []byte
	frameSize uint64
	txSock    []*xsk.Socket // by interface
	descs     []xsk.Desc
	frames    []encap.Frame
	bases     []uint64
	res       []Result
	txq       [][]xsk.Desc // by interface
	addrs     []uint64
	posted    []int // frames in each port's fill ring (approximate)
	poller    *xsk.Poller

	lastRx int64 // Clock of the last pass that received a frame
	empty  int   // passes in a row that received nothing

	// Counts of the current pass, added to Runner.stats at its end.
	n struct{ rxBatches, txDropped, passDropped, fillStarved, completed uint64 }
}

func (r *Runner) newLoop() *loop {
	c := &r.cfg
	u := c.UMEM
	nIf := 0
	for _, p := range c.Ports {
		nIf = max(nIf, p.Iface+1)
	}
	l := &loop{
		r: r, c: c, u: u, mem: u.Bytes(), frameSize: uint64(u.Config().FrameSize),
		txSock: make([]*xsk.Socket, nIf),
		descs:  make([]xsk.Desc, BatchSize),
		frames: make([]encap.Frame, BatchSize),
		bases:  make([]uint64, BatchSize),
		res:    make([]Result, BatchSize),
		txq:    make([][]xsk.Desc, nIf),
		addrs:  make([]uint64, 4*BatchSize),
		posted: make([]int, len(c.Ports)),
	}
	socks := make([]*xsk.Socket, len(c.Ports))
	for i, p := range c.Ports {
		l.txSock[p.Iface] = p.Sock
		socks[i] = p.Sock
	}
	for i := range l.txq {
		l.txq[i] = make([]xsk.Desc, 0, BatchSize*len(c.Ports))
	}
	l.poller = xsk.NewPoller(socks)
	for i := range c.Ports {
		l.refill(i)
	}
	l.publish()
	l.lastRx = c.Clock()
	return l
}

// publish adds the pass's counts to the Runner's counters.
func (l *loop) publish() {
	st, n := &l.r.stats, &l.n
	if n.rxBatches != 0 {
		bump(&st.rxBatches, n.rxBatches)
	}
	if n.completed != 0 {
		bump(&st.completed, n.completed)
	}
	if n.txDropped|n.passDropped|n.fillStarved != 0 {
		bump(&st.txDropped, n.txDropped)
		bump(&st.passDropped, n.passDropped)
		bump(&st.fillStarved, n.fillStarved)
	}
	*n = struct{ rxBatches, txDropped, passDropped, fillStarved, completed uint64 }{}
}

// refill tops port i's fill ring up to FillTarget.
func (l *loop) refill(i int) {
	need := l.c.FillTarget - l.posted[i]
	for need > 0 {
		k := l.u.AllocBatch(l.addrs[:min(need, len(l.addrs))])
		if k == 0 {
			l.n.fillStarved++
			return
		}
		f := l.c.Ports[i].Sock.Fill(l.addrs[:k])
		if f < k {
			l.u.FreeBatch(l.addrs[f:k])
		}
		l.posted[i] += f
		need -= k
		if f < k {
			return
		}
	}
}

// once makes one pass over every port: receive and process a batch,
// transmit, collect completions, refill, publish the counters. It returns
// the frames received.
func (l *loop) once(s *Snapshot, now int64) int {
	c, u, txSock, nIf := l.c, l.u, l.txSock, len(l.txSock)
	descs, frames, bases, res := l.descs, l.frames, l.bases, l.res
	got := 0
	for pi := range c.Ports {
		n := c.Ports[pi].Sock.Receive(descs)
		if n == 0 {
			continue
		}
		got += n
		l.posted[pi] -= n
		l.n.rxBatches++
		for i := 0; i < n; i++ {
			base := descs[i].Addr &^ (l.frameSize - 1)
			bases[i] = base
			frames[i] = encap.Frame{Buf: l.mem[base : base+l.frameSize], Off: int(descs[i].Addr - base), Len: int(descs[i].Len)}
		}
		c.Worker.SetIngress(c.Ports[pi].Iface)
		c.Worker.Process(s, frames[:n], res[:n], now)
		for i := 0; i < n; i++ {
			if res[i].Action == ActTx && int(res[i].Iface) < nIf && txSock[res[i].Iface] != nil {
				q := &l.txq[res[i].Iface]
				*q = append(*q, xsk.Desc{Addr: bases[i] + uint64(frames[i].Off), Len: uint32(frames[i].Len)})
				continue
			}
			if res[i].Action == ActPass {
				l.n.passDropped++
			}
			u.Free(bases[i])
		}
	}
	for i, q := range l.txq {
		if len(q) == 0 {
			continue
		}
		sent := txSock[i].Transmit(q)
		for _, d := range q[sent:] {
			u.Free(d.Addr)
			l.n.txDropped++
		}
		l.txq[i] = q[:0]
	}
	for pi := range c.Ports {
		for {
			k := c.Ports[pi].Sock.Complete(l.addrs)
			if k == 0 {
				break
			}
			u.FreeBatch(l.addrs[:k])
			l.n.completed += uint64(k)
		}
		// Keep the fill ring full: if the worker is descheduled the
		// kernel lives on what is posted, and an empty fill ring drops.
		if l.posted[pi] <= c.FillTarget-BatchSize {
			l.refill(pi)
		}
	}
	l.publish()
	return got
}
