package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestSNATPortRange(t *testing.T) {
	local := []netip.Addr{netip.MustParseAddr("10.30.0.200")}
	kernel := [2]uint16{32768, 60999}
	for _, tc := range []struct {
		name   string
		ports  string
		local  []netip.Addr
		kernel [2]uint16
		want   [2]uint16
		moved  bool
		err    string
	}{
		{"unset, not local", "", nil, kernel, [2]uint16{1024, 65535}, false, ""},
		{"set, not local", "10000-60000", nil, kernel, [2]uint16{10000, 60000}, false, ""},
		{"unset, local: moves below", "", local, kernel, [2]uint16{1024, 32767}, true, ""},
		{"set below, local", "10000-30000", local, kernel, [2]uint16{10000, 30000}, false, ""},
		{"set above, local", "61000-65535", local, kernel, [2]uint16{61000, 65535}, false, ""},
		{"set overlapping, local", "10000-40000", local, kernel, [2]uint16{10000, 40000}, false,
			"lb.snat.ports: 10000-40000 overlaps the kernel's ephemeral ports 32768-60999 (net.ipv4.ip_local_port_range), and SNAT address 10.30.0.200 is local"},
		{"written default overlaps, local", "1024-65535", local, kernel, [2]uint16{1024, 65535}, false, "overlaps"},
		{"unset, kernel range from 1024", "", local, [2]uint16{1024, 65535}, [2]uint16{1024, 65535}, false, "use a range below 1024"},
		{"bad range", "9-1", nil, kernel, [2]uint16{}, false, `lb.snat.ports: "9-1" is not a port range`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, moved, err := SNATPortRange(tc.ports, tc.local, tc.kernel)
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			if err != nil {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != "lb.snat.ports" || fe.Value != tc.ports {
					t.Errorf("error %#v: want a FieldError for lb.snat.ports with value %q", err, tc.ports)
				}
			}
			if r != tc.want || moved != tc.moved {
				t.Errorf("got %v moved %v, want %v moved %v", r, moved, tc.want, tc.moved)
			}
		})
	}
}
