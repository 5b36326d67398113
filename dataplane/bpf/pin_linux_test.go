package bpf

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
	"github.com/xlb/xlb/internal/testutil"
	"github.com/xlb/xlb/internal/xsk"
)

// bpffs mounts a BPF filesystem of its own for the test (unmounted at the
// end, which drops whatever is still pinned in it).
func bpffs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Skipf("skipping: cannot mount a BPF filesystem: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// xdpProgs returns the XDP program IDs ip(8) shows on dev in ns.
func xdpProgs(t *testing.T, ns, dev string) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "link", "show", dev).CombinedOutput()
	if err != nil {
		t.Fatalf("ip link show: %v\n%s", err, out)
	}
	var ids []string
	for _, m := range regexp.MustCompile(`prog/xdp id (\d+)`).FindAllStringSubmatch(string(out), -1) {
		ids = append(ids, m[1])
	}
	return ids
}

const pinHelperEnv = "XLB_TEST_PIN_HELPER"

// TestPinHelper is the "xlb" that TestPinnedTakeover kills with SIGKILL:
// run in the test's namespace (ip netns exec) with XLB_BPFFS set, it
// attaches a steering program with a VIP rule and an AF_XDP socket on va's
// queue 0 through a pinned link, prints its IDs and waits to be killed.
func TestPinHelper(t *testing.T) {
	if os.Getenv(pinHelperEnv) == "" {
		t.Skip("helper process of TestPinnedTakeover")
	}
	fail := func(err error) {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	ifi, err := net.InterfaceByName("va")
	if err != nil {
		fail(err)
	}
	s, err := LoadSteering(SteeringOptions{MaxQueues: 4, MaxEntries: 64})
	if err != nil {
		fail(err)
	}
	if err := s.AddVIP(vip4, 80, ProtoTCP); err != nil {
		fail(err)
	}
	umem, err := xsk.NewUMEM(xsk.UMEMConfig{FrameSize: 2048, FrameCount: 256})
	if err != nil {
		fail(err)
	}
	sock, err := xsk.Open(ifi.Index, 0, umem, xsk.Options{RxSize: 64, TxSize: 64})
	if err != nil {
		fail(err)
	}
	if err := s.SetSocket(0, sock.FD()); err != nil {
		fail(err)
	}
	dir, err := PinDir()
	if err != nil {
		fail(err)
	}
	a, err := s.AttachPinned(ifi.Index, Native, filepath.Join(dir, "va"), time.Hour)
	if err != nil {
		fail(err)
	}
	info, err := a.link.Info()
	if err != nil {
		fail(err)
	}
	fmt.Printf("ready %s %d %d\n", a.Pin(), info.ID, info.Program)
	select {}
}

// TestPinnedTakeover: a process attaches the steering program through a
// pinned link and is killed with SIGKILL; the program stays attached and
// drops (holds) the frames it matches, since its queue lost its socket;
// the next start replaces the program in the same link (one XDP program on
// the interface, the new one); Release leaves it attached, Close detaches;
// a pin in another mode is re-attached; SweepPins removes what is no longer
// wanted and keeps what a live process serves.
func TestPinnedTakeover(t *testing.T) {
	nsA, _, va := vethPair(t)
	fs := bpffs(t)
	dir := filepath.Join(fs, "xlb", nsA)
	pin := filepath.Join(dir, "va")

	// First "xlb": a separate process, killed with SIGKILL.
	helper := exec.Command("ip", "netns", "exec", nsA, os.Args[0], "-test.run=^TestPinHelper$", "-test.count=1")
	helper.Env = append(os.Environ(), pinHelperEnv+"=1", EnvBPFFS+"="+fs)
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	helper.Stderr = os.Stderr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = helper.Process.Kill(); _ = helper.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "ready ") || strings.HasPrefix(l, "error ") {
				lines <- l
				return
			}
		}
		lines <- "error: helper ended"
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("helper did not attach")
	}
	var gotPin string
	var linkID link.ID
	var oldProg ebpf.ProgramID
	if _, err := fmt.Sscanf(line, "ready %s %d %d", &gotPin, &linkID, &oldProg); err != nil {
		t.Fatalf("helper: %s", line)
	}
	if gotPin != pin {
		t.Fatalf("helper pinned at %s, want %s (PinDir with %s)", gotPin, pin, EnvBPFFS)
	}
	// A live process's pin stays, whoever sweeps.
	if removed, err := SweepPins(dir, nil); err != nil || len(removed) != 0 {
		t.Fatalf("SweepPins while the helper runs: removed %v, %v", removed, err)
	}

	if err := helper.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()

	// The killed process's program is still attached, through the pin,
	// and holds: its socket is gone, so a VIP frame is dropped.
	if ids := xdpProgs(t, nsA, "va"); len(ids) != 1 || ids[0] != fmt.Sprint(oldProg) {
		t.Fatalf("after SIGKILL ip link shows XDP programs %v, want the helper's %d", ids, oldProg)
	}
	old, err := ebpf.NewProgramFromID(oldProg)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	for _, tc := range []struct {
		frame []byte
		want  uint32
	}{
		{tcp4(client4, 1000, vip4, 80)(t), xdpDrop},
		{tcp4(client4, 1000, other4, 80)(t), xdpPass},
	} {
		if ret, err := old.Run(&ebpf.RunOptions{Data: tc.frame}); err != nil || ret != tc.want {
			t.Fatalf("orphaned program returned %d (%v), want %d", ret, err, tc.want)
		}
	}
	if removed, err := SweepPins(dir, []string{"va"}); err != nil || len(removed) != 0 {
		t.Fatalf("SweepPins keeping va: removed %v, %v", removed, err)
	}

	// Second start: the program of the same link is replaced.
	s := loadSteering(t)
	var a *Attachment
	err = testutil.InNetns(nsA, func() error {
		var err error
		a, err = s.AttachPinned(va, Native, pin, time.Hour)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	info, err := a.link.Info()
	if err != nil {
		t.Fatal(err)
	}
	pi, err := s.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	newProg, _ := pi.ID()
	if a.Takeover() != Replaced || a.Mode() != Native || info.ID != linkID || info.Program != newProg {
		t.Fatalf("second start: %v in %v, link %d program %d; want replaced in native, link %d program %d",
			a.Takeover(), a.Mode(), info.ID, info.Program, linkID, newProg)
	}
	if ids := xdpProgs(t, nsA, "va"); len(ids) != 1 || ids[0] != fmt.Sprint(newProg) {
		t.Fatalf("after the takeover ip link shows XDP programs %v, want only %d", ids, newProg)
	}
	err = testutil.InNetns(nsA, func() error {
		id, mode, err := rtnl.LinkXDP(va)
		if err == nil && (ebpf.ProgramID(id) != newProg || mode != "native") {
			err = fmt.Errorf("rtnetlink: program %d %s, want %d native", id, mode, newProg)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Release keeps it attached (a clean stop); Close after it changes
	// nothing.
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if ids := xdpProgs(t, nsA, "va"); len(ids) != 1 || ids[0] != fmt.Sprint(newProg) {
		t.Fatalf("after Release ip link shows XDP programs %v, want %d", ids, newProg)
	}

	// Another mode: the pinned native link gives way to a generic one.
	s2 := loadSteering(t)
	err = testutil.InNetns(nsA, func() error {
		b, err := s2.AttachPinned(va, Generic, pin, time.Minute)
		if err != nil {
			return err
		}
		defer b.Close()
		if b.Takeover() != ModeChanged || b.Mode() != Generic || xdpAttached(t, nsA) != "xdpgeneric" {
			return fmt.Errorf("mode change: %v in %v, ip link shows %q", b.Takeover(), b.Mode(), xdpAttached(t, nsA))
		}
		if err := b.Release(); err != nil {
			return err
		}
		// Auto takes over whatever mode the pin has.
		c, err := loadSteering(t).AttachPinned(va, Auto, pin, time.Minute)
		if err != nil {
			return err
		}
		if c.Takeover() != Replaced || c.Mode() != Generic {
			return fmt.Errorf("auto over a generic pin: %v in %v", c.Takeover(), c.Mode())
		}
		return c.Release()
	})
	if err != nil {
		t.Fatal(err)
	}

	// A pin of an interface that is gone is swept from any namespace's
	// directory; an unwanted pin nobody serves is swept and detached.
	testutil.IPCmd(t, "-n", nsA, "link", "add", "vc", "type", "veth", "peer", "name", "vd")
	testutil.IPCmd(t, "-n", nsA, "link", "set", "vc", "up")
	testutil.IPCmd(t, "-n", nsA, "link", "set", "vd", "up")
	err = testutil.InNetns(nsA, func() error {
		ifi, err := net.InterfaceByName("vc")
		if err != nil {
			return err
		}
		c, err := loadSteering(t).AttachPinned(ifi.Index, Generic, filepath.Join(dir, "vc"), time.Minute)
		if err != nil {
			return err
		}
		return c.Release()
	})
	if err != nil {
		t.Fatal(err)
	}
	testutil.IPCmd(t, "-n", nsA, "link", "del", "vc")
	other := filepath.Join(fs, "xlb", "elsewhere")
	removed, err := SweepPins(other, nil)
	if err != nil || len(removed) != 1 || removed[0] != filepath.Join(dir, "vc") {
		t.Fatalf("SweepPins from another namespace: removed %v, %v; want the pin of the deleted vc", removed, err)
	}
	removed, err = SweepPins(dir, nil)
	if err != nil || len(removed) != 1 || removed[0] != pin {
		t.Fatalf("SweepPins keeping nothing: removed %v, %v; want %s", removed, err, pin)
	}
	if got := xdpAttached(t, nsA); got != "" {
		t.Fatalf("ip link still shows %q once the pin is swept", got)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("empty pin directory left: %v", err)
	}
}

// TestPinDir: XLB_BPFFS must name a BPF filesystem; the directory is
// xlb/<netns> under it.
func TestPinDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: mounting a BPF filesystem needs root")
	}
	fs := bpffs(t)
	t.Setenv(EnvBPFFS, fs)
	ns := testutil.NewNetns(t, "pin")
	var dir string
	if err := testutil.InNetns(ns, func() (err error) { dir, err = PinDir(); return err }); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(fs, "xlb", ns); dir != want {
		t.Fatalf("PinDir() = %s, want %s", dir, want)
	}
	t.Setenv(EnvBPFFS, t.TempDir())
	if _, err := PinDir(); err == nil || !strings.Contains(err.Error(), "not a BPF filesystem") {
		t.Fatalf("PinDir on a plain directory: %v", err)
	}
}
