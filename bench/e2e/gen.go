package e2e

import (
	"errors"
	"fmt"
	"os"

	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/netns"
)

// GenConfig configures a Generator.
type GenConfig struct {
	Frame GenFrame
	// NS is the namespace the generator runs in and Ifindex the
	// interface (in NS) it sends out of: the frames go to its veth peer.
	NS      *netns.Host
	Ifindex int
	// CPUs: one sending thread pinned to each. On a veth the frames a
	// thread sends land in rx queue (its CPU mod the peer's queue count).
	CPUs []int
	// Rate paces each thread to Rate/len(CPUs) frames per second; 0
	// sends as fast as the threads can.
	Rate int
	// Nice is the sending threads' nice value: with a positive one they
	// take only what the other tasks on their CPUs leave.
	Nice int
	// CallTime is about how long one BPF_PROG_TEST_RUN call lasts
	// (default 400 ms): each call has a fixed cost of milliseconds, so
	// calls are long, and the generator stops within about this time.
	CallTime time.Duration
}

// Generator sends UDP frames from an XDP program run in live-frame mode
// (BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES): the kernel runs the
// program over page-pool frames and transmits what it redirects, one
// thread per CPU, with no socket or skb on the way. Every run rewrites the
// whole frame (see generatorProgram).
type Generator struct {
	cfg   GenConfig
	prog  *ebpf.Program
	state *ebpf.Map
	data  []byte

	stop    atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	tids    []int
	errs    []error
	cpuTime time.Duration // of finished threads
	calls   atomic.Uint64
}

// NewGenerator loads the generator program.
func NewGenerator(cfg GenConfig) (*Generator, error) {
	if len(cfg.CPUs) == 0 {
		cfg.CPUs = []int{0}
	}
	if cfg.CallTime <= 0 {
		cfg.CallTime = 400 * time.Millisecond
	}
	if cfg.Frame.Flows <= 0 {
		cfg.Frame.Flows = 10000
	}
	if cfg.Frame.BasePort == 0 {
		cfg.Frame.BasePort = 10000
	}
	if int(cfg.Frame.BasePort)+cfg.Frame.Flows > 65536 {
		return nil, fmt.Errorf("e2e: generator: %d flows from port %d do not fit", cfg.Frame.Flows, cfg.Frame.BasePort)
	}
	if !cfg.Frame.Src.Is4() || !cfg.Frame.Dst.Is4() || len(cfg.Frame.SrcMAC) != 6 || len(cfg.Frame.DstMAC) != 6 {
		return nil, fmt.Errorf("e2e: generator: want IPv4 addresses and 6-byte MACs, got %+v", cfg.Frame)
	}
	g := &Generator{cfg: cfg}
	var err error
	g.state, err = ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_gen", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("e2e: generator map: %w", err)
	}
	var period uint64
	if cfg.Rate > 0 {
		period = uint64(1e12) * uint64(len(cfg.CPUs)) / uint64(cfg.Rate)
	}
	g.prog, err = loadXDP("e2e_gen", generatorProgram(g.state, cfg.Frame, cfg.Ifindex, period))
	if err != nil {
		g.state.Close()
		return nil, err
	}
	g.data, _ = cfg.Frame.template()
	return g, nil
}

// CheckLiveFrames runs the program once in live-frame mode. It returns an
// error wrapping ErrNoLiveFrames when the kernel lacks the mode.
func (g *Generator) CheckLiveFrames() error {
	return g.cfg.NS.Do(func() error {
		_, err := g.prog.Run(&ebpf.RunOptions{Data: g.data, Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES})
		if errors.Is(err, unix.EINVAL) || errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("%w: %v", ErrNoLiveFrames, err)
		}
		return err
	})
}

// Start starts one sending thread per CPU.
func (g *Generator) Start() {
	g.stop.Store(false)
	for _, c := range g.cfg.CPUs {
		g.wg.Add(1)
		go func(cpu int) {
			defer g.wg.Done()
			err := g.cfg.NS.Do(func() error { return g.send(cpu) })
			if err != nil {
				g.mu.Lock()
				g.errs = append(g.errs, err)
				g.mu.Unlock()
			}
		}(c)
	}
}

// send runs on a locked thread inside the namespace.
func (g *Generator) send(cpu int) error {
	var orig, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil {
		return err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("e2e: pin generator to cpu %d: %w", cpu, err)
	}
	defer unix.SchedSetaffinity(0, &orig)
	tid := unix.Gettid()
	if g.cfg.Nice != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, g.cfg.Nice); err != nil {
			return fmt.Errorf("e2e: generator nice %d: %w", g.cfg.Nice, err)
		}
		defer unix.Setpriority(unix.PRIO_PROCESS, tid, 0)
	}
	g.mu.Lock()
	g.tids = append(g.tids, tid)
	g.mu.Unlock()
	c0 := threadCPU()
	defer func() {
		d := threadCPU() - c0
		g.mu.Lock()
		g.cpuTime += d
		for i, t := range g.tids {
			if t == tid {
				g.tids = append(g.tids[:i], g.tids[i+1:]...)
				break
			}
		}
		g.mu.Unlock()
	}()
	repeat := uint32(1 << 16)
	for !g.stop.Load() {
		t := time.Now()
		_, err := g.prog.Run(&ebpf.RunOptions{Data: g.data, Repeat: repeat, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64})
		if err != nil {
			return fmt.Errorf("e2e: generator on cpu %d: %w", cpu, err)
		}
		g.calls.Add(1)
		// Aim at CallTime per call.
		el := time.Since(t)
		if el > 0 {
			r := float64(repeat) * float64(g.cfg.CallTime) / float64(el)
			repeat = uint32(min(max(r, 1<<12), 1<<28))
		}
	}
	return nil
}

// Sent returns the frames the program sent so far (all threads).
func (g *Generator) Sent() (uint64, error) {
	var vals [][2]uint64
	if err := g.state.Lookup(uint32(0), &vals); err != nil {
		return 0, fmt.Errorf("e2e: generator counter: %w", err)
	}
	var s uint64
	for _, v := range vals {
		s += v[0]
	}
	return s, nil
}

// CPUTime is the CPU time the sending threads used so far.
func (g *Generator) CPUTime() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	d := g.cpuTime
	for _, tid := range g.tids {
		t, err := taskCPU(os.Getpid(), tid)
		if err == nil {
			d += t
		}
	}
	return d
}

// Stop stops the threads (each within one call) and returns their
// errors.
func (g *Generator) Stop() error {
	g.stop.Store(true)
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	err := errors.Join(g.errs...)
	g.errs = nil
	return err
}

// Close stops the generator and unloads its program.
func (g *Generator) Close() error {
	err := g.Stop()
	g.prog.Close()
	g.state.Close()
	return err
}

// threadCPU is the calling thread's CPU time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
