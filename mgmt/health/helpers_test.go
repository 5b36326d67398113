package health

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fast is a Spec for tests: short interval, rise and fall of 2.
func fast(typ string) Spec {
	return Spec{Type: typ, Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 2, Fall: 2}
}

func newManager(t *testing.T, o Options) *Manager {
	t.Helper()
	m := NewManager(o)
	t.Cleanup(m.Close)
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitState waits until key is in state want and returns its status.
func waitState(t *testing.T, m *Manager, key string, want State) Status {
	t.Helper()
	var st Status
	waitFor(t, key+" "+want.String(), func() bool {
		var ok bool
		st, ok = m.Status(key)
		return ok && st.State == want
	})
	return st
}

// tcpServer is a real listener on 127.0.0.1 that accepts and closes
// connections, counting them.
type tcpServer struct {
	ln       net.Listener
	addr     netip.AddrPort
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func listenTCP(t *testing.T, addr string) *tcpServer {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port of a just-closed listener can take a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, addr: netip.MustParseAddrPort(ln.Addr().String())}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *tcpServer) close() {
	s.ln.Close()
	s.wg.Wait()
}

// closedPort returns an address on 127.0.0.1 where nothing listens.
func closedPort(t *testing.T, network string) netip.AddrPort {
	t.Helper()
	switch network {
	case "udp":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(c.LocalAddr().String())
		c.Close()
		return ap
	default:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap := netip.MustParseAddrPort(ln.Addr().String())
		ln.Close()
		return ap
	}
}

// gate is a Dial that sends "tcp" checks to a live listener while open and
// to a closed port while shut; it also counts calls.
type gate struct {
	open       atomic.Bool
	live, dead string
	calls      atomic.Int64
	before     func() // called at the start of each dial, if set
}

func newGate(t *testing.T) *gate {
	g := &gate{live: listenTCP(t, "127.0.0.1:0").addr.String(), dead: closedPort(t, "tcp").String()}
	g.open.Store(true)
	return g
}

func (g *gate) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	if g.before != nil {
		g.before()
	}
	g.calls.Add(1)
	addr := g.dead
	if g.open.Load() {
		addr = g.live
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// fakeClock is an Options.Now the test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var loopback = netip.MustParseAddr("127.0.0.1")
