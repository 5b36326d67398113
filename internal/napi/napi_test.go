package napi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/internal/testutil"
)

// fakeSysfs lays out root/<if>/ like /sys/class/net/<if>/.
func fakeSysfs(t *testing.T, ifi *net.Interface, deferIRQs, gro string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, ifi.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{
		"ifindex": fmt.Sprint(ifi.Index), "address": ifi.HardwareAddr.String() + "\n",
		"napi_defer_hard_irqs": deferIRQs, "gro_flush_timeout": gro,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readSettings(t *testing.T, root, ifname string) Settings {
	t.Helper()
	s, err := read(root, ifname)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConfigureRestores(t *testing.T) {
	ifi := &net.Interface{Index: 7, Name: "eth9", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	root := fakeSysfs(t, ifi, "0\n", "0\n")

	restore, err := configure(root, ifi, Options{}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readSettings(t, root, ifi.Name), (Settings{2, 200 * time.Microsecond}); got != want {
		t.Fatalf("after Configure: %+v, want %+v", got, want)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if err := restore(); err != nil {
		t.Fatalf("second restore: %v", err)
	}
	if got := readSettings(t, root, ifi.Name); got != (Settings{}) {
		t.Fatalf("after restore: %+v, want zeros", got)
	}

	restore, err = configure(root, ifi, Options{DeferHardIRQs: 10, GROFlushTimeout: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := readSettings(t, root, ifi.Name), (Settings{10, time.Millisecond}); got != want {
		t.Fatalf("explicit options: %+v, want %+v", got, want)
	}
	_ = restore()
}

func TestConfigureRefusesAnotherNamespacesInterface(t *testing.T) {
	ifi := &net.Interface{Index: 7, Name: "eth9", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	root := fakeSysfs(t, ifi, "0", "0")
	for name, other := range map[string]*net.Interface{
		"ifindex": {Index: 8, Name: "eth9", HardwareAddr: ifi.HardwareAddr},
		"address": {Index: 7, Name: "eth9", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 8}},
		"missing": {Index: 7, Name: "eth8", HardwareAddr: ifi.HardwareAddr},
	} {
		if _, err := configure(root, other, Options{}.withDefaults()); !errors.Is(err, ErrOtherNamespace) {
			t.Errorf("%s: err %v, want ErrOtherNamespace", name, err)
		}
	}
	if got := readSettings(t, root, ifi.Name); got != (Settings{}) {
		t.Fatalf("refused Configure wrote %+v", got)
	}
}

func TestConfigureLeavesNothingOnError(t *testing.T) {
	ifi := &net.Interface{Index: 7, Name: "eth9", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 9}}
	root := fakeSysfs(t, ifi, "1", "5000")
	// gro_flush_timeout is a directory: the second write fails.
	p := filepath.Join(root, ifi.Name, "gro_flush_timeout")
	os.Remove(p)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := configure(root, ifi, Options{}.withDefaults()); err == nil {
		t.Fatal("Configure succeeded without gro_flush_timeout")
	}
	b, _ := os.ReadFile(filepath.Join(root, ifi.Name, "napi_defer_hard_irqs"))
	if string(b) != "1" {
		t.Fatalf("napi_defer_hard_irqs left at %q, want 1", b)
	}
}

// helperEnv makes the test binary act as a process inside a namespace
// (started with `ip netns exec`, which mounts that namespace's sysfs):
// it configures the interface named by the variable, lists its NAPIs,
// restores and lists again, and prints the result as JSON.
const helperEnv = "XLB_NAPI_TEST_HELPER"

type helperResult struct {
	Before, During, After []NAPI
	Sysfs                 Settings
	Err                   string
}

func TestHelperProcess(t *testing.T) {
	ifname := os.Getenv(helperEnv)
	if ifname == "" {
		t.Skip("helper process for TestVethNAPI")
	}
	var r helperResult
	err := func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		if r.Before, err = List(ifi.Index); err != nil {
			return err
		}
		restore, err := Configure(ifname, Options{})
		if err != nil {
			return err
		}
		if r.Sysfs, err = Read(ifname); err != nil {
			return err
		}
		if r.During, err = List(ifi.Index); err != nil {
			return err
		}
		if err := restore(); err != nil {
			return err
		}
		r.After, err = List(ifi.Index)
		return err
	}()
	if err != nil {
		r.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

// TestVethNAPI lists the NAPI of a veth with threaded NAPI over netlink and
// configures its deferral through a sysfs of its own namespace.
func TestVethNAPI(t *testing.T) {
	testutil.RequireAFXDP(t)
	ns := testutil.NewNetns(t, "napi")
	testutil.IPCmd(t, "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	testutil.IPCmd(t, "-n", ns, "link", "set", "v0", "up")
	testutil.IPCmd(t, "-n", ns, "link", "set", "v1", "up")
	// GRO on gives a veth its NAPI even without XDP.
	if out, err := exec.Command("ip", "netns", "exec", ns, "sh", "-c",
		"ethtool -K v0 gro on && echo 1 > /sys/class/net/v0/threaded").CombinedOutput(); err != nil {
		t.Fatalf("gro/threaded: %v\n%s", err, out)
	}
	var list []NAPI
	var ifindex int
	err := testutil.InNetns(ns, func() error {
		ifi, err := net.InterfaceByName("v0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		list, err = List(ifi.Index)
		if err != nil {
			return err
		}
		// This process's /sys is the root namespace's.
		if _, err := Configure("v0", Options{}); !errors.Is(err, ErrOtherNamespace) {
			return fmt.Errorf("Configure through another namespace's sysfs: %v, want ErrOtherNamespace", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("v0 has %d NAPIs, want 1: %+v", len(list), list)
	}
	n := list[0]
	if n.Ifindex != ifindex || n.ID == 0 || n.PID <= 0 {
		t.Fatalf("NAPI %+v: want ifindex %d, an id and a kthread", n, ifindex)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", n.PID))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("napi/v0-%d", n.ID); strings.TrimSpace(string(comm)) != want {
		t.Fatalf("kthread %d is %q, want %q", n.PID, comm, want)
	}

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperEnv+"=v0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r helperResult
	if err := json.Unmarshal(out[:strings.IndexByte(string(out), '\n')+1], &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	if r.Err != "" {
		t.Fatalf("helper: %s", r.Err)
	}
	want := Settings{DefaultDeferHardIRQs, DefaultGROFlushTimeout}
	if r.Sysfs != want {
		t.Errorf("sysfs during: %+v, want %+v", r.Sysfs, want)
	}
	if len(r.During) != 1 || r.During[0].DeferHardIRQs != want.DeferHardIRQs || r.During[0].GROFlushTimeout != want.GROFlushTimeout {
		t.Errorf("NAPI during: %+v, want %+v", r.During, want)
	}
	if len(r.After) != 1 || len(r.Before) != 1 || r.After[0].DeferHardIRQs != r.Before[0].DeferHardIRQs ||
		r.After[0].GROFlushTimeout != r.Before[0].GROFlushTimeout {
		t.Errorf("NAPI before %+v, after restore %+v", r.Before, r.After)
	}
	t.Logf("v0 NAPI %+v; during Configure %+v", n, r.During)
}
