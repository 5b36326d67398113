package shm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlb/xlb/conntrack"
)

func testConfig() conntrack.Config {
	c := conntrack.DefaultConfig()
	c.Capacity, c.Shards = 4096, 16
	c.SNATIPs4 = [][4]byte{{192, 0, 2, 1}}
	c.SNATPortMin, c.SNATPortMax = 2000, 2999
	return c
}

// dir returns a directory for tables, on tmpfs when there is one.
func dir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "xlb-shm-test-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func TestOpenReopen(t *testing.T) {
	d := dir(t)
	cfg := testConfig()
	o := Options{Dir: d, Name: "eth0,eth1", Now: 1e12}
	tbl, info, err := Open(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Created || info.Reused || !strings.HasPrefix(filepath.Base(info.Path), "conntrack-") {
		t.Fatalf("info %+v", info)
	}
	k := conntrack.Key4{SrcIP: [4]byte{10, 0, 0, 1}, DstIP: [4]byte{198, 51, 100, 1}, SrcPort: 999, DstPort: 80, Proto: 6}
	if err := tbl.Insert4(&k, conntrack.Entry4{Backend: 5, State: conntrack.StateEstablished}, 1e12); err != nil {
		t.Fatal(err)
	}
	// A second process cannot take it.
	if _, _, err := Open(cfg, o); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "another xlb (pid ") {
		t.Fatalf("second open: %v", err)
	}
	if err := tbl.SaveAux([]byte(`{"ids":1}`)); err != nil {
		t.Fatal(err)
	}
	// Crash: the lock goes with the process, the mapping is not unmapped.
	tbl.Abandon()
	tbl2, info, err := Open(cfg, Options{Dir: d, Name: "eth0,eth1", Now: 5e12})
	if err != nil {
		t.Fatal(err)
	}
	defer tbl2.Close()
	if !info.Reused || info.Entries != 1 || info.Created || info.Pid != int64(os.Getpid()) {
		t.Fatalf("reopen: %+v", info)
	}
	if e, ok := tbl2.Lookup4(&k, conntrack.TCPFlagACK, 5e12); !ok || e.Backend != 5 {
		t.Fatalf("entry lost: %+v %v", e, ok)
	}
	if b, err := tbl2.LoadAux(); err != nil || string(b) != `{"ids":1}` {
		t.Fatalf("aux %q %v", b, err)
	}
	// Another name is another table.
	other, info, err := Open(cfg, Options{Dir: d, Name: "eth2", Now: 1e12})
	if err != nil || !info.Created {
		t.Fatalf("other: %+v %v", info, err)
	}
	other.Close()
}

func TestOpenMismatchRebuilds(t *testing.T) {
	d := dir(t)
	cfg := testConfig()
	o := Options{Dir: d, Name: "eth0", Now: 1e12}
	tbl, _, err := Open(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	k := conntrack.Key4{SrcIP: [4]byte{10, 0, 0, 1}, Proto: 17}
	_ = tbl.Insert4(&k, conntrack.Entry4{}, 1e12)
	if err := tbl.SaveAux([]byte("x")); err != nil {
		t.Fatal(err)
	}
	tbl.Close()
	cfg.Capacity *= 2
	tbl2, info, err := Open(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl2.Close()
	if info.Reused || !info.Created || !strings.Contains(info.Reason, "bytes") {
		t.Fatalf("info %+v", info)
	}
	if tbl2.Len() != 0 {
		t.Fatal("entries of another geometry kept")
	}
	if b, _ := tbl2.LoadAux(); b != nil {
		t.Fatalf("aux of the old table returned: %q", b)
	}
	st, _ := os.Stat(info.Path)
	if n, _ := conntrack.Size(cfg); st.Size() != int64(n) {
		t.Fatalf("file %d bytes, want %d", st.Size(), n)
	}
}

func TestRemoveStale(t *testing.T) {
	d := dir(t)
	// A table of a namespace that cannot exist (inode 1), one of ours.
	stale := filepath.Join(d, "conntrack-1-abc.shm")
	if err := os.WriteFile(stale, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale+".aux", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	tbl, info, err := Open(testConfig(), Options{Dir: d, Name: "eth0", Now: time.Second.Nanoseconds()})
	if err != nil {
		t.Fatal(err)
	}
	tbl.Close()
	if len(info.Removed) != 1 {
		t.Fatalf("removed %v", info.Removed)
	}
	for _, p := range []string{stale, stale + ".aux"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s still there", p)
		}
	}
	// Ours survives the next Open's sweep.
	tbl, info, err = Open(testConfig(), Options{Dir: d, Name: "eth1", Now: time.Second.Nanoseconds()})
	if err != nil {
		t.Fatal(err)
	}
	tbl.Close()
	if len(info.Removed) != 0 {
		t.Fatalf("removed a live namespace's table: %v", info.Removed)
	}
}
