// Package shm keeps xlb's connection table in a shared-memory file, so
// that a restart, an upgrade or a crash (kill -9) of xlb keeps every flow.
//
// The table (package conntrack) is fixed-size and pointer-free, so it is
// laid directly over a MAP_SHARED mapping of a file, by default under
// /run/xlb (a tmpfs): the Go slices of the table point into the mapping,
// which the garbage collector never scans. The file is named after the
// network namespace and the interfaces it serves,
// conntrack-<netns inode>-<hash of the interfaces>.shm, so balancers in
// different namespaces never share one. A process holds an exclusive
// flock(2) on the file while it uses the table: a second xlb gets
// ErrBusy ("another xlb (pid N) uses ..."), and the kernel releases the
// lock when the holder dies, however it dies.
//
// On open the header is checked (conntrack.Check: format, layout, geometry,
// hash seed); a file that does not match is truncated to zero and made
// anew, and the reason is returned in Info.Reason. A matching one is
// reused: conntrack.Attach rebuilds the index, lists and locks from the
// stored entries, so a process that died holding a lock or half way
// through an update leaves nothing stuck. Entries are stamped on the boot
// clock (CLOCK_BOOTTIME, system-wide), so the new process sees their true
// age.
//
// Beside the table, SaveAux/LoadAux keep one small file of the caller's
// (xlb stores the service and backend IDs its entries refer to), tied to
// the table instance it belongs with.
package shm

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/conntrack"
)

// DefaultDir is where the tables live unless Options.Dir says otherwise.
const DefaultDir = "/run/xlb"

// ErrBusy is returned (wrapped) when another process holds the table.
var ErrBusy = errors.New("connection table in use")

// Options say where the table lives.
type Options struct {
	// Dir is the directory of the table's file (created 0700 if missing);
	// empty means DefaultDir. It should be a tmpfs: on a disk file system
	// the kernel writes the table back to disk (Info.NotTmpfs).
	Dir string
	// Name identifies the table among those in Dir: xlb passes its
	// interface names. The file name adds the network namespace.
	Name string
	// Now is the caller's clock (see conntrack.New).
	Now int64
}

// Info says what Open found.
type Info struct {
	conntrack.AttachInfo
	// Path is the table's file.
	Path string
	// Created is true when the file was made (or made anew) by Open.
	Created bool
	// NotTmpfs is true when Dir is not on a tmpfs.
	NotTmpfs bool
	// Removed lists stale tables of namespaces that no longer exist,
	// removed from Dir.
	Removed []string
}

// Table is a connection table in a shared-memory file.
type Table struct {
	*conntrack.Table
	f    *os.File
	mem  []byte
	path string
}

// Path returns the table's file.
func (t *Table) Path() string { return t.path }

// Open maps the table for cfg from its file, creating or re-creating the
// file when it does not hold a reusable table (see the package
// documentation), and locks it for this process.
func Open(cfg conntrack.Config, o Options) (*Table, Info, error) {
	var info Info
	size, err := conntrack.Size(cfg)
	if err != nil {
		return nil, info, err
	}
	dir := o.Dir
	if dir == "" {
		dir = DefaultDir
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, info, fmt.Errorf("conntrack state: %w", err)
	}
	ns := netnsInode()
	info.Path = filepath.Join(dir, fileName(ns, o.Name))
	info.Removed = removeStale(dir, info.Path)
	var sfs unix.Statfs_t
	if unix.Statfs(dir, &sfs) == nil && sfs.Type != unix.TMPFS_MAGIC && sfs.Type != unix.RAMFS_MAGIC {
		info.NotTmpfs = true
	}
	f, err := os.OpenFile(info.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, info, fmt.Errorf("conntrack state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, info, fmt.Errorf("another xlb%s uses %s: %w", pidOf(f), info.Path, ErrBusy)
		}
		return nil, info, fmt.Errorf("conntrack state: lock %s: %w", info.Path, err)
	}
	t := &Table{f: f, path: info.Path}
	if err := t.attach(cfg, size, o.Now, &info); err != nil {
		t.Close()
		return nil, info, err
	}
	return t, info, nil
}

func (t *Table) attach(cfg conntrack.Config, size int, now int64, info *Info) error {
	st, err := t.f.Stat()
	if err != nil {
		return fmt.Errorf("conntrack state: %w", err)
	}
	fresh := st.Size() == 0
	if !fresh {
		if st.Size() != int64(size) {
			info.Reason = fmt.Sprintf("file holds %d bytes, the configuration needs %d", st.Size(), size)
		} else {
			if t.mem, err = unix.Mmap(int(t.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
				return fmt.Errorf("conntrack state: map %s: %w", t.path, err)
			}
			info.Reason = conntrack.Check(cfg, t.mem)
		}
	}
	if fresh || info.Reason != "" {
		// Anew: truncating to zero and back gives zero pages without
		// touching them (the file stays sparse until used).
		if t.mem != nil {
			_ = unix.Munmap(t.mem)
			t.mem = nil
		}
		if err := t.f.Truncate(0); err != nil {
			return fmt.Errorf("conntrack state: %w", err)
		}
		if err := t.f.Truncate(int64(size)); err != nil {
			return fmt.Errorf("conntrack state: size %s: %w", t.path, err)
		}
		info.Created, fresh = true, true
	}
	if t.mem == nil {
		if t.mem, err = unix.Mmap(int(t.f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("conntrack state: map %s: %w", t.path, err)
		}
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fmt.Errorf("conntrack state: boot clock: %w", err)
	}
	var inst [8]byte
	_, _ = rand.Read(inst[:])
	p := conntrack.Persist{Now: now, Boot: ts.Nano(), BootID: bootID(), Pid: int64(os.Getpid()),
		Instance: binary.LittleEndian.Uint64(inst[:]), Fresh: fresh}
	tbl, ai, err := conntrack.Attach(cfg, t.mem, p)
	if err != nil {
		return err
	}
	reason := info.Reason
	info.AttachInfo = ai
	if reason != "" {
		info.Reason = reason
	}
	t.Table = tbl
	return nil
}

// Close unmaps the table and releases the file and its lock (held until
// both the file and the mapping are closed). The entries stay in the file
// for the next process: a clean stop and a crash leave the same file. The
// table must not be used afterwards (its memory is gone).
func (t *Table) Close() error {
	var err error
	if t.mem != nil {
		err = unix.Munmap(t.mem)
		t.mem = nil
	}
	if t.f != nil {
		if cerr := t.f.Close(); err == nil {
			err = cerr
		}
		t.f = nil
	}
	return err
}

// Abandon drops the table the way a process killed with SIGKILL does: the
// mapping and the file go away (and with them the lock, which the mapping
// holds too) in whatever state the table is, without Close. The table
// must not be used afterwards.
func (t *Table) Abandon() {
	if t.mem != nil {
		_ = unix.Munmap(t.mem)
		t.mem = nil
	}
	if t.f != nil {
		_ = t.f.Close()
		t.f = nil
	}
}

// SaveAux stores b in the table's companion file (path + ".aux"),
// atomically (write, fsync, rename), tagged with the table's instance.
func (t *Table) SaveAux(b []byte) error {
	var tag [8]byte
	binary.LittleEndian.PutUint64(tag[:], t.Instance())
	tmp := t.path + ".aux.tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(tag[:], b...))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, t.path+".aux")
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// LoadAux returns what SaveAux stored for this table instance, or nil when
// there is none (a new table, or a file left by another instance).
func (t *Table) LoadAux() ([]byte, error) {
	b, err := os.ReadFile(t.path + ".aux")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(b) < 8 || binary.LittleEndian.Uint64(b) != t.Instance() {
		return nil, nil
	}
	return b[8:], nil
}

// fileName is conntrack-<netns inode>-<hash of name>.shm.
func fileName(ns uint64, name string) string {
	h := fnv.New64a()
	h.Write([]byte(name))
	return fmt.Sprintf("conntrack-%d-%s.shm", ns, hex.EncodeToString(h.Sum(nil))[:12])
}

// netnsInode returns the inode of this process's network namespace.
func netnsInode() uint64 {
	var st unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &st) != nil {
		return 0
	}
	return st.Ino
}

// bootID reads the kernel's boot ID (a UUID) as 16 bytes; zero if unknown.
func bootID() (id [16]byte) {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id
	}
	s := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	if d, err := hex.DecodeString(s); err == nil && len(d) == 16 {
		copy(id[:], d)
	}
	return id
}

// pidOf names the process recorded in a locked table's header.
func pidOf(f *os.File) string {
	b := make([]byte, 16<<10)
	n, _ := f.ReadAt(b, 0)
	if pid := conntrack.HeaderPid(b[:n]); pid > 0 {
		return " (pid " + strconv.FormatInt(pid, 10) + ")"
	}
	return ""
}

// removeStale deletes the tables (and their companion files) in dir whose
// network namespace no longer exists and which nobody holds: a namespace
// that is gone never comes back with the same inode while the system runs,
// so its flows are gone with it. It keeps keep, every table it cannot
// read, and every table held by a process.
func removeStale(dir, keep string) (removed []string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var live map[uint64]bool
	for _, e := range ents {
		name := e.Name()
		p := filepath.Join(dir, name)
		if p == keep || !strings.HasPrefix(name, "conntrack-") || !strings.HasSuffix(name, ".shm") {
			continue
		}
		ino, err := strconv.ParseUint(strings.SplitN(strings.TrimPrefix(name, "conntrack-"), "-", 2)[0], 10, 64)
		if err != nil {
			continue
		}
		if live == nil {
			live = liveNetns()
		}
		if live[ino] {
			continue
		}
		f, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			_ = os.Remove(p + ".aux")
			if os.Remove(p) == nil {
				removed = append(removed, name)
			}
		}
		f.Close()
	}
	return removed
}

// liveNetns returns the inodes of the network namespaces that exist: those
// of every process, and those kept by a mount (ip netns).
func liveNetns() map[uint64]bool {
	live := map[uint64]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+p.Name()+"/ns/net", &st) == nil {
			live[st.Ino] = true
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if i := bytes.Index(line, []byte("net:[")); i >= 0 {
				rest := line[i+5:]
				if j := bytes.IndexByte(rest, ']'); j > 0 {
					if ino, err := strconv.ParseUint(string(rest[:j]), 10, 64); err == nil {
						live[ino] = true
					}
				}
			}
		}
	}
	return live
}
