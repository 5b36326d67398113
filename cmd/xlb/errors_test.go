package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/netns"
)

// runOnce runs `xlb run` to completion (it must fail fast) and returns its
// exit code and output.
func runOnce(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("xlb run did not exit")
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

func TestRunReportsClearErrors(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skipf("network namespaces unavailable: %v", err)
	}
	tp := netns.New(t, netns.Options{Layout: netns.OneArm, Mode: "dsr", Backends: 1})
	good := lbConfig(t, tp, "dsr", 100)
	cases := []struct{ name, from, to, want string }{
		{"missing interface", "name: eth0", "name: nope0", `interface nope0: not found in this network namespace`},
		{"bad address", "vip: 198.51.100.10", "vip: 198.51.100.999", `services[0].vip: "198.51.100.999" is not an IP address`},
		{"unknown key", "protocol: tcp", "protocol: tcp\n    colour: blue", "colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := readFile(t, good)
			if !strings.Contains(body, c.from) {
				t.Fatalf("config lacks %q:\n%s", c.from, body)
			}
			p := filepath.Join(t.TempDir(), "xlb.yaml")
			if err := os.WriteFile(p, []byte(strings.Replace(body, c.from, c.to, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			code, out := runOnce(t, exec.Command("ip", "netns", "exec", tp.LB.NS, xlbBin, "run", "--config", p, "--log-format", "console"))
			if code != 1 || !strings.Contains(out, c.want) || strings.Contains(out, "goroutine ") {
				t.Fatalf("exit %d, output:\n%s\nwant exit 1 and %q, no stack trace", code, out, c.want)
			}
		})
	}
	t.Run("no privileges", func(t *testing.T) {
		dir, err := os.MkdirTemp("", "xlb-noroot-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "xlb.yaml")
		if err := os.WriteFile(p, []byte(readFile(t, good)), 0o644); err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, "xlb")
		if err := os.WriteFile(bin, []byte(readFile(t, xlbBin)), 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", p, "--log-format", "console")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		code, out := runOnce(t, cmd)
		if code != 77 || !strings.Contains(out, "xlb needs root") {
			t.Fatalf("as nobody: exit %d, output:\n%s", code, out)
		}
	})
}
