package conntrack

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchConfig sizes the IPv4 family for flows entries (the IPv6 family
// small unless v6) with the default timeouts.
func benchConfig(flows int, v6 bool) Config {
	c := DefaultConfig()
	// 64 shards: small tables get 4x headroom so that no shard overflows,
	// the 1M table is 95% full (1_048_576 slots).
	size := flows
	if flows < 1_000_000 {
		size = 4 * flows
	}
	c.Capacity, c.Capacity6 = 1024, 1024
	if v6 {
		c.Capacity6 = size
	} else {
		c.Capacity = size
	}
	c.Seed = 0x9e3779b97f4a7c15
	return c
}

// shuffled4 returns n distinct IPv4 keys in random order.
func shuffled4(n int, offset int) []Key {
	ks := make([]Key, n)
	for i := range ks {
		k := testKey4(offset+i, protoTCP)
		ks[i] = wide4(&k)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(n, func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
	return ks
}

func prefill(b *testing.B, tbl *Table, ks []Key, now int64) {
	b.Helper()
	for i := range ks {
		if err := tbl.Insert(&ks[i], &Entry{Backend: uint32(i), State: StateEstablished}, now); err != nil {
			b.Fatalf("prefill %d: %v", i, err)
		}
	}
}

// BenchmarkLookupHit looks up existing IPv4 keys, cycling through all of them
// in random order so that a large table is measured from memory, not from
// cache. The clock stands still, so no entry crosses an LRU granule; the
// "moving" variant advances it so that every lookup of a 1M-flow table
// also moves its entry in the LRU list (the worst case: every flow sends
// about one packet per second).
func BenchmarkLookupHit(b *testing.B) {
	for _, tc := range []struct {
		name  string
		flows int
		step  int64 // clock advance per lookup
	}{
		{"flows=1k", 1000, 0},
		{"flows=1M", 1_000_000, 0},
		{"flows=1M,moving", 1_000_000, int64(time.Microsecond)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tbl := newTable(b, benchConfig(tc.flows, false))
			ks := shuffled4(tc.flows, 0)
			prefill(b, tbl, ks, at(0))
			rng := rand.New(rand.NewPCG(3, 4))
			rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
			now := at(0)
			var e Entry
			b.ReportAllocs()
			b.ResetTimer()
			j := 0
			for range b.N {
				now += tc.step
				if !tbl.Lookup(&ks[j], tbl.Hash(&ks[j]), TCPFlagACK, now, &e) {
					b.Fatal("miss")
				}
				if j++; j == len(ks) {
					j = 0
				}
			}
		})
	}
}

// BenchmarkLookupBatch is BenchmarkLookupHit the way the dataplane works:
// batches of 32 keys, each hashed once, Prefetch first, then one Lookup
// per key. ns/op is per lookup.
func BenchmarkLookupBatch(b *testing.B) {
	for _, flows := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%s,batch=32", count(flows)), func(b *testing.B) {
			tbl := newTable(b, benchConfig(flows, false))
			ks := shuffled4(flows, 0)
			prefill(b, tbl, ks, at(0))
			rng := rand.New(rand.NewPCG(3, 4))
			rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
			ks = ks[:len(ks)/32*32]
			var hs [32]uint64
			var e Entry
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
					if !tbl.Lookup(&batch[i], hs[i], TCPFlagACK, at(0), &e) {
						b.Fatal("miss")
					}
				}
				if j += 32; j == len(ks) {
					j = 0
				}
			}
		})
	}
}

func BenchmarkLookup6Hit(b *testing.B) {
	b.Run("flows=1k", func(b *testing.B) {
		const flows = 1000
		tbl := newTable(b, benchConfig(flows, true))
		ks := make([]Key, flows)
		for i := range ks {
			k := testKey6(i, protoTCP)
			ks[i] = wide6(&k)
			if err := tbl.Insert(&ks[i], &Entry{Backend: uint32(i), State: StateEstablished}, at(0)); err != nil {
				b.Fatal(err)
			}
		}
		rng := rand.New(rand.NewPCG(3, 4))
		rng.Shuffle(len(ks), func(i, j int) { ks[i], ks[j] = ks[j], ks[i] })
		var e Entry
		b.ReportAllocs()
		b.ResetTimer()
		j := 0
		for range b.N {
			if !tbl.Lookup(&ks[j], tbl.Hash(&ks[j]), TCPFlagACK, at(0), &e) {
				b.Fatal("miss")
			}
			if j++; j == len(ks) {
				j = 0
			}
		}
	})
}

func BenchmarkLookupMiss(b *testing.B) {
	for _, flows := range []int{1000, 1_000_000} {
		b.Run(fmt.Sprintf("flows=%s", count(flows)), func(b *testing.B) {
			tbl := newTable(b, benchConfig(flows, false))
			prefill(b, tbl, shuffled4(flows, 0), at(0))
			miss := shuffled4(1<<16, 1<<22) // never inserted
			var e Entry
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				k := &miss[i&(1<<16-1)]
				if tbl.Lookup(k, tbl.Hash(k), TCPFlagACK, at(0), &e) {
					b.Fatal("hit")
				}
			}
		})
	}
}

// BenchmarkInsert inserts new IPv4 flows into a full 64k-entry table in the
// steady state of a busy load balancer: 10k new flows per second of
// clock, UDP timeout 3s, EvictMinIdle 1s, Expire(now, 32) every 32
// inserts. Most inserts evict the LRU entry; the sweep removes the rest.
func BenchmarkInsert(b *testing.B) {
	c := benchConfig(1<<16, false)
	c.UDP = 3 * time.Second
	c.EvictMinIdle = time.Second
	tbl := newTable(b, c)
	ks := make([]Key, 1<<20)
	for i := range ks {
		k := testKey4(i, protoUDP)
		ks[i] = wide4(&k)
	}
	now := at(0)
	step := int64(100 * time.Microsecond)
	for i := range 1 << 17 { // warm up into the steady state
		now += step
		_ = tbl.Insert(&ks[i], &Entry{Backend: uint32(i)}, now)
		if i&31 == 0 {
			tbl.Expire(now, 32)
		}
	}
	before := tbl.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		now += step
		j := (i + 1<<17) & (1<<20 - 1)
		if err := tbl.Insert(&ks[j], &Entry{Backend: uint32(i)}, now); err != nil {
			b.Fatal(err)
		}
		if i&31 == 0 {
			tbl.Expire(now, 32)
		}
	}
	b.StopTimer()
	after := tbl.Stats()
	if n := after.Inserts - before.Inserts; n > 0 {
		b.ReportMetric(float64(after.Evictions-before.Evictions)/float64(n), "evictions/insert")
		b.ReportMetric(float64(after.Expired-before.Expired)/float64(n), "expired/insert")
	}
}

func BenchmarkParallelLookup(b *testing.B) {
	const flows = 1 << 16
	tbl := newTable(b, benchConfig(flows, false))
	ks := shuffled4(flows, 0)
	prefill(b, tbl, ks, at(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		j := rand.IntN(flows)
		var e Entry
		for pb.Next() {
			if !tbl.Lookup(&ks[j], tbl.Hash(&ks[j]), TCPFlagACK, at(0), &e) {
				b.Error("miss")
				return
			}
			j = (j + 1) & (flows - 1)
		}
	})
}

// BenchmarkExpire is one worker's per-batch Expire call (budget 64) on a
// full 1M-entry table where nothing is expired: the cost of the sweep
// itself.
func BenchmarkExpire(b *testing.B) {
	tbl := newTable(b, benchConfig(1_000_000, false))
	prefill(b, tbl, shuffled4(1_000_000, 0), at(0))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		tbl.Expire(at(time.Second), 64)
	}
}

func BenchmarkAllocFreeSNAT(b *testing.B) {
	tbl := newTable(b, smallConfig())
	b.ReportAllocs()
	for i := range b.N {
		idx, p, ok := tbl.AllocSNAT(false, uint32(i))
		if !ok {
			b.Fatal("exhausted")
		}
		tbl.FreeSNAT(idx, p)
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}
