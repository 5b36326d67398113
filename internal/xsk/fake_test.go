package xsk

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

func newMemPair(t testing.TB, cfg UMEMConfig, o Options) (*UMEM, *Socket, *Peer) {
	t.Helper()
	u := newTestUMEM(t, cfg)
	s, p, err := NewMemSocket(u, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return u, s, p
}

func TestMemSocketRoundTrip(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameCount: 64}, Options{RxSize: 16, TxSize: 16})

	addrs := make([]uint64, 32)
	n := u.AllocBatch(addrs)
	if got := s.Fill(addrs[:n]); got != 32 {
		t.Fatalf("Fill(32) into a 32-entry fill ring = %d", got)
	}
	if p.FillLevel() != 32 {
		t.Fatalf("fill level %d", p.FillLevel())
	}
	for i := range 20 {
		ok := p.Deliver(bytes.Repeat([]byte{byte(i)}, 60+i))
		if want := i < 16; ok != want { // rx ring holds 16
			t.Fatalf("Deliver %d = %v, want %v", i, ok, want)
		}
	}
	descs := make([]Desc, 64)
	n = s.Receive(descs)
	if n != 16 {
		t.Fatalf("Receive = %d, want 16", n)
	}
	for i, d := range descs[:n] {
		if u.Headroom(d.Addr) != uint32(u.DataOffset()) || d.Len != uint32(60+i) {
			t.Fatalf("desc %d = %+v", i, d)
		}
		if f := u.Frame(d.Addr, d.Len); f[0] != byte(i) || f[len(f)-1] != byte(i) {
			t.Fatalf("desc %d: wrong bytes", i)
		}
	}
	// Prepend a 4-byte header to the first packet and send them all back.
	if !u.Prepend(&descs[0], 4) {
		t.Fatal("prepend failed")
	}
	copy(u.Frame(descs[0].Addr, 4), "HDR!")
	if got := s.Transmit(descs[:n]); got != 16 {
		t.Fatalf("Transmit = %d", got)
	}
	var sent [][]byte
	if got := p.Drain(func(d Desc, f []byte) { sent = append(sent, append([]byte(nil), f...)) }); got != 16 {
		t.Fatalf("Drain = %d", got)
	}
	if string(sent[0][:4]) != "HDR!" || len(sent[0]) != 64 || sent[0][4] != 0 {
		t.Fatalf("first transmitted frame %q", sent[0][:8])
	}
	done := make([]uint64, 64)
	if got := s.Complete(done); got != 16 {
		t.Fatalf("Complete = %d", got)
	}
	u.FreeBatch(done[:16])
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.RxPackets != 16 || st.TxPackets != 16 || st.Completed != 16 || st.Filled != 32 || st.RxRingFull != 4 {
		t.Fatalf("stats %+v", st)
	}
	// 16 frames are still on the fill ring, 32 were never filled, 16 came
	// back through completion.
	if u.FreeFrames() != 64-16 {
		t.Fatalf("free frames %d", u.FreeFrames())
	}
}

func TestMemSocketFillEmptyAndInvalidTx(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameSize: 2048, FrameCount: 8}, Options{RxSize: 8, TxSize: 8})
	if p.Deliver(make([]byte, 64)) {
		t.Fatal("Deliver with an empty fill ring succeeded")
	}
	a, _ := u.Alloc()
	s.Fill([]uint64{a})
	if p.Deliver(make([]byte, 2048)) {
		t.Fatal("Deliver of a packet larger than the frame succeeded")
	}
	bad := []Desc{{Addr: a, Len: 0}, {Addr: a + 2000, Len: 100}, {Addr: a, Len: 64}}
	s.Transmit(bad)
	if n := p.Drain(nil); n != 3 {
		t.Fatalf("Drain = %d", n)
	}
	done := make([]uint64, 4)
	if n := s.Complete(done); n != 1 || done[0] != a {
		t.Fatalf("Complete = %d %v: only the valid descriptor completes", n, done)
	}
	st, _ := s.Stats()
	if st.RxFillRingEmptyDescs != 1 || st.RxDropped != 1 || st.TxInvalidDescs != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMemSocketNeedWakeup(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameCount: 16}, Options{RxSize: 8, TxSize: 8, DisableBusyPoll: true})
	a, _ := u.Alloc()
	d := []Desc{{Addr: a + 256, Len: 60}}
	var dst [8]Desc
	var done [8]uint64

	s.Transmit(d)
	s.Fill([]uint64{a})
	s.Receive(dst[:])
	if st, _ := s.Stats(); st.TxWakeups != 0 || st.FillWakeups != 0 {
		t.Fatalf("kicked without NEED_WAKEUP: %+v", st)
	}
	p.Drain(nil)
	s.Complete(done[:])

	p.SetTxNeedWakeup(true)
	p.SetFillNeedWakeup(true)
	s.Transmit(d)
	if st, _ := s.Stats(); st.TxWakeups != 1 {
		t.Fatalf("tx wakeups %d, want 1", st.TxWakeups)
	}
	s.Complete(done[:]) // tx ring still holds the descriptor: kick again
	if st, _ := s.Stats(); st.TxWakeups != 2 {
		t.Fatalf("tx wakeups after Complete with pending tx %d, want 2", st.TxWakeups)
	}
	p.Drain(nil)
	s.Complete(done[:]) // tx ring empty: no kick
	if st, _ := s.Stats(); st.TxWakeups != 2 {
		t.Fatalf("tx wakeups after drained Complete %d, want 2", st.TxWakeups)
	}
	s.Receive(dst[:]) // nothing received and the fill ring asks for a wakeup
	if st, _ := s.Stats(); st.FillWakeups != 1 {
		t.Fatalf("fill wakeups %d, want 1", st.FillWakeups)
	}

	// Without need-wakeup every Transmit kicks.
	_, s2, _ := newMemPair(t, UMEMConfig{FrameCount: 16}, Options{RxSize: 8, TxSize: 8, DisableNeedWakeup: true})
	s2.Transmit(d)
	s2.Transmit(d)
	if st, _ := s2.Stats(); st.TxWakeups != 2 {
		t.Fatalf("tx wakeups without need-wakeup %d, want 2", st.TxWakeups)
	}
}

// TestMemSocketBusyPoll checks that a busy-polling socket kicks the kernel
// on every Receive that finds the rx ring empty, and only then.
func TestMemSocketBusyPoll(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameCount: 16}, Options{RxSize: 8, TxSize: 8})
	if on, err := s.BusyPoll(); !on || err != nil {
		t.Fatalf("BusyPoll() = %v, %v; want on by default", on, err)
	}
	var dst [8]Desc
	for i := 0; i < 3; i++ {
		if n := s.Receive(dst[:]); n != 0 {
			t.Fatalf("Receive = %d on an empty ring", n)
		}
	}
	a, _ := u.Alloc()
	s.Fill([]uint64{a})
	if !p.Deliver(make([]byte, 60)) {
		t.Fatal("Deliver")
	}
	if n := s.Receive(dst[:]); n != 1 {
		t.Fatalf("Receive = %d, want 1", n)
	}
	st, _ := s.Stats()
	if st.BusyPolls != 3 || st.FillWakeups != 0 || !st.BusyPoll {
		t.Fatalf("stats %+v: want 3 busy polls, no fill wakeups", st)
	}

	_, s2, _ := newMemPair(t, UMEMConfig{FrameCount: 16}, Options{RxSize: 8, TxSize: 8, DisableBusyPoll: true})
	s2.Receive(dst[:])
	if on, _ := s2.BusyPoll(); on {
		t.Fatal("DisableBusyPoll: BusyPoll() = true")
	}
	if st, _ := s2.Stats(); st.BusyPolls != 0 {
		t.Fatalf("DisableBusyPoll: %d busy polls", st.BusyPolls)
	}
}

// TestMemPollerWakes: a Poller over an in-memory socket returns when the
// peer delivers a frame, or at the timeout.
func TestMemPollerWakes(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameCount: 16}, Options{RxSize: 8, TxSize: 8})
	a, _ := u.Alloc()
	s.Fill([]uint64{a})
	pl := NewPoller([]*Socket{s})
	start := time.Now()
	if err := pl.Wait(5 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 5*time.Millisecond {
		t.Fatalf("Wait on an empty ring returned after %v, want the 5ms timeout", d)
	}
	go func() {
		time.Sleep(time.Millisecond)
		p.Deliver(make([]byte, 60))
	}()
	start = time.Now()
	if err := pl.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Wait returned %v after the frame", d)
	}
	var dst [8]Desc
	if n := s.Receive(dst[:]); n != 1 {
		t.Fatalf("Receive = %d after Wait", n)
	}
}

// TestMemSocketConcurrentPeer runs the peer on its own goroutine, as the
// kernel would be, and forwards every received frame back out.
func TestMemSocketConcurrentPeer(t *testing.T) {
	const total = 20000
	u, s, p := newMemPair(t, UMEMConfig{FrameSize: 2048, FrameCount: 256}, Options{RxSize: 64, TxSize: 64})
	addrs := make([]uint64, 128)
	s.Fill(addrs[:u.AllocBatch(addrs)])

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pkt := make([]byte, 100)
		for sent, got := 0, 0; sent < total || got < total; {
			if sent < total {
				pkt[0] = byte(sent)
				if p.Deliver(pkt) {
					sent++
				}
			}
			got += p.Drain(func(d Desc, f []byte) {})
		}
	}()
	descs := make([]Desc, 32)
	done := make([]uint64, 64)
	var seen int
	for seen < total {
		n := s.Receive(descs)
		for _, d := range descs[:n] {
			if f := u.Frame(d.Addr, d.Len); f[0] != byte(seen) {
				t.Errorf("frame %d starts with %d", seen, f[0])
			}
			seen++
		}
		for q := 0; q < n; {
			q += s.Transmit(descs[q:n])
		}
		c := s.Complete(done)
		for off := 0; off < c; {
			off += s.Fill(done[off:c])
		}
	}
	wg.Wait()
}

// TestZeroAllocs checks the per-packet API allocates nothing.
func TestZeroAllocs(t *testing.T) {
	u, s, p := newMemPair(t, UMEMConfig{FrameSize: 2048, FrameCount: 256}, Options{RxSize: 64, TxSize: 64})
	p.SetTxNeedWakeup(true)
	p.SetFillNeedWakeup(true)
	addrs := make([]uint64, 128)
	s.Fill(addrs[:u.AllocBatch(addrs)])
	pkt := make([]byte, 64)
	descs := make([]Desc, 32)
	done := make([]uint64, 32)
	allocs := testing.AllocsPerRun(1000, func() {
		for range 32 {
			p.Deliver(pkt)
		}
		n := s.Receive(descs)
		s.Transmit(descs[:n])
		p.Drain(nil)
		c := s.Complete(done)
		s.Fill(done[:c])
		u.Alloc()
		u.Free(done[0])
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch, want 0", allocs)
	}
}

// BenchmarkForward measures one 32-frame batch through the socket side of
// the rings (Receive, Transmit, Complete, Fill); the peer's work is
// included, so this is an upper bound on ring overhead.
func BenchmarkForward(b *testing.B) {
	u, s, p := newMemPair(b, UMEMConfig{FrameSize: 2048, FrameCount: 512}, Options{RxSize: 256, TxSize: 256})
	addrs := make([]uint64, 256)
	s.Fill(addrs[:u.AllocBatch(addrs)])
	pkt := make([]byte, 64)
	descs := make([]Desc, 32)
	done := make([]uint64, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		for range 32 {
			p.Deliver(pkt)
		}
		n := s.Receive(descs)
		s.Transmit(descs[:n])
		p.Drain(nil)
		c := s.Complete(done)
		s.Fill(done[:c])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/frame")
}

// BenchmarkSocketRings measures only the socket's four ring calls per
// 32-descriptor batch, with the peer's side done by raw ring operations.
func BenchmarkSocketRings(b *testing.B) {
	u, s, p := newMemPair(b, UMEMConfig{FrameSize: 2048, FrameCount: 512}, Options{RxSize: 256, TxSize: 256})
	_ = u
	in := make([]Desc, 32)
	for i := range in {
		in[i] = Desc{Addr: uint64(i) * 2048, Len: 64}
	}
	addrs := make([]uint64, 32)
	descs := make([]Desc, 32)
	done := make([]uint64, 32)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.rx.produce(in)
		n := s.Receive(descs)
		s.Transmit(descs[:n])
		p.tx.consume(descs)
		for i := range n {
			addrs[i] = descs[i].Addr
		}
		p.comp.produce(addrs[:n])
		c := s.Complete(done)
		s.Fill(done[:c])
		p.fill.consume(addrs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*32), "ns/desc")
}
