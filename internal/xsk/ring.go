package xsk

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Desc is one rx or tx ring entry (struct xdp_desc).
type Desc struct {
	// Addr is the UMEM offset of the first byte of the packet.
	Addr uint64
	// Len is the packet length in bytes.
	Len uint32
	// Options carries XDP_PKT_CONTD and tx metadata flags; zero for
	// single-buffer packets.
	Options uint32
}

// Compile-time checks that Desc matches the kernel's struct xdp_desc.
var (
	_ [unsafe.Sizeof(Desc{}) - unsafe.Sizeof(unix.XDPDesc{})]struct{}
	_ [unsafe.Sizeof(unix.XDPDesc{}) - unsafe.Sizeof(Desc{})]struct{}
)

// ringOffsets says where the producer index, consumer index, flags word and
// the entry array lie in a ring's memory (struct xdp_ring_offset).
type ringOffsets = unix.XDPRingOffset

// ring is a single-producer single-consumer ring of T (uint64 for the fill
// and completion rings, Desc for rx and tx) over memory shared with the
// other side. The same type serves both roles: produce is used by the side
// that writes entries, consume by the side that reads them. It can be built
// over any memory, which lets tests and [Peer] drive it without a kernel.
//
// Indices are free-running uint32 counters; an entry's slot is index&mask,
// and differences are taken modulo 2^32, so wraparound needs no special case.
//
// Ordering follows libxdp's xsk.h: a consumer reads the producer index with a
// load-acquire before reading entries and publishes its consumer index with a
// store-release after reading them; a producer reads the consumer index with
// a load-acquire and publishes the producer index with a store-release after
// writing entries. Go's sync/atomic operations are sequentially consistent,
// which is at least that strong.
type ring[T any] struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	entries  []T
	mask     uint32

	// cachedProd and cachedCons are this side's private view of the two
	// indices. On the producing side cachedCons holds consumer+size, so
	// cachedCons-cachedProd is the number of free slots.
	cachedProd uint32
	cachedCons uint32
}

// newRing builds a ring of size entries (a power of two) over mem at the
// given offsets. producerSide selects which side the returned ring plays.
func newRing[T any](mem []byte, off ringOffsets, size uint32, producerSide bool) (ring[T], error) {
	var zero T
	esz := uint64(unsafe.Sizeof(zero))
	if size == 0 || size&(size-1) != 0 {
		return ring[T]{}, fmt.Errorf("ring size %d is not a power of two", size)
	}
	n := uint64(len(mem))
	for _, o := range []uint64{off.Producer, off.Consumer, off.Flags} {
		if o%4 != 0 || o+4 > n {
			return ring[T]{}, fmt.Errorf("ring index offset %d outside %d-byte mapping or misaligned", o, n)
		}
	}
	if off.Desc%8 != 0 || off.Desc+uint64(size)*esz > n {
		return ring[T]{}, fmt.Errorf("ring of %d entries at offset %d outside %d-byte mapping", size, off.Desc, n)
	}
	base := unsafe.Pointer(unsafe.SliceData(mem))
	r := ring[T]{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		entries:  unsafe.Slice((*T)(unsafe.Add(base, off.Desc)), size),
		mask:     size - 1,
	}
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
	if producerSide {
		r.cachedCons += size
	}
	return r, nil
}

// deadRing returns a ring of size zero whose indices live in idx. All
// operations on it move nothing; closed sockets swap their rings for one so
// that a late call returns 0 instead of touching unmapped memory.
func deadRing[T any](idx *[3]uint32) ring[T] {
	return ring[T]{producer: &idx[0], consumer: &idx[1], flags: &idx[2]}
}

// size returns the number of entries.
func (r *ring[T]) size() uint32 { return uint32(len(r.entries)) }

// prodFree returns the number of free slots, looking at the shared consumer
// index only when the cached value shows fewer than want.
func (r *ring[T]) prodFree(want uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= want {
		return free
	}
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size()
	return r.cachedCons - r.cachedProd
}

// consAvail returns how many entries (at most want) can be consumed,
// looking at the shared producer index only when the cached value shows
// fewer than want.
func (r *ring[T]) consAvail(want uint32) uint32 {
	avail := r.cachedProd - r.cachedCons
	if avail < want {
		r.cachedProd = atomic.LoadUint32(r.producer)
		avail = r.cachedProd - r.cachedCons
	}
	return min(avail, want)
}

// produce appends as many of src as fit and publishes them with one
// store-release of the producer index. It returns the number written.
func (r *ring[T]) produce(src []T) int {
	n := r.prodFree(clamp32(len(src)))
	n = min(n, clamp32(len(src)))
	if n == 0 {
		return 0
	}
	idx := r.cachedProd
	start := idx & r.mask
	first := min(n, r.size()-start)
	copy(r.entries[start:start+first], src[:first])
	copy(r.entries[:n-first], src[first:n])
	r.cachedProd = idx + n
	atomic.StoreUint32(r.producer, r.cachedProd)
	return int(n)
}

// consume copies up to len(dst) entries into dst and releases their slots
// with one store-release of the consumer index. It returns the number read.
func (r *ring[T]) consume(dst []T) int {
	n := r.consAvail(clamp32(len(dst)))
	if n == 0 {
		return 0
	}
	idx := r.cachedCons
	start := idx & r.mask
	first := min(n, r.size()-start)
	copy(dst[:first], r.entries[start:start+first])
	copy(dst[first:n], r.entries[:n-first])
	r.cachedCons = idx + n
	atomic.StoreUint32(r.consumer, r.cachedCons)
	return int(n)
}

// needsWakeup reports whether the other side set XDP_RING_NEED_WAKEUP.
func (r *ring[T]) needsWakeup() bool {
	return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0
}

// pending returns the number of entries produced but not yet consumed, as
// seen in shared memory.
func (r *ring[T]) pending() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

func clamp32(n int) uint32 {
	if n > 1<<31 {
		return 1 << 31
	}
	return uint32(n)
}
