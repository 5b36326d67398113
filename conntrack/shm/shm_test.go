package shm

import (
	"errors"
	"fmt"
	"math/rand/v2"
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
	k := conntrack.Key{SrcIP: [16]byte{10, 0, 0, 1}, DstIP: [16]byte{198, 51, 100, 1}, SrcPort: 999, DstPort: 80, Proto: 6}
	if err := tbl.Insert(&k, &conntrack.Entry{Backend: 5, State: conntrack.StateEstablished}, 1e12); err != nil {
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
	var e conntrack.Entry
	if ok := tbl2.Lookup(&k, tbl2.Hash(&k), conntrack.TCPFlagACK, 5e12, &e); !ok || e.Backend != 5 {
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
	k := conntrack.Key{SrcIP: [16]byte{10, 0, 0, 1}, Proto: 17}
	_ = tbl.Insert(&k, &conntrack.Entry{}, 1e12)
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

// The benchmarks below are conntrack's BenchmarkLookupHit,
// BenchmarkLookupBatch and BenchmarkInsert on a table in a shared-memory
// file (tmpfs), to compare with the same table in the Go heap.

func benchTable(b *testing.B, flows int) *Table {
	c := conntrack.DefaultConfig()
	c.Capacity, c.Capacity6 = 1024, 1024
	c.Capacity = flows
	if flows < 1_000_000 {
		c.Capacity = 4 * flows
	}
	c.Seed = 0x9e3779b97f4a7c15
	d, err := os.MkdirTemp("/dev/shm", "xlb-shm-bench-")
	if err != nil {
		d = b.TempDir()
	} else {
		b.Cleanup(func() { os.RemoveAll(d) })
	}
	tbl, _, err := Open(c, Options{Dir: d, Name: "bench", Now: 1e12})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tbl.Close() })
	return tbl
}

func benchKeys(n int) []conntrack.Key {
	ks := make([]conntrack.Key, n)
	for i := range ks {
		ks[i] = conntrack.Key{SrcIP: [16]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}, DstIP: [16]byte{198, 51, 100, 10},
			SrcPort: uint16(1024 + i%50000), DstPort: 80, Proto: 6}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(n, func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	return ks
}

func BenchmarkShmLookupHit(b *testing.B) {
	for _, flows := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			tbl := benchTable(b, flows)
			ks := benchKeys(flows)
			for i := range ks {
				if err := tbl.Insert(&ks[i], &conntrack.Entry{Backend: uint32(i), State: conntrack.StateEstablished}, 1e12); err != nil {
					b.Fatal(err)
				}
			}
			rand.New(rand.NewPCG(3, 4)).Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
			var e conntrack.Entry
			b.ReportAllocs()
			b.ResetTimer()
			j := 0
			for range b.N {
				if !tbl.Lookup(&ks[j], tbl.Hash(&ks[j]), conntrack.TCPFlagACK, 1e12, &e) {
					b.Fatal("miss")
				}
				if j++; j == len(ks) {
					j = 0
				}
			}
		})
	}
}

func BenchmarkShmLookupBatch(b *testing.B) {
	tbl := benchTable(b, 1_000_000)
	ks := benchKeys(1_000_000)
	for i := range ks {
		_ = tbl.Insert(&ks[i], &conntrack.Entry{Backend: uint32(i), State: conntrack.StateEstablished}, 1e12)
	}
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	ks = ks[:len(ks)/32*32]
	var hs [32]uint64
	var e conntrack.Entry
	b.ReportAllocs()
	b.ResetTimer()
	j := 0
	for n := 0; n < b.N; n += 32 {
		batch := ks[j : j+32]
		for i := range batch {
			hs[i] = tbl.Hash(&batch[i])
		}
		tbl.Prefetch(false, hs[:])
		for i := range batch {
			if !tbl.Lookup(&batch[i], hs[i], conntrack.TCPFlagACK, 1e12, &e) {
				b.Fatal("miss")
			}
		}
		if j += 32; j == len(ks) {
			j = 0
		}
	}
}

// BenchmarkShmInsert is conntrack's BenchmarkInsert (a full 64k-entry
// table in the steady state of a busy balancer) in shared memory.
func BenchmarkShmInsert(b *testing.B) {
	c := conntrack.DefaultConfig()
	c.Capacity, c.Capacity6 = 4<<16, 1024
	c.Seed = 0x9e3779b97f4a7c15
	c.UDP = 3 * time.Second
	c.EvictMinIdle = time.Second
	d, err := os.MkdirTemp("/dev/shm", "xlb-shm-bench-")
	if err != nil {
		d = b.TempDir()
	} else {
		b.Cleanup(func() { os.RemoveAll(d) })
	}
	tbl, _, err := Open(c, Options{Dir: d, Name: "bench", Now: 1e12})
	if err != nil {
		b.Fatal(err)
	}
	defer tbl.Close()
	ks := make([]conntrack.Key, 1<<20) // in order, as BenchmarkInsert
	for i := range ks {
		ks[i] = conntrack.Key{SrcIP: [16]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}, DstIP: [16]byte{198, 51, 100, 10},
			SrcPort: uint16(1024 + i%50000), DstPort: 80, Proto: 17}
	}
	now := int64(1e12)
	step := int64(100 * time.Microsecond)
	for i := range 1 << 17 {
		now += step
		_ = tbl.Insert(&ks[i], &conntrack.Entry{Backend: uint32(i)}, now)
		if i&31 == 0 {
			tbl.Expire(now, 32)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		now += step
		j := (i + 1<<17) & (1<<20 - 1)
		if err := tbl.Insert(&ks[j], &conntrack.Entry{Backend: uint32(i)}, now); err != nil {
			b.Fatal(err)
		}
		if i&31 == 0 {
			tbl.Expire(now, 32)
		}
	}
}
