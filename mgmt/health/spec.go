package health

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlb/xlb/config"
)

// Check types.
const (
	TypeTCP   = "tcp"
	TypeHTTP  = "http"
	TypeHTTPS = "https"
	TypeUDP   = "udp"
	TypeNone  = "none"
)

// Defaults that [Spec.WithDefaults] puts into zero fields.
const (
	DefaultInterval   = 2 * time.Second
	DefaultTimeout    = time.Second // or Interval, if that is shorter
	DefaultRise       = 2
	DefaultFall       = 3
	DefaultPath       = "/"
	DefaultExpect     = 200
	DefaultSend       = "ping"
	DefaultFlapLimit  = 4
	DefaultFlapWindow = 60 * time.Second
	DefaultHold       = 60 * time.Second
)

// Limits enforced by [Spec.Validate].
const (
	MinInterval = 10 * time.Millisecond
	MaxSend     = 65507 // largest UDP payload over IPv4
	MaxReceive  = 1024  // a reply is read into a 4 KiB buffer
)

const maxReply = 4096 // bytes of a udp reply that are looked at

// Spec is how a target is checked. Zero fields take the defaults above; a
// Spec is a plain comparable value, so a changed Spec is noticed with ==.
type Spec struct {
	Type    string // "tcp" | "http" | "https" | "udp" | "none"; "" means "none" (no health section)
	Port    uint16 // 0 = the backend's port
	Path    string // http/https, default "/"
	Host    string // http/https Host header, default the backend address (with ":port" unless 80/443)
	Expect  int    // http/https expected status, default 200
	Send    string // udp: payload to send, default "ping" (an empty datagram cannot be asked for)
	Receive string // udp: expected substring of the reply; empty = any reply counts

	// Datapath describes a datapath probe (Type TypeDatapath, datapath.go).
	Datapath Datapath

	Interval time.Duration // default 2s, at least 10ms
	Timeout  time.Duration // default 1s (or Interval if shorter), must be <= Interval
	Rise     int           // consecutive successes to go Up, default 2
	Fall     int           // consecutive failures to go Down, default 3

	// Dampening (GLB-style flap damping): a backend whose state changed
	// more than FlapLimit times within FlapWindow is held down for Hold
	// before it may rise again.
	FlapLimit  int           // 0 = default 4; < 0 turns dampening off
	FlapWindow time.Duration // default 60s
	Hold       time.Duration // default 60s
}

// WithDefaults returns s with every zero field set to its default. Fields
// that do not apply to s.Type (Path for tcp, Send for http, ...) are left
// alone. Negative values are kept, for Validate to reject.
func (s Spec) WithDefaults() Spec {
	if s.Type == "" {
		s.Type = TypeNone
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = min(DefaultTimeout, s.Interval)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.FlapLimit == 0 {
		s.FlapLimit = DefaultFlapLimit
	}
	if s.FlapWindow == 0 {
		s.FlapWindow = DefaultFlapWindow
	}
	if s.Hold == 0 {
		s.Hold = DefaultHold
	}
	switch s.Type {
	case TypeHTTP, TypeHTTPS:
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.Expect == 0 {
			s.Expect = DefaultExpect
		}
	case TypeUDP:
		if s.Send == "" {
			s.Send = DefaultSend
		}
	}
	return s
}

// ErrInvalid is wrapped by every validation error (it is
// config.ErrInvalid: a bad health check is bad configuration).
var ErrInvalid = config.ErrInvalid

// FieldError is config's one field-error type. Its Field is relative to
// the health object ("timeout", "path"; "key" and "address" for a
// Target), so the caller can prefix its own path ("services[0].health.").
type FieldError = config.FieldError

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first thing wrong with s (after defaults) as a
// *FieldError.
func (s Spec) Validate() error {
	d := s.WithDefaults()
	switch d.Type {
	case TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP, TypeNone, TypeDatapath:
	default:
		return fieldErr("type", "%q is not tcp, http, https, udp or none", s.Type)
	}
	switch {
	case d.Interval < 0:
		return fieldErr("interval", "%v is negative", d.Interval)
	case d.Interval < MinInterval:
		return fieldErr("interval", "%v is shorter than %v", d.Interval, MinInterval)
	case d.Timeout < 0:
		return fieldErr("timeout", "%v is negative", d.Timeout)
	case d.Timeout > d.Interval:
		return fieldErr("timeout", "%v is longer than the interval %v", d.Timeout, d.Interval)
	case d.Rise < 0:
		return fieldErr("rise", "%d is negative", d.Rise)
	case d.Fall < 0:
		return fieldErr("fall", "%d is negative", d.Fall)
	case d.FlapWindow < 0:
		return fieldErr("flap_window", "%v is negative", d.FlapWindow)
	case d.Hold < 0:
		return fieldErr("hold", "%v is negative", d.Hold)
	}
	switch d.Type {
	case TypeHTTP, TypeHTTPS:
		if !strings.HasPrefix(d.Path, "/") {
			return fieldErr("path", "%q does not start with /", d.Path)
		}
		if strings.IndexFunc(d.Path, badHeaderRune) >= 0 {
			return fieldErr("path", "%q has a space or control character", d.Path)
		}
		if len(d.Path) > 2048 {
			return fieldErr("path", "longer than 2048 bytes")
		}
		if strings.IndexFunc(d.Host, badHeaderRune) >= 0 {
			return fieldErr("host", "%q has a space or control character", d.Host)
		}
		if len(d.Host) > 255 {
			return fieldErr("host", "longer than 255 bytes")
		}
		if d.Expect < 100 || d.Expect > 599 {
			return fieldErr("expect", "%d is not an HTTP status 100..599", d.Expect)
		}
	case TypeDatapath:
		if err := d.Datapath.validate(); err != nil {
			return err
		}
	case TypeUDP:
		if len(d.Send) > MaxSend {
			return fieldErr("send", "%d bytes is more than a UDP datagram holds (%d)", len(d.Send), MaxSend)
		}
		if len(d.Receive) > MaxReceive {
			return fieldErr("receive", "%d bytes is more than %d", len(d.Receive), MaxReceive)
		}
	}
	return nil
}

func badHeaderRune(r rune) bool { return r <= ' ' || r == 0x7f }

// Target is one backend to check.
type Target struct {
	Key  string         // stable identity, e.g. "web/10.0.0.11:80"; Set reconciles by Key
	Addr netip.AddrPort // backend address and port; port 0 for a port-less service (then Spec.Port is required)
	Spec Spec
}

// Validate checks t's Spec and that the check has an address and a port
// (for every type but none).
func (t Target) Validate() error {
	if t.Key == "" {
		return fieldErr("key", "empty")
	}
	if !t.Addr.Addr().IsValid() {
		return fieldErr("address", "no backend address")
	}
	if err := t.Spec.Validate(); err != nil {
		return err
	}
	if t.Spec.WithDefaults().Type != TypeNone && t.Addr.Port() == 0 && t.Spec.Port == 0 {
		return fieldErr("port", "the backend has no port (port-less service): the %s check needs one", t.Spec.WithDefaults().Type)
	}
	return nil
}

// ValidateTargets validates each target and rejects duplicate keys. The
// error names the index: "targets[3]: timeout: ..."; errors.As still finds
// the *FieldError.
func ValidateTargets(ts []Target) error {
	seen := make(map[string]int, len(ts))
	for i, t := range ts {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("targets[%d]: %w", i, err)
		}
		if j, dup := seen[t.Key]; dup {
			return fmt.Errorf("targets[%d]: %w", i, fieldErr("key", "%q repeats targets[%d]", t.Key, j))
		}
		seen[t.Key] = i
	}
	return nil
}

// checkAddr is where the check connects to, and checkHost the default Host
// header for it.
func (t Target) checkAddr() netip.AddrPort {
	if t.Spec.Port != 0 {
		return netip.AddrPortFrom(t.Addr.Addr(), t.Spec.Port)
	}
	return t.Addr
}

func (t Target) httpHost() string {
	if t.Spec.Host != "" {
		return t.Spec.Host
	}
	ap := t.checkAddr()
	ap = netip.AddrPortFrom(ap.Addr().WithZone(""), ap.Port()) // a zone has no place in Host
	if (t.Spec.Type == TypeHTTP && ap.Port() == 80) || (t.Spec.Type == TypeHTTPS && ap.Port() == 443) {
		if ap.Addr().Is6() {
			return "[" + ap.Addr().String() + "]"
		}
		return ap.Addr().String()
	}
	return ap.String()
}
