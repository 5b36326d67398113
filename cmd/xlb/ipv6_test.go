package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// TestIPv6ThroughNamespaces sends HTTP over IPv6 through an IPv6 VIP in
// dsr, nat and fullnat (two-arm), with next hops found by neighbour discovery.
func TestIPv6ThroughNamespaces(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	for _, mode := range []string{"dsr", "nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			tp := netns.New(t, netns.Options{Layout: netns.TwoArm, Mode: mode, Backends: 2, IPv6: true})
			tp.StartHTTPBackends(t)
			var b strings.Builder
			fmt.Fprintf(&b, "interfaces:\n  - {name: %s, xdp: native, role: client}\n  - {name: %s, xdp: native, role: backend}\n", tp.LBClientIface, tp.LBBackendIface)
			fmt.Fprintf(&b, "lb:\n  workers: 1\n")
			if mode == "fullnat" {
				fmt.Fprintf(&b, "  snat: {addresses: [%s]}\n", tp.SNAT6)
			}
			fmt.Fprintf(&b, "api: {listen: %s}\nservices:\n  - name: web6\n    vip: %s\n    port: 80\n    mode: %s\n    backends:\n", apiAddr, tp.VIP6, mode)
			for _, be := range tp.Backends {
				port := 80
				if mode != "dsr" {
					port = 8080
				}
				fmt.Fprintf(&b, "      - {address: \"%s\", port: %d}\n", be.Addr6, port)
			}
			p := filepath.Join(t.TempDir(), "xlb.yaml")
			if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			lb := startXLB(t, tp, p)
			want := tp.Client.Addr6.String()
			if mode == "fullnat" {
				want = tp.SNAT6.String()
			}
			seen := map[string]int{}
			client := tp.HTTPClient(5 * time.Second)
			for i := 0; i < 50; i++ {
				resp, err := client.Get("http://[" + tp.VIP6.String() + "]/")
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				var r netns.HTTPReply
				err = json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				host, _, _ := net.SplitHostPort(r.Remote)
				if host != want {
					t.Fatalf("backend saw %s, want %s", r.Remote, want)
				}
				seen[r.Backend]++
			}
			if len(seen) != 2 {
				t.Fatalf("answers %v", seen)
			}
			lb.stop(t)
		})
	}
}
