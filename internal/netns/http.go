package netns

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"
)

// HTTPPorts are the TCP ports the backends' HTTP servers listen on.
var HTTPPorts = []int{80, 8080}

// HTTPReply is the JSON body the backends' HTTP servers answer with.
type HTTPReply struct {
	Backend string `json:"backend"` // the backend's Host.Name, "b1", ...
	Remote  string `json:"remote"`  // the client's ip:port as the server saw it
	Local   string `json:"local"`   // the server's ip:port of the connection
}

// StartHTTPBackends starts an HTTP server on every backend, listening on
// 0.0.0.0 (and [::] with IPv6) on each of HTTPPorts, so it also answers on
// a VIP configured on lo. Routes:
//
//	GET /healthz   "ok\n"
//	GET /stream?bytes=N[&chunk=C][&delay=D]
//	               N bytes (Content-Length N), written and flushed C bytes
//	               (default 16384) at a time, sleeping D (a Go duration,
//	               default 0) between chunks; byte k of the body is
//	               byte(k % 251), so corruption is detectable
//	anything else  HTTPReply as JSON
//
// The servers shut down in t.Cleanup or in Close, whichever comes first.
func (tp *Topology) StartHTTPBackends(t testing.TB) {
	t.Helper()
	for _, bk := range tp.Backends {
		stop, err := bk.serveHTTP()
		if err != nil {
			t.Fatalf("start HTTP server on %s: %v", bk.Name, err)
		}
		if tp.addCloser(stop) {
			t.Cleanup(stop)
		}
	}
}

// ServeHTTP starts the test HTTP server (see StartHTTPBackends) on h
// alone, so a test can stop and restart one backend's server; stop stops
// it and waits (safe to call more than once).
func (h *Host) ServeHTTP() (stop func(), err error) { return h.serveHTTP() }

// serveHTTP starts the test server in h and returns a function that stops
// it and waits for it (safe to call more than once).
func (h *Host) serveHTTP() (stop func(), err error) {
	var ls []net.Listener
	err = h.Do(func() error {
		for _, port := range HTTPPorts {
			addrs := []struct{ network, addr string }{{"tcp4", "0.0.0.0"}}
			if h.Addr6.IsValid() {
				addrs = append(addrs, struct{ network, addr string }{"tcp6", "::"})
			}
			for _, a := range addrs {
				l, err := net.Listen(a.network, net.JoinHostPort(a.addr, strconv.Itoa(port)))
				if err != nil {
					return fmt.Errorf("netns: %s: listen: %w", h.NS, err)
				}
				ls = append(ls, l)
			}
		}
		return nil
	})
	if err != nil {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	srv := &http.Server{Handler: httpHandler(h.Name), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Serve(l) // returns http.ErrServerClosed after Close
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			srv.Close()
			wg.Wait()
		})
	}, nil
}

func httpHandler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		rep := HTTPReply{Backend: name, Remote: r.RemoteAddr}
		if local != nil {
			rep.Local = local.String()
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rep)
	})
	return mux
}

func stream(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	n, err := strconv.ParseInt(q.Get("bytes"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "bytes: want a non-negative integer", http.StatusBadRequest)
		return
	}
	chunk := int64(16384)
	if s := q.Get("chunk"); s != "" {
		if chunk, err = strconv.ParseInt(s, 10, 64); err != nil || chunk <= 0 || chunk > 1<<20 {
			http.Error(w, "chunk: want 1..1048576", http.StatusBadRequest)
			return
		}
	}
	var delay time.Duration
	if s := q.Get("delay"); s != "" {
		if delay, err = time.ParseDuration(s); err != nil || delay < 0 {
			http.Error(w, "delay: want a non-negative Go duration", http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	rc := http.NewResponseController(w)
	buf := make([]byte, chunk)
	for off := int64(0); off < n; {
		m := min(chunk, n-off)
		for i := range m {
			buf[i] = StreamByte(off + i)
		}
		if _, err := w.Write(buf[:m]); err != nil {
			return
		}
		rc.Flush()
		off += m
		if delay > 0 && off < n {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
	}
}

// StreamByte is byte k of a /stream body.
func StreamByte(k int64) byte { return byte(k % 251) }

// HTTPClient returns a client whose connections are made from the client
// namespace (see Host.HTTPClient).
func (tp *Topology) HTTPClient(timeout time.Duration) *http.Client {
	return tp.Client.HTTPClient(timeout)
}

// HTTPClient returns an HTTP client whose sockets are created (and
// connected) inside h's namespace. Keep-alives are off, so every request
// is a new TCP connection; to reuse connections set
// Transport.(*http.Transport).DisableKeepAlives to false. Proxies from the
// environment are ignored and URLs must use IP literals (no DNS).
func (h *Host) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         h.DialContext,
			DisableKeepAlives:   true,
			TLSHandshakeTimeout: timeout,
		},
	}
}

// DialContext connects to addr ("ip:port", an IP literal) with a socket
// created inside h's namespace. The connection stays in the namespace.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return nil, fmt.Errorf("netns: %s: dial %s: want an IP literal and port: %w", h.NS, addr, err)
	}
	var c net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: %s: %w", h.NS, err)
	}
	return c, nil
}

// ServeHTTPBackends is StartHTTPBackends for programs (xlb demo): the
// servers stop in Close.
func (tp *Topology) ServeHTTPBackends() error {
	for _, bk := range tp.Backends {
		stop, err := bk.serveHTTP()
		if err != nil {
			return fmt.Errorf("netns: start HTTP server on %s: %w", bk.Name, err)
		}
		tp.addCloser(stop)
	}
	return nil
}
