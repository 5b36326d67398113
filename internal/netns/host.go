package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Host is one network namespace of a [Topology].
type Host struct {
	Name   string           // role: "client", "router", "lb", "b1", "b2", ...
	NS     string           // namespace name, as listed by `ip netns list`
	Addr   netip.Addr       // main IPv4 address (see the package doc)
	Addr6  netip.Addr       // main IPv6 address; zero without Options.IPv6
	Ifaces map[string]Iface // interfaces by name (lo excluded)
}

// Iface describes one interface of a Host.
type Iface struct {
	Name  string
	Addr  netip.Prefix // IPv4 address; zero if none
	Addr6 netip.Prefix // IPv6 address; zero if none
	// Peer and PeerIface name the other end of a veth; nil for br0.
	Peer      *Host
	PeerIface string
}

// Run runs name with args inside the namespace (`ip netns exec NS name
// args...`) and returns its standard output. The error includes the
// command's standard error.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	if p, err := lookTool(name); err == nil {
		name = p
	}
	return ipCmd(ctx, append([]string{"netns", "exec", h.NS, name}, args...)...)
}

// Do runs fn on an OS thread that is locked and switched into the
// namespace, and switches the thread back afterwards. If switching back
// fails the thread stays locked and exits with the goroutine, so the
// runtime never reuses it in the wrong namespace. Sockets fn creates belong
// to the namespace for their whole life; goroutines fn starts do not run in
// it. Do returns fn's error.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: open current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join("/run/netns", h.NS))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: open %s: %w", h.NS, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns: enter %s: %w", h.NS, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns: leave %s: %w", h.NS, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Ifindex returns the index of interface name inside the namespace.
func (h *Host) Ifindex(name string) (int, error) {
	ifi, err := h.iface(name)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}

// MAC returns the hardware address of interface name inside the namespace.
func (h *Host) MAC(name string) (net.HardwareAddr, error) {
	ifi, err := h.iface(name)
	if err != nil {
		return nil, err
	}
	return ifi.HardwareAddr, nil
}

func (h *Host) iface(name string) (*net.Interface, error) {
	var ifi *net.Interface
	err := h.Do(func() error {
		var err error
		ifi, err = net.InterfaceByName(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netns: %s: interface %s: %w", h.NS, name, err)
	}
	return ifi, nil
}

// Sysctl sets a sysctl inside the namespace; key uses slashes or dots as
// in "net/ipv4/ip_forward" or "net.ipv4.ip_forward" (interface names must
// not contain dots when the dotted form is used).
func (h *Host) Sysctl(key, value string) error {
	return h.Do(func() error { return writeSysctl(h.NS, key, value) })
}

// writeSysctl must run inside Do: /proc/sys/net shows the namespace of the
// thread that opens it.
func writeSysctl(ns, key, value string) error {
	if !strings.Contains(key, "/") {
		key = strings.ReplaceAll(key, ".", "/")
	}
	p := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(p, []byte(value), 0); err != nil {
		return fmt.Errorf("netns: %s: sysctl %s=%s: %w", ns, key, value, err)
	}
	return nil
}

// ipCmd runs ip(8) with args.
func ipCmd(ctx context.Context, args ...string) ([]byte, error) {
	p, err := lookTool("ip")
	if err != nil {
		return nil, fmt.Errorf("ip (iproute2) not found: %w", err)
	}
	return run(ctx, p, args...)
}

// lookTool finds an executable in PATH or, since root's tools live there
// and PATH does not always include them, in /usr/sbin and /sbin.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil || strings.Contains(name, "/") {
		return p, err
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		c := filepath.Join(dir, name)
		if fi, serr := os.Stat(c); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	return "", err
}

// run runs a command and returns its standard output; the error carries the
// command line and its standard error.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}
