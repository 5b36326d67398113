package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestBrokenConfigurations: every broken file is refused with an error
// that names the key path and shows the bad value.
func TestBrokenConfigurations(t *testing.T) {
	cases := []struct {
		name, from, to string
		field, value   string
	}{
		{"bad vip", "vip: 198.51.100.10", "vip: 198.51.100.300", "services[0].vip", "198.51.100.300"},
		{"unspecified vip", "vip: 198.51.100.10", "vip: 0.0.0.0", "services[0].vip", "0.0.0.0"},
		{"multicast vip", "vip: 198.51.100.10", "vip: 224.0.0.5", "services[0].vip", "224.0.0.5"},
		{"loopback vip", "vip: 198.51.100.10", "vip: 127.0.0.1", "services[0].vip", "127.0.0.1"},
		{"vip is a backend", "vip: 198.51.100.10", "vip: 192.0.2.11", "services[0].backends[0].address", "192.0.2.11"},
		{"bad backend", "address: 192.0.2.12", "address: nope", "services[0].backends[1].address", "nope"},
		{"weight not a number", "weight: 50", "weight: abc", "services[0].backends[1].weight", "abc"},
		{"weight too big", "weight: 50", "weight: 70000", "services[0].backends[1].weight", "70000"},
		{"all weights zero", "weight: 100", "weight: 0", "", ""}, // see below
		{"port too big", "port: 80\n    protocol", "port: 99999\n    protocol", "services[0].port", "99999"},
		{"port not a number", "port: 80\n    protocol", "port: eighty\n    protocol", "services[0].port", "eighty"},
		{"mode", "mode: dsr", "mode: magic", "services[0].mode", "magic"},
		{"scheduler", "scheduler: maglev", "scheduler: random", "services[0].scheduler", "random"},
		{"protocol", "protocol: tcp", "protocol: sctp", "services[0].protocol", "sctp"},
		{"mac", `mac: "02:00:00:00:00:12"`, `mac: "zz"`, "services[0].backends[1].mac", "zz"},
		{"state", "state: draining", "state: sleepy", "services[0].backends[1].state", "sleepy"},
		{"snat ports", "ports: 1024-65535", "ports: 9-2", "lb.snat.ports", "9-2"},
		{"snat address", "addresses: [192.0.2.1]", "addresses: [192.0.2.256]", "lb.snat.addresses[0]", "192.0.2.256"},
		{"negative timeout", "tcp_syn: 60s", "tcp_syn: -1s", "lb.conntrack.tcp_syn", ""},
		{"bad duration", "tcp_syn: 60s", "tcp_syn: soon", "lb.conntrack.tcp_syn", "soon"},
		{"capacity zero", "capacity: 1000000", "capacity: 0", "lb.conntrack.capacity", "0"},
		{"xdp", "xdp: auto", "xdp: turbo", "interfaces[0].xdp", "turbo"},
		{"checksum", "xdp: auto", "xdp: auto\n    checksum: maybe", "interfaces[0].checksum", "maybe"},
		{"workers", "workers: auto", "workers: many", "lb.workers", "many"},
		{"cpus", "workers: auto", "workers: auto\n  cpus: [99]", "lb.cpus[0]", "99"},
		{"tunnel source family", "tunnel_source: 192.0.2.1", "tunnel_source: 2001:db8::1", "lb.tunnel_source", "2001:db8::1"},
		{"unknown top-level key", "lb:\n", "lbx: 1\nlb:\n", "lbx", "lbx"},
		{"unknown nested key", "dscp: 0", "dscp: 0\n    weigth: 3", "services[0].weigth", "weigth"},
		{"health type", "type: http", "type: ping", "services[0].health.type", "ping"},
		{"health timeout over interval", "timeout: 1s", "timeout: 5s", "services[0].health.timeout", "5s"},
		{"health expect", "interval: 2s", "interval: 2s, expect: 42", "services[0].health.expect", "42"},
		{"all_down", "dscp: 0", "dscp: 0\n    all_down: panic", "services[0].all_down", "panic"},
		{"backend interface", `mac: ""}`, `mac: "", interface: eth7}`, "services[0].backends[0].interface", "eth7"},
		{"maglev size", "workers: auto", "workers: auto\n  maglev_size: 1000", "lb.maglev_size", "1000"},
		{"duplicate interface", "interfaces:\n  - name: eth0\n", "interfaces:\n  - name: eth0\n  - name: eth0\n", "interfaces[1].name", "eth0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.from) {
				t.Fatalf("fixture lacks %q", c.from)
			}
			doc := strings.Replace(good, c.from, c.to, 1)
			if c.name == "all weights zero" {
				doc = strings.ReplaceAll(strings.Replace(doc, "weight: 50", "weight: 0", 1), "weight: 100", "weight: 0")
				c.field = "services[0].backends"
			}
			f, err := Parse([]byte(doc), "yaml")
			if err == nil {
				_, err = f.CompileAll()
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v (%T), want a FieldError", err, err)
			}
			if fe.Field != c.field {
				t.Fatalf("field %q, want %q (%v)", fe.Field, c.field, err)
			}
			if c.value != "" && (fe.Value != c.value || !strings.Contains(err.Error(), c.value)) {
				t.Fatalf("value %q / message %q, want the bad value %q shown", fe.Value, err, c.value)
			}
		})
	}
}

// TestSetOverridesNameTheKey: --set of a list element is refused naming
// the key, and a bad --set value names the key and the value.
func TestSetOverridesNameTheKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadWith(p, map[string]string{"services.0.port": "99999"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "services.0.port" || !strings.Contains(err.Error(), "list") {
		t.Fatalf("--set services.0.port: %v", err)
	}
	f, err := LoadWith(p, map[string]string{"lb.maglev_size": "big"})
	if err == nil {
		_, err = f.CompileAll()
	}
	if !errors.As(err, &fe) || fe.Field != "lb.maglev_size" || fe.Value != "big" {
		t.Fatalf("--set lb.maglev_size=big: %v", err)
	}
}

// TestSetList: --set gives a list key its elements, comma-separated, with
// or without brackets; a bad element is named by its index.
func TestSetList(t *testing.T) {
	p := filepath.Join(t.TempDir(), "xlb.yaml")
	if err := os.WriteFile(p, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		val  string
		want []int
	}{{"0,1", []int{0, 1}}, {"[0, 1]", []int{0, 1}}, {"1", []int{1}}, {"", []int{}}} {
		f, err := LoadWith(p, map[string]string{"lb.cpus": c.val})
		if err != nil {
			t.Fatalf("--set lb.cpus=%q: %v", c.val, err)
		}
		if len(f.LB.CPUs) != len(c.want) || (len(c.want) > 0 && !slices.Equal(f.LB.CPUs, c.want)) {
			t.Errorf("--set lb.cpus=%q: %v, want %v", c.val, f.LB.CPUs, c.want)
		}
	}
	_, err := LoadWith(p, map[string]string{"lb.cpus": "0,x"})
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "lb.cpus[1]" || fe.Value != "x" {
		t.Fatalf("--set lb.cpus=0,x: %v", err)
	}
	f, err := LoadWith(p, map[string]string{"lb.snat.addresses": "10.0.0.2, 10.0.0.3"})
	if err != nil || !slices.Equal(f.LB.SNAT.Addresses, []string{"10.0.0.2", "10.0.0.3"}) {
		t.Fatalf("--set lb.snat.addresses: %v %v", err, f.LB.SNAT.Addresses)
	}
}
