package e2e

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/xlb/xlb/internal/netns"
)

// Sink is the counting XDP program on the backend side: attached to the
// veth that receives what the balancer forwards, it counts and drops IPv4
// UDP and IP-in-IP frames and passes everything else (ARP, TCP for the
// connection-level runs). A veth runs native XDP in its NAPI, and having
// a program attached is also what lets the peer redirect frames into it.
type Sink struct {
	prog     *ebpf.Program
	counters *ebpf.Map
	link     link.Link
}

// NewSink loads the sink program and attaches it to ifname in h.
func NewSink(h *netns.Host, ifname string) (*Sink, error) {
	s := &Sink{}
	var err error
	s.counters, err = ebpf.NewMap(&ebpf.MapSpec{Name: "e2e_sink", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: sinkCounters})
	if err != nil {
		return nil, fmt.Errorf("e2e: sink map: %w", err)
	}
	if s.prog, err = loadXDP("e2e_sink", sinkProgram(s.counters)); err != nil {
		s.Close()
		return nil, err
	}
	ix, err := h.Ifindex(ifname)
	if err != nil {
		s.Close()
		return nil, err
	}
	err = h.Do(func() error {
		var err error
		s.link, err = attachNative(s.prog, ix)
		return err
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Counted returns the frames counted (and dropped) so far.
func (s *Sink) Counted() (uint64, error) { return sumPerCPU(s.counters, sinkCounted) }

// Passed returns the frames passed to the kernel so far.
func (s *Sink) Passed() (uint64, error) { return sumPerCPU(s.counters, sinkPassed) }

// Close detaches and unloads the sink.
func (s *Sink) Close() error {
	var err error
	if s.link != nil {
		err = s.link.Close()
	}
	if s.prog != nil {
		s.prog.Close()
	}
	if s.counters != nil {
		s.counters.Close()
	}
	return err
}
