package bpf

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// AttachMode is where the XDP program runs, as in the configuration file's
// interfaces[].xdp key.
type AttachMode uint8

const (
	// Auto tries Native and falls back to Generic.
	Auto AttachMode = iota
	// Native runs the program in the driver (XDP_FLAGS_DRV_MODE).
	Native
	// Generic runs it after the kernel built an skb (XDP_FLAGS_SKB_MODE):
	// works on any interface, slower.
	Generic
)

func (m AttachMode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Native:
		return "native"
	case Generic:
		return "generic"
	}
	return fmt.Sprintf("AttachMode(%d)", uint8(m))
}

// ParseAttachMode parses "auto", "native" or "generic".
func ParseAttachMode(s string) (AttachMode, error) {
	for _, m := range []AttachMode{Auto, Native, Generic} {
		if s == m.String() {
			return m, nil
		}
	}
	return Auto, fmt.Errorf("bpf: unknown XDP attach mode %q (want auto, native or generic)", s)
}

// Attachment is an XDP program attached to one interface through a
// bpf_link, possibly pinned on a BPF filesystem (AttachPinned).
type Attachment struct {
	link     link.Link
	mode     AttachMode
	ifindex  int
	pin      string // the link's pin, "" when not pinned
	takeover Takeover
	// The heartbeat of a pinned attachment: hold is the program's hold
	// map (a clone of its descriptor), renewed every holdFor/4.
	hold    *ebpf.Map
	holdFor time.Duration
	stop    chan struct{}
	beating sync.WaitGroup
	once    sync.Once
	err     error
}

// Mode returns the mode the program was attached in: Native or Generic.
func (a *Attachment) Mode() AttachMode { return a.mode }

// Ifindex returns the interface index.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Pin returns the path of the pinned link, "" when it is not pinned.
func (a *Attachment) Pin() string { return a.pin }

// Takeover says what AttachPinned found at the pin.
func (a *Attachment) Takeover() Takeover { return a.takeover }

// Hold returns how long a pinned program holds the traffic it steers
// after Release or after the process ends (0 when not pinned).
func (a *Attachment) Hold() time.Duration { return a.holdFor }

// Close detaches the program, unpinning a pinned link first. It is
// idempotent; after Release it does nothing.
func (a *Attachment) Close() error {
	a.once.Do(func() {
		a.stopHeartbeat()
		if a.hold != nil {
			_ = a.hold.Close()
		}
		if a.pin != "" {
			// Detach now, not when the pin's reference goes (after an
			// RCU grace period).
			_ = a.link.Detach()
			if err := a.link.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				a.err = fmt.Errorf("bpf: unpin %s: %w", a.pin, err)
			}
		}
		if err := a.link.Close(); err != nil && a.err == nil {
			a.err = fmt.Errorf("bpf: detach XDP from ifindex %d: %w", a.ifindex, err)
		}
	})
	return a.err
}

// Release lets go of the link without detaching a pinned one: the program
// stays attached through its pin, holding the frames it matches (dropped,
// as their queues' sockets close with the process) for the hold duration
// from now, until the next AttachPinned on the interface replaces it or
// the pin is removed. An attachment that is not pinned is detached, as by
// Close. Release is idempotent; after Close it does nothing.
func (a *Attachment) Release() error {
	if a.pin == "" {
		return a.Close()
	}
	a.once.Do(func() {
		a.stopHeartbeat()
		if a.hold != nil {
			a.err = setHold(a.hold, a.holdFor)
			_ = a.hold.Close()
		}
		if err := a.link.Close(); err != nil && a.err == nil {
			a.err = fmt.Errorf("bpf: release the link of ifindex %d: %w", a.ifindex, err)
		}
	})
	return a.err
}

// heartbeat renews the hold every holdFor/4 until stopHeartbeat, so that a
// process that dies without Release leaves at least 3/4 of it.
func (a *Attachment) heartbeat() {
	a.stop = make(chan struct{})
	a.beating.Add(1)
	go func() {
		defer a.beating.Done()
		t := time.NewTicker(max(a.holdFor/4, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-a.stop:
				return
			case <-t.C:
				_ = setHold(a.hold, a.holdFor)
			}
		}
	}()
}

func (a *Attachment) stopHeartbeat() {
	if a.stop != nil {
		close(a.stop)
		a.beating.Wait()
		a.stop = nil
	}
}

// Attach attaches the steering program to the interface with a bpf_link
// (Linux 5.9+). Auto tries Native first and falls back to Generic. The
// interface index is resolved in the network namespace of the calling OS
// thread.
func (s *Steering) Attach(ifindex int, mode AttachMode) (*Attachment, error) {
	if s.prog == nil {
		return nil, ErrClosed
	}
	return attachXDP(s.prog, ifindex, mode)
}

// attachXDP attaches prog to the interface with a bpf_link; Auto tries
// Native first and falls back to Generic.
func attachXDP(prog *ebpf.Program, ifindex int, mode AttachMode) (*Attachment, error) {
	try := []AttachMode{mode}
	switch mode {
	case Auto:
		try = []AttachMode{Native, Generic}
	case Native, Generic:
	default:
		return nil, fmt.Errorf("bpf: attach XDP to ifindex %d: unknown mode %d", ifindex, mode)
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPDriverMode
		if m == Generic {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
		if err == nil {
			return &Attachment{link: l, mode: m, ifindex: ifindex}, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m, err))
	}
	err := errs[0]
	if len(errs) == 2 {
		err = fmt.Errorf("%w; %w", errs[0], errs[1])
	}
	return nil, wrapNotSupported(fmt.Errorf("bpf: attach XDP to ifindex %d: %w", ifindex, err))
}
