package netns

import (
	"github.com/xlb/xlb/internal/packet"

	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Ping sends ICMP (or ICMPv6) echo requests to dst from inside the
// namespace, one every 100ms, until a matching echo reply arrives or ctx
// ends. It needs no ping binary: it uses a raw socket (root).
func (h *Host) Ping(ctx context.Context, dst netip.Addr) error {
	dst = dst.Unmap()
	err := h.Do(func() error { return ping(ctx, dst) })
	if err != nil {
		return fmt.Errorf("netns: %s: ping %s: %w", h.NS, dst, err)
	}
	return nil
}

func ping(ctx context.Context, dst netip.Addr) error {
	family, proto, reqType, replyType := unix.AF_INET6, unix.IPPROTO_ICMPV6, byte(128), byte(129)
	var sa unix.Sockaddr = &unix.SockaddrInet6{Addr: dst.As16()}
	if dst.Is4() {
		family, proto, reqType, replyType = unix.AF_INET, unix.IPPROTO_ICMP, 8, 0
		sa = &unix.SockaddrInet4{Addr: dst.As4()}
	}
	fd, err := unix.Socket(family, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return fmt.Errorf("raw socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((20 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}

	id := uint16(rand.Uint32())
	buf := make([]byte, 1500)
	for seq := uint16(1); ; seq++ {
		req := make([]byte, 16)
		req[0] = reqType
		binary.BigEndian.PutUint16(req[4:], id)
		binary.BigEndian.PutUint16(req[6:], seq)
		copy(req[8:], "xlbping!")
		if family == unix.AF_INET { // the kernel fills the ICMPv6 checksum
			binary.BigEndian.PutUint16(req[2:], packet.Checksum(req, 0))
		}
		if err := unix.Sendto(fd, req, 0, sa); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		deadline := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(deadline) {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout or EINTR; ctx is checked above
			}
			b := buf[:n]
			if family == unix.AF_INET { // raw IPv4 sockets include the IP header
				if n < 20 {
					continue
				}
				b = b[int(b[0]&0x0f)*4:]
			}
			if len(b) < 8 || b[0] != replyType ||
				binary.BigEndian.Uint16(b[4:]) != id || !fromAddr(from, dst) {
				continue
			}
			return nil
		}
	}
}

func fromAddr(sa unix.Sockaddr, want netip.Addr) bool {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr) == want
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr) == want
	}
	return false
}
