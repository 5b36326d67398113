package e2e

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestGeneratorSinkKernelForwarding runs the generator and the sink for
// one second through plain kernel forwarding on the lb, paced low enough
// for nothing to be lost, and checks that the frames arrive and that the
// counts add up: every frame the generator sent was counted by the sink.
func TestGeneratorSinkKernelForwarding(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	ctx := context.Background()
	topo, err := Build(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Close(); err != nil {
			t.Error(err)
		}
	})
	sink, err := NewSink(topo.Sink, SinkIf)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	e := &env{topo: topo, dir: t.TempDir(), lbCPUs: []int{0}, logf: t.Logf}
	r, err := e.start(ctx, pathSpec{Kind: KindKernel})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.stop(); err != nil {
			t.Error(err)
		}
	}()
	ix, err := topo.Client.Ifindex(ClientIf)
	if err != nil {
		t.Fatal(err)
	}
	const rate = 20000
	gen, err := NewGenerator(GenConfig{
		Frame: GenFrame{SrcMAC: topo.ClientMAC, DstMAC: topo.LBFrontMAC, Src: ClientAddr, Dst: VIP, DstPort: UDPPort},
		NS:    topo.Client, Ifindex: ix, CPUs: []int{0}, Rate: rate, CallTime: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	if err := gen.CheckLiveFrames(); errors.Is(err, ErrNoLiveFrames) {
		t.Skipf("skipping: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	// The first frames wait in the lb's neighbour queue while it
	// resolves the backend: they are late, not lost.
	s0, _ := gen.Sent()
	c0, _ := sink.Counted()
	start := time.Now()
	gen.Start()
	time.Sleep(time.Second)
	if err := gen.Stop(); err != nil {
		t.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	time.Sleep(200 * time.Millisecond) // in flight
	s1, _ := gen.Sent()
	c1, _ := sink.Counted()
	sent, got := s1-s0, c1-c0
	t.Logf("sent %d frames (%.0f/s, paced to %d/s) in %d calls, sink counted %d; generator CPU %v", sent, float64(sent)/secs, rate, gen.calls.Load(), got, gen.CPUTime())
	if sent < rate/4 {
		t.Fatalf("the generator sent only %d frames in %.1f s at %d/s", sent, secs, rate)
	}
	if got != sent {
		if os.Getenv("XLB_E2E_LOSSY") == "" {
			t.Errorf("sink counted %d of %d frames sent (lost %d)", got, sent, int64(sent)-int64(got))
		}
	}
	if p, _ := sink.Passed(); p > 100 {
		t.Errorf("sink passed %d frames to its kernel: only ARP expected", p)
	}
}
