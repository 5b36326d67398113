package daemon

import (
	"os"
	"path/filepath"
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

func TestQueuesAfterAttach(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bound  int
		counts []int
		auto   bool
		max    int
		want   int
	}{
		{"unchanged", 2, []int{2, 2}, true, 64, 2},
		{"virtio-net added queues for XDP", 2, []int{4, 4}, true, 64, 4},
		{"only one interface grew: the fewest", 2, []int{4, 2}, true, 64, 2},
		{"both grew unevenly", 2, []int{4, 3}, true, 64, 3},
		{"lb.workers fixed: no new sockets", 2, []int{4, 4}, false, 64, 2},
		{"capped by the XSKMAP", 2, []int{128, 128}, true, 64, 64},
		{"never fewer than bound", 4, []int{2, 2}, true, 64, 4},
		{"no interfaces", 1, nil, true, 64, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := queuesAfterAttach(tc.bound, tc.counts, tc.auto, tc.max); got != tc.want {
				t.Errorf("queuesAfterAttach(%d, %v, %v, %d) = %d, want %d", tc.bound, tc.counts, tc.auto, tc.max, got, tc.want)
			}
		})
	}
}
