package daemon

import (
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/dataplane/bpf"
)

// TestPrivilegesNamePerfmon: the error xlb prints when the kernel refuses
// it names every capability it needs, CAP_PERFMON included, and what the
// process lacks. As root it drops CAP_PERFMON (and CAP_SYS_ADMIN, which
// stands for it) from one thread's effective set and loads the steering
// program there: the kernel refuses it, as it refused the appliance's
// xlb.service without CAP_PERFMON.
func TestPrivilegesNamePerfmon(t *testing.T) {
	for _, c := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "CAP_PERFMON"} {
		if !strings.Contains(ErrPrivileges.Error(), c) {
			t.Errorf("ErrPrivileges does not name %s: %q", c, ErrPrivileges)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: loads the steering program without CAP_PERFMON")
	}
	type result struct {
		loadErr, privErr error
		setup            string
	}
	done := make(chan result, 1)
	go func() {
		// The thread's capabilities change: it is never unlocked, so the
		// runtime ends it with the goroutine.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- result{setup: "capget: " + err.Error()}
			return
		}
		const capPerfmon, capSysAdmin = 38, 21
		data[1].Effective &^= 1 << (capPerfmon - 32)
		data[0].Effective &^= 1 << capSysAdmin
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- result{setup: "capset: " + err.Error()}
			return
		}
		s, err := bpf.LoadSteering(bpf.SteeringOptions{MaxQueues: 2, MaxEntries: 16})
		if err == nil {
			s.Close()
		}
		done <- result{loadErr: err, privErr: errPrivileges()}
	}()
	r := <-done
	if r.setup != "" {
		t.Fatal(r.setup)
	}
	if r.loadErr == nil {
		t.Fatal("the steering program loaded without CAP_PERFMON: update preflight.NeededCapabilities and the appliance's xlb.service")
	}
	if !errors.Is(r.loadErr, os.ErrPermission) {
		t.Fatalf("without CAP_PERFMON: %v, want a permission error (which Start reports as ErrPrivileges)", r.loadErr)
	}
	if !errors.Is(r.privErr, ErrPrivileges) || !strings.Contains(r.privErr.Error(), "lacks CAP_PERFMON (or CAP_SYS_ADMIN)") {
		t.Errorf("errPrivileges() = %q, want ErrPrivileges naming the missing CAP_PERFMON", r.privErr)
	}
	t.Logf("without CAP_PERFMON: %v\nxlb says: %v", r.loadErr, r.privErr)
}
