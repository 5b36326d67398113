package xsk

import (
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"
)

// testRing builds a producer view and a consumer view of one in-memory
// ring whose indices both start at start.
func testRing(t testing.TB, size, start uint32) (prod, cons ring[uint64]) {
	t.Helper()
	mem := newMemRing[uint64](size)
	base := unsafe.Pointer(unsafe.SliceData(mem))
	*(*uint32)(unsafe.Add(base, memRingOffsets.Producer)) = start
	*(*uint32)(unsafe.Add(base, memRingOffsets.Consumer)) = start
	var err error
	if prod, err = newRing[uint64](mem, memRingOffsets, size, true); err != nil {
		t.Fatal(err)
	}
	if cons, err = newRing[uint64](mem, memRingOffsets, size, false); err != nil {
		t.Fatal(err)
	}
	return prod, cons
}

func seq(from uint64, n int) []uint64 {
	s := make([]uint64, n)
	for i := range s {
		s[i] = from + uint64(i)
	}
	return s
}

func TestRingWraparound(t *testing.T) {
	// Start 5 entries before the uint32 indices wrap, and at a slot that
	// is not 0 so batches also wrap around the entry array.
	const size = 8
	start := uint32(1<<32 - 5)
	p, c := testRing(t, size, start)

	if n := p.produce(seq(100, 6)); n != 6 {
		t.Fatalf("produce 6 into empty ring of 8: got %d", n)
	}
	if got := atomic.LoadUint32(p.producer); got != start+6 {
		t.Fatalf("producer index %#x, want %#x (wrapped)", got, start+6)
	}
	if n := p.produce(seq(106, 5)); n != 2 {
		t.Fatalf("produce 5 into ring with 2 free: got %d", n)
	}
	if n := p.produce(seq(0, 1)); n != 0 {
		t.Fatalf("produce into full ring: got %d", n)
	}
	dst := make([]uint64, 16)
	if n := c.consume(dst[:3]); n != 3 || dst[0] != 100 || dst[2] != 102 {
		t.Fatalf("consume 3: n=%d %v", n, dst[:3])
	}
	if n := p.produce(seq(108, 4)); n != 3 {
		t.Fatalf("produce after consumer freed 3: got %d, want 3", n)
	}
	n := c.consume(dst)
	if n != 8 {
		t.Fatalf("consume all: got %d, want 8", n)
	}
	for i := range n {
		if want := uint64(103 + i); dst[i] != want {
			t.Fatalf("entry %d = %d, want %d (%v)", i, dst[i], want, dst[:n])
		}
	}
	if n := c.consume(dst); n != 0 {
		t.Fatalf("consume from empty ring: got %d", n)
	}
	if got := atomic.LoadUint32(c.consumer); got != start+11 {
		t.Fatalf("consumer index %#x, want %#x", got, start+11)
	}
	if p.pending() != 0 {
		t.Fatalf("pending %d on empty ring", p.pending())
	}
}

// TestRingRandomBatches interleaves random batch sizes from random start
// indices and checks nothing is lost, duplicated or reordered.
func TestRingRandomBatches(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []uint32{1, 2, 16, 64} {
		for range 50 {
			start := uint32(1<<32 - rng.IntN(4*int(size)+1))
			p, c := testRing(t, size, start)
			var next, want uint64
			buf := make([]uint64, 3*size)
			for range 200 {
				k := rng.IntN(int(2 * size))
				n := p.produce(seq(next, k))
				if n > k || n > int(size) {
					t.Fatalf("produced %d of %d into ring of %d", n, k, size)
				}
				next += uint64(n)
				got := c.consume(buf[:rng.IntN(len(buf))])
				for _, v := range buf[:got] {
					if v != want {
						t.Fatalf("size %d start %#x: got %d, want %d", size, start, v, want)
					}
					want++
				}
				if inflight := next - want; inflight > uint64(size) {
					t.Fatalf("%d entries in flight in a ring of %d", inflight, size)
				}
			}
		}
	}
}

// TestRingConcurrent runs producer and consumer on separate goroutines, as
// with the kernel, so the race detector checks the index protocol.
func TestRingConcurrent(t *testing.T) {
	const total = 100000
	p, c := testRing(t, 64, 1<<32-1000)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		batch := make([]uint64, 24)
		for next := uint64(0); next < total; {
			k := min(len(batch), total-int(next))
			for i := range k {
				batch[i] = next + uint64(i)
			}
			next += uint64(p.produce(batch[:k]))
		}
	}()
	buf := make([]uint64, 40)
	for want := uint64(0); want < total; {
		n := c.consume(buf)
		for _, v := range buf[:n] {
			if v != want {
				t.Fatalf("got %d, want %d", v, want)
			}
			want++
		}
	}
	wg.Wait()
}

func TestNewRingValidation(t *testing.T) {
	mem := newMemRing[Desc](8)
	if _, err := newRing[Desc](mem, memRingOffsets, 8, false); err != nil {
		t.Fatalf("valid ring: %v", err)
	}
	if _, err := newRing[Desc](mem, memRingOffsets, 6, false); err == nil {
		t.Error("size 6 accepted")
	}
	if _, err := newRing[Desc](mem, memRingOffsets, 16, false); err == nil {
		t.Error("ring larger than its memory accepted")
	}
	bad := memRingOffsets
	bad.Flags = 2
	if _, err := newRing[Desc](mem, bad, 8, false); err == nil {
		t.Error("misaligned flags offset accepted")
	}
}

func TestDeadRing(t *testing.T) {
	var idx [3]uint32
	r := deadRing[Desc](&idx)
	if r.produce(make([]Desc, 4)) != 0 || r.consume(make([]Desc, 4)) != 0 || r.needsWakeup() {
		t.Fatal("dead ring moved entries")
	}
}

func BenchmarkRingProduceConsume(b *testing.B) {
	for _, batch := range []int{1, 16, 64} {
		b.Run("batch"+strconv.Itoa(batch), func(b *testing.B) {
			mem := newMemRing[Desc](2048)
			p, _ := newRing[Desc](mem, memRingOffsets, 2048, true)
			c, _ := newRing[Desc](mem, memRingOffsets, 2048, false)
			src := make([]Desc, batch)
			dst := make([]Desc, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				p.produce(src)
				c.consume(dst)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/desc")
		})
	}
}
