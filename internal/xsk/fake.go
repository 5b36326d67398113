package xsk

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// memRingOffsets lays a ring out like the kernel does: producer, consumer
// and flags on separate cache lines, entries after them.
var memRingOffsets = ringOffsets{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}

// newMemRing allocates 8-byte aligned memory for a ring of size T entries.
func newMemRing[T any](size uint32) []byte {
	var zero T
	words := make([]uint64, (memRingOffsets.Desc+uint64(size)*uint64(unsafe.Sizeof(zero))+7)/8)
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)
}

// ringPair builds both views of one in-memory ring: the socket's and the
// peer's. userProduces says whether the socket is the producer.
func ringPair[T any](size uint32, userProduces bool) (user, peer ring[T], err error) {
	mem := newMemRing[T](size)
	if user, err = newRing[T](mem, memRingOffsets, size, userProduces); err != nil {
		return user, peer, fmt.Errorf("xsk: memory socket: %w", err)
	}
	peer, err = newRing[T](mem, memRingOffsets, size, !userProduces)
	return user, peer, err
}

const peerBatch = 64

// Peer plays the kernel's side of a Socket made by NewMemSocket: it takes
// addresses from the fill ring to deliver packets onto the rx ring, and
// consumes the tx ring, posting the addresses on the completion ring. Like
// the Socket, a Peer is meant for one goroutine at a time, but it may run
// on a different goroutine than the Socket: the rings are shared only
// through atomic indices, as with the kernel.
type Peer struct {
	umem *UMEM
	rx   ring[Desc]   // producer side
	tx   ring[Desc]   // consumer side
	fill ring[uint64] // consumer side
	comp ring[uint64] // producer side

	batch [peerBatch]Desc

	rxDropped, rxRingFull, fillEmpty, txInvalid atomic.Uint64
}

// NewMemSocket returns a Socket whose rings live in ordinary memory and the
// Peer that acts as the kernel for it. It needs no privileges, interface or
// AF_XDP support, so the dataplane can be tested and benchmarked with it.
// The socket takes a reference on umem like Open does; its FD is -1, its
// Mode is Copy, wakeups and busy polls (on unless Options.DisableBusyPoll)
// are counted but make no syscall, and Poll returns at once.
func NewMemSocket(umem *UMEM, opts Options) (*Socket, *Peer, error) {
	if err := opts.Validate(); err != nil {
		return nil, nil, err
	}
	opts = opts.withDefaults()
	if umem == nil {
		return nil, nil, fmt.Errorf("%w: nil umem", ErrInvalidConfig)
	}
	s := &Socket{fd: -1, umem: umem, opts: opts, mode: Copy, needWakeup: !opts.DisableNeedWakeup, busyPoll: !opts.DisableBusyPoll}
	p := &Peer{umem: umem}
	var err error
	if s.rx, p.rx, err = ringPair[Desc](opts.RxSize, false); err != nil {
		return nil, nil, err
	}
	if s.tx, p.tx, err = ringPair[Desc](opts.TxSize, true); err != nil {
		return nil, nil, err
	}
	if s.fill, p.fill, err = ringPair[uint64](opts.FillSize, true); err != nil {
		return nil, nil, err
	}
	if s.comp, p.comp, err = ringPair[uint64](opts.CompletionSize, false); err != nil {
		return nil, nil, err
	}
	umem.mu.Lock()
	err = umem.refLocked()
	umem.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	s.peer = p
	return s, p, nil
}

// Deliver receives pkt as the kernel would: it takes one address from the
// fill ring, copies pkt to DataOffset bytes into that frame and posts the
// descriptor on the rx ring. It reports false, counting the reason, when the
// packet does not fit a frame, the rx ring is full or the fill ring empty.
func (p *Peer) Deliver(pkt []byte) bool {
	off := p.umem.DataOffset()
	if uint64(len(pkt)) > uint64(p.umem.cfg.FrameSize)-off {
		bump(&p.rxDropped, 1)
		return false
	}
	if p.rx.prodFree(1) == 0 {
		bump(&p.rxRingFull, 1)
		return false
	}
	var addr [1]uint64
	if p.fill.consume(addr[:]) == 0 {
		bump(&p.fillEmpty, 1)
		return false
	}
	d := Desc{Addr: p.umem.FrameBase(addr[0]) + off, Len: uint32(len(pkt))}
	copy(p.umem.Frame(d.Addr, d.Len), pkt)
	one := [1]Desc{d}
	p.rx.produce(one[:])
	return true
}

// Drain consumes the tx ring as the kernel would. It calls fn (if not nil)
// with each valid descriptor and its bytes, then posts the address on the
// completion ring; it stops early when the completion ring is full. Invalid
// descriptors (empty, or crossing the end of their frame) are counted in
// Stats.TxInvalidDescs and, as in the kernel, never completed. Drain returns
// the number of descriptors consumed.
func (p *Peer) Drain(fn func(d Desc, frame []byte)) int {
	total := 0
	for {
		room := int(p.comp.prodFree(uint32(len(p.batch))))
		if room == 0 {
			return total
		}
		n := p.tx.consume(p.batch[:min(room, len(p.batch))])
		if n == 0 {
			return total
		}
		var addrs [peerBatch]uint64
		k := 0
		for _, d := range p.batch[:n] {
			if d.Len == 0 || d.Addr >= uint64(len(p.umem.mem)) || p.umem.Tailroom(d.Addr, 0) < d.Len {
				bump(&p.txInvalid, 1)
				continue
			}
			if fn != nil {
				fn(d, p.umem.Frame(d.Addr, d.Len))
			}
			addrs[k] = d.Addr
			k++
		}
		p.comp.produce(addrs[:k])
		total += n
	}
}

// FillLevel returns the number of addresses waiting on the fill ring.
func (p *Peer) FillLevel() int { return int(p.fill.pending()) }

// SetFillNeedWakeup sets or clears XDP_RING_NEED_WAKEUP on the fill ring.
func (p *Peer) SetFillNeedWakeup(on bool) { setFlag(p.fill.flags, on) }

// SetTxNeedWakeup sets or clears XDP_RING_NEED_WAKEUP on the tx ring.
func (p *Peer) SetTxNeedWakeup(on bool) { setFlag(p.tx.flags, on) }

func setFlag(f *uint32, on bool) {
	var v uint32
	if on {
		v = unix.XDP_RING_NEED_WAKEUP
	}
	atomic.StoreUint32(f, v)
}

func (p *Peer) stats(st *Stats) {
	st.RxDropped = p.rxDropped.Load()
	st.RxRingFull = p.rxRingFull.Load()
	st.RxFillRingEmptyDescs = p.fillEmpty.Load()
	st.TxInvalidDescs = p.txInvalid.Load()
}
