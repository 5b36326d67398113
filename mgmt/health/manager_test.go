package health

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRiseFall scripts the result of each check and records the state each
// check starts from, which is the state after the previous one.
func TestRiseFall(t *testing.T) {
	const script = "SFSSS" + "FFSFFF" + "SSFSSS" // rise 3, fall 3
	want := []State{
		Unknown, Unknown, Unknown, Unknown, Unknown, // after S F S S S: Up
		Up, Up, Up, Up, Up, Up, // after F F S F F F: Down
		Down, Down, Down, Down, Down, Down, // after S S F S S S: Up
		Up,
	}
	g := newGate(t)
	var m *Manager
	var mu sync.Mutex
	var seen []State
	g.before = func() {
		st, _ := m.Status("k")
		mu.Lock()
		defer mu.Unlock()
		n := len(seen)
		seen = append(seen, st.State)
		g.open.Store(n >= len(script) || script[n] == 'S')
	}
	m = newManager(t, Options{Dial: g.dial})
	s := fast(TypeTCP)
	s.Interval, s.Timeout = 10*time.Millisecond, 10*time.Millisecond
	s.Rise, s.Fall = 3, 3
	m.Set([]Target{{Key: "k", Addr: netip.AddrPortFrom(loopback, 1), Spec: s}})
	waitFor(t, "the script", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) >= len(want) })
	m.Close()
	for i, w := range want {
		if seen[i] != w {
			t.Errorf("before check %d: %v, want %v (all %v)", i+1, seen[i], w, seen[:len(want)])
		}
	}
	if st, _ := m.Status("k"); st.Transitions != 3 {
		t.Errorf("%d transitions, want 3", st.Transitions)
	}
}

func TestDampening(t *testing.T) {
	g := newGate(t)
	clk := newFakeClock()
	var notes atomic.Int64
	m := newManager(t, Options{Dial: g.dial, Now: clk.Now, OnChange: func(string, Status) { notes.Add(1) }})
	s := fast(TypeTCP)
	s.Interval, s.Timeout = 10*time.Millisecond, 10*time.Millisecond
	s.Rise, s.Fall = 1, 1
	s.FlapLimit, s.FlapWindow, s.Hold = 2, time.Hour, time.Minute
	m.Set([]Target{{Key: "k", Addr: netip.AddrPortFrom(loopback, 1), Spec: s}})

	waitState(t, m, "k", Up) // out of Unknown: not a flap
	g.open.Store(false)
	waitState(t, m, "k", Down) // flap 1
	g.open.Store(true)
	waitState(t, m, "k", Up) // flap 2
	g.open.Store(false)
	st := waitState(t, m, "k", Down) // flap 3 > 2: goes down and is held
	if want := clk.Now().Add(time.Minute); !st.HeldUntil.Equal(want) {
		t.Fatalf("held until %v, want %v", st.HeldUntil, want)
	}
	if c := m.Counters(); c.Dampened != 1 {
		t.Errorf("dampened %d", c.Dampened)
	}
	b, _ := json.Marshal(st)
	if !strings.Contains(string(b), `"held_until":"2030-01-01T00:01:00Z"`) {
		t.Errorf("json %s", b)
	}

	// Successes during the hold are recorded but do not raise it.
	g.open.Store(true)
	waitFor(t, "held successes", func() bool { return m.Counters().HeldSuccesses >= 5 })
	st, _ = m.Status("k")
	if st.State != Down || st.LastResult != "ok" || st.HeldUntil.IsZero() || st.Transitions != 4 {
		t.Errorf("during the hold: %+v", st)
	}

	clk.Advance(time.Minute) // the hold is over
	if st, _ := m.Status("k"); !st.HeldUntil.IsZero() {
		t.Errorf("held_until %v after the hold", st.HeldUntil)
	}
	st = waitState(t, m, "k", Up)
	if st.Transitions != 5 || !st.HeldUntil.IsZero() {
		t.Errorf("after the hold: %+v", st)
	}
	if b, _ := json.Marshal(st); strings.Contains(string(b), "held_until") {
		t.Errorf("json %s", b)
	}
	waitFor(t, "notes", func() bool { return notes.Load() == 5 })
}

// A Down->Up change over the limit does not happen at all.
func TestDampeningHoldsRise(t *testing.T) {
	g := newGate(t)
	clk := newFakeClock()
	m := newManager(t, Options{Dial: g.dial, Now: clk.Now})
	s := fast(TypeTCP)
	s.Rise, s.Fall = 1, 1
	s.FlapLimit, s.Hold = 1, time.Minute
	m.Set([]Target{{Key: "k", Addr: netip.AddrPortFrom(loopback, 1), Spec: s}})
	waitState(t, m, "k", Up)
	g.open.Store(false)
	waitState(t, m, "k", Down) // flap 1
	g.open.Store(true)
	waitFor(t, "the hold", func() bool { return m.Counters().Dampened == 1 })
	waitFor(t, "held successes", func() bool { return m.Counters().HeldSuccesses >= 3 })
	if st, _ := m.Status("k"); st.State != Down || st.Transitions != 2 || st.HeldUntil.IsZero() {
		t.Errorf("%+v", st)
	}
	clk.Advance(2 * time.Minute)
	waitState(t, m, "k", Up)
}

// Flaps spread wider than the window, or with dampening off, are never held.
func TestDampeningWindowAndOff(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		step  time.Duration // clock advance per flap
	}{
		{"outside the window", 2, 31 * time.Second},
		{"off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t)
			clk := newFakeClock()
			m := newManager(t, Options{Dial: g.dial, Now: clk.Now})
			s := fast(TypeTCP)
			s.Rise, s.Fall = 1, 1
			s.FlapLimit, s.FlapWindow = tc.limit, time.Minute
			m.Set([]Target{{Key: "k", Addr: netip.AddrPortFrom(loopback, 1), Spec: s}})
			waitState(t, m, "k", Up)
			for i := range 8 {
				clk.Advance(tc.step)
				g.open.Store(i%2 == 1)
				waitState(t, m, "k", map[bool]State{true: Up, false: Down}[i%2 == 1])
			}
			if c := m.Counters(); c.Dampened != 0 || c.Transitions != 9 {
				t.Errorf("%+v", c)
			}
		})
	}
}

func TestSetReconcile(t *testing.T) {
	a := listenTCP(t, "127.0.0.1:0")
	b := listenTCP(t, "127.0.0.1:0")
	base := runtime.NumGoroutine()
	m := NewManager(Options{})
	defer m.Close()

	ta := Target{Key: "a", Addr: a.addr, Spec: fast(TypeTCP)}
	tb := Target{Key: "b", Addr: b.addr, Spec: fast(TypeTCP)}
	m.Set([]Target{ta, tb})
	stA := waitState(t, m, "a", Up)
	waitState(t, m, "b", Up)

	// a unchanged (even spelled with explicit defaults), b's spec changed, c new.
	ta2 := ta
	ta2.Spec = ta.Spec.WithDefaults()
	tb2 := tb
	tb2.Spec.Rise = 3
	m.Set([]Target{ta2, tb2, {Key: "c", Addr: netip.AddrPortFrom(loopback, 0), Spec: Spec{Type: TypeNone}}})
	if st, _ := m.Status("a"); st.State != Up || !st.Since.Equal(stA.Since) || st.Transitions != 1 {
		t.Errorf("unchanged a: %+v, was %+v", st, stA)
	}
	if st, _ := m.Status("b"); st.State != Unknown || st.Transitions != 0 {
		t.Errorf("changed b: %+v", st)
	}
	if st, ok := m.Status("c"); !ok || st.State != Up || !st.LastCheck.IsZero() {
		t.Errorf("none c: %+v", st)
	}
	waitState(t, m, "b", Up)

	// A changed address restarts too.
	tb3 := tb2
	tb3.Addr = a.addr
	m.Set([]Target{ta2, tb3})
	if st, _ := m.Status("b"); st.State != Unknown {
		t.Errorf("moved b: %+v", st)
	}
	if _, ok := m.Status("c"); ok {
		t.Error("c still tracked")
	}
	if c := m.Counters(); c.Targets != 2 {
		t.Errorf("targets %d", c.Targets)
	}

	// Removing a target stops its checks: b's old listener sees no more.
	m.Set([]Target{ta2})
	waitFor(t, "b's last check", func() bool {
		n := b.accepted.Load()
		time.Sleep(100 * time.Millisecond) // five intervals
		return b.accepted.Load() == n
	})
	if _, ok := m.Status("b"); ok {
		t.Error("b still tracked")
	}
	if all := m.All(); len(all) != 1 || all["a"].State != Up {
		t.Errorf("all: %+v", all)
	}

	m.Close()
	m.Close() // idempotent
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
	// A check that connected just before Close may still be in the
	// listener's accept queue (its Accept runs late on a loaded host):
	// wait for a whole five intervals without one, which never comes if
	// checks go on, then require that none follow.
	waitFor(t, "a's last check", func() bool {
		n := a.accepted.Load()
		time.Sleep(100 * time.Millisecond)
		return a.accepted.Load() == n
	})
	n := a.accepted.Load()
	time.Sleep(60 * time.Millisecond)
	if a.accepted.Load() != n {
		t.Error("checks after Close")
	}
	m.Set([]Target{tb}) // a no-op after Close
	if _, ok := m.Status("b"); ok {
		t.Error("Set after Close")
	}
}

func TestOnChangeOncePerTransition(t *testing.T) {
	type call struct {
		key string
		st  State
	}
	var mu sync.Mutex
	var calls []call
	var inside atomic.Int32
	g := newGate(t)
	var m *Manager
	m = newManager(t, Options{Dial: g.dial, OnChange: func(key string, st Status) {
		if inside.Add(1) != 1 {
			t.Error("OnChange called concurrently")
		}
		m.Status(key) // no lock is held
		mu.Lock()
		calls = append(calls, call{key, st.State})
		mu.Unlock()
		inside.Add(-1)
	}})
	s := fast(TypeTCP)
	s.Rise, s.Fall, s.FlapLimit = 1, 1, -1
	m.Set([]Target{
		{Key: "x", Addr: netip.AddrPortFrom(loopback, 1), Spec: s},
		{Key: "y", Addr: netip.AddrPortFrom(loopback, 2), Spec: s},
		{Key: "none", Addr: netip.AddrPortFrom(loopback, 3), Spec: Spec{Type: TypeNone}},
	})
	for i := range 6 {
		want := map[bool]State{true: Up, false: Down}[i%2 == 0]
		g.open.Store(i%2 == 0)
		waitState(t, m, "x", want)
		waitState(t, m, "y", want)
	}
	waitFor(t, "notifications", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return uint64(len(calls)) == m.Counters().Transitions
	})
	time.Sleep(50 * time.Millisecond) // nothing more comes
	mu.Lock()
	defer mu.Unlock()
	per := map[string][]State{}
	for _, c := range calls {
		per[c.key] = append(per[c.key], c.st)
	}
	want := []State{Up, Down, Up, Down, Up, Down}
	for _, k := range []string{"x", "y"} {
		st, _ := m.Status(k)
		if len(per[k]) != len(want) || uint64(len(per[k])) != st.Transitions {
			t.Errorf("%s: notified %v, %d transitions", k, per[k], st.Transitions)
			continue
		}
		for i := range want {
			if per[k][i] != want[i] {
				t.Errorf("%s: notified %v, want %v", k, per[k], want)
				break
			}
		}
	}
	if len(per["none"]) != 0 {
		t.Errorf("none notified %v", per["none"])
	}
}

func TestNoneAndInvalidAreNotProbed(t *testing.T) {
	m := newManager(t, Options{Dial: func(context.Context, string, string) (net.Conn, error) {
		t.Error("dialled")
		return nil, errors.New("no")
	}})
	portless := netip.AddrPortFrom(loopback, 0)
	m.Set([]Target{
		{Key: "none", Addr: portless, Spec: Spec{}},
		{Key: "noport", Addr: portless, Spec: fast(TypeTCP)},
		{Key: "badtype", Addr: netip.AddrPortFrom(loopback, 80), Spec: Spec{Type: "icmp"}},
	})
	time.Sleep(60 * time.Millisecond)
	if st, _ := m.Status("none"); st.State != Up || st.Since.IsZero() {
		t.Errorf("none: %+v", st)
	}
	for _, k := range []string{"noport", "badtype"} {
		st, _ := m.Status(k)
		if st.State != Unknown || !strings.HasPrefix(st.LastError, "invalid: ") {
			t.Errorf("%s: %+v", k, st)
		}
	}
	if c := m.Counters(); c.Checks != 0 || c.Targets != 3 {
		t.Errorf("%+v", c)
	}
}

func TestLogsTransitions(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	w := zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	}))
	srv := listenTCP(t, "127.0.0.1:0")
	m := newManager(t, Options{Log: zerolog.New(w)})
	m.Set([]Target{
		{Key: "web/a", Addr: srv.addr, Spec: fast(TypeTCP)},
		{Key: "web/bad", Addr: netip.AddrPortFrom(loopback, 0), Spec: fast(TypeTCP)},
	})
	waitState(t, m, "web/a", Up)
	m.Close()
	mu.Lock()
	defer mu.Unlock()
	var sawUp, sawBad bool
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		switch e["message"] {
		case "health transition":
			sawUp = e["level"] == "info" && e["key"] == "web/a" && e["from"] == "unknown" && e["to"] == "up" && e["reason"] == "ok"
		case "health check not started: invalid target":
			sawBad = e["key"] == "web/bad" && strings.Contains(e["error"].(string), "port")
		}
	}
	if !sawUp || !sawBad {
		t.Errorf("log:\n%s", buf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestStateText(t *testing.T) {
	for _, s := range []State{Unknown, Up, Down} {
		b, err := s.MarshalText()
		if err != nil || string(b) != s.String() {
			t.Errorf("%d: %q %v", s, b, err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%q: %v %v", b, back, err)
		}
	}
	if _, err := State(9).MarshalText(); err == nil {
		t.Error("state 9 marshalled")
	}
	if State(9).String() != "state(9)" {
		t.Error(State(9).String())
	}
	var s State
	if err := s.UnmarshalText([]byte("sideways")); err == nil {
		t.Error("sideways unmarshalled")
	}
	b, _ := json.Marshal(Status{State: Down})
	if !strings.Contains(string(b), `"state":"down"`) || strings.Contains(string(b), "held_until") {
		t.Errorf("%s", b)
	}
	b, _ = json.Marshal(Counters{UpToDown: 1})
	if string(b) != `{"targets":0,"checks":0,"failures":0,"transitions":0,"up_to_down":1,"down_to_up":0,"dampened":0,"held_successes":0}` {
		t.Errorf("%s", b)
	}
}
