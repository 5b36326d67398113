package preflight

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Capability bits (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capIPCLock  = 14
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// NeededCapabilities names what `xlb run` needs besides uid 0: NET_ADMIN
// (attach XDP, netlink), NET_RAW (AF_XDP sockets, raw health checks), BPF
// (programs and maps) and PERFMON (the verifier accepts the steering
// program's pointer arithmetic only from a perfmon-capable loader);
// CAP_SYS_ADMIN stands for both BPF and PERFMON.
const NeededCapabilities = "CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN stands for the last two)"

// missingCaps lists the capabilities of NeededCapabilities that st lacks,
// and what it has for them (the report's line when none is missing; it
// names CAP_PERFMON only when it is missing, as before, so that the
// report's OK line stays what `xlb check`'s golden files hold).
func missingCaps(st procStatus) (have, missing []string) {
	for _, c := range []struct {
		bit  int
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}, {capBPF, "CAP_BPF"}, {capPerfmon, "CAP_PERFMON"}} {
		switch {
		case st.has(c.bit):
			if c.bit != capPerfmon {
				have = append(have, c.name)
			}
		case (c.bit == capBPF || c.bit == capPerfmon) && st.has(capSysAdmin):
			if !slices.Contains(have, "CAP_SYS_ADMIN") {
				have = append(have, "CAP_SYS_ADMIN")
			}
		case c.bit == capBPF || c.bit == capPerfmon:
			missing = append(missing, c.name+" (or CAP_SYS_ADMIN)")
		default:
			missing = append(missing, c.name)
		}
	}
	return have, missing
}

// MissingCapabilities reads the calling thread's /proc status and lists
// what of NeededCapabilities it lacks (with "uid 0" first when it is not
// root). The daemon names them when the kernel refuses it.
func MissingCapabilities() ([]string, error) {
	st, err := readStatus("/proc/thread-self/status")
	if errors.Is(err, os.ErrNotExist) { // before Linux 3.17
		st, err = readStatus("/proc/self/status")
	}
	if err != nil {
		return nil, err
	}
	_, missing := missingCaps(st)
	if st.euid != 0 {
		missing = append([]string{fmt.Sprintf("uid 0 (it runs as uid %d)", st.euid)}, missing...)
	}
	return missing, nil
}

// procStatus is what /proc/self/status says about privileges.
type procStatus struct {
	euid   int
	capEff uint64
}

func (p procStatus) has(bit int) bool { return p.capEff&(1<<bit) != 0 }

// readStatus parses the Uid and CapEff lines of a /proc/<pid>/status.
func readStatus(path string) (procStatus, error) {
	st := procStatus{euid: -1}
	fh, err := os.Open(path)
	if err != nil {
		return st, err
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		switch {
		case k == "Uid" && len(fs) >= 2:
			st.euid, _ = strconv.Atoi(fs[1])
		case k == "CapEff" && len(fs) == 1:
			st.capEff, _ = strconv.ParseUint(fs[0], 16, 64)
		}
	}
	if st.euid < 0 {
		return st, fmt.Errorf("%s: no Uid line", path)
	}
	return st, sc.Err()
}

func (c *checker) privileges() Result {
	r := Result{Name: "privileges", Blocking: true}
	st, err := readStatus(c.o.proc("self", "status"))
	if err != nil {
		r.Status, r.Detail = Warn, fmt.Sprintf("cannot tell: %v", err)
		r.Fix = "run xlb as root"
		return r
	}
	return privilegesResult(st)
}

// privilegesResult judges the process's privileges: `xlb run` refuses to
// start unless root, and needs NeededCapabilities for XDP and AF_XDP.
func privilegesResult(st procStatus) Result {
	r := Result{Name: "privileges", Blocking: true}
	if st.euid != 0 {
		r.Status = Fail
		r.Detail = fmt.Sprintf("running as uid %d: xlb needs root with %s to attach XDP programs and open AF_XDP sockets", st.euid, NeededCapabilities)
		r.Fix = "run it as root (sudo xlb run …, or a systemd unit without User=)"
		return r
	}
	have, missing := missingCaps(st)
	if len(missing) > 0 {
		r.Status = Fail
		r.Detail = "root, but without " + list(missing) + " (a container, or a reduced capability bounding set)"
		r.Fix = "grant " + NeededCapabilities + " (a container needs --privileged or --cap-add for each; a systemd unit CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_BPF CAP_PERFMON)"
		return r
	}
	r.Detail = "root, with " + list(have)
	return r
}

// jit checks that BPF programs are JIT-compiled. net.core.bpf_jit_enable
// is visible only in the initial network namespace; elsewhere a tiny
// socket filter is loaded (never attached) and asked whether the kernel
// compiled it.
func (c *checker) jit() Result {
	v, err := os.ReadFile(c.o.proc("sys", "net", "core", "bpf_jit_enable"))
	if err == nil {
		return jitResult(strings.TrimSpace(string(v)), nil, false, nil)
	}
	jited, perr := probeJIT()
	return jitResult("", err, jited, perr)
}

func jitResult(sysctl string, sysctlErr error, jited bool, probeErr error) Result {
	r := Result{Name: "bpf jit"}
	const fix = "sysctl -w net.core.bpf_jit_enable=1 (in the host's initial network namespace)"
	if sysctlErr == nil {
		switch sysctl {
		case "1":
			r.Detail = "on (net.core.bpf_jit_enable=1)"
		case "2":
			r.Detail = "on, with debug output to the kernel log (net.core.bpf_jit_enable=2)"
		default:
			r.Status, r.Fix = Warn, fix
			r.Detail = fmt.Sprintf("off (net.core.bpf_jit_enable=%s): the steering program runs in the interpreter, several times slower on every packet", sysctl)
		}
		return r
	}
	switch {
	case probeErr != nil:
		r.Status = Warn
		r.Detail = fmt.Sprintf("cannot tell: net.core.bpf_jit_enable is not visible here and a test program did not load (%v)", probeErr)
		r.Fix = "check it on the host: sysctl net.core.bpf_jit_enable (1 or 2 is on)"
	case jited:
		r.Detail = "on (a test program was JIT-compiled; net.core.bpf_jit_enable is visible only in the initial network namespace)"
	default:
		r.Status, r.Fix = Warn, fix
		r.Detail = "off: a test program was not JIT-compiled, so the steering program runs in the interpreter, several times slower on every packet"
	}
	return r
}

// probeJIT loads a two-instruction socket filter, reads whether the
// kernel JIT-compiled it and unloads it.
func probeJIT() (bool, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.SocketFilter,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
		License:      "Apache-2.0",
	})
	if err != nil {
		return false, err
	}
	defer p.Close()
	info, err := p.Info()
	if err != nil {
		return false, err
	}
	if n, err := info.JitedSize(); err == nil && n > 0 {
		return true, nil
	}
	if _, err := info.TranslatedSize(); err != nil {
		return false, err // no permission to read the program back
	}
	return false, nil
}

// afxdp checks that the kernel has AF_XDP sockets (opening and closing one
// binds nothing).
func (c *checker) afxdp() Result {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return afxdpResult(err)
}

func afxdpResult(err error) Result {
	r := Result{Name: "af_xdp", Blocking: true}
	switch {
	case err == nil:
		r.Detail = "the kernel has AF_XDP sockets"
	case errors.Is(err, unix.EAFNOSUPPORT):
		r.Status = Fail
		r.Detail = "this kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS): xlb cannot receive a packet"
		r.Fix = "a kernel built with CONFIG_XDP_SOCKETS=y (every major distribution's is)"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		r.Status = Warn
		r.Detail = fmt.Sprintf("not allowed to open one (%v)", err)
		r.Fix = "run as root (see privileges)"
	default:
		r.Status = Warn
		r.Detail = fmt.Sprintf("cannot open one: %v", err)
		r.Fix = "check the kernel log (dmesg)"
	}
	return r
}

// umemFramesPerIface is the frames each worker's UMEM has per interface
// (internal/daemon: xsk.UMEMConfig{FrameCount: 8192 * interfaces}).
const umemFramesPerIface = 8192

// memlock reports RLIMIT_MEMLOCK. Since Linux 5.11 BPF maps are charged to
// the memory cgroup, not to it; the AF_XDP UMEM still is, unless the
// process has CAP_IPC_LOCK (root has).
func (c *checker) memlock() Result {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return Result{Name: "memlock", Status: Warn, Detail: fmt.Sprintf("cannot read RLIMIT_MEMLOCK: %v", err), Fix: "check it: ulimit -l"}
	}
	st, _ := readStatus(c.o.proc("self", "status"))
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	umem := uint64(max(c.workerCount(), 1)) * uint64(max(len(c.f.Interfaces), 1)) * umemFramesPerIface * frameSize
	return memlockResult(rl.Cur, st.has(capIPCLock), kernelAtLeast(unix.ByteSliceToString(uts.Release[:]), 5, 11), umem)
}

func memlockResult(limit uint64, ipcLock, memcg bool, umem uint64) Result {
	r := Result{Name: "memlock"}
	lim := "RLIMIT_MEMLOCK " + bytesString(limit)
	fix := "raise it: ulimit -l unlimited, or LimitMEMLOCK=infinity in the systemd unit"
	switch {
	case limit == unix.RLIM_INFINITY:
		r.Detail = lim + " (informational)"
	case !ipcLock && limit < umem:
		r.Status, r.Fix = Warn, fix
		r.Detail = fmt.Sprintf("%s, less than the AF_XDP UMEM (%s), and without CAP_IPC_LOCK the UMEM is charged to it: registering it fails", lim, bytesString(umem))
	case !memcg:
		r.Status, r.Fix = Warn, fix
		r.Detail = lim + ": before Linux 5.11 BPF maps are charged to it, and xlb's may not fit"
	case ipcLock:
		r.Detail = fmt.Sprintf("%s (informational: BPF memory is charged to the memory cgroup since Linux 5.11, and with CAP_IPC_LOCK the AF_XDP UMEM of %s is not limited by it)", lim, bytesString(umem))
	default:
		r.Detail = fmt.Sprintf("%s (informational: BPF memory is charged to the memory cgroup since Linux 5.11; the AF_XDP UMEM of %s fits)", lim, bytesString(umem))
	}
	return r
}

func bytesString(n uint64) string {
	switch {
	case n == unix.RLIM_INFINITY:
		return "unlimited"
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// kernelAtLeast compares a uname release ("6.18.44-foo") with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	fs := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(fs) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(fs[0])
	mi, _ := strconv.Atoi(fs[1])
	return ma > major || ma == major && mi >= minor
}
