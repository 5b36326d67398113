package xsk

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxTxWakeups bounds the sendto calls one Transmit or Complete makes. In
// copy mode each sendto sends at most the socket's tx budget (32 packets on
// kernels without XDP_MAX_TX_SKB_BUDGET) and returns EAGAIN if more is
// queued; a few calls drain a batch without stalling the worker.
const maxTxWakeups = 8

// Socket is one AF_XDP socket bound to an interface queue, with its rx and tx
// rings and its own fill and completion rings.
//
// Receive, Transmit, Fill, Complete and Poll must be called from one
// goroutine at a time and never concurrently with Close. After Close they
// return 0 (or ErrClosed).
type Socket struct {
	fd      int
	ifindex int
	queue   int
	umem    *UMEM
	opts    Options
	mode    Mode
	shared  bool

	needWakeup bool
	// busyPoll is set when preferred busy polling is on: Receive then
	// runs the queue's NAPI (recvfrom) whenever the rx ring is empty.
	busyPoll    bool
	busyPollErr error // why the kernel refused busy polling
	// outstanding counts transmitted descriptors not yet seen on the
	// completion ring, so Complete knows whether tx may need a kick.
	outstanding uint64

	rx   ring[Desc]
	tx   ring[Desc]
	fill ring[uint64]
	comp ring[uint64]

	mmaps  [4][]byte
	pollfd [1]unix.PollFd
	dead   [3]uint32 // indices for the rings swapped in by Close
	peer   *Peer     // non-nil for sockets from NewMemSocket

	stats counters

	mu     sync.Mutex
	closed bool
}

// counters are written by the socket's goroutine only (Store of Load+n, no
// locked instruction) and read by Stats from anywhere.
type counters struct {
	rxPackets    atomic.Uint64
	txPackets    atomic.Uint64
	filled       atomic.Uint64
	completed    atomic.Uint64
	txWakeups    atomic.Uint64
	fillWakeups  atomic.Uint64
	busyPolls    atomic.Uint64
	wakeupErrors atomic.Uint64
}

func bump(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

// Stats are the kernel's XDP_STATISTICS for a socket plus counters kept by
// this package.
type Stats struct {
	// Kernel counters.
	RxDropped            uint64 // dropped for reasons other than a full rx ring or empty fill ring
	RxInvalidDescs       uint64 // invalid fill ring descriptors
	TxInvalidDescs       uint64 // invalid tx ring descriptors (dropped, never completed)
	RxRingFull           uint64 // dropped because the rx ring was full
	RxFillRingEmptyDescs uint64 // times the kernel found the fill ring empty
	TxRingEmptyDescs     uint64 // times the kernel found the tx ring empty

	// Counters kept by this package.
	RxPackets    uint64 // descriptors returned by Receive
	TxPackets    uint64 // descriptors queued by Transmit
	Filled       uint64 // addresses posted by Fill
	Completed    uint64 // addresses returned by Complete
	TxWakeups    uint64 // sendto calls made to kick tx
	FillWakeups  uint64 // recvfrom calls made to kick the fill ring
	BusyPolls    uint64 // recvfrom calls made to busy-poll an empty rx ring
	WakeupErrors uint64 // kicks that failed with an unexpected errno

	// State.
	BusyPoll bool   // preferred busy polling is on (Socket.BusyPoll)
	NAPIID   uint32 // the NAPI busy polls run (SO_INCOMING_NAPI_ID); 0 until the kernel knows it
}

// Open creates an AF_XDP socket on the interface queue and binds it, using
// frames from umem. The first socket on a UMEM registers it; later sockets
// share it (XDP_SHARED_UMEM) with their own fill and completion rings and
// must be bound to a different interface or queue.
//
// The socket is created in the network namespace of the calling OS thread.
// Errors wrap ErrNotSupported when the kernel has no AF_XDP or the requested
// mode is unavailable, ErrInvalidConfig for bad options, and the errno.
func Open(ifindex int, queue int, umem *UMEM, opts Options) (*Socket, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if umem == nil {
		return nil, fmt.Errorf("%w: nil umem", ErrInvalidConfig)
	}
	if ifindex <= 0 || queue < 0 {
		return nil, fmt.Errorf("%w: ifindex %d queue %d", ErrInvalidConfig, ifindex, queue)
	}

	umem.mu.Lock()
	defer umem.mu.Unlock()
	if err := umem.refLocked(); err != nil {
		return nil, err
	}
	s, err := openLocked(ifindex, queue, umem, opts)
	if err != nil {
		_ = umem.unrefLocked()
		return nil, err
	}
	umem.sockets = append(umem.sockets, s)
	umem.registered = true
	return s, nil
}

func openLocked(ifindex, queue int, umem *UMEM, opts Options) (*Socket, error) {
	var share *Socket
	if umem.registered && len(umem.sockets) > 0 {
		for _, o := range umem.sockets {
			if o.ifindex == ifindex && o.queue == queue {
				return nil, fmt.Errorf("%w: ifindex %d queue %d already has a socket on this umem "+
					"(sharing one queue's fill and completion rings is not supported)", ErrInvalidConfig, ifindex, queue)
			}
		}
		share = umem.sockets[0]
	}

	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			return nil, fmt.Errorf("xsk: socket: %w (%w)", ErrNotSupported, err)
		}
		return nil, fmt.Errorf("xsk: socket: %w", err)
	}
	s := &Socket{fd: fd, ifindex: ifindex, queue: queue, umem: umem, opts: opts, shared: share != nil}
	s.needWakeup = !opts.DisableNeedWakeup
	if share != nil {
		s.needWakeup = share.needWakeup
	}
	if err := s.setup(share); err != nil {
		s.release()
		return nil, err
	}
	return s, nil
}

// setup registers the UMEM (first socket only), creates and maps the rings
// and binds.
func (s *Socket) setup(share *Socket) error {
	u, o := s.umem, s.opts
	if share == nil {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(unsafe.SliceData(u.mem)))),
			Len:      uint64(len(u.mem)),
			Size:     u.cfg.FrameSize,
			Headroom: u.cfg.Headroom,
		}
		if err := setsockoptXDP(s.fd, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return fmt.Errorf("xsk: register %d-byte umem: %w", len(u.mem), err)
		}
	}
	for _, r := range []struct {
		opt  int
		name string
		size uint32
	}{
		{unix.XDP_UMEM_FILL_RING, "fill", o.FillSize},
		{unix.XDP_UMEM_COMPLETION_RING, "completion", o.CompletionSize},
		{unix.XDP_RX_RING, "rx", o.RxSize},
		{unix.XDP_TX_RING, "tx", o.TxSize},
	} {
		if err := setsockoptXDPUint32(s.fd, r.opt, r.size); err != nil {
			return fmt.Errorf("xsk: set %s ring size %d: %w", r.name, r.size, err)
		}
	}

	var off unix.XDPMmapOffsets
	n, err := getsockoptXDP(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off))
	if err != nil {
		return fmt.Errorf("xsk: get mmap offsets: %w", err)
	}
	if n < unsafe.Sizeof(off) {
		return fmt.Errorf("xsk: kernel without ring flags (XDP_MMAP_OFFSETS v1): %w", ErrNotSupported)
	}

	const descSize, addrSize = uint64(unsafe.Sizeof(Desc{})), 8
	maps := []struct {
		name  string
		pgoff int64
		off   ringOffsets
		size  uint32
		esz   uint64
	}{
		{"rx", unix.XDP_PGOFF_RX_RING, off.Rx, o.RxSize, descSize},
		{"tx", unix.XDP_PGOFF_TX_RING, off.Tx, o.TxSize, descSize},
		{"fill", unix.XDP_UMEM_PGOFF_FILL_RING, off.Fr, o.FillSize, addrSize},
		{"completion", unix.XDP_UMEM_PGOFF_COMPLETION_RING, off.Cr, o.CompletionSize, addrSize},
	}
	for i, m := range maps {
		length := int(m.off.Desc + uint64(m.size)*m.esz)
		mem, err := unix.Mmap(s.fd, m.pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return fmt.Errorf("xsk: mmap %s ring: %w", m.name, err)
		}
		s.mmaps[i] = mem
	}
	if s.rx, err = newRing[Desc](s.mmaps[0], off.Rx, o.RxSize, false); err != nil {
		return fmt.Errorf("xsk: rx ring: %w", err)
	}
	if s.tx, err = newRing[Desc](s.mmaps[1], off.Tx, o.TxSize, true); err != nil {
		return fmt.Errorf("xsk: tx ring: %w", err)
	}
	if s.fill, err = newRing[uint64](s.mmaps[2], off.Fr, o.FillSize, true); err != nil {
		return fmt.Errorf("xsk: fill ring: %w", err)
	}
	if s.comp, err = newRing[uint64](s.mmaps[3], off.Cr, o.CompletionSize, false); err != nil {
		return fmt.Errorf("xsk: completion ring: %w", err)
	}

	if !o.DisableBusyPoll {
		if err := s.setBusyPoll(); err != nil {
			if o.RequireBusyPoll {
				return err
			}
			s.busyPollErr = err
		}
	}

	if err := s.bind(share); err != nil {
		return err
	}

	var xo struct{ flags uint32 }
	if _, err := getsockoptXDP(s.fd, unix.XDP_OPTIONS, unsafe.Pointer(&xo), unsafe.Sizeof(xo)); err == nil {
		s.mode = Copy
		if xo.flags&unix.XDP_OPTIONS_ZEROCOPY != 0 {
			s.mode = ZeroCopy
		}
	} else if share != nil {
		s.mode = share.mode
	}
	if s.mode == Copy {
		// Let one sendto push a whole tx ring instead of 32 frames
		// (Linux 6.17+); older kernels refuse and keep the default.
		_ = setsockoptXDPUint32(s.fd, unix.XDP_MAX_TX_SKB_BUDGET, o.TxSize)
	}
	s.pollfd[0] = unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN}
	return nil
}

// setBusyPoll turns on preferred busy polling. If the kernel refuses one
// of the options it turns busy polling off again (lowering needs no
// privilege) and returns why, wrapping ErrNotSupported.
func (s *Socket) setBusyPoll() error {
	o := s.opts
	for _, so := range []struct {
		name string
		opt  int
		val  int
	}{
		{"SO_BUSY_POLL_BUDGET", unix.SO_BUSY_POLL_BUDGET, o.BusyPollBudget},
		{"SO_PREFER_BUSY_POLL", unix.SO_PREFER_BUSY_POLL, 1},
		{"SO_BUSY_POLL", unix.SO_BUSY_POLL, int(o.BusyPollTimeout / time.Microsecond)},
	} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, so.opt, so.val); err != nil {
			_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, 0)
			_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL, 0)
			return fmt.Errorf("xsk: busy polling: set %s=%d: %w (%w)", so.name, so.val, ErrNotSupported, err)
		}
	}
	s.busyPoll = true
	return nil
}

// bind binds the socket, trying zero-copy then copy in Auto mode and
// retrying while the queue is busy. It records the mode bind accepted.
func (s *Socket) bind(share *Socket) error {
	sa := &unix.SockaddrXDP{Ifindex: uint32(s.ifindex), QueueID: uint32(s.queue)}
	if share != nil {
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(share.fd)
		if err := s.bindRetry(sa); err != nil {
			return fmt.Errorf("xsk: bind ifindex %d queue %d sharing umem of fd %d: %w", s.ifindex, s.queue, share.fd, err)
		}
		s.mode = share.mode
		return nil
	}

	var wake uint16
	if s.needWakeup {
		wake = unix.XDP_USE_NEED_WAKEUP
	}
	try := []Mode{s.opts.Mode}
	if s.opts.Mode == Auto {
		try = []Mode{ZeroCopy, Copy}
	}
	var err error
	for _, m := range try {
		sa.Flags = wake | unix.XDP_COPY
		if m == ZeroCopy {
			sa.Flags = wake | unix.XDP_ZEROCOPY
		}
		if err = s.bindRetry(sa); err == nil {
			s.mode = m
			return nil
		}
		if errors.Is(err, unix.EBUSY) {
			break
		}
	}
	if s.opts.Mode == ZeroCopy && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		return fmt.Errorf("xsk: bind ifindex %d queue %d zerocopy: %w (%w)", s.ifindex, s.queue, ErrNotSupported, err)
	}
	return fmt.Errorf("xsk: bind ifindex %d queue %d %s: %w", s.ifindex, s.queue, s.opts.Mode, err)
}

func (s *Socket) bindRetry(sa *unix.SockaddrXDP) error {
	backoff := s.opts.BindBackoff
	for attempt := 0; ; attempt++ {
		err := unix.Bind(s.fd, sa)
		if !errors.Is(err, unix.EBUSY) || attempt >= s.opts.BindRetries {
			return err
		}
		time.Sleep(backoff)
		backoff *= 2
	}
}

// FD returns the socket's file descriptor, to be stored in an XSKMAP.
func (s *Socket) FD() int { return s.fd }

// Mode returns the mode the kernel bound the socket in (Copy or ZeroCopy),
// read back with XDP_OPTIONS.
func (s *Socket) Mode() Mode { return s.mode }

// Ifindex returns the interface index the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// Queue returns the queue id the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// UMEM returns the socket's UMEM.
func (s *Socket) UMEM() *UMEM { return s.umem }

// Options returns the effective options (defaults applied).
func (s *Socket) Options() Options { return s.opts }

// BusyPoll reports whether preferred busy polling is on and, when the
// options asked for it but the kernel refused, why (an error wrapping
// ErrNotSupported; typically EPERM without CAP_NET_ADMIN, or ENOPROTOOPT
// before Linux 5.11).
func (s *Socket) BusyPoll() (on bool, refused error) { return s.busyPoll, s.busyPollErr }

// NAPIID returns the id of the NAPI the socket's busy polls run
// (SO_INCOMING_NAPI_ID): 0 until the kernel knows it, which is at bind on
// drivers that register their queues' NAPIs and after the first received
// packet otherwise.
func (s *Socket) NAPIID() (uint32, error) {
	if s.peer != nil {
		return 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("xsk: napi id: %w", ErrClosed)
	}
	v, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
	if err != nil {
		return 0, fmt.Errorf("xsk: get napi id of ifindex %d queue %d: %w", s.ifindex, s.queue, err)
	}
	return uint32(v), nil
}

// Receive pops up to len(descs) received descriptors into descs and returns
// how many. Each descriptor's frame now belongs to the caller until it is
// transmitted or given back with Fill or UMEM.Free.
//
// When the rx ring is empty and the socket busy-polls, Receive runs the
// queue's NAPI with a recvfrom(MSG_DONTWAIT) (which also serves as the
// fill-ring wakeup) and looks at the ring again. Without busy polling it
// only kicks the fill ring, and only when the kernel asked for a wakeup.
func (s *Socket) Receive(descs []Desc) int {
	n := s.rx.consume(descs)
	if n == 0 {
		if s.busyPoll {
			s.busyPollRx()
			n = s.rx.consume(descs)
		} else if s.needWakeup && s.fill.needsWakeup() {
			s.wakeFill()
		}
		if n == 0 {
			return 0
		}
	}
	bump(&s.stats.rxPackets, uint64(n))
	return n
}

// Transmit queues up to len(descs) descriptors on the tx ring and returns
// how many were queued; the rest did not fit and still belong to the
// caller. It then kicks the kernel (sendto) if the kernel asked for a
// wakeup, need-wakeup is disabled, or Options.AlwaysKick is set.
// Transmitted frames come back through Complete.
func (s *Socket) Transmit(descs []Desc) int {
	n := s.tx.produce(descs)
	if n > 0 {
		s.outstanding += uint64(n)
		bump(&s.stats.txPackets, uint64(n))
	}
	if len(descs) > 0 && s.shouldKickTx() {
		s.wakeTx()
	}
	return n
}

// Fill posts frame addresses on the fill ring for the kernel to receive
// into and returns how many fit; the rest still belong to the caller.
func (s *Socket) Fill(addrs []uint64) int {
	n := s.fill.produce(addrs)
	if n > 0 {
		bump(&s.stats.filled, uint64(n))
	}
	if s.needWakeup && s.fill.needsWakeup() {
		s.wakeFill()
	}
	return n
}

// Complete pops up to len(addrs) transmitted frame addresses from the
// completion ring and returns how many. While transmitted frames are
// outstanding and the tx ring still holds unsent entries it kicks tx first,
// so a backlog left by an earlier Transmit keeps draining.
func (s *Socket) Complete(addrs []uint64) int {
	if s.outstanding > 0 && s.shouldKickTx() && s.tx.pending() > 0 {
		s.wakeTx()
	}
	n := s.comp.consume(addrs)
	if n > 0 {
		s.outstanding -= min(s.outstanding, uint64(n))
		bump(&s.stats.completed, uint64(n))
	}
	return n
}

// Poll waits until the rx ring has descriptors or timeout passes (negative:
// wait forever). It wakes the kernel as poll(2) on an AF_XDP socket does, so
// it also serves as the fill-ring wakeup in need-wakeup mode. Interrupted
// waits return nil.
func (s *Socket) Poll(timeout time.Duration) error {
	if s.closed {
		return ErrClosed
	}
	if s.fd < 0 {
		return nil
	}
	ms := -1
	if timeout >= 0 {
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	s.pollfd[0].Revents = 0
	if _, err := unix.Poll(s.pollfd[:], ms); err != nil && err != unix.EINTR {
		return fmt.Errorf("xsk: poll fd %d: %w", s.fd, err)
	}
	return nil
}

func (s *Socket) shouldKickTx() bool {
	return s.opts.AlwaysKick || !s.needWakeup || s.tx.needsWakeup()
}

// wakeTx kicks the kernel's tx processing, repeating while it reports
// EAGAIN and makes progress.
func (s *Socket) wakeTx() {
	if s.fd < 0 {
		bump(&s.stats.txWakeups, 1)
		return
	}
	for range maxTxWakeups {
		before := atomic.LoadUint32(s.tx.consumer)
		e := kickTx(s.fd)
		bump(&s.stats.txWakeups, 1)
		switch e {
		case 0, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
			// Done, or transiently unable: the next kick retries.
			return
		case unix.EAGAIN:
			// Budget used up or completion ring full: go on only
			// while the kernel keeps consuming.
			if s.tx.pending() == 0 || atomic.LoadUint32(s.tx.consumer) == before {
				return
			}
		default:
			bump(&s.stats.wakeupErrors, 1)
			return
		}
	}
}

// busyPollRx is recvfrom(MSG_DONTWAIT) on a busy-polling socket: the
// kernel runs the queue's NAPI for up to the busy-poll budget.
func (s *Socket) busyPollRx() {
	bump(&s.stats.busyPolls, 1)
	if s.fd < 0 {
		return
	}
	switch kickRx(s.fd) {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
	default:
		bump(&s.stats.wakeupErrors, 1)
	}
}

func (s *Socket) wakeFill() {
	bump(&s.stats.fillWakeups, 1)
	if s.fd < 0 {
		return
	}
	switch kickRx(s.fd) {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
	default:
		bump(&s.stats.wakeupErrors, 1)
	}
}

// Stats returns the kernel's XDP_STATISTICS and the package's counters. It
// is safe to call from any goroutine.
func (s *Socket) Stats() (Stats, error) {
	st := Stats{
		RxPackets:    s.stats.rxPackets.Load(),
		TxPackets:    s.stats.txPackets.Load(),
		Filled:       s.stats.filled.Load(),
		Completed:    s.stats.completed.Load(),
		TxWakeups:    s.stats.txWakeups.Load(),
		FillWakeups:  s.stats.fillWakeups.Load(),
		BusyPolls:    s.stats.busyPolls.Load(),
		WakeupErrors: s.stats.wakeupErrors.Load(),
		BusyPoll:     s.busyPoll,
	}
	if s.peer != nil {
		s.peer.stats(&st)
		return st, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return st, fmt.Errorf("xsk: stats: %w", ErrClosed)
	}
	var ks unix.XDPStatistics
	if _, err := getsockoptXDP(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&ks), unsafe.Sizeof(ks)); err != nil {
		return st, fmt.Errorf("xsk: get statistics of ifindex %d queue %d: %w", s.ifindex, s.queue, err)
	}
	st.RxDropped = ks.Rx_dropped
	st.RxInvalidDescs = ks.Rx_invalid_descs
	st.TxInvalidDescs = ks.Tx_invalid_descs
	st.RxRingFull = ks.Rx_ring_full
	st.RxFillRingEmptyDescs = ks.Rx_fill_ring_empty_descs
	st.TxRingEmptyDescs = ks.Tx_ring_empty_descs
	if id, err := unix.GetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID); err == nil {
		st.NAPIID = uint32(id)
	}
	return st, nil
}

// Close unbinds the socket, unmaps its rings and closes its descriptor; the
// UMEM is unmapped when its last user closes. Frames still in the socket's
// rings are lost to the free stack. Close is idempotent.
func (s *Socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	err := s.release()

	if s.peer == nil {
		u := s.umem
		u.mu.Lock()
		if i := slices.Index(u.sockets, s); i >= 0 {
			u.sockets = slices.Delete(u.sockets, i, i+1)
		}
		if len(u.sockets) == 0 {
			// The kernel drops its UMEM with the last socket; the
			// next Open registers it again.
			u.registered = false
		}
		if uerr := u.unrefLocked(); err == nil {
			err = uerr
		}
		u.mu.Unlock()
	} else {
		s.umem.mu.Lock()
		if uerr := s.umem.unrefLocked(); err == nil {
			err = uerr
		}
		s.umem.mu.Unlock()
	}
	return err
}

// release swaps in dead rings, unmaps the rings and closes the fd.
func (s *Socket) release() error {
	s.rx = deadRing[Desc](&s.dead)
	s.tx = deadRing[Desc](&s.dead)
	s.fill = deadRing[uint64](&s.dead)
	s.comp = deadRing[uint64](&s.dead)
	var errs []error
	for i, m := range s.mmaps {
		if m != nil {
			if err := unix.Munmap(m); err != nil {
				errs = append(errs, fmt.Errorf("xsk: munmap ring: %w", err))
			}
			s.mmaps[i] = nil
		}
	}
	if s.fd >= 0 {
		if err := unix.Close(s.fd); err != nil {
			errs = append(errs, fmt.Errorf("xsk: close fd %d: %w", s.fd, err))
		}
		s.fd = -1
	}
	return errors.Join(errs...)
}

// Poller waits for any of several sockets to have frames to receive, so a
// worker that owns one socket per interface sleeps on all of them at once.
// Build it once; Wait does not allocate.
type Poller struct {
	fds []unix.PollFd
	mem []*Socket // in-memory sockets, when there is no fd
}

// NewPoller returns a Poller over socks. A Poller over in-memory sockets
// only (NewMemSocket) checks their rx rings every memPollInterval; other
// in-memory sockets are skipped.
func NewPoller(socks []*Socket) *Poller {
	p := &Poller{}
	for _, s := range socks {
		if s.fd >= 0 {
			p.fds = append(p.fds, unix.PollFd{Fd: int32(s.fd), Events: unix.POLLIN})
		} else if s.peer != nil {
			p.mem = append(p.mem, s)
		}
	}
	return p
}

// memPollInterval is how often Wait looks at in-memory sockets' rx rings.
const memPollInterval = 20 * time.Microsecond

// Yield gives the CPU to another thread that is ready to run on it, if
// any (sched_yield(2)). A worker that polls empty rx rings calls it so that
// a NAPI kthread or ksoftirqd on its CPU, which may be what fills those
// rings, is not starved: the kernel only runs a queue's NAPI in the
// worker's own syscalls when busy polling is engaged (see
// Options.DisableBusyPoll and Socket.NAPIID). It costs a few hundred
// nanoseconds when nothing else is runnable.
func (p *Poller) Yield() { yield() }

// Wait blocks until one of the sockets is readable or timeout passes.
func (p *Poller) Wait(timeout time.Duration) error {
	if len(p.fds) == 0 {
		p.waitMem(timeout)
		return nil
	}
	for i := range p.fds {
		p.fds[i].Revents = 0
	}
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	if _, err := unix.Poll(p.fds, ms); err != nil && err != unix.EINTR {
		return fmt.Errorf("xsk: poll %d sockets: %w", len(p.fds), err)
	}
	return nil
}

// waitMem waits until an in-memory socket's rx ring has entries, checking
// every memPollInterval, or timeout passes.
func (p *Poller) waitMem(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		for _, s := range p.mem {
			if s.rx.pending() > 0 {
				return
			}
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		time.Sleep(min(left, memPollInterval))
	}
}
