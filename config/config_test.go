package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/dataplane"
)

const good = `
interfaces:
  - name: eth0
    xdp: auto
lb:
  workers: auto
  tunnel_source: 192.0.2.1
  snat: {addresses: [192.0.2.1], ports: 1024-65535}
  conntrack: {capacity: 1000000, tcp_syn: 60s, tcp_established: 3600s, tcp_closing: 10s, udp: 60s}
api: {listen: 127.0.0.1:8080, token_file: /etc/xlb/token, state_file: /var/lib/xlb/state.json}
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    protocol: tcp
    mode: dsr
    scheduler: maglev
    dscp: 0
    health: {type: http, path: /healthz, interval: 2s, timeout: 1s, rise: 2, fall: 3}
    backends:
      - {address: 192.0.2.11, port: 80, weight: 100, state: active, mac: ""}
      - {address: 192.0.2.12, port: 80, weight: 50, state: draining, mac: "02:00:00:00:00:12"}
`

func TestDesignExampleCompiles(t *testing.T) {
	f, err := Parse([]byte(good), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.Services) != 1 || len(spec.Services[0].Backends) != 2 {
		t.Fatalf("spec %+v", spec)
	}
	s := spec.Services[0]
	if s.Mode != dataplane.ModeDSR || s.Proto != 6 || s.Port != 80 || s.Backends[1].State != dataplane.StateDraining || s.Backends[1].Weight != 50 {
		t.Fatalf("service %+v", s)
	}
	if s.Backends[1].MAC != [6]byte{2, 0, 0, 0, 0, 0x12} {
		t.Fatalf("mac %x", s.Backends[1].MAC)
	}
	if ctc.TCPEstablished != time.Hour || ctc.SNATPortMin != 1024 || len(ctc.SNATIPs4) != 1 {
		t.Fatalf("conntrack %+v", ctc)
	}
}

func TestBadInputNamesTheField(t *testing.T) {
	cases := []struct{ from, to, field string }{
		{"vip: 198.51.100.10", "vip: 198.51.100.300", "services[0].vip"},
		{"address: 192.0.2.12", "address: nope", "services[0].backends[1].address"},
		{"mode: dsr", "mode: magic", "services[0].mode"},
		{"scheduler: maglev", "scheduler: random", "services[0].scheduler"},
		{"protocol: tcp", "protocol: sctp", "services[0].protocol"},
		{"port: 80\n    protocol", "port: 70000\n    protocol", "services[0].port"},
		{`mac: "02:00:00:00:00:12"`, `mac: "zz"`, "services[0].backends[1].mac"},
		{"state: draining", "state: sleepy", "services[0].backends[1].state"},
		{"ports: 1024-65535", "ports: 9-2", "lb.snat.ports"},
		{"tcp_syn: 60s", "tcp_syn: -1s", "lb.conntrack.tcp_syn"},
		{"xdp: auto", "xdp: turbo", "interfaces[0].xdp"},
		{"workers: auto", "workers: many", "lb.workers"},
		{"tunnel_source: 192.0.2.1", "tunnel_source: 2001:db8::1", "lb.tunnel_source"},
	}
	for _, c := range cases {
		if !strings.Contains(good, c.from) {
			t.Fatalf("fixture lacks %q", c.from)
		}
		f, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)), "yaml")
		if err == nil {
			_, _, err = f.Compile()
		}
		if err == nil || !strings.Contains(err.Error(), c.field) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s → %s: error %v, want one naming %s", c.from, c.to, err, c.field)
		}
	}
}

func TestUnknownKeysAreErrors(t *testing.T) {
	_, err := Parse([]byte(strings.Replace(good, "dscp: 0", "dscp: 0\n    weigth: 3", 1)), "yaml")
	if err == nil || !strings.Contains(err.Error(), "weigth") {
		t.Fatalf("unknown key accepted: %v", err)
	}
	_, err = Parse([]byte(good+"\nbogus: 1\n"), "yaml")
	if err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("unknown top-level key accepted: %v", err)
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XLB_LB_TUNNEL_SOURCE", "192.0.2.99")
	f, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.LB.TunnelSource != "192.0.2.99" {
		t.Fatalf("tunnel_source %q", f.LB.TunnelSource)
	}
}

func TestReplayConfigsCompile(t *testing.T) {
	files, _ := filepath.Glob("../testdata/replay/*.yaml")
	if len(files) < 5 {
		t.Fatalf("replay configs: %v", files)
	}
	for _, p := range files {
		f, err := Load(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		spec, _, err := f.Compile()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		spec.Ifaces = []dataplane.Iface{{MTU: 1500}}
		if _, err := dataplane.Build(spec, nil); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}

func TestExampleConfigCompiles(t *testing.T) {
	f, err := Load("../docs/xlb.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Compile(); err != nil {
		t.Fatal(err)
	}
}
