package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEveryCommandHasHelp: --help on every command and subcommand prints
// usage to stdout and exits 0.
func TestEveryCommandHasHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"run", "--help"}, {"bench", "--help"}, {"bench", "replay", "--help"},
		{"bench", "gen-pcap", "--help"}, {"version", "--help"}, {"realserver", "--help"},
	} {
		cmd := exec.Command(xlbBin, args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("xlb %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		if !strings.Contains(strings.ToLower(string(out)), "usage") {
			t.Errorf("xlb %s printed no usage:\n%s", strings.Join(args, " "), out)
		}
	}
	out, _ := exec.Command(xlbBin, "run", "--help").CombinedOutput()
	for _, want := range []string{"XLB_API_TOKEN", "XLB_LB_WORKERS", "XLB_API_LISTEN", "SIGHUP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("xlb run --help does not mention %s", want)
		}
	}
	out, _ = exec.Command(xlbBin, "bench", "gen-pcap", "--help").CombinedOutput()
	if !strings.Contains(string(out), "testdata/replay") || !strings.Contains(string(out), "198.51.100.10") {
		t.Errorf("gen-pcap --help does not say which VIPs it generates for and which configurations match:\n%s", out)
	}
	// Unknown commands and flags are usage errors (exit 2).
	for _, args := range [][]string{{"frobnicate"}, {"run", "--nope"}, {"bench", "nope"}} {
		err := exec.Command(xlbBin, args...).Run()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("xlb %s: %v, want exit 2", strings.Join(args, " "), err)
		}
	}
}
