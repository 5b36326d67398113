package xsk

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Sentinel errors that callers branch on. Returned errors wrap them, test
// with errors.Is.
var (
	// ErrNotSupported means the kernel lacks AF_XDP (EAFNOSUPPORT) or the
	// requested mode (zero-copy on a driver without it).
	ErrNotSupported = errors.New("xsk: not supported")
	// ErrInvalidConfig means Options or UMEMConfig failed validation.
	ErrInvalidConfig = errors.New("xsk: invalid configuration")
	// ErrClosed means the UMEM or socket was already closed.
	ErrClosed = errors.New("xsk: closed")
)

// Mode is how a socket moves packets between the driver and the UMEM.
type Mode uint8

const (
	// Auto tries zero-copy and falls back to copy mode.
	Auto Mode = iota
	// Copy mode: the kernel copies packets between its buffers and the
	// UMEM. Works on every driver with XDP, including veth.
	Copy
	// ZeroCopy mode: the driver DMAs straight into the UMEM.
	ZeroCopy
)

func (m Mode) String() string {
	switch m {
	case Auto:
		return "auto"
	case Copy:
		return "copy"
	case ZeroCopy:
		return "zerocopy"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// Default ring sizes used when an Options field is zero.
const (
	DefaultRxSize = 2048
	DefaultTxSize = 2048
	// DefaultFillSize is twice DefaultRxSize: see Options.FillSize.
	DefaultFillSize       = 2 * DefaultRxSize
	DefaultCompletionSize = DefaultTxSize
	// MaxRingSize bounds every ring size.
	MaxRingSize = 1 << 20

	// DefaultBusyPollTimeout and DefaultBusyPollBudget are the
	// SO_BUSY_POLL and SO_BUSY_POLL_BUDGET values used when busy polling
	// is on and the Options fields are zero. The budget matches the
	// dataplane's batch of 64 frames.
	DefaultBusyPollTimeout = 20 * time.Microsecond
	DefaultBusyPollBudget  = 64
	// MaxBusyPollBudget is the largest budget the kernel takes (U16_MAX).
	MaxBusyPollBudget = 1<<16 - 1

	// DefaultBindRetries and DefaultBindBackoff govern retrying bind while
	// the queue is still held (EBUSY), typically right after a restart.
	DefaultBindRetries = 5
	DefaultBindBackoff = 20 * time.Millisecond
)

// Options configures a Socket. The zero value selects the defaults.
type Options struct {
	// Mode selects copy or zero-copy; Auto (the zero value) tries
	// zero-copy first and falls back to copy. Sockets joining a shared
	// UMEM inherit the mode of the first socket and ignore this field.
	Mode Mode

	// Ring sizes in entries; each must be a power of two no larger than
	// MaxRingSize. Zero selects the default.
	RxSize uint32
	TxSize uint32
	// FillSize defaults to twice RxSize and may not be smaller than
	// RxSize. Keep it at least twice the number of frames the caller
	// keeps posted for receive: with veth in copy mode a fill ring no
	// larger than the frames given to it has been seen to stall.
	FillSize uint32
	// CompletionSize defaults to TxSize and may not be smaller than it.
	CompletionSize uint32

	// DisableNeedWakeup turns off XDP_USE_NEED_WAKEUP. With need-wakeup
	// (the default) the socket only makes a syscall when the kernel asks
	// for one through the ring's flags word.
	DisableNeedWakeup bool
	// AlwaysKick makes Transmit issue a sendto after every batch even
	// when the kernel did not ask for a wakeup.
	AlwaysKick bool

	// DisableBusyPoll turns off the kernel's preferred busy polling,
	// which Open turns on by default: SO_PREFER_BUSY_POLL=1, SO_BUSY_POLL
	// (BusyPollTimeout) and SO_BUSY_POLL_BUDGET (BusyPollBudget). With it
	// every recvfrom and sendto on the socket runs the NAPI of the queue
	// the socket is bound to, in the caller's context, for up to
	// BusyPollBudget packets (Receive makes that recvfrom whenever the rx
	// ring is empty), and the kernel leaves that NAPI to the caller
	// instead of running it from the interrupt or the NAPI kthread as long
	// as the caller keeps polling, provided the interface defers its
	// interrupts (napi_defer_hard_irqs and gro_flush_timeout, see package
	// napi). Busy polling engages once the kernel knows the queue's NAPI:
	// at bind on drivers that report it, otherwise with the first packet
	// received.
	//
	// Setting the options needs CAP_NET_ADMIN and Linux 5.11. When the
	// kernel refuses them Open goes on without busy polling (see
	// Socket.BusyPoll) unless RequireBusyPoll is set.
	DisableBusyPoll bool
	// RequireBusyPoll makes Open fail with an error wrapping
	// ErrNotSupported when the kernel refuses the busy-poll options.
	RequireBusyPoll bool
	// BusyPollTimeout is SO_BUSY_POLL, rounded down to microseconds: how
	// long a blocking read would busy-poll. The socket's reads never
	// block, so it only has to be non-zero; zero selects
	// DefaultBusyPollTimeout.
	BusyPollTimeout time.Duration
	// BusyPollBudget is SO_BUSY_POLL_BUDGET, the most packets one busy
	// poll processes (up to MaxBusyPollBudget); zero selects
	// DefaultBusyPollBudget.
	BusyPollBudget int

	// BindRetries is how many times bind is retried on EBUSY; zero means
	// DefaultBindRetries, negative means no retry. BindBackoff is the
	// first wait, doubled after each retry (default DefaultBindBackoff).
	BindRetries int
	BindBackoff time.Duration
}

// withDefaults returns o with zero fields replaced by defaults.
func (o Options) withDefaults() Options {
	if o.RxSize == 0 {
		o.RxSize = DefaultRxSize
	}
	if o.TxSize == 0 {
		o.TxSize = DefaultTxSize
	}
	if o.FillSize == 0 {
		o.FillSize = 2 * o.RxSize
	}
	if o.CompletionSize == 0 {
		o.CompletionSize = o.TxSize
	}
	if o.BusyPollTimeout == 0 {
		o.BusyPollTimeout = DefaultBusyPollTimeout
	}
	if o.BusyPollBudget == 0 {
		o.BusyPollBudget = DefaultBusyPollBudget
	}
	if o.BindRetries == 0 {
		o.BindRetries = DefaultBindRetries
	}
	if o.BindBackoff == 0 {
		o.BindBackoff = DefaultBindBackoff
	}
	return o
}

// Validate checks o after applying defaults. Errors wrap ErrInvalidConfig.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Mode > ZeroCopy {
		return fmt.Errorf("%w: unknown mode %d", ErrInvalidConfig, o.Mode)
	}
	for _, r := range []struct {
		name string
		size uint32
	}{{"rx", o.RxSize}, {"tx", o.TxSize}, {"fill", o.FillSize}, {"completion", o.CompletionSize}} {
		if r.size&(r.size-1) != 0 || r.size > MaxRingSize {
			return fmt.Errorf("%w: %s ring size %d is not a power of two up to %d", ErrInvalidConfig, r.name, r.size, MaxRingSize)
		}
	}
	if o.FillSize < o.RxSize {
		return fmt.Errorf("%w: fill ring (%d) smaller than rx ring (%d)", ErrInvalidConfig, o.FillSize, o.RxSize)
	}
	if o.CompletionSize < o.TxSize {
		return fmt.Errorf("%w: completion ring (%d) smaller than tx ring (%d)", ErrInvalidConfig, o.CompletionSize, o.TxSize)
	}
	if o.BusyPollTimeout < time.Microsecond || o.BusyPollTimeout > math.MaxInt32*time.Microsecond {
		return fmt.Errorf("%w: busy-poll timeout %v is not between 1µs and %v", ErrInvalidConfig, o.BusyPollTimeout, math.MaxInt32*time.Microsecond)
	}
	if o.BusyPollBudget < 0 || o.BusyPollBudget > MaxBusyPollBudget {
		return fmt.Errorf("%w: busy-poll budget %d is not between 1 and %d", ErrInvalidConfig, o.BusyPollBudget, MaxBusyPollBudget)
	}
	if o.BindBackoff < 0 {
		return fmt.Errorf("%w: negative bind backoff %v", ErrInvalidConfig, o.BindBackoff)
	}
	return nil
}
