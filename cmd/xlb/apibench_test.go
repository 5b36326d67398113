package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// BenchmarkAPIScale measures the management plane against a running xlb
// with 1 000 services × 10 backends: how long PUT /api/v1/config takes to
// be live (the response is sent after the new snapshot is swapped in and
// the state file written), the p50/p99 of 100 single-backend PATCHes, and
// xlb's memory. Backends have static MACs, as a 10 000-backend fleet would
// not be resolved by ARP in a benchmark.
func BenchmarkAPIScale(b *testing.B) {
	if err := netns.Available(); err != nil {
		b.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(b, netns.Options{Layout: netns.OneArm, Mode: netns.ModeDSR, Backends: 1})
	dir := b.TempDir()
	base := fmt.Sprintf("interfaces:\n  - {name: %s, xdp: native}\nlb: {workers: 1, maglev_size: 1021, conntrack: {capacity: 65536}}\napi: {listen: %s, state_file: %s}\n",
		tp.LBClientIface, apiAddr, filepath.Join(dir, "state.json"))
	cfg := filepath.Join(dir, "xlb.yaml")
	if err := os.WriteFile(cfg, []byte(base+"services: []\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	lb := startXLBEnv(b, tp, cfg, []string{"XLB_API_TOKEN=" + testToken}, "--poll")
	api := newAPI(b, tp)
	var doc strings.Builder
	doc.WriteString(base + "services:\n")
	for s := 0; s < 1000; s++ {
		fmt.Fprintf(&doc, "  - name: s%d\n    vip: 198.51.%d.%d\n    port: 80\n    backends:\n", s, 100+s/250, s%250+1)
		for k := 0; k < 10; k++ {
			fmt.Fprintf(&doc, "      - {address: 10.%d.%d.%d, mac: \"02:00:00:00:%02x:%02x\"}\n", 40+s/250, s%250, k+1, s%250, k)
		}
	}
	body := []byte(doc.String())
	b.ResetTimer()
	var puts, patches []time.Duration
	for i := 0; i < b.N; i++ {
		// Alternate two documents so every PUT changes something.
		d := body
		if i%2 == 1 {
			d = []byte(strings.Replace(doc.String(), "name: s0\n", "name: s0\n    scheduler: sh\n", 1))
		}
		start := time.Now()
		r := api.do("PUT", "/api/v1/config", d, "Content-Type", "application/yaml")
		puts = append(puts, time.Since(start))
		if r.status != 200 {
			b.Fatalf("PUT config: %d %s", r.status, r.body[:min(len(r.body), 500)])
		}
		for k := 0; k < 100; k++ {
			start := time.Now()
			api.must("PATCH", fmt.Sprintf("/api/v1/services/s%d/backends/10.%d.%d.%d", k*7, 40+k*7/250, (k*7)%250, k%10+1),
				map[string]any{"weight": 50 + k + i})
			patches = append(patches, time.Since(start))
		}
	}
	b.StopTimer()
	sort.Slice(patches, func(i, j int) bool { return patches[i] < patches[j] })
	sort.Slice(puts, func(i, j int) bool { return puts[i] < puts[j] })
	b.ReportMetric(float64(puts[len(puts)/2].Microseconds())/1000, "put_config_ms")
	b.ReportMetric(float64(patches[len(patches)/2].Microseconds())/1000, "patch_p50_ms")
	b.ReportMetric(float64(patches[len(patches)*99/100].Microseconds())/1000, "patch_p99_ms")
	m := api.must("GET", "/metrics", nil).body
	for _, name := range []string{"go_memstats_heap_inuse_bytes", "process_resident_memory_bytes"} {
		if v := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(m); v != nil {
			f, _ := strconv.ParseFloat(string(v[1]), 64)
			b.ReportMetric(f/(1<<20), strings.TrimSuffix(strings.TrimPrefix(name, "go_memstats_"), "_bytes")+"_MiB")
		}
	}
	lb.stop(b)
}
