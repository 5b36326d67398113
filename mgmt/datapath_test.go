package mgmt

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/mgmt/health"
)

// fakeProber answers datapath probes from a table; it records what it was
// asked.
type fakeProber struct {
	mu   sync.Mutex
	fail map[netip.Addr]error
	seen map[netip.Addr]health.Datapath
	port map[netip.Addr]uint16
}

func newFakeProber() *fakeProber {
	return &fakeProber{fail: map[netip.Addr]error{}, seen: map[netip.Addr]health.Datapath{}, port: map[netip.Addr]uint16{}}
}

func (p *fakeProber) Probe(_ context.Context, backend netip.Addr, port uint16, d health.Datapath) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen[backend], p.port[backend] = d, port
	return p.fail[backend]
}

func (p *fakeProber) set(a string, err error) {
	p.mu.Lock()
	p.fail[netip.MustParseAddr(a)] = err
	p.mu.Unlock()
}

func (p *fakeProber) asked(a string) (health.Datapath, uint16, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	d, ok := p.seen[netip.MustParseAddr(a)]
	return d, p.port[netip.MustParseAddr(a)], ok
}

const datapathConfig = `
interfaces: [{name: eth0}]
lb: {tunnel_source: 10.30.0.2, tunnel_source6: "fd00:30::2"}
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    mode: tunnel
    health: {type: tcp, interval: 20ms, timeout: 10ms, rise: 1, fall: 2}
    backends: [{address: 10.30.0.11}, {address: "fd00:30::12"}, {address: 10.30.0.13, state: disabled}]
  - name: dscp
    vip: 198.51.100.11
    port: 0
    mode: l3dsr
    dscp: 12
    health: {interval: 20ms, timeout: 10ms, rise: 1, fall: 2, port: 8443}
    backends: [{address: 10.30.0.21}, {address: 10.30.0.22}]
  - name: quiet
    vip: 198.51.100.12
    port: 80
    mode: tunnel
    health: {datapath: "off"}
    backends: [{address: 10.30.0.31}]
  - name: plain
    vip: 198.51.100.13
    port: 80
    backends: [{address: 10.30.0.41}]
`

// TestDatapathProbesTakeBackendsOut: tunnel and l3dsr backends get datapath
// probes addressed as the dataplane forwards (the ordinary check, where
// there is one, runs as well); a failing probe alone takes a backend out,
// and the API shows it in the backend's health next to the ordinary check.
func TestDatapathProbesTakeBackendsOut(t *testing.T) {
	fp := newFakeProber()
	fp.set("10.30.0.22", errors.New("no SYN-ACK from 198.51.100.11:8443 within the timeout"))
	// Every ordinary check passes (the dial goes nowhere but succeeds).
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, other := net.Pipe()
		other.Close()
		return c, nil
	}
	e := newEnvWith(t, datapathConfig, Options{HealthDial: health.Options{Dial: dial, Prober: fp,
		Jitter: func(time.Duration) time.Duration { return 0 }}})
	waitUntil(t, "10.30.0.22 out of the dataplane", func() bool {
		f := e.dp.last()
		return f.Services[1].Backends[1].State == "disabled" && f.Services[1].Backends[0].State == "active"
	})

	// What was probed, and how.
	d, port, ok := fp.asked("10.30.0.11")
	if !ok || d.Mode != "tunnel" || d.VIP != netip.MustParseAddr("198.51.100.10") || d.Outer != netip.MustParseAddr("10.30.0.2") || d.Source.IsValid() || port != 80 {
		t.Fatalf("ipip probe %+v port %d", d, port)
	}
	d, _, ok = fp.asked("fd00:30::12")
	if !ok || d.Outer != netip.MustParseAddr("fd00:30::2") || d.Source != netip.MustParseAddr("10.30.0.2") {
		t.Fatalf("4in6 probe %+v", d)
	}
	d, port, ok = fp.asked("10.30.0.21")
	if !ok || d.Mode != "l3dsr" || d.DSCP != 12 || port != 8443 {
		t.Fatalf("l3dsr probe %+v port %d", d, port)
	}
	for _, a := range []string{"10.30.0.13", "10.30.0.31", "10.30.0.41"} {
		if _, _, ok := fp.asked(a); ok {
			t.Fatalf("%s was probed (disabled, datapath off, dsr)", a)
		}
	}

	// The API: the failing backend is down, with its datapath result.
	var bv BackendView
	r := e.do("GET", "/api/v1/services/dscp/backends/10.30.0.22", "")
	if json.Unmarshal(r.body, &bv) != nil || bv.Health == nil || bv.Health.State != "down" || bv.Health.Datapath == nil ||
		bv.Health.Datapath.State != "down" || !strings.Contains(bv.Health.Datapath.LastResult, "no SYN-ACK") || !bv.Health.Checked {
		t.Fatalf("backend view %s", r.body)
	}
	waitUntil(t, "10.30.0.11 up by both checks", func() bool {
		r := e.do("GET", "/api/v1/services/web/backends/10.30.0.11", "")
		var bv BackendView
		return json.Unmarshal(r.body, &bv) == nil && bv.Health.State == "up" && bv.Health.LastResult == "ok" &&
			bv.Health.Datapath != nil && bv.Health.Datapath.State == "up" && bv.Health.Datapath.LastResult == "ok"
	})
	r = e.do("GET", "/api/v1/services/plain/backends/10.30.0.41", "")
	bv = BackendView{}
	if json.Unmarshal(r.body, &bv) != nil || bv.Health.Datapath != nil || bv.Health.Checked {
		t.Fatalf("dsr backend view %s", r.body)
	}
	var rep HealthReport
	r = e.do("GET", "/api/v1/health", "")
	if json.Unmarshal(r.body, &rep) != nil || rep.Backends["dscp/10.30.0.22#datapath"].State != health.Down {
		t.Fatalf("health report %s", r.body)
	}

	// The datapath probe alone takes an ordinarily healthy backend out.
	fp.set("10.30.0.11", errors.New("no SYN-ACK"))
	waitUntil(t, "10.30.0.11 out", func() bool { return e.dp.last().Services[0].Backends[0].State == "disabled" })
	r = e.do("GET", "/api/v1/services/web/backends/10.30.0.11", "")
	bv = BackendView{}
	if json.Unmarshal(r.body, &bv) != nil || bv.Health.State != "down" || bv.Health.LastResult != "ok" || bv.State != "active" {
		t.Fatalf("backend view %s", r.body)
	}
	fp.set("10.30.0.11", nil)
	waitUntil(t, "10.30.0.11 back", func() bool { return e.dp.last().Services[0].Backends[0].State == "active" })
}

// TestDatapathKeyIsValidated: health.datapath takes auto or off.
func TestDatapathKeyIsValidated(t *testing.T) {
	f, err := config.Parse([]byte(strings.Replace(datapathConfig, `datapath: "off"`, `datapath: maybe`, 1)), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var fe *config.FieldError
	if _, err := f.CompileAll(); !errors.As(err, &fe) || fe.Field != "services[2].health.datapath" {
		t.Fatalf("%v", err)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
