package bpf

import (
	"fmt"
	"sync"

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

// Attachment is the steering program attached to one interface through a
// bpf_link. Closing it detaches the program.
type Attachment struct {
	link    link.Link
	mode    AttachMode
	ifindex int
	once    sync.Once
	err     error
}

// Mode returns the mode the program was attached in: Native or Generic.
func (a *Attachment) Mode() AttachMode { return a.mode }

// Ifindex returns the interface index.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Close detaches the program. It is idempotent.
func (a *Attachment) Close() error {
	a.once.Do(func() {
		if err := a.link.Close(); err != nil {
			a.err = fmt.Errorf("bpf: detach XDP from ifindex %d: %w", a.ifindex, err)
		}
	})
	return a.err
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
