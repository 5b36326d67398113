package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// EnvBPFFS names the environment variable that points xlb at a BPF
// filesystem other than /sys/fs/bpf. `ip netns exec` mounts the
// namespace's own sysfs on /sys, which hides the host's /sys/fs/bpf, and a
// BPF filesystem mounted inside that private mount namespace dies with the
// process: an xlb run that way needs one mounted outside /sys by the host.
const EnvBPFFS = "XLB_BPFFS"

// DefaultBPFFS is where systemd mounts the BPF filesystem.
const DefaultBPFFS = "/sys/fs/bpf"

// Takeover is what AttachPinned found at the pin.
type Takeover uint8

const (
	// Fresh: no pinned link; the program was attached and pinned.
	Fresh Takeover = iota
	// Replaced: the pinned link of an earlier xlb on the interface; its
	// program was replaced atomically (no frame meets no program).
	Replaced
	// ModeChanged: the pinned link ran in the other XDP mode than the one
	// asked for; it was detached and the program attached anew (the
	// kernel allows one mode at a time, so frames met no program in
	// between).
	ModeChanged
	// Stale: the pinned link belonged to an interface that is gone (or to
	// another interface of that name); it was removed.
	Stale
)

func (t Takeover) String() string {
	switch t {
	case Fresh:
		return "attached"
	case Replaced:
		return "replaced"
	case ModeChanged:
		return "mode changed"
	case Stale:
		return "stale pin removed"
	}
	return fmt.Sprintf("Takeover(%d)", uint8(t))
}

// PinDir returns the directory where xlb pins the steering links of the
// calling thread's network namespace: <bpffs>/xlb/<netns>/, <netns> being
// the namespace's name under /run/netns (or netns-INODE), "init" for the
// initial one; <bpffs> is $XLB_BPFFS, else /sys/fs/bpf. It fails when that
// is not a BPF filesystem.
func PinDir() (string, error) {
	root := os.Getenv(EnvBPFFS)
	if root == "" {
		root = DefaultBPFFS
	}
	ns := rtnl.NetnsTag()
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		hint := fmt.Sprintf("mount -t bpf bpf %s", root)
		if ns != "" && root == DefaultBPFFS {
			hint = fmt.Sprintf("in a network namespace entered with ip netns exec, /sys is the namespace's own sysfs: mount a BPF filesystem outside /sys on the host (mkdir -p /run/xlb/bpffs && mount -t bpf bpf /run/xlb/bpffs) and set %s=/run/xlb/bpffs", EnvBPFFS)
		}
		if err == nil {
			err = errors.New("not a BPF filesystem")
		}
		return "", fmt.Errorf("bpf: %s: %w (%s)", root, err, hint)
	}
	if ns == "" {
		ns = "init"
	}
	return filepath.Join(root, "xlb", ns), nil
}

// AttachPinned attaches the steering program to the interface through a
// link pinned at pin (a path on a BPF filesystem, see PinDir), which keeps
// the program attached after the process ends, and sets its hold to hold
// (see SetHold), renewed while the attachment lives.
//
// A link already pinned there by an earlier xlb on this interface is taken
// over: its program is replaced by this one atomically (link update), so
// no frame is ever without a program. Auto takes over the link in whatever
// mode it runs; Native or Generic over a link in the other mode detaches it
// and attaches anew (ModeChanged); the pin of an interface that is gone is
// replaced (Stale). Takeover says which happened. Release, not Close, is
// how a process that stops leaves the program in place.
func (s *Steering) AttachPinned(ifindex int, mode AttachMode, pin string, hold time.Duration) (*Attachment, error) {
	if s.prog == nil {
		return nil, ErrClosed
	}
	if mode > Generic {
		return nil, fmt.Errorf("bpf: attach XDP to ifindex %d: unknown mode %d", ifindex, mode)
	}
	if err := s.SetHold(hold); err != nil {
		return nil, err
	}
	a, err := s.takeOver(ifindex, mode, pin)
	if err != nil {
		return nil, err
	}
	if a.hold, err = s.hold.Clone(); err != nil {
		_ = a.Release()
		return nil, fmt.Errorf("bpf: hold map: %w", err)
	}
	if hold > 0 {
		a.holdFor = hold
		a.heartbeat()
	}
	return a, nil
}

func (s *Steering) takeOver(ifindex int, mode AttachMode, pin string) (*Attachment, error) {
	takeover := Fresh
	l, err := link.LoadPinnedLink(pin, nil)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("bpf: pinned link %s: %w", pin, err)
	default:
		info, err := l.Info()
		if err != nil || info.Type != link.XDPType || info.XDP() == nil || int(info.XDP().Ifindex) != ifindex {
			takeover = Stale
		} else {
			cur := mode
			if _, m, err := rtnl.LinkXDP(ifindex); err == nil {
				switch m {
				case "native":
					cur = Native
				case "generic":
					cur = Generic
				}
			}
			if mode == Auto || mode == cur {
				if err := l.Update(s.prog); err != nil {
					_ = l.Close()
					return nil, fmt.Errorf("bpf: replace the program of the pinned link %s: %w", pin, err)
				}
				if cur == Auto {
					cur = Native
				}
				return &Attachment{link: l, mode: cur, ifindex: ifindex, pin: pin, takeover: Replaced}, nil
			}
			takeover = ModeChanged
		}
		// Detach at once: the pin's own reference goes only after an RCU
		// grace period, and the attach below needs the hook free.
		_ = l.Detach()
		if err := l.Unpin(); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("bpf: remove the pinned link %s: %w", pin, err)
		}
		_ = l.Close()
	}
	a, err := attachXDP(s.prog, ifindex, mode)
	if err != nil {
		return nil, err
	}
	a.takeover = takeover
	if err := os.MkdirAll(filepath.Dir(pin), 0o700); err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("bpf: pin the XDP link of ifindex %d: %w", ifindex, err)
	}
	if err := a.link.Pin(pin); err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("bpf: pin the XDP link of ifindex %d at %s: %w", ifindex, pin, err)
	}
	a.pin = pin
	return a, nil
}

// SweepPins removes, under the BPF filesystem directory that holds dir
// (<bpffs>/xlb), the pinned links that hold nothing any more, and returns
// their paths: in every namespace's directory, the links of interfaces
// that are gone (a namespace deleted, a device removed); in dir, the links
// of interfaces whose names are not in keep, unless the process that set
// their hold still runs (another xlb serving other interfaces). Their
// programs are detached. Directories left empty are removed.
func SweepPins(dir string, keep []string) ([]string, error) {
	root := filepath.Dir(dir)
	nss, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bpf: sweep pins: %w", err)
	}
	var removed []string
	for _, ns := range nss {
		nsDir := filepath.Join(root, ns.Name())
		ents, err := os.ReadDir(nsDir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			p := filepath.Join(nsDir, e.Name())
			l, err := link.LoadPinnedLink(p, nil)
			if err != nil {
				continue
			}
			info, err := l.Info()
			gone := err == nil && info.Type == link.XDPType && info.XDP() != nil && info.XDP().Ifindex == 0
			unwanted := err == nil && nsDir == dir && !slices.Contains(keep, e.Name()) && !served(info.Program)
			if gone || unwanted {
				_ = l.Detach()
				if l.Unpin() == nil {
					removed = append(removed, p)
				}
			}
			_ = l.Close()
		}
		_ = os.Remove(nsDir) // when empty
	}
	return removed, nil
}

// served reports whether the process that last set the hold of a steering
// program still runs (another xlb than this one).
func served(id ebpf.ProgramID) bool {
	p, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer p.Close()
	pi, err := p.Info()
	if err != nil {
		return false
	}
	ids, _ := pi.MapIDs()
	for _, mid := range ids {
		m, err := ebpf.NewMapFromID(mid)
		if err != nil {
			continue
		}
		var v [holdSize]byte
		mi, err := m.Info()
		if err == nil && mi.Name == "xlb_hold" && m.Lookup(uint32(0), &v) == nil {
			_ = m.Close()
			pid := int(binary.NativeEndian.Uint32(v[holdPid:]))
			if pid <= 0 || pid == os.Getpid() {
				return false
			}
			err := unix.Kill(pid, 0)
			return err == nil || errors.Is(err, unix.EPERM)
		}
		_ = m.Close()
	}
	return false
}
