package dataplane

import (
	"sync/atomic"
	"testing"

	"github.com/xlb/xlb/internal/xsk"
)

// runnerEnv is a Runner over an in-memory socket whose Peer plays the
// kernel, forwarding DSR traffic for testSpec's service.
type runnerEnv struct {
	r     *Runner
	sock  *xsk.Socket
	peer  *xsk.Peer
	umem  *xsk.UMEM
	snap  atomic.Pointer[Snapshot]
	frame []byte // a TCP ACK to the VIP
}

func newRunnerEnv(t testing.TB, cfg RunnerConfig) *runnerEnv {
	t.Helper()
	e := &runnerEnv{}
	var err error
	if e.umem, err = xsk.NewUMEM(xsk.UMEMConfig{FrameCount: 4096}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.umem.Close() })
	if e.sock, e.peer, err = xsk.NewMemSocket(e.umem, xsk.Options{RxSize: 1024, TxSize: 1024}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.sock.Close() })
	e.snap.Store(mustBuild(t, testSpec(ModeDSR, SchedMaglev, false, 4), nil))
	cfg.Worker = NewWorker(newCT(t, 1<<12), 0)
	cfg.UMEM = e.umem
	cfg.Ports = []Port{{Sock: e.sock, Iface: 0}}
	cfg.Snap = &e.snap
	if cfg.FillTarget == 0 {
		cfg.FillTarget = 1024
	}
	e.r = NewRunner(cfg)
	e.frame = pkt{src: client(1), dst: vip4, sport: 7000, dport: 80, flags: "A", payload: 20}.bytes(t)
	return e
}

// start runs the Runner on its own goroutine until the test ends.
func (e *runnerEnv) start(t testing.TB) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.r.Run()
	}()
	t.Cleanup(func() {
		e.r.Stop()
		<-done
	})
}

// BenchmarkRunner forwards b.N frames through a running Runner, the
// benchmark's goroutine playing the kernel (deliver, drain), so it measures
// the whole I/O loop on two goroutines.
func BenchmarkRunner(b *testing.B) {
	e := newRunnerEnv(b, RunnerConfig{})
	e.start(b)
	b.ReportAllocs()
	b.ResetTimer()
	sent, fwd := 0, 0
	for fwd < b.N {
		for sent < b.N && sent-fwd < 512 && e.peer.Deliver(e.frame) {
			sent++
		}
		fwd += e.peer.Drain(nil)
	}
	b.StopTimer()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
}

// BenchmarkRunnerOnce is one pass of the Runner's loop over a batch of
// BatchSize frames (the Peer delivering and draining them, on the same
// goroutine), reported per packet.
func BenchmarkRunnerOnce(b *testing.B) {
	e := newRunnerEnv(b, RunnerConfig{})
	l := e.r.newLoop()
	s := e.snap.Load()
	now := sec
	pass := func() {
		for range BatchSize {
			e.peer.Deliver(e.frame)
		}
		now += 1000
		if l.once(s, now) != BatchSize {
			b.Fatal("short batch")
		}
		e.peer.Drain(nil)
	}
	pass()
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += BatchSize {
		pass()
	}
	b.StopTimer()
	if st := e.r.Stats(); st.TxDropped != 0 || st.PassDropped != 0 {
		b.Fatalf("runner stats %+v", st)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
}
