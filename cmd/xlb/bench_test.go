package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchCommands(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "t.pcap")
	out, err := exec.Command(xlbBin, "bench", "gen-pcap", "--out", pcap, "--flows", "50", "--packets", "500", "--seed", "3").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "50 flows") {
		t.Fatalf("gen-pcap: %v\n%s", err, out)
	}
	written := filepath.Join(dir, "out.pcap")
	out, err = exec.Command(xlbBin, "bench", "replay", "--config", "../../testdata/replay/fullnat.yaml", "--pcap", pcap,
		"--loops", "2", "--workers", "2", "--json", "--write", written).Output()
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("replay --json: %v\n%s", err, out)
	}
	for _, k := range []string{"packets", "ns_per_packet", "mpps", "allocs_per_packet", "verdicts"} {
		if _, ok := res[k]; !ok {
			t.Fatalf("replay --json lacks %q: %s", k, out)
		}
	}
	tx := res["verdicts"].(map[string]any)["tx"].(float64)
	if res["packets"].(float64) == 0 || tx == 0 || res["written"].(float64) != tx {
		t.Fatalf("replay: %s", out)
	}
	// Bad input: a clear error, not a trace.
	cmd := exec.Command(xlbBin, "bench", "replay", "--config", "../../testdata/replay/nope.yaml", "--pcap", pcap)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "nope.yaml") || strings.Contains(string(b), "goroutine") {
		t.Fatalf("missing config: %v\n%s", err, b)
	}
}
