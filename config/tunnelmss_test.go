package config

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/xlb/xlb/dataplane"
)

const tunnelDoc = `
interfaces: [{name: eth0}]
lb: {tunnel_source: 192.0.2.1}
services:
  - name: web
    vip: 198.51.100.10
    port: 80
    mode: tunnel
    tunnel_mss: MSS
    backends: [{address: 192.0.2.11}]
`

func TestTunnelMSS(t *testing.T) {
	for _, c := range []struct {
		value string
		mode  string
		proto string
		want  uint16
		field string // "" = accepted
	}{
		{value: "auto", want: dataplane.TunnelMSSAuto},
		{value: "off", want: 0},
		{value: `""`, want: 0},
		{value: "1340", want: 1340},
		{value: `"1340"`, want: 1340},
		{value: "536", want: 536},
		{value: "535", field: "services[0].tunnel_mss"},
		{value: "65496", field: "services[0].tunnel_mss"},
		{value: "big", field: "services[0].tunnel_mss"},
		{value: "auto", mode: "dsr", field: "services[0].tunnel_mss"},
		{value: "1200", mode: "l3dsr", field: "services[0].tunnel_mss"},
		{value: "off", mode: "dsr", want: 0},
		{value: "auto", proto: "udp", field: "services[0].tunnel_mss"},
	} {
		doc := strings.Replace(tunnelDoc, "MSS", c.value, 1)
		if c.mode != "" {
			doc = strings.Replace(doc, "mode: tunnel", "mode: "+c.mode+"\n    dscp: 10", 1)
		}
		if c.proto != "" {
			doc = strings.Replace(doc, "port: 80", "port: 80\n    protocol: "+c.proto, 1)
		}
		f, err := Parse([]byte(doc), "yaml")
		if err != nil {
			t.Fatalf("%s: parse: %v", c.value, err)
		}
		spec, _, err := f.Compile()
		var fe *FieldError
		if c.field != "" {
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("tunnel_mss %s (mode %s, %s): %v, want an error about %s", c.value, c.mode, c.proto, err, c.field)
			}
			continue
		}
		if err != nil {
			t.Errorf("tunnel_mss %s: %v", c.value, err)
			continue
		}
		if got := spec.Services[0].TunnelMSS; got != c.want {
			t.Errorf("tunnel_mss %s: compiled %d, want %d", c.value, got, c.want)
		}
	}
}

// TestTunnelMSSJSON: the API takes tunnel_mss as a string or a number and
// writes it back as a string; unset it is left out.
func TestTunnelMSSJSON(t *testing.T) {
	for in, want := range map[string]TunnelMSS{`{"tunnel_mss": 1340}`: "1340", `{"tunnel_mss": "auto"}`: "auto", `{}`: ""} {
		var s Service
		if err := json.Unmarshal([]byte(in), &s); err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if s.TunnelMSS != want {
			t.Errorf("%s: %q, want %q", in, s.TunnelMSS, want)
		}
	}
	var s Service
	if err := json.Unmarshal([]byte(`{"tunnel_mss": true}`), &s); err == nil {
		t.Error("tunnel_mss: true was accepted")
	}
	b, _ := json.Marshal(Service{Name: "web", TunnelMSS: "1340"})
	if !strings.Contains(string(b), `"tunnel_mss":"1340"`) {
		t.Errorf("written as %s", b)
	}
	b, _ = json.Marshal(Service{Name: "web"})
	if strings.Contains(string(b), "tunnel_mss") {
		t.Errorf("unset tunnel_mss written: %s", b)
	}
}
