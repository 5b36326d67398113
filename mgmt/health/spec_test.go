package health

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	got := Spec{Type: TypeHTTP}.WithDefaults()
	want := Spec{Type: TypeHTTP, Path: "/", Expect: 200, Interval: 2 * time.Second, Timeout: time.Second,
		Rise: 2, Fall: 3, FlapLimit: 4, FlapWindow: time.Minute, Hold: time.Minute}
	if got != want {
		t.Errorf("http:\n got %+v\nwant %+v", got, want)
	}
	if got := (Spec{Type: TypeUDP}).WithDefaults(); got.Send != "ping" || got.Path != "" || got.Expect != 0 {
		t.Errorf("udp: %+v", got)
	}
	if got := (Spec{}).WithDefaults(); got.Type != TypeNone {
		t.Errorf("empty type: %q", got.Type)
	}
	if got := (Spec{Type: TypeTCP, Interval: 300 * time.Millisecond}).WithDefaults(); got.Timeout != 300*time.Millisecond {
		t.Errorf("timeout %v with a 300ms interval", got.Timeout)
	}
	if got := (Spec{Type: TypeTCP, FlapLimit: -1}).WithDefaults(); got.FlapLimit != -1 {
		t.Errorf("flap limit %d", got.FlapLimit)
	}
	if d := want.WithDefaults(); d != want {
		t.Error("WithDefaults is not idempotent")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		spec  Spec
		field string // "" = valid
	}{
		{Spec{}, ""},
		{Spec{Type: TypeTCP}, ""},
		{Spec{Type: TypeHTTPS, Path: "/healthz?x=1", Host: "www.example:8443", Expect: 204}, ""},
		{Spec{Type: TypeUDP, Send: "\x00\x01", Receive: "pong"}, ""},
		{Spec{Type: TypeTCP, FlapLimit: -1}, ""},
		{Spec{Type: TypeTCP, Interval: time.Second, Timeout: time.Second}, ""},
		{Spec{Type: "icmp"}, "type"},
		{Spec{Type: "TCP"}, "type"},
		{Spec{Type: TypeTCP, Interval: time.Second, Timeout: 2 * time.Second}, "timeout"},
		{Spec{Type: TypeTCP, Timeout: 3 * time.Second}, "timeout"}, // default interval 2s
		{Spec{Type: TypeTCP, Timeout: -time.Second}, "timeout"},
		{Spec{Type: TypeTCP, Interval: -time.Second}, "interval"},
		{Spec{Type: TypeTCP, Interval: time.Millisecond}, "interval"},
		{Spec{Type: TypeTCP, Rise: -1}, "rise"},
		{Spec{Type: TypeTCP, Fall: -2}, "fall"},
		{Spec{Type: TypeTCP, FlapWindow: -1}, "flap_window"},
		{Spec{Type: TypeTCP, Hold: -1}, "hold"},
		{Spec{Type: TypeHTTP, Path: "healthz"}, "path"},
		{Spec{Type: TypeHTTP, Path: "/a b"}, "path"},
		{Spec{Type: TypeHTTP, Path: "/\r\nX-Evil: 1"}, "path"},
		{Spec{Type: TypeHTTP, Host: "a\r\nb"}, "host"},
		{Spec{Type: TypeHTTP, Expect: 99}, "expect"},
		{Spec{Type: TypeHTTPS, Expect: 600}, "expect"},
		{Spec{Type: TypeUDP, Receive: strings.Repeat("x", MaxReceive+1)}, "receive"},
		{Spec{Type: TypeUDP, Send: strings.Repeat("x", MaxSend+1)}, "send"},
		{Spec{Type: TypeTCP, Path: "not checked for tcp"}, ""},
	} {
		err := tc.spec.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.spec, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want a %s error", tc.spec, err, tc.field)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	portless := netip.AddrPortFrom(loopback, 0)
	for _, tc := range []struct {
		t     Target
		field string
	}{
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: TypeNone}}, ""},
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: TypeTCP, Port: 22}}, ""},
		{Target{Key: "k", Addr: netip.MustParseAddrPort("[2001:db8::1]:443"), Spec: Spec{Type: TypeHTTPS}}, ""},
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: TypeTCP}}, "port"},
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: TypeHTTP}}, "port"},
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: TypeUDP}}, "port"},
		{Target{Key: "", Addr: portless}, "key"},
		{Target{Key: "k", Spec: Spec{Type: TypeTCP, Port: 80}}, "address"},
		{Target{Key: "k", Addr: portless, Spec: Spec{Type: "bogus"}}, "type"},
	} {
		err := tc.t.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.t, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%+v: %v, want a %s error", tc.t, err, tc.field)
		}
	}

	ok := Target{Key: "a", Addr: netip.AddrPortFrom(loopback, 80), Spec: Spec{Type: TypeTCP}}
	if err := ValidateTargets([]Target{ok, {Key: "b", Addr: ok.Addr}}); err != nil {
		t.Error(err)
	}
	err := ValidateTargets([]Target{ok, ok})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "key" || !strings.HasPrefix(err.Error(), "targets[1]: key: ") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestHTTPHostDefault(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		addr string
		port uint16
		want string
	}{
		{TypeHTTP, "10.0.0.1:80", 0, "10.0.0.1"},
		{TypeHTTP, "10.0.0.1:8080", 0, "10.0.0.1:8080"},
		{TypeHTTP, "10.0.0.1:8080", 80, "10.0.0.1"},
		{TypeHTTPS, "10.0.0.1:443", 0, "10.0.0.1"},
		{TypeHTTPS, "10.0.0.1:80", 0, "10.0.0.1:80"},
		{TypeHTTP, "[2001:db8::1]:80", 0, "[2001:db8::1]"},
		{TypeHTTPS, "[2001:db8::1]:8443", 0, "[2001:db8::1]:8443"},
		{TypeHTTP, "[fe80::1%eth0]:80", 0, "[fe80::1]"},
	} {
		tg := Target{Addr: netip.MustParseAddrPort(tc.addr), Spec: Spec{Type: tc.typ, Port: tc.port}}
		if got := tg.httpHost(); got != tc.want {
			t.Errorf("%s %s port %d: %q, want %q", tc.typ, tc.addr, tc.port, got, tc.want)
		}
	}
}

func FuzzSpecValidate(f *testing.F) {
	f.Add("http", uint16(0), "/", "", 200, "", "", int64(0), int64(0), 0, 0, 0, int64(0), int64(0))
	f.Add("udp", uint16(53), "", "", 0, "ping", "pong", int64(time.Second), int64(time.Second), 1, 1, -1, int64(-1), int64(5))
	f.Add("tcp", uint16(1), "x", "h", -1, "", "", int64(-1), int64(10), -1, 3, 4, int64(1), int64(0))
	f.Fuzz(func(t *testing.T, typ string, port uint16, path, host string, expect int, send, recv string,
		interval, timeout int64, rise, fall, flapLimit int, window, hold int64) {
		s := Spec{Type: typ, Port: port, Path: path, Host: host, Expect: expect, Send: send, Receive: recv,
			Interval: time.Duration(interval), Timeout: time.Duration(timeout), Rise: rise, Fall: fall,
			FlapLimit: flapLimit, FlapWindow: time.Duration(window), Hold: time.Duration(hold)}
		d := s.WithDefaults()
		if d.WithDefaults() != d {
			t.Fatalf("WithDefaults not idempotent: %+v", s)
		}
		err := s.Validate()
		if (err == nil) != (d.Validate() == nil) {
			t.Fatalf("Validate differs after defaults: %+v", s)
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field == "" {
				t.Fatalf("%+v: %v is not a FieldError", s, err)
			}
			return
		}
		// A valid spec runs: positive timing, sane counts, a safe request line.
		if d.Interval < MinInterval || d.Timeout <= 0 || d.Timeout > d.Interval || d.Rise < 1 || d.Fall < 1 ||
			d.FlapLimit == 0 || d.FlapWindow <= 0 || d.Hold <= 0 {
			t.Fatalf("valid but unusable: %+v", d)
		}
		if (d.Type == TypeHTTP || d.Type == TypeHTTPS) && (strings.ContainsAny(d.Path+d.Host, " \r\n") || d.Expect < 100) {
			t.Fatalf("valid but unsafe: %+v", d)
		}
	})
}
