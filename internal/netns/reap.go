package netns

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A test binary that panics or is killed never runs its t.Cleanup, and
// its namespaces would stay behind. So every live topology holds an
// exclusive flock on lockDir/<prefix>lock; the kernel drops it when the
// process dies, however it dies. Build first reaps the namespaces of
// every prefix whose lock nobody holds.
const lockDir = "/run/xlb-netns"

// lockPrefix creates and locks the lock file of prefix. The file is
// locked under a temporary name and renamed into place, so a concurrent
// reaper never sees it unlocked.
func lockPrefix(prefix string) (*os.File, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: lock dir: %w", err)
	}
	tmp := filepath.Join(lockDir, prefix+"tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, fmt.Errorf("netns: lock file: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("netns: lock %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, filepath.Join(lockDir, prefix+"lock")); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("netns: lock file: %w", err)
	}
	return f, nil
}

// unlockPrefix removes the lock file of prefix and releases it.
func unlockPrefix(f *os.File, prefix string) {
	os.Remove(filepath.Join(lockDir, prefix+"lock"))
	f.Close()
}

// reapStale deletes the namespaces of topologies whose process is gone.
// It is best effort: errors only mean something is left for the next run.
func reapStale(ctx context.Context) {
	ents, err := os.ReadDir(lockDir)
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		prefix, ok := strings.CutSuffix(name, "lock")
		if !ok || !strings.HasPrefix(prefix, "xlb-") {
			continue
		}
		path := filepath.Join(lockDir, name)
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // its owner is alive
			continue
		}
		if nss, err := os.ReadDir("/run/netns"); err == nil {
			for _, ns := range nss {
				if strings.HasPrefix(ns.Name(), prefix) {
					dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					ipCmd(dctx, "netns", "del", ns.Name())
					cancel()
				}
			}
		}
		os.Remove(path)
		f.Close()
	}
}
