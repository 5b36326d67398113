package dataplane

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/testutil"
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
// goroutine), reported per packet: frames forwarded, and frames the
// pipeline passes (AF_XDP cannot hand them to the kernel: the runner frees
// and counts them).
func BenchmarkRunnerOnce(b *testing.B) {
	for _, bc := range []struct {
		name string
		dst  netip.Addr
		tx   bool
	}{{"forward", vip4, true}, {"pass", netip.MustParseAddr("192.0.2.99"), false}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newRunnerEnv(b, RunnerConfig{})
			frame := pkt{src: client(1), dst: bc.dst, sport: 7000, dport: 80, flags: "A", payload: 20}.bytes(b)
			l := e.r.newLoop()
			s := e.snap.Load()
			now := sec
			pass := func() {
				for range BatchSize {
					e.peer.Deliver(frame)
				}
				now += 1000
				if l.once(s, now) != BatchSize {
					b.Fatal("short batch")
				}
				if n := e.peer.Drain(nil); (n == BatchSize) != bc.tx {
					b.Fatalf("%d frames transmitted", n)
				}
			}
			pass()
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += BatchSize {
				pass()
			}
			b.StopTimer()
			if st := e.r.Stats(); st.TxDropped != 0 || (st.PassDropped == 0) == !bc.tx {
				b.Fatalf("runner stats %+v", st)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}

// TestRunnerIdleAndBusy drives the Runner's loop step by step with a fake
// clock: a busy worker asks the kernel for frames on every empty pass,
// sleeps after IdleAfter without a frame, and is busy again from the first
// frame on.
func TestRunnerIdleAndBusy(t *testing.T) {
	const us = int64(time.Microsecond)
	var now int64 = sec
	e := newRunnerEnv(t, RunnerConfig{IdleAfter: 100 * time.Microsecond, PollTimeout: time.Millisecond,
		Clock: func() int64 { return now }})
	l := e.r.newLoop()
	busyPolls := func() uint64 {
		st, _ := e.sock.Stats()
		return st.BusyPolls
	}
	// step advances the clock by d, makes one step and returns what it
	// did: "rx" (received), "poll" (busy-polled and yielded), "sleep".
	step := func(d int64) string {
		now += d
		polls, sleeps := busyPolls(), e.r.Stats().Sleeps
		rx := e.r.Stats().RxBatches
		l.step()
		switch st := e.r.Stats(); {
		case st.RxBatches > rx:
			return "rx"
		case st.Sleeps == sleeps+1:
			return "sleep"
		case st.Sleeps == sleeps && busyPolls() == polls+1:
			return "poll"
		}
		return "?"
	}
	expect := func(what string, d int64, want ...string) {
		t.Helper()
		for i, w := range want {
			if got := step(d); got != w {
				t.Fatalf("%s: step %d did %q, want %q", what, i, got, w)
			}
		}
	}
	// Idle from the start: busy-polls until 100µs passed, then sleeps
	// on every step.
	expect("idle", 10*us, "poll", "poll", "poll", "poll", "poll", "poll", "poll", "poll", "poll", "sleep", "sleep")
	expect("idle much later", sec, "sleep")

	// A frame arrives while asleep: received, forwarded, and the worker
	// is busy again for 100µs.
	e.peer.Deliver(e.frame)
	expect("wake", 10*us, "rx", "poll", "poll")
	if n := e.peer.Drain(nil); n != 1 {
		t.Fatalf("%d frames forwarded, want 1", n)
	}
	expect("busy again", 30*us, "poll", "poll", "sleep")

	// Traffic with gaps shorter than IdleAfter never sleeps.
	for i := 0; i < 20; i++ {
		e.peer.Deliver(e.frame)
		expect("steady", 60*us, "rx", "poll")
	}
	if n := e.peer.Drain(nil); n != 20 {
		t.Fatalf("%d frames forwarded, want 20", n)
	}

	// IdleAfter < 0 never sleeps.
	e2 := newRunnerEnv(t, RunnerConfig{IdleAfter: -1, Clock: func() int64 { return now }})
	l2 := e2.r.newLoop()
	for i := 0; i < 10; i++ {
		now += sec
		l2.step()
	}
	if st := e2.r.Stats(); st.Sleeps != 0 {
		t.Fatalf("IdleAfter < 0: %d sleeps", st.Sleeps)
	}
}

// TestRunnerPollSleepsAfterSpins: a Poll worker sleeps after pollSpins
// empty passes whatever the clock says.
func TestRunnerPollSleepsAfterSpins(t *testing.T) {
	e := newRunnerEnv(t, RunnerConfig{Poll: true, PollTimeout: time.Millisecond, Clock: func() int64 { return sec }})
	l := e.r.newLoop()
	for i := 0; i < pollSpins; i++ {
		l.step()
	}
	if st := e.r.Stats(); st.Sleeps != 0 {
		t.Fatalf("slept after %d empty passes", pollSpins)
	}
	l.step()
	l.step()
	if st := e.r.Stats(); st.Sleeps != 2 {
		t.Fatalf("%d sleeps after %d empty passes, want 2", st.Sleeps, pollSpins+2)
	}
	e.peer.Deliver(e.frame)
	l.step()
	if n := e.peer.Drain(nil); n != 1 {
		t.Fatalf("%d frames forwarded, want 1", n)
	}
}

// TestRunnerRunWakesAndStops runs the Runner on its goroutine with the real
// clock: an idle worker goes to sleep, forwards what arrives while it
// sleeps, and Stop ends it.
func TestRunnerRunWakesAndStops(t *testing.T) {
	e := newRunnerEnv(t, RunnerConfig{PollTimeout: 2 * time.Millisecond})
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.r.Run()
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.r.Stats().Sleeps == 0 {
		if time.Now().After(deadline) {
			t.Fatal("idle runner never slept")
		}
		time.Sleep(time.Millisecond)
	}
	e.peer.Deliver(e.frame)
	fwd := 0
	for fwd == 0 && time.Now().Before(deadline) {
		fwd += e.peer.Drain(nil)
		time.Sleep(100 * time.Microsecond)
	}
	if fwd != 1 {
		t.Fatalf("frame delivered to a sleeping runner not forwarded (stats %+v)", e.r.Stats())
	}
	e.r.Stop()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return after Stop")
	}
}

func TestRunnerZeroAllocs(t *testing.T) {
	e := newRunnerEnv(t, RunnerConfig{})
	l := e.r.newLoop()
	pass := func() {
		for range BatchSize {
			e.peer.Deliver(e.frame)
		}
		l.step()
		l.step() // an empty pass too
		e.peer.Drain(nil)
	}
	pass()
	if n := testutil.Mallocs(100, pass); n != 0 {
		t.Fatalf("%d allocations in 100 batches", n)
	}
}
