package xsk

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// requireAFXDP skips the test only when it cannot run here at all: not
// root, or the kernel refuses AF_XDP sockets.
func requireAFXDP(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces, XDP and AF_XDP")
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EAFNOSUPPORT) || errors.Is(err, unix.EPERM) {
		t.Skipf("skipping: kernel refuses AF_XDP sockets: %v", err)
	}
	if err != nil {
		t.Fatalf("AF_XDP socket: %v", err)
	}
	unix.Close(fd)
}

// ipCmd runs ip(8) with args and fails the test on error.
func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns creates a uniquely named network namespace that is deleted when
// the test ends, pass or fail.
func newNetns(t *testing.T, suffix string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "xlbt-" + hex.EncodeToString(b[:]) + "-" + suffix
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs fn on a locked OS thread switched into the named network
// namespace. Sockets created by fn stay in that namespace. The thread is
// switched back afterwards; if that fails it is left locked so the runtime
// discards it rather than reuse it in the wrong namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		err = fn()
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			errc <- errors.Join(err, fmt.Errorf("restore netns: %w", rerr))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
