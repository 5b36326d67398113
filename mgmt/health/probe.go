package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
)

// probe runs one check of t and returns whether it passed and "ok" or the
// reason it did not. skip reports a check that could not be made at all
// (ErrUnavailable): it counts neither way.
func (m *Manager) probe(parent context.Context, t Target) (ok bool, reason string, skip bool) {
	s := &t.Spec
	ctx, cancel := context.WithTimeout(parent, s.Timeout)
	defer cancel()
	addr := t.checkAddr().String()
	var err error
	switch s.Type {
	case TypeDatapath:
		err = m.prober().Probe(ctx, t.Addr.Addr(), t.checkAddr().Port(), s.Datapath)
		if errors.Is(err, ErrUnavailable) {
			return false, err.Error(), true
		}
	case TypeTCP:
		err = m.checkTCP(ctx, addr)
	case TypeHTTP, TypeHTTPS:
		err = m.checkHTTP(ctx, addr, t)
	case TypeUDP:
		err = m.checkUDP(ctx, addr, s)
	default:
		err = fmt.Errorf("unknown check type %q", s.Type)
	}
	if err == nil {
		return true, "ok", false
	}
	if s.Type != TypeDatapath && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		return false, "timeout after " + s.Timeout.String(), false
	}
	return false, err.Error(), false
}

// checkError is a failure with a short message; it keeps the cause for
// errors.Is.
type checkError struct {
	msg string
	err error
}

func (e *checkError) Error() string { return e.msg }
func (e *checkError) Unwrap() error { return e.err }

// failed shortens err to what an operator needs: a *net.OpError's
// "dial tcp 10.0.0.1:80: connect: connection refused" becomes
// "connect: connection refused".
func failed(prefix string, err error) error {
	msg := err.Error()
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		msg = oe.Err.Error()
	}
	return &checkError{prefix + msg, err}
}

// guard makes conn give up when ctx ends: at its deadline, or at once when
// the checker is stopped. The returned func releases the guard.
func guard(ctx context.Context, conn net.Conn) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

func (m *Manager) checkTCP(ctx context.Context, addr string) error {
	conn, err := m.o.Dial(ctx, "tcp", addr)
	if err != nil {
		return failed("", err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close with RST: no TIME_WAIT per check
	}
	return conn.Close()
}

func (m *Manager) checkHTTP(ctx context.Context, addr string, t Target) error {
	s := &t.Spec
	conn, err := m.o.Dial(ctx, "tcp", addr)
	if err != nil {
		return failed("", err)
	}
	defer conn.Close()
	defer guard(ctx, conn)()
	host := t.httpHost()

	rw := conn
	if s.Type == TypeHTTPS {
		cfg := &tls.Config{
			// Backends are addressed by IP and commonly present
			// certificates for their public names (or self-signed
			// ones); the check asks whether they serve, not who they are.
			InsecureSkipVerify: true,
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			cfg.ServerName = h
		} else {
			cfg.ServerName = host
		}
		if _, err := netip.ParseAddr(trimBrackets(cfg.ServerName)); err == nil {
			cfg.ServerName = "" // no SNI for an address
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return failed("tls handshake: ", err)
		}
		rw = tc
	}

	req := make([]byte, 0, 128+len(s.Path)+len(host))
	req = append(req, "GET "...)
	req = append(req, s.Path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUser-Agent: xlb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	if _, err := rw.Write(req); err != nil {
		return failed("", err)
	}
	// The limit bounds what a misbehaving backend can make us buffer.
	br := bufio.NewReaderSize(io.LimitReader(rw, 64<<10), 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return &checkError{"http: connection closed before a response", err}
		}
		return failed("http: ", err)
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 4096)
	_ = resp.Body.Close()
	if resp.StatusCode != s.Expect {
		return &checkError{"http status " + strconv.Itoa(resp.StatusCode) + ", want " + strconv.Itoa(s.Expect), nil}
	}
	return nil
}

func trimBrackets(h string) string {
	if len(h) >= 2 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}

func (m *Manager) checkUDP(ctx context.Context, addr string, s *Spec) error {
	conn, err := m.o.Dial(ctx, "udp", addr)
	if err != nil {
		return failed("", err)
	}
	defer conn.Close()
	defer guard(ctx, conn)()
	if _, err := conn.Write([]byte(s.Send)); err != nil {
		return udpFailed(err)
	}
	buf := make([]byte, maxReply)
	n, err := conn.Read(buf)
	if err != nil {
		return udpFailed(err)
	}
	if !bytes.Contains(buf[:n], []byte(s.Receive)) {
		return &checkError{fmt.Sprintf("reply does not contain %q", s.Receive), nil}
	}
	return nil
}

func udpFailed(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &checkError{"icmp port unreachable (connection refused)", err}
	}
	return failed("", err)
}
