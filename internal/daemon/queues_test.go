package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRxQueues(t *testing.T) {
	root := t.TempDir()
	old := sysClassNet
	sysClassNet = root
	t.Cleanup(func() { sysClassNet = old })
	mk := func(ifname string, n int) {
		for q := range n {
			for _, d := range []string{"rx-", "tx-"} {
				if err := os.MkdirAll(filepath.Join(root, ifname, "queues", d+string(rune('0'+q))), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	mk("ens4", 2)
	if got := rxQueues("ens4"); got != 2 {
		t.Errorf("rxQueues(ens4) = %d, want 2", got)
	}
	// virtio-net with 4 queue pairs and 2 CPUs: attaching XDP enables 2 more.
	mk("ens4", 4)
	if got := rxQueues("ens4"); got != 4 {
		t.Errorf("rxQueues(ens4) after attach = %d, want 4", got)
	}
	if got := rxQueues("gone0"); got != 1 {
		t.Errorf("rxQueues of a missing interface = %d, want 1", got)
	}
}

func TestUnboundQueues(t *testing.T) {
	for _, tc := range []struct {
		name                    string
		bound, n, max, combined int
		wantMsg, wantFix        string
	}{
		{"every queue has a socket", 2, 2, 4, 4, "", ""},
		// Measured in the appliance's test: virtio-net, 4 queue pairs, 2
		// vCPUs, 2 combined channels; after the attach, 4 rx queues.
		{"virtio-net spare queue pairs", 2, 4, 4, 2, "ens4 has 4 rx queues with the steering program attached and xlb has sockets on queues 0-1: the frames the NIC puts on queues 2-3 reach no worker", "ethtool -L ens4 combined 4 (all its queue pairs"},
		{"lb.workers below the queues", 2, 8, 8, 8, "queues 2-7 reach no worker", "ethtool -L ens4 combined 8 before xlb starts, or lb.workers: auto"},
		{"channels unknown", 1, 3, 0, 0, "queues 1-2", "lb.workers: auto"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, fix := unboundQueues("ens4", tc.bound, tc.n, tc.max, tc.combined)
			if tc.wantMsg == "" {
				if msg != "" || fix != "" {
					t.Errorf("got %q, %q; want nothing", msg, fix)
				}
				return
			}
			if !strings.Contains(msg, tc.wantMsg) || !strings.Contains(fix, tc.wantFix) {
				t.Errorf("got\n  %q\n  fix %q\nwant %q, fix %q", msg, fix, tc.wantMsg, tc.wantFix)
			}
		})
	}
}
