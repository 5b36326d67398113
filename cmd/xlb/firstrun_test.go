package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestChecksumOffloadDetected: with tx checksum offload left on on every
// veth (as a fresh host has it), senders hand xlb frames that carry only
// the pseudo-header sum. With the default interfaces[].checksum: verify,
// xlb drops the first packet of each new flow, counts bad_checksum on the
// interface and logs a warning naming the cause and the fix, once per
// interval; with checksum: fix, 200 requests succeed in nat and fullnat.
func TestChecksumOffloadDetected(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	for _, mode := range []string{"nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: mode, Backends: 2, TxChecksumOffload: true})
			tp.StartHTTPBackends(t)
			cfg := lbConfig(t, tp, mode, 100)
			lb := startXLB(t, tp, cfg)
			client := tp.HTTPClient(700 * time.Millisecond)
			failed := 0
			for i := 0; i < 5; i++ {
				if resp, err := client.Get("http://" + tp.VIP.String() + "/"); err != nil {
					failed++
				} else {
					resp.Body.Close()
				}
			}
			if failed != 5 {
				t.Fatalf("%d of 5 requests failed; with partial checksums and checksum: verify all should", failed)
			}
			st, err := lb.stats()
			if err != nil {
				t.Fatal(err)
			}
			if n := st.Interfaces[tp.LBClientIface]["bad_checksum"]; n < 5 {
				t.Fatalf("bad_checksum on %s = %d, want ≥ 5 (one per SYN and retransmission): %v", tp.LBClientIface, n, st.Interfaces)
			}
			if st.Drops["bad_checksum"] == 0 {
				t.Fatalf("drops %v", st.Drops)
			}
			waitFor(t, 3*time.Second, "the warning", func() bool { return strings.Contains(lb.logs.String(), "checksum: fix") })
			if n := strings.Count(lb.logs.String(), "bad TCP/UDP checksums"); n != 1 {
				t.Fatalf("warning logged %d times within one interval, want once:\n%s", n, lb.logs.String())
			}
			if !strings.Contains(lb.logs.String(), "interface="+tp.LBClientIface) || !strings.Contains(lb.logs.String(), "ethtool -K") {
				t.Fatalf("the warning does not name the interface and the fix:\n%s", lb.logs.String())
			}
			lb.stop(t)

			// checksum: fix recomputes every checksum: traffic flows.
			b, _ := os.ReadFile(cfg)
			fixed := strings.Replace(string(b), "xdp: native}", "xdp: native, checksum: fix}", 1)
			p := filepath.Join(t.TempDir(), "fix.yaml")
			if err := os.WriteFile(p, []byte(fixed), 0o644); err != nil {
				t.Fatal(err)
			}
			lb = startXLB(t, tp, p)
			if seen := answers(t, tp, 200); len(seen) != 2 {
				t.Fatalf("answers %v", seen)
			}
			st, _ = lb.stats()
			if n := st.Drops["bad_checksum"]; n != 0 {
				t.Fatalf("checksum: fix still dropped %d", n)
			}
			t.Log(fmt.Sprintf("%s: verify dropped every new flow with a warning; fix carried 200 requests", mode))
			lb.stop(t)
		})
	}
}
