package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestTCPUpDown(t *testing.T) {
	srv := listenTCP(t, "127.0.0.1:0")
	m := newManager(t, Options{})
	m.Set([]Target{{Key: "web/a", Addr: srv.addr, Spec: fast(TypeTCP)}})

	st := waitState(t, m, "web/a", Up)
	if st.LastResult != "ok" || st.Transitions != 1 {
		t.Errorf("up: %+v", st)
	}

	srv.close()
	st = waitState(t, m, "web/a", Down)
	if st.LastResult != "connect: connection refused" || st.LastError != st.LastResult {
		t.Errorf("down: result %q, error %q", st.LastResult, st.LastError)
	}

	listenTCP(t, srv.addr.String()) // the same port again
	st = waitState(t, m, "web/a", Up)
	if st.Transitions != 3 || st.LastError != "connect: connection refused" {
		t.Errorf("up again: %+v", st)
	}
	c := m.Counters()
	if c.UpToDown != 1 || c.DownToUp != 1 || c.Transitions != 3 || c.Failures < 2 || c.Targets != 1 {
		t.Errorf("counters %+v", c)
	}
}

// statusServer answers every request with the status in code.
func statusServer(t *testing.T, code *atomic.Int64, tls bool) (*httptest.Server, *atomic.Int64) {
	conns := new(atomic.Int64)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(code.Load()))
		w.Write([]byte(strings.Repeat("body ", 4000))) // more than the check reads
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, conns
}

func serverAddr(t *testing.T, srv *httptest.Server) netip.AddrPort {
	return netip.MustParseAddrPort(srv.Listener.Addr().String())
}

func TestHTTPExpect(t *testing.T) {
	var code atomic.Int64
	code.Store(200)
	srv, conns := statusServer(t, &code, false)
	m := newManager(t, Options{})
	want503 := fast(TypeHTTP)
	want503.Expect = 503
	m.Set([]Target{
		{Key: "a", Addr: serverAddr(t, srv), Spec: fast(TypeHTTP)},
		{Key: "b", Addr: serverAddr(t, srv), Spec: want503},
	})
	waitState(t, m, "a", Up)
	st := waitState(t, m, "b", Down)
	if st.LastResult != "http status 200, want 503" {
		t.Errorf("b: %q", st.LastResult)
	}

	code.Store(503)
	st = waitState(t, m, "a", Down)
	if st.LastResult != "http status 503, want 200" {
		t.Errorf("a: %q", st.LastResult)
	}
	waitState(t, m, "b", Up)

	// No keep-alive: one connection per check.
	m.Close()
	if c := m.Counters(); conns.Load() < int64(c.Checks) || c.Checks < 4 {
		t.Errorf("%d connections for %d checks", conns.Load(), c.Checks)
	}
}

func TestHTTPHostAndPath(t *testing.T) {
	var gotHost atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host != "app.example" {
			gotHost.Store(r.Host)
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	t.Cleanup(srv.Close)
	addr := serverAddr(t, srv)

	good := fast(TypeHTTP)
	good.Host, good.Path = "app.example", "/healthz"
	noHost := fast(TypeHTTP)
	noHost.Path = "/healthz"
	badPath := fast(TypeHTTP)
	badPath.Host, badPath.Path = "app.example", "/nope"

	m := newManager(t, Options{})
	m.Set([]Target{
		{Key: "good", Addr: addr, Spec: good},
		{Key: "nohost", Addr: addr, Spec: noHost},
		{Key: "badpath", Addr: addr, Spec: badPath},
	})
	waitState(t, m, "good", Up)
	if st := waitState(t, m, "nohost", Down); st.LastResult != "http status 421, want 200" {
		t.Errorf("nohost: %q", st.LastResult)
	}
	if st := waitState(t, m, "badpath", Down); st.LastResult != "http status 404, want 200" {
		t.Errorf("badpath: %q", st.LastResult)
	}
	if h := gotHost.Load(); h != addr.String() {
		t.Errorf("default Host header %q, want %q", h, addr)
	}
}

func TestHTTPS(t *testing.T) {
	var code atomic.Int64
	code.Store(200)
	tlsSrv, _ := statusServer(t, &code, true) // self-signed
	plain, _ := statusServer(t, &code, false)

	m := newManager(t, Options{})
	spec := fast(TypeHTTPS)
	spec.Interval, spec.Timeout = 100*time.Millisecond, 100*time.Millisecond // a handshake under -race
	named := spec
	named.Host = "www.example" // sent as SNI too
	m.Set([]Target{
		{Key: "tls", Addr: serverAddr(t, tlsSrv), Spec: spec},
		{Key: "named", Addr: serverAddr(t, tlsSrv), Spec: named},
		{Key: "plain", Addr: serverAddr(t, plain), Spec: spec},
	})
	waitState(t, m, "tls", Up)
	waitState(t, m, "named", Up)
	if st := waitState(t, m, "plain", Down); !strings.HasPrefix(st.LastResult, "tls handshake: ") {
		t.Errorf("https to a plain server: %q", st.LastResult)
	}
	code.Store(500)
	if st := waitState(t, m, "tls", Down); st.LastResult != "http status 500, want 200" {
		t.Errorf("tls: %q", st.LastResult)
	}
}

// udpServer answers every datagram with reply(payload), or not at all if
// reply returns nil.
func udpServer(t *testing.T, reply func([]byte) []byte) netip.AddrPort {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				c.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return netip.MustParseAddrPort(c.LocalAddr().String())
}

func TestUDP(t *testing.T) {
	var got atomic.Value
	echo := udpServer(t, func(b []byte) []byte { got.Store(string(b)); return append([]byte("echo "), b...) })
	silent := udpServer(t, func([]byte) []byte { return nil })
	closed := closedPort(t, "udp")

	s := fast(TypeUDP)
	s.Interval, s.Timeout = 50*time.Millisecond, 50*time.Millisecond
	hello := s
	hello.Send, hello.Receive = "hello", "echo hello"
	wrong := s
	wrong.Receive = "pong"

	m := newManager(t, Options{})
	m.Set([]Target{
		{Key: "echo", Addr: echo, Spec: s},
		{Key: "hello", Addr: echo, Spec: hello},
		{Key: "wrong", Addr: echo, Spec: wrong},
		{Key: "silent", Addr: silent, Spec: s},
		{Key: "closed", Addr: closed, Spec: s},
	})
	waitState(t, m, "echo", Up)
	waitState(t, m, "hello", Up)
	if st := waitState(t, m, "wrong", Down); st.LastResult != `reply does not contain "pong"` {
		t.Errorf("wrong: %q", st.LastResult)
	}
	if st := waitState(t, m, "silent", Down); st.LastResult != "timeout after 50ms" {
		t.Errorf("silent: %q", st.LastResult)
	}
	st := waitState(t, m, "closed", Down)
	if st.LastResult != "icmp port unreachable (connection refused)" {
		t.Errorf("closed: %q", st.LastResult)
	}
	if st.LatencyMS >= 40 {
		t.Errorf("port unreachable took %.1fms; it should not wait for the timeout", st.LatencyMS)
	}
	if p := got.Load(); p != "ping" && p != "hello" {
		t.Errorf("payload %q", p)
	}
}

// A Dial that never connects: the check times out, and Options.Dial is used.
func TestTimeoutAndDialOption(t *testing.T) {
	var dials atomic.Int64
	m := newManager(t, Options{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		if network != "tcp" || addr != "192.0.2.1:8080" {
			t.Errorf("dial %s %s", network, addr)
		}
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: network, Err: ctx.Err()}
	}})
	s := fast(TypeTCP)
	s.Port = 8080 // overrides the backend's port
	m.Set([]Target{{Key: "k", Addr: netip.MustParseAddrPort("192.0.2.1:80"), Spec: s}})
	st := waitState(t, m, "k", Down)
	if st.LastResult != "timeout after 20ms" || dials.Load() < 2 {
		t.Errorf("%+v after %d dials", st, dials.Load())
	}
	if st.LatencyMS < 15 {
		t.Errorf("latency %.1fms for a 20ms timeout", st.LatencyMS)
	}
}

func TestFailedShortens(t *testing.T) {
	_, err := net.Dial("tcp", closedPort(t, "tcp").String())
	if err == nil {
		t.Skip("something listens on the closed port")
	}
	e := failed("", err)
	if e.Error() != "connect: connection refused" || !errors.Is(e, err) {
		t.Errorf("%q", e)
	}
}
