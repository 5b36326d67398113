package health

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Options configure a Manager. Every field is optional.
type Options struct {
	// Log receives every transition (Info "health transition": key, from,
	// to, reason), every hold (Warn "dampened": key, held_until, flaps,
	// reason), every invalid target (Error) and a summary of each Set that
	// changed something (Info). The zero Logger logs nothing.
	Log zerolog.Logger
	// OnChange is called on every state transition, from one manager
	// goroutine, in order, never while the manager holds a lock. It may call
	// Status, All and Counters, but not Set or Close.
	OnChange func(key string, st Status)
	// Dial opens every probe connection ("tcp" or "udp"); default a
	// net.Dialer (bound to Source if set).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Now is the clock for timestamps, the flap window and holds (tests).
	// Timers and latencies use the real clock. Default time.Now.
	Now func() time.Time
	// Source, if valid, is the local address the default dialer binds for
	// targets of its family; otherwise the kernel picks the source by route.
	// Never an SNAT address (see the package comment).
	Source netip.Addr
	// Jitter returns the delay of a target's first check; default a uniform
	// random duration in [0, interval).
	Jitter func(interval time.Duration) time.Duration
	// Prober sends the datapath probes (TypeDatapath); default raw
	// sockets (NewRawProber), opened at the first such probe and closed by
	// Close.
	Prober Prober
}

// Manager runs the checks of a set of targets. Its methods are safe for
// concurrent use.
type Manager struct {
	o   Options
	log zerolog.Logger

	mu      sync.Mutex
	targets map[string]*checker
	closed  bool
	ctr     Counters
	queue   []note // transitions waiting for OnChange

	wg        sync.WaitGroup // armed timers plus running checks
	closeOnce sync.Once
	notify    chan struct{}  // queue is not empty (capacity 1)
	quit      chan struct{}  // closed by Close
	nwg       sync.WaitGroup // the notifier goroutine

	rawOnce sync.Once
	raw     *RawProber // the default Prober, made at the first datapath probe
}

type note struct {
	key string
	st  Status
}

// checker is one target. key and t are immutable; the rest is guarded by
// Manager.mu.
type checker struct {
	key    string
	t      Target // Spec with defaults
	ctx    context.Context
	cancel context.CancelFunc
	timer  *time.Timer // nil when never probed (none, invalid)

	stopped    bool
	st         Status
	succ, fail int         // consecutive successes / failures
	flaps      []time.Time // Up<->Down changes within the flap window
}

// NewManager returns a Manager with no targets.
func NewManager(o Options) *Manager {
	m := &Manager{
		o:       o,
		log:     o.Log,
		targets: make(map[string]*checker),
		notify:  make(chan struct{}, 1),
		quit:    make(chan struct{}),
	}
	if m.o.Now == nil {
		m.o.Now = time.Now
	}
	if m.o.Jitter == nil {
		m.o.Jitter = func(d time.Duration) time.Duration {
			if d <= 0 {
				return 0
			}
			return rand.N(d)
		}
	}
	if m.o.Dial == nil {
		m.o.Dial = m.dialDefault
	}
	if m.o.OnChange != nil {
		m.nwg.Add(1)
		go m.notifier()
	}
	return m
}

func (m *Manager) dialDefault(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	if src := m.o.Source; src.IsValid() {
		if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Unmap().Is4() == src.Unmap().Is4() {
			switch network {
			case "tcp", "tcp4", "tcp6":
				d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
			case "udp", "udp4", "udp6":
				d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
			}
		}
	}
	return d.DialContext(ctx, network, addr)
}

// Set makes targets the set of checked targets. New keys start Unknown
// (type none: Up) and are first checked after a random fraction of their
// Interval; keys that are gone stop (a check in flight is cancelled and its
// result dropped); a key whose Addr or Spec (after defaults) changed starts
// over as new. Unchanged keys keep their state and timing. An invalid
// target (see Target.Validate) is tracked as Unknown with the reason in
// LastError and never probed. If a key repeats, the last one wins. Set does
// not call OnChange and does not wait for cancelled checks.
func (m *Manager) Set(targets []Target) {
	type bad struct {
		key string
		err error
	}
	var invalid []bad
	var added, restarted, removed int

	now := m.o.Now()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	seen := make(map[string]struct{}, len(targets))
	for _, t := range targets {
		t.Spec = t.Spec.WithDefaults()
		seen[t.Key] = struct{}{}
		if c, ok := m.targets[t.Key]; ok {
			if c.t == t {
				continue
			}
			m.stop(c)
			restarted++
		} else {
			added++
		}
		c, err := m.start(t, now)
		if err != nil {
			invalid = append(invalid, bad{t.Key, err})
		}
		m.targets[t.Key] = c
	}
	for k, c := range m.targets {
		if _, ok := seen[k]; !ok {
			m.stop(c)
			delete(m.targets, k)
			removed++
		}
	}
	total := len(m.targets)
	m.mu.Unlock()

	for _, b := range invalid {
		m.log.Error().Str("key", b.key).Err(b.err).Msg("health check not started: invalid target")
	}
	if added+restarted+removed > 0 {
		m.log.Info().Int("added", added).Int("restarted", restarted).Int("removed", removed).
			Int("targets", total).Msg("health targets set")
	}
}

// start makes the checker of t and arms its first check. Called with m.mu held.
func (m *Manager) start(t Target, now time.Time) (*checker, error) {
	c := &checker{key: t.Key, t: t, st: Status{State: Unknown, Since: now}}
	if err := t.Validate(); err != nil {
		c.st.LastResult = "invalid: " + err.Error()
		c.st.LastError = c.st.LastResult
		return c, err
	}
	if t.Spec.Type == TypeNone {
		c.st.State = Up
		c.st.LastResult = "not checked (type none)"
		return c, nil
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	m.wg.Add(1)
	c.timer = time.AfterFunc(m.o.Jitter(t.Spec.Interval), func() { m.fire(c) })
	return c, nil
}

// stop ends c's checks. Called with m.mu held.
func (m *Manager) stop(c *checker) {
	if c.stopped {
		return
	}
	c.stopped = true
	if c.cancel != nil {
		c.cancel()
	}
	// Stop returning false means the callback has started; it sees
	// c.stopped and releases its own count.
	if c.timer != nil && c.timer.Stop() {
		m.wg.Done()
	}
}

// fire runs one check of c (in the timer's goroutine) and arms the next.
func (m *Manager) fire(c *checker) {
	defer m.wg.Done()
	start := time.Now()
	ok, reason, skip := m.probe(c.ctx, c.t)
	latency := time.Since(start)

	m.mu.Lock()
	if c.stopped {
		m.mu.Unlock()
		return
	}
	var ev event
	if skip {
		// The check could not be made (no raw sockets): say so, decide nothing.
		c.st.LastCheck, c.st.LastResult = m.o.Now(), reason
	} else {
		ev = m.record(c, ok, reason, latency, m.o.Now())
	}
	m.mu.Unlock()

	ev.log(m.log, c.key)

	m.mu.Lock()
	if !c.stopped {
		m.wg.Add(1)
		c.timer.Reset(max(0, c.t.Spec.Interval-time.Since(start)))
	}
	m.mu.Unlock()
}

// event is what record decided, logged after the lock is released.
type event struct {
	transition bool
	from, to   State
	reason     string
	dampened   bool
	heldUntil  time.Time
	flaps      int
	holdOver   bool
}

func (ev *event) log(l zerolog.Logger, key string) {
	if ev.holdOver {
		l.Info().Str("key", key).Msg("health hold over")
	}
	if ev.dampened {
		l.Warn().Str("key", key).Time("held_until", ev.heldUntil).Int("flaps", ev.flaps).
			Str("reason", ev.reason).Msg("dampened")
	}
	if ev.transition {
		l.Info().Str("key", key).Stringer("from", ev.from).Stringer("to", ev.to).
			Str("reason", ev.reason).Msg("health transition")
	}
}

// record applies one check result to c. Called with m.mu held.
func (m *Manager) record(c *checker, ok bool, reason string, latency time.Duration, now time.Time) event {
	var ev event
	s := &c.t.Spec
	st := &c.st
	m.ctr.Checks++
	st.LastCheck = now
	st.LastResult = reason
	st.LatencyMS = float64(latency) / float64(time.Millisecond)
	if !st.HeldUntil.IsZero() && !now.Before(st.HeldUntil) {
		st.HeldUntil = time.Time{}
		ev.holdOver = true
	}
	var to State
	if ok {
		c.fail = 0
		if !st.HeldUntil.IsZero() {
			c.succ = 0
			m.ctr.HeldSuccesses++
			return ev
		}
		c.succ++
		if st.State == Up || c.succ < s.Rise {
			return ev
		}
		to = Up
	} else {
		m.ctr.Failures++
		st.LastError = reason
		c.succ = 0
		c.fail++
		if st.State == Down || c.fail < s.Fall {
			return ev
		}
		to = Down
	}

	from := st.State
	ev.reason = reason
	if from != Unknown && s.FlapLimit >= 0 {
		keep := c.flaps[:0]
		for _, t := range c.flaps {
			if now.Sub(t) < s.FlapWindow {
				keep = append(keep, t)
			}
		}
		c.flaps = keep
		if len(c.flaps)+1 > s.FlapLimit {
			ev.dampened, ev.flaps = true, len(c.flaps)+1
			st.HeldUntil = now.Add(s.Hold)
			ev.heldUntil = st.HeldUntil
			c.flaps = c.flaps[:0]
			c.succ = 0
			m.ctr.Dampened++
			if to == Up {
				return ev
			}
		} else {
			c.flaps = append(c.flaps, now)
		}
	}

	ev.transition, ev.from, ev.to = true, from, to
	st.State = to
	st.Since = now
	st.Transitions++
	m.ctr.Transitions++
	switch {
	case from == Up && to == Down:
		m.ctr.UpToDown++
	case from == Down && to == Up:
		m.ctr.DownToUp++
	}
	if m.o.OnChange != nil {
		m.queue = append(m.queue, note{c.key, *st})
		select {
		case m.notify <- struct{}{}:
		default:
		}
	}
	return ev
}

// notifier delivers queued transitions to OnChange until Close.
func (m *Manager) notifier() {
	defer m.nwg.Done()
	for {
		select {
		case <-m.quit:
			return
		case <-m.notify:
		}
		m.mu.Lock()
		q := m.queue
		m.queue = nil
		m.mu.Unlock()
		for _, n := range q {
			select {
			case <-m.quit:
				return
			default:
			}
			m.o.OnChange(n.key, n.st)
		}
	}
}

// Status returns the status of the target with key.
func (m *Manager) Status(key string) (Status, bool) {
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.targets[key]
	if !ok {
		return Status{}, false
	}
	return c.status(now), true
}

// All returns the status of every target, by key.
func (m *Manager) All() map[string]Status {
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	all := make(map[string]Status, len(m.targets))
	for k, c := range m.targets {
		all[k] = c.status(now)
	}
	return all
}

func (c *checker) status(now time.Time) Status {
	st := c.st
	if !st.HeldUntil.IsZero() && !now.Before(st.HeldUntil) {
		st.HeldUntil = time.Time{} // the hold is over; the next check notices
	}
	return st
}

// Counters returns the manager's totals.
func (m *Manager) Counters() Counters {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctr
	c.Targets = uint64(len(m.targets))
	return c
}

// Close stops every check and the notifier and waits for them. Pending
// notifications are dropped; Status and All still answer with the last
// results. Close must not be called from OnChange.
func (m *Manager) Close() { m.closeOnce.Do(m.close) }

func (m *Manager) close() {
	m.mu.Lock()
	m.closed = true
	for _, c := range m.targets {
		m.stop(c)
	}
	m.queue = nil
	m.mu.Unlock()
	m.wg.Wait()
	close(m.quit)
	m.nwg.Wait()
	m.rawOnce.Do(func() {}) // no raw prober after Close
	if m.raw != nil {
		_ = m.raw.Close()
	}
}
