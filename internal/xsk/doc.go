// Package xsk implements AF_XDP sockets directly on golang.org/x/sys/unix:
// the UMEM (packet buffer memory), the four shared rings (fill, rx, tx and
// completion), bind with copy/zero-copy selection, need-wakeup kicks and the
// kernel's XDP_STATISTICS. It knows nothing about load balancing.
//
// # Model
//
// A [UMEM] is one anonymous mapping split into equally sized frames
// (chunks). Frames move between user space and the kernel as addresses
// (byte offsets into the UMEM):
//
//	free stack ──Fill──▶ fill ring ──kernel rx──▶ rx ring ──Receive──▶ caller
//	caller ──Transmit──▶ tx ring ──kernel tx──▶ completion ring ──Complete──▶ free stack
//
// The caller owns every buffer: [Socket.Receive], [Socket.Transmit],
// [Socket.Fill] and [Socket.Complete] copy descriptors between the shared
// rings and caller-provided slices and allocate nothing. Shared producer and
// consumer indices are only touched with sync/atomic and only when the
// locally cached copies (as libxdp's cached_prod/cached_cons) say the ring
// looks full or empty.
//
// # Frame addresses and headroom
//
// The UMEM is registered in aligned mode: frame i occupies
// [i*FrameSize, (i+1)*FrameSize). A received descriptor's Addr points at the
// first byte of the packet, not at the frame start: the kernel leaves
// UMEMConfig.Headroom bytes plus XDP_PACKET_HEADROOM (256) in front of it, so
// on receive Addr = frame base + [UMEM.DataOffset]. That space belongs to the
// caller. To prepend n bytes (a tunnel header) the caller moves the start of
// the packet backwards, which [UMEM.Prepend] does after checking
// [UMEM.Headroom]:
//
//	if umem.Prepend(&d, 20) { // d.Addr -= 20, d.Len += 20
//		hdr := umem.Frame(d.Addr, 20)
//		...
//	}
//
// For transmit the kernel accepts any Addr inside a frame as long as
// Addr+Len does not cross the frame's end. Addresses returned on the
// completion ring are exactly the Addr values that were transmitted;
// [UMEM.Free] masks them back to the frame base.
//
// # Shared UMEM
//
// Several sockets may share one UMEM, for example one per interface so that a
// frame received on eth0 is transmitted on eth1 without a copy. The first
// socket registers the UMEM (XDP_UMEM_REG); later ones bind with
// XDP_SHARED_UMEM and get their own fill and completion rings, which the
// kernel allows (5.10+) when they are bound to a different interface or
// queue. Sockets sharing a UMEM inherit its copy/zero-copy mode and
// need-wakeup setting from the first socket.
//
// # Concurrency
//
// A Socket's ring methods and the UMEM frame allocator are not safe for
// concurrent use: each socket belongs to one worker goroutine. Several
// workers sharing a UMEM must partition its frames (each worker allocating
// from and freeing to its own pool) or synchronise around Alloc and Free.
// Stats may be called from any goroutine.
//
// # Network namespaces
//
// Open creates the socket in the network namespace of the calling OS thread,
// and the interface index is resolved in that namespace.
//
// # Busy polling
//
// Open turns on the kernel's preferred busy polling (SO_PREFER_BUSY_POLL,
// SO_BUSY_POLL, SO_BUSY_POLL_BUDGET; see Options.DisableBusyPoll): every
// recvfrom and sendto on the socket then runs the queue's NAPI in the
// caller's context, and with the interface's interrupt deferral set
// (napi_defer_hard_irqs, gro_flush_timeout: package napi) the kernel leaves
// that NAPI to the caller while it keeps polling, so a worker pinned to the
// CPU of its queue's interrupt does not compete with it. [Socket.Receive]
// makes that recvfrom whenever the rx ring is empty. It only engages when
// the kernel knows the queue's NAPI ([Socket.NAPIID] non-zero): drivers
// that link their queues to NAPIs (netif_queue_set_napi) report it at
// bind; veth does not, so on veth busy polls run nothing and the kernel's
// NAPI thread or softirq does the receive work as without busy polling.
// [Poller.Yield] lets such a thread run when it shares the worker's CPU.
//
// # Testing without a NIC
//
// [NewMemSocket] builds a Socket whose rings live in ordinary memory together
// with a [Peer] that plays the kernel's side, so packet pipelines can be
// tested (and benchmarked) without privileges or interfaces.
package xsk
