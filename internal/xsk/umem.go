package xsk

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// XDPPacketHeadroom is the space the kernel keeps in front of every received
// packet in addition to UMEMConfig.Headroom (XDP_PACKET_HEADROOM).
const XDPPacketHeadroom = unix.XDP_PACKET_HEADROOM

// MaxFrameLen is the largest Ethernet frame (without FCS) at the default
// MTU; UMEM frames must leave room for it after the headroom.
const MaxFrameLen = 1514

// Defaults for UMEMConfig fields left zero.
const (
	DefaultFrameSize  = 4096
	DefaultFrameCount = 4096
	DefaultHeadroom   = 256
)

// UMEMConfig describes a UMEM. The zero value selects the defaults.
type UMEMConfig struct {
	// FrameSize is the size of one frame (chunk): 2048 or 4096.
	// Default 4096.
	FrameSize uint32
	// FrameCount is the number of frames. Default 4096.
	FrameCount uint32
	// Headroom is reserved by the kernel in front of each received packet,
	// on top of XDPPacketHeadroom, so the dataplane can prepend headers
	// (an outer IPv4/IPv6 header for tunnel mode) without moving the
	// packet. Default 256. Headroom + XDPPacketHeadroom + MaxFrameLen must
	// fit in FrameSize.
	Headroom uint32
}

func (c UMEMConfig) withDefaults() UMEMConfig {
	if c.FrameSize == 0 {
		c.FrameSize = DefaultFrameSize
	}
	if c.FrameCount == 0 {
		c.FrameCount = DefaultFrameCount
	}
	if c.Headroom == 0 {
		c.Headroom = DefaultHeadroom
	}
	return c
}

// Validate checks c after applying defaults. Errors wrap ErrInvalidConfig.
func (c UMEMConfig) Validate() error {
	c = c.withDefaults()
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return fmt.Errorf("%w: frame size %d is not 2048 or 4096", ErrInvalidConfig, c.FrameSize)
	}
	if c.FrameCount > 1<<22 {
		return fmt.Errorf("%w: %d frames is more than %d", ErrInvalidConfig, c.FrameCount, 1<<22)
	}
	if uint64(c.Headroom)+XDPPacketHeadroom+MaxFrameLen > uint64(c.FrameSize) {
		return fmt.Errorf("%w: headroom %d + %d + a %d-byte frame does not fit a %d-byte frame",
			ErrInvalidConfig, c.Headroom, XDPPacketHeadroom, MaxFrameLen, c.FrameSize)
	}
	return nil
}

// UMEM is the packet buffer memory shared by one or more sockets, and a
// free stack of its frames.
//
// The memory is released when the UMEM and every socket opened on it have
// been closed (a reference count), so Close may be called in any order.
type UMEM struct {
	mem       []byte
	cfg       UMEMConfig
	frameMask uint64 // FrameSize-1

	// free is a stack of frame base addresses; free[:nfree] are free.
	free  []uint64
	nfree int

	mu         sync.Mutex
	refs       int // 1 for the owner until Close, +1 per open socket
	ownerGone  bool
	sockets    []*Socket // kernel-backed sockets bound to this UMEM
	registered bool      // XDP_UMEM_REG done on sockets[0]
	unmapped   bool
}

// NewUMEM maps FrameCount*FrameSize bytes of anonymous memory
// (MAP_PRIVATE|MAP_ANONYMOUS|MAP_POPULATE) and puts every frame on the free
// stack. It needs no privileges: registration with the kernel happens when
// the first socket is opened.
func NewUMEM(cfg UMEMConfig) (*UMEM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	size := int(cfg.FrameSize) * int(cfg.FrameCount)
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("xsk: mmap %d-byte umem: %w", size, err)
	}
	u := &UMEM{
		mem:       mem,
		cfg:       cfg,
		frameMask: uint64(cfg.FrameSize) - 1,
		free:      make([]uint64, cfg.FrameCount),
		refs:      1,
	}
	// Push in reverse so Alloc hands out frame 0 first.
	for i := range u.free {
		u.free[i] = uint64(int(cfg.FrameCount)-1-i) * uint64(cfg.FrameSize)
	}
	u.nfree = len(u.free)
	return u, nil
}

// Config returns the effective configuration (defaults applied).
func (u *UMEM) Config() UMEMConfig { return u.cfg }

// Bytes returns the whole UMEM.
func (u *UMEM) Bytes() []byte { return u.mem }

// DataOffset is where the kernel puts a received packet inside its frame:
// Headroom + XDPPacketHeadroom. Callers building a packet in a fresh frame
// from Alloc should start it there too to keep the same headroom.
func (u *UMEM) DataOffset() uint64 {
	return uint64(u.cfg.Headroom) + XDPPacketHeadroom
}

// Frame returns the length bytes at addr, without copying. The slice's
// capacity ends at the end of addr's frame, so appending never spills into
// the next frame. It panics if addr is outside the UMEM.
func (u *UMEM) Frame(addr uint64, length uint32) []byte {
	end := (addr | u.frameMask) + 1
	return u.mem[addr : addr+uint64(length) : end]
}

// Headroom returns how many bytes lie between the start of addr's frame and
// addr, that is how much can be prepended to a packet starting at addr.
func (u *UMEM) Headroom(addr uint64) uint32 {
	return uint32(addr & u.frameMask)
}

// Tailroom returns how many bytes follow a packet of length bytes at addr
// before the end of its frame.
func (u *UMEM) Tailroom(addr uint64, length uint32) uint32 {
	return u.cfg.FrameSize - uint32(addr&u.frameMask) - length
}

// Prepend grows d by n bytes at the front (d.Addr -= n, d.Len += n) if the
// frame has that much headroom, and reports whether it did. The new bytes
// hold whatever was there before; the caller writes the header.
func (u *UMEM) Prepend(d *Desc, n uint32) bool {
	if u.Headroom(d.Addr) < n {
		return false
	}
	d.Addr -= uint64(n)
	d.Len += n
	return true
}

// FrameBase returns the address of the start of addr's frame.
func (u *UMEM) FrameBase(addr uint64) uint64 { return addr &^ u.frameMask }

// Alloc pops a frame from the free stack and returns its base address.
func (u *UMEM) Alloc() (uint64, bool) {
	if u.nfree == 0 {
		return 0, false
	}
	u.nfree--
	return u.free[u.nfree], true
}

// AllocBatch pops up to len(dst) frames into dst and returns how many.
func (u *UMEM) AllocBatch(dst []uint64) int {
	n := min(len(dst), u.nfree)
	copy(dst[:n], u.free[u.nfree-n:u.nfree])
	u.nfree -= n
	return n
}

// Free returns the frame containing addr to the free stack. addr may point
// anywhere inside the frame (a received or completed descriptor address).
// Freeing more frames than exist panics: it means a frame was freed twice.
func (u *UMEM) Free(addr uint64) {
	if u.nfree == len(u.free) {
		panic("xsk: UMEM.Free: free stack overflow (frame freed twice?)")
	}
	u.free[u.nfree] = addr &^ u.frameMask
	u.nfree++
}

// FreeBatch returns the frames containing addrs to the free stack.
func (u *UMEM) FreeBatch(addrs []uint64) {
	if len(addrs) > len(u.free)-u.nfree {
		panic("xsk: UMEM.FreeBatch: free stack overflow (frame freed twice?)")
	}
	dst := u.free[u.nfree : u.nfree+len(addrs)]
	for i, a := range addrs {
		dst[i] = a &^ u.frameMask
	}
	u.nfree += len(addrs)
}

// FreeFrames returns the number of frames on the free stack.
func (u *UMEM) FreeFrames() int { return u.nfree }

// Close drops the owner's reference. The memory is unmapped once every
// socket on the UMEM is closed too. Close is idempotent.
func (u *UMEM) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ownerGone {
		return nil
	}
	u.ownerGone = true
	return u.unrefLocked()
}

// ref takes a reference for a new socket.
func (u *UMEM) refLocked() error {
	if u.ownerGone || u.unmapped {
		return fmt.Errorf("xsk: umem: %w", ErrClosed)
	}
	u.refs++
	return nil
}

func (u *UMEM) unrefLocked() error {
	u.refs--
	if u.refs > 0 || u.unmapped {
		return nil
	}
	u.unmapped = true
	if err := unix.Munmap(u.mem); err != nil {
		return fmt.Errorf("xsk: munmap umem: %w", err)
	}
	u.mem = nil
	return nil
}
