// Package testutil holds helpers shared by tests: small network
// namespaces for the AF_XDP and XDP tests, and an independent (gopacket)
// decode-and-verify of frames the dataplane produces. Only tests import it.
package testutil

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

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// RequireAFXDP skips the test only when it cannot run here at all: not
// root, or the kernel refuses AF_XDP sockets.
func RequireAFXDP(t testing.TB) {
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

// IPCmd runs ip(8) with args and fails the test on error.
func IPCmd(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// NewNetns creates a uniquely named network namespace that is deleted when
// the test ends, pass or fail.
func NewNetns(t testing.TB, suffix string) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "xlbt-" + hex.EncodeToString(b[:]) + "-" + suffix
	IPCmd(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	IPCmd(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// InNetns runs fn on a locked OS thread switched into the named network
// namespace. Sockets created by fn stay in that namespace. The thread is
// switched back afterwards; if that fails it is left locked so the runtime
// discards it rather than reuse it in the wrong namespace.
func InNetns(name string, fn func() error) error {
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

// VerifyFrame decodes an Ethernet frame with gopacket, independently of
// xlb's decoder, and fails the test unless every layer decodes and every
// IPv4, TCP, UDP, ICMP and ICMPv6 checksum verifies (each transport layer
// against the innermost IP header before it, so tunnels are checked too).
func VerifyFrame(t testing.TB, frame []byte) gopacket.Packet {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	if el := pk.ErrorLayer(); el != nil {
		t.Fatalf("gopacket cannot decode the frame: %v", el.Error())
	}
	var nl gopacket.NetworkLayer
	for _, l := range pk.Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			nl = l
		case *layers.IPv6:
			nl = l
		case *layers.TCP:
			_ = l.SetNetworkLayerForChecksum(nl)
		case *layers.UDP:
			_ = l.SetNetworkLayerForChecksum(nl)
		case *layers.ICMPv6:
			_ = l.SetNetworkLayerForChecksum(nl)
		}
	}
	err, mism := pk.VerifyChecksums()
	if err != nil {
		t.Fatalf("gopacket checksum verification: %v", err)
	}
	if len(mism) != 0 {
		var s []string
		for _, m := range mism {
			s = append(s, m.Layer.LayerType().String())
		}
		t.Fatalf("checksum mismatch in %s", strings.Join(s, ", "))
	}
	if pk.NetworkLayer() == nil {
		t.Fatal("no network layer in the frame")
	}
	return pk
}
