package realserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// StateDir is where state files live by default.
const StateDir = "/run/xlb"

// DefaultStateFile is the state file of an interface:
// /run/xlb/realserver-IF.json in the initial network namespace. In
// another namespace (a container, `ip netns exec`) the namespace's name,
// or its inode number, is added (realserver-IF@NS.json), because /run is
// usually shared between namespaces while interface names are not.
func DefaultStateFile(iface string) string {
	name := "realserver-" + iface
	if ns := rtnl.NetnsTag(); ns != "" {
		name += "@" + ns
	}
	return filepath.Join(StateDir, name+".json")
}

// State is what a running `xlb realserver` changed on the host, written
// to the state file before each change is made. Undoing a State is
// idempotent and leaves alone whatever someone else changed since.
type State struct {
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Interface string    `json:"interface"`
	Mode      Mode      `json:"mode"`
	// Sysctls holds every sysctl set: its original value and ours.
	Sysctls []SysctlChange `json:"sysctls"`
	// Addresses holds the VIPs added to lo (ones already there are not
	// listed and stay).
	Addresses []netip.Prefix `json:"addresses"`
	// Program is the XDP program attached; nil before the attach.
	Program *ProgramState `json:"program,omitempty"`
}

// SysctlChange is one sysctl, by its path under /proc/sys/.
type SysctlChange struct {
	Key      string `json:"key"`
	Original string `json:"original"`
	Set      string `json:"set"`
}

// ProgramState identifies the attached program.
type ProgramState struct {
	Ifindex int    `json:"ifindex"`
	ProgID  uint32 `json:"prog_id"`
	Attach  string `json:"attach"` // native or generic
}

// writeState writes s atomically: temp file, fsync, rename, fsync of the
// directory.
func writeState(path string, s *State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	tmp := f.Name()
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write state file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// readState reads a state file; a missing file is (nil, nil).
func readState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	return &s, nil
}

// lockState takes the lock that makes one `xlb realserver` per state file:
// an flock on PATH.lock, released by the kernel however the process ends.
func lockState(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(path + ".lock")
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is held by pid %s", ErrRunning, path+".lock", strings.TrimSpace(string(pid)))
		}
		return nil, fmt.Errorf("lock %s: %w", path+".lock", err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// ErrRunning means another `xlb realserver` owns the interface's state.
var ErrRunning = errors.New("realserver: another xlb realserver is running")

// sysctlPath is a sysctl's file; key is relative to /proc/sys.
func sysctlPath(key string) string { return filepath.Join("/proc/sys", key) }

func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(sysctlPath(key))
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func writeSysctl(key, value string) error {
	if err := os.WriteFile(sysctlPath(key), []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

func sysctlInt(key string) (int, error) {
	s, err := readSysctl(key)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("sysctl %s: %q is not a number", key, s)
	}
	return n, nil
}

// arpIgnoreOK: 1 (answer only for addresses on the receiving interface),
// 2 (and in its subnet) and 8 (never) keep a VIP on lo unanswered.
func arpIgnoreOK(v int) bool { return v == 1 || v == 2 || v == 8 }

// plannedSysctls returns the sysctls to change for iface: the ARP ones
// (IPv4 VIPs only) and rp_filter where it is strict. Values are compared
// per key: the kernel uses the larger of all/ and the interface's.
func plannedSysctls(iface string, vips []VIP) ([]SysctlChange, error) {
	var out []SysctlChange
	has4 := slices.ContainsFunc(vips, func(v VIP) bool { return v.Addr.Is4() })
	for _, scope := range []string{"all", iface} {
		c := "net/ipv4/conf/" + scope + "/"
		if has4 {
			v, err := sysctlInt(c + "arp_ignore")
			if err != nil {
				return nil, err
			}
			if !arpIgnoreOK(v) {
				out = append(out, SysctlChange{c + "arp_ignore", strconv.Itoa(v), "1"})
			}
			if v, err = sysctlInt(c + "arp_announce"); err != nil {
				return nil, err
			}
			if v != 2 {
				out = append(out, SysctlChange{c + "arp_announce", strconv.Itoa(v), "2"})
			}
		}
		// Client packets (decapsulated, rewritten, or in dsr as sent)
		// arrive with the client's source; strict reverse-path filtering
		// drops them when the route back to the client is elsewhere.
		v, err := sysctlInt(c + "rp_filter")
		if err != nil {
			return nil, err
		}
		if v == 1 {
			out = append(out, SysctlChange{c + "rp_filter", "1", "2"})
		}
	}
	return out, nil
}

// Host setup errors.
var (
	// ErrNoInterface means the configured interface does not exist.
	ErrNoInterface = errors.New("realserver: no such interface")
	// ErrVIPElsewhere means a VIP is configured on an interface other
	// than lo: the host would answer ARP or ND for it.
	ErrVIPElsewhere = errors.New("realserver: VIP configured on a network interface")
)

// vipsToAdd returns the VIP prefixes lo lacks, and fails when a VIP sits
// on another interface.
func vipsToAdd(loIndex int, vips []VIP) ([]netip.Prefix, error) {
	addrs, err := rtnl.ListAddrs()
	if err != nil {
		return nil, err
	}
	var add []netip.Prefix
	for _, v := range vips {
		onLo := false
		for _, a := range addrs {
			if a.Prefix.Addr() != v.Addr {
				continue
			}
			if a.Ifindex != loIndex {
				name := strconv.Itoa(a.Ifindex)
				if ifi, err := net.InterfaceByIndex(a.Ifindex); err == nil {
					name = ifi.Name
				}
				return nil, fmt.Errorf("%w: %s is on %s; remove it there (the VIP belongs on lo only)", ErrVIPElsewhere, a.Prefix, name)
			}
			onLo = true
		}
		if !onLo {
			add = append(add, v.Prefix())
		}
	}
	return add, nil
}

// apply makes the host changes of cfg, recording each in st (written to
// path) before it is made. The program is attached by the caller.
func apply(path string, cfg *Config, st *State) error {
	if _, err := net.InterfaceByName(cfg.Interface); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoInterface, cfg.Interface, err)
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		return fmt.Errorf("realserver: lo: %w", err)
	}
	sysctls, err := plannedSysctls(cfg.Interface, cfg.VIPs)
	if err != nil {
		return err
	}
	add, err := vipsToAdd(lo.Index, cfg.VIPs)
	if err != nil {
		return err
	}
	st.Sysctls, st.Addresses = sysctls, add
	if err := writeState(path, st); err != nil {
		return err
	}
	for _, s := range sysctls {
		if err := writeSysctl(s.Key, s.Set); err != nil {
			return err
		}
	}
	for _, p := range add {
		if err := rtnl.AddAddr(lo.Index, p); err != nil && !errors.Is(err, unix.EEXIST) {
			if p.Addr().Is6() && errors.Is(err, unix.EACCES) {
				err = fmt.Errorf("%w (is IPv6 disabled on lo? net.ipv6.conf.lo.disable_ipv6)", err)
			}
			return fmt.Errorf("realserver: add %s to lo: %w", p, err)
		}
	}
	return nil
}

// undo reverts st: the program (if a process that crashed left it
// attached), the addresses it added and the sysctls it set, each only if
// it is still as st left it. It returns what it could not undo.
func undo(st *State, detach func(*ProgramState) error) error {
	var errs []error
	if st.Program != nil && detach != nil {
		if err := detach(st.Program); err != nil {
			errs = append(errs, err)
		}
	}
	if len(st.Addresses) > 0 {
		if lo, err := net.InterfaceByName("lo"); err != nil {
			errs = append(errs, fmt.Errorf("realserver: lo: %w", err))
		} else {
			for _, p := range st.Addresses {
				err := rtnl.DelAddr(lo.Index, p)
				if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
					errs = append(errs, fmt.Errorf("realserver: remove %s from lo: %w", p, err))
				}
			}
		}
	}
	for i := len(st.Sysctls) - 1; i >= 0; i-- {
		s := st.Sysctls[i]
		cur, err := readSysctl(s.Key)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOENT) {
			continue // the interface is gone, and its settings with it
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if cur != s.Set {
			continue // changed by someone else since: theirs now
		}
		if err := writeSysctl(s.Key, s.Original); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
