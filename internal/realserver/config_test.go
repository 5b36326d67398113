package realserver

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/dataplane/bpf"
)

func TestParseVIPs(t *testing.T) {
	v4, v4b, v6 := netip.MustParseAddr("198.51.100.10"), netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("2001:db8:100::10")
	for _, tc := range []struct {
		in   string
		dscp int
		want []VIP
		err  string
	}{
		{in: "198.51.100.10", want: []VIP{{v4, 0}}},
		{in: "198.51.100.10,2001:db8:100::10", want: []VIP{{v4, 0}, {v6, 0}}},
		{in: " 198.51.100.10=10 , 2001:db8:100::10=12,", want: []VIP{{v4, 10}, {v6, 12}}},
		{in: "198.51.100.10,198.51.100.11=12", dscp: 10, want: []VIP{{v4, 10}, {v4b, 12}}},
		{in: "::ffff:198.51.100.10", want: []VIP{{v4, 0}}},
		{in: "198.51.100.10=0", err: "not a code 1..63"},
		{in: "198.51.100.10=64", err: "not a code 1..63"},
		{in: "198.51.100.10=x", err: "not a number"},
		{in: "198.51.100.300", err: "vip"},
		{in: "fe80::1%eth0", err: "zone"},
		{in: "198.51.100.10", dscp: 99, err: "--dscp 99"},
	} {
		got, err := ParseVIPs(tc.in, tc.dscp)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseVIPs(%q, %d) = %v, %v; want error with %q", tc.in, tc.dscp, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseVIPs(%q, %d) = %v, %v; want %v", tc.in, tc.dscp, got, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	vip := func(s string, d uint8) VIP { return VIP{netip.MustParseAddr(s), d} }
	ok := []Config{
		{Interface: "eth0", Mode: ModeTunnel, VIPs: []VIP{vip("198.51.100.10", 0), vip("2001:db8::10", 0)}},
		{Interface: "eth0", Mode: ModeDSR, VIPs: []VIP{vip("198.51.100.10", 0)}},
		// One code per family: the same code may serve an IPv4 and an IPv6 VIP.
		{Interface: "eth0", Mode: ModeL3DSR, VIPs: []VIP{vip("198.51.100.10", 10), vip("2001:db8::10", 10), vip("198.51.100.11", 11)}},
	}
	for _, c := range ok {
		if err := c.Validate(); err != nil {
			t.Errorf("%v: %v", c.String(), err)
		}
		if c.StateFile != DefaultStateFile("eth0") || c.StatsInterval != 10*time.Second {
			t.Errorf("defaults not filled in: %+v", c)
		}
	}
	for _, tc := range []struct {
		c   Config
		err string
	}{
		{Config{Mode: ModeTunnel, VIPs: []VIP{vip("198.51.100.10", 0)}}, "interface: missing"},
		{Config{Interface: "lo", Mode: ModeTunnel, VIPs: []VIP{vip("198.51.100.10", 0)}}, "interface \"lo\""},
		{Config{Interface: "eth0", Mode: "warp", VIPs: []VIP{vip("198.51.100.10", 0)}}, "mode \"warp\""},
		{Config{Interface: "eth0", Mode: ModeTunnel}, "vips: none"},
		{Config{Interface: "eth0", Mode: ModeL3DSR, VIPs: []VIP{vip("198.51.100.10", 0)}}, "needs its DSCP"},
		{Config{Interface: "eth0", Mode: ModeTunnel, VIPs: []VIP{vip("198.51.100.10", 10)}}, "only means something in l3dsr"},
		{Config{Interface: "eth0", Mode: ModeL3DSR, VIPs: []VIP{vip("198.51.100.10", 10), vip("198.51.100.11", 10)}}, "already maps to 198.51.100.10"},
		{Config{Interface: "eth0", Mode: ModeTunnel, VIPs: []VIP{vip("198.51.100.10", 0), vip("198.51.100.10", 0)}}, "listed twice"},
		{Config{Interface: "eth0", Mode: ModeTunnel, VIPs: []VIP{vip("127.0.0.1", 0)}}, "not a unicast service address"},
	} {
		if err := tc.c.Validate(); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%+v: %v, want an error with %q", tc.c, err, tc.err)
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "realserver.yaml")
	const y = `interface: eth1
mode: l3dsr
dscp: 10
vips:
  - 198.51.100.10
  - 2001:db8:100::10=12
  - "198.51.100.11=11, 198.51.100.12=13"
xdp: generic
state_file: /tmp/rs.json
stats_interval: 2s
`
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Interface: "eth1", Mode: ModeL3DSR, XDP: bpf.Generic, StateFile: "/tmp/rs.json", StatsInterval: 2 * time.Second,
		VIPs: []VIP{
			{netip.MustParseAddr("198.51.100.10"), 10}, {netip.MustParseAddr("2001:db8:100::10"), 12},
			{netip.MustParseAddr("198.51.100.11"), 11}, {netip.MustParseAddr("198.51.100.12"), 13},
		}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("interface: eth0\nmode: tunnel\nvips: [198.51.100.10]\nvip_typo: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(p); err == nil || !strings.Contains(err.Error(), "vip_typo") {
		t.Fatalf("unknown key: %v", err)
	}
}
