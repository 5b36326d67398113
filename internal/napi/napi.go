// Package napi configures the kernel's NAPI interrupt deferral for an
// interface and lists the interface's NAPI instances.
//
// Preferred busy polling of AF_XDP sockets (SO_PREFER_BUSY_POLL, set by
// package xsk) lets the application run the rx queue's NAPI from its own
// recvfrom/sendto calls. It only keeps the NAPI away from interrupt (or
// threaded NAPI kthread) processing when the interface defers its hard
// interrupts: napi_defer_hard_irqs empty polls re-arm a timer of
// gro_flush_timeout nanoseconds instead of re-enabling the interrupt, and
// every busy poll pushes that timer out again. While the application keeps
// polling the NAPI never runs anywhere else; when it stops (it went to
// sleep in poll(2)) the timer hands the NAPI back to the interrupt path
// after gro_flush_timeout. See Documentation/networking/napi.rst
// ("Preferred busy polling") in the kernel tree.
//
// The settings are per interface, in /sys/class/net/<if>/. Configure
// writes them and returns a function that writes the previous values back;
// nothing restores them if the process dies without calling it (they are
// harmless: a little more latency for the kernel's own traffic on that
// interface until the next interrupt).
package napi

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults used when an Options field is zero: the values the kernel's
// AF_XDP documentation and DPDK's AF_XDP driver recommend.
const (
	DefaultDeferHardIRQs   = 2
	DefaultGROFlushTimeout = 200 * time.Microsecond
)

// ErrOtherNamespace means /sys/class/net shows the interface of another
// network namespace than the caller's: sysfs shows the namespace of the
// process that mounted it (`ip netns exec` mounts a fresh one).
var ErrOtherNamespace = errors.New("napi: sysfs belongs to another network namespace")

// Options are the deferral settings Configure writes. The zero value
// selects the defaults.
type Options struct {
	// DeferHardIRQs is napi_defer_hard_irqs: how many consecutive empty
	// NAPI polls re-arm the timer instead of re-enabling the interrupt.
	DeferHardIRQs uint32
	// GROFlushTimeout is gro_flush_timeout: how long the NAPI waits for
	// a busy poll before the timer schedules it the ordinary way.
	GROFlushTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.DeferHardIRQs == 0 {
		o.DeferHardIRQs = DefaultDeferHardIRQs
	}
	if o.GROFlushTimeout == 0 {
		o.GROFlushTimeout = DefaultGROFlushTimeout
	}
	return o
}

// Settings are an interface's current deferral settings.
type Settings struct {
	DeferHardIRQs   uint32
	GROFlushTimeout time.Duration
}

const sysClassNet = "/sys/class/net"

// Read returns the interface's current settings.
func Read(ifname string) (Settings, error) { return read(sysClassNet, ifname) }

// Configure writes o (defaults for zero fields) to the interface's
// napi_defer_hard_irqs and gro_flush_timeout and returns a function that
// restores the previous values; call it when the sockets that busy-poll the
// interface are closed. restore is safe to call more than once. On error
// nothing is left changed.
//
// Configure checks that /sys/class/net shows the interface of the calling
// thread's network namespace (same ifindex and MAC address) and returns
// ErrOtherNamespace if not.
func Configure(ifname string, o Options) (restore func() error, err error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("napi: %w", err)
	}
	return configure(sysClassNet, ifi, o.withDefaults())
}

func configure(root string, ifi *net.Interface, o Options) (func() error, error) {
	if err := sameInterface(root, ifi); err != nil {
		return nil, err
	}
	old, err := read(root, ifi.Name)
	if err != nil {
		return nil, err
	}
	if err := write(root, ifi.Name, Settings(o)); err != nil {
		// Best effort: one of the two may have been written.
		_ = write(root, ifi.Name, old)
		return nil, err
	}
	var once sync.Once
	var rerr error
	return func() error {
		once.Do(func() { rerr = write(root, ifi.Name, old) })
		return rerr
	}, nil
}

// sameInterface checks that root/<name> is ifi: same ifindex and address.
func sameInterface(root string, ifi *net.Interface) error {
	dir := filepath.Join(root, ifi.Name)
	idx, err := readUint(filepath.Join(dir, "ifindex"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOtherNamespace, err)
	}
	addr, err := os.ReadFile(filepath.Join(dir, "address"))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrOtherNamespace, err)
	}
	if idx != uint64(ifi.Index) || !strings.EqualFold(string(bytes.TrimSpace(addr)), ifi.HardwareAddr.String()) {
		return fmt.Errorf("%w: %s there is ifindex %d address %s, here ifindex %d address %s",
			ErrOtherNamespace, dir, idx, bytes.TrimSpace(addr), ifi.Index, ifi.HardwareAddr)
	}
	return nil
}

func read(root, ifname string) (Settings, error) {
	dir := filepath.Join(root, ifname)
	d, err := readUint(filepath.Join(dir, "napi_defer_hard_irqs"))
	if err != nil {
		return Settings{}, err
	}
	g, err := readUint(filepath.Join(dir, "gro_flush_timeout"))
	if err != nil {
		return Settings{}, err
	}
	return Settings{DeferHardIRQs: uint32(d), GROFlushTimeout: time.Duration(g)}, nil
}

func write(root, ifname string, s Settings) error {
	dir := filepath.Join(root, ifname)
	if err := writeUint(filepath.Join(dir, "napi_defer_hard_irqs"), uint64(s.DeferHardIRQs)); err != nil {
		return err
	}
	return writeUint(filepath.Join(dir, "gro_flush_timeout"), uint64(s.GROFlushTimeout.Nanoseconds()))
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("napi: %w", err)
	}
	v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("napi: %s: %w", path, err)
	}
	return v, nil
}

func writeUint(path string, v uint64) error {
	// O_WRONLY without O_CREATE or O_TRUNC: sysfs attributes exist.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("napi: %w", err)
	}
	_, err = f.WriteString(strconv.FormatUint(v, 10))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("napi: write %d to %s: %w", v, path, err)
	}
	return nil
}
