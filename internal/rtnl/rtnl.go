// Package rtnl is a minimal rtnetlink client for what xlb changes on a
// host: interface addresses (xlb realserver's VIPs on lo, xlb run's
// managed SNAT addresses) and the XDP program attached to a link. One
// socket per call, created in the calling thread's network namespace;
// replies parsed in place.
package rtnl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Minimal rtnetlink: one socket per call, created in the calling
// thread's network namespace, one request, replies parsed in place.
// Headers and attributes are in host byte order. The framing helpers
// (AppendMessage, AppendAttr, Attrs, Align, DecodeError) are exported for
// internal/neigh, which keeps a socket of its own.

var ne = binary.NativeEndian

const nlaTypeMask = 0x3fff // strips NLA_F_NESTED and NLA_F_NET_BYTEORDER

// Align rounds n up to the netlink alignment (4 bytes).
func Align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// AppendMessage appends to b a netlink message of type typ with flags and
// sequence number seq carrying body. The port ID is 0: the kernel fills
// it in.
func AppendMessage(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	b = ne.AppendUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	return append(b, body...)
}

// AppendAttr appends to b a netlink attribute of type typ carrying data,
// padded to 4 bytes.
func AppendAttr(b []byte, typ uint16, data []byte) []byte {
	b = ne.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// Attrs calls fn for every attribute in b, with the type stripped of
// NLA_F_NESTED and NLA_F_NET_BYTEORDER; malformed trailing bytes are
// ignored.
func Attrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(ne.Uint16(b[2:])&nlaTypeMask, b[unix.SizeofRtAttr:l])
		if Align(l) >= len(b) {
			return
		}
		b = b[Align(l):]
	}
}

// nlRequest sends one request and calls fn for every reply message until
// the ACK (or the end of a dump). It returns the kernel's error, with its
// extended-ack message when there is one.
func nlRequest(typ, flags uint16, body []byte, fn func(typ uint16, data []byte)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("bind netlink socket: %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	const seq = 1
	msg := AppendMessage(nil, typ, flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, body)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		b := buf[:n]
		for len(b) >= unix.SizeofNlMsghdr {
			l := int(ne.Uint32(b))
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return errors.New("netlink: malformed reply")
			}
			mtyp, mflags, mseq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
			data := b[unix.SizeofNlMsghdr:l]
			if Align(l) >= len(b) {
				b = nil
			} else {
				b = b[Align(l):]
			}
			if mseq != seq {
				continue
			}
			switch mtyp {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				return DecodeError(mflags, data)
			default:
				if fn != nil {
					fn(mtyp, data)
				}
			}
		}
	}
}

// DecodeError decodes the payload of an NLMSG_ERROR message whose header
// carries flags: nil for an ACK, else the errno with the kernel's
// extended-ack message if there is one.
func DecodeError(flags uint16, data []byte) error {
	if len(data) < 4 {
		return errors.New("netlink: short error message")
	}
	code := int32(ne.Uint32(data))
	if code == 0 {
		return nil
	}
	err := error(unix.Errno(-code))
	// NETLINK_EXT_ACK attributes follow the echoed request: a bare header
	// when the kernel capped it (NETLINK_CAP_ACK), else the whole request.
	if flags&unix.NLM_F_ACK_TLVS == 0 || len(data) < unix.SizeofNlMsgerr {
		return err
	}
	off := unix.SizeofNlMsgerr
	if flags&unix.NLM_F_CAPPED == 0 {
		off = 4 + Align(int(ne.Uint32(data[4:])))
	}
	if off > len(data) {
		return err
	}
	Attrs(data[off:], func(typ uint16, d []byte) {
		if typ == unix.NLMSGERR_ATTR_MSG {
			if msg := strings.TrimRight(string(d), "\x00"); msg != "" {
				err = fmt.Errorf("%w (%s)", err, msg)
			}
		}
	})
	return err
}

// addrMsg builds an RTM_NEWADDR/RTM_DELADDR body for p on ifindex:
// scope global, and for IPv6 no duplicate address detection (the address
// is usable at once and never sends a probe).
func addrMsg(ifindex int, p netip.Prefix) []byte {
	fam := uint8(unix.AF_INET)
	if p.Addr().Is6() {
		fam = unix.AF_INET6
	}
	b := []byte{fam, uint8(p.Bits()), 0, unix.RT_SCOPE_UNIVERSE}
	b = ne.AppendUint32(b, uint32(ifindex))
	a := p.Addr().AsSlice()
	b = AppendAttr(b, unix.IFA_LOCAL, a)
	b = AppendAttr(b, unix.IFA_ADDRESS, a)
	if p.Addr().Is6() {
		b = AppendAttr(b, unix.IFA_FLAGS, ne.AppendUint32(nil, unix.IFA_F_NODAD))
	}
	return b
}

// AddAddr adds p to the interface (as `ip addr add P dev IF [nodad]`).
func AddAddr(ifindex int, p netip.Prefix) error {
	return nlRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, addrMsg(ifindex, p), nil)
}

// DelAddr removes p from the interface.
func DelAddr(ifindex int, p netip.Prefix) error {
	return nlRequest(unix.RTM_DELADDR, 0, addrMsg(ifindex, p), nil)
}

// Addr is one address of an interface.
type Addr struct {
	Ifindex int
	Prefix  netip.Prefix
}

// ListAddrs dumps every address of every interface.
func ListAddrs() ([]Addr, error) {
	var out []Addr
	body := make([]byte, unix.SizeofIfAddrmsg)
	err := nlRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP, body, func(typ uint16, data []byte) {
		if typ != unix.RTM_NEWADDR || len(data) < unix.SizeofIfAddrmsg {
			return
		}
		bits, ifindex := int(data[1]), int(ne.Uint32(data[4:]))
		var local, addr netip.Addr
		Attrs(data[unix.SizeofIfAddrmsg:], func(t uint16, d []byte) {
			a, ok := netip.AddrFromSlice(d)
			if !ok {
				return
			}
			switch t {
			case unix.IFA_LOCAL:
				local = a
			case unix.IFA_ADDRESS:
				addr = a
			}
		})
		if local.IsValid() { // IPv4: IFA_ADDRESS is the peer on point-to-point links
			addr = local
		}
		if addr.IsValid() {
			out = append(out, Addr{ifindex, netip.PrefixFrom(addr, bits)})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return out, nil
}

// XDP attachment flags in IFLA_XDP_ATTACHED.
const (
	xdpAttachedNone  = 0
	xdpAttachedDrv   = 1
	xdpAttachedSKB   = 2
	xdpAttachedHW    = 3
	xdpAttachedMulti = 4
)

// LinkXDP reports the XDP program attached to an interface: its ID (0 for
// none) and how ("native", "generic", "offload" or "multi").
func LinkXDP(ifindex int) (uint32, string, error) {
	body := make([]byte, unix.SizeofIfInfomsg)
	body[0] = unix.AF_UNSPEC
	ne.PutUint32(body[4:], uint32(ifindex))
	var id uint32
	var mode string
	found := false
	err := nlRequest(unix.RTM_GETLINK, 0, body, func(typ uint16, data []byte) {
		if typ != unix.RTM_NEWLINK || len(data) < unix.SizeofIfInfomsg {
			return
		}
		found = true
		Attrs(data[unix.SizeofIfInfomsg:], func(t uint16, d []byte) {
			if t != unix.IFLA_XDP {
				return
			}
			Attrs(d, func(t uint16, d []byte) {
				switch {
				case t == unix.IFLA_XDP_PROG_ID && len(d) >= 4:
					id = ne.Uint32(d)
				case t == unix.IFLA_XDP_ATTACHED && len(d) >= 1:
					mode = map[uint8]string{xdpAttachedNone: "", xdpAttachedDrv: "native", xdpAttachedSKB: "generic",
						xdpAttachedHW: "offload", xdpAttachedMulti: "multi"}[d[0]]
				}
			})
		})
	})
	if err != nil {
		return 0, "", fmt.Errorf("query XDP of ifindex %d: %w", ifindex, err)
	}
	if !found {
		return 0, "", fmt.Errorf("query XDP of ifindex %d: no such link", ifindex)
	}
	return id, mode, nil
}

// NetnsTag names the calling thread's network namespace when it is not
// the initial one: its name under /run/netns, else "netns-INODE" (when
// the initial namespace can be told apart: /proc/1 may be off limits).
func NetnsTag() string {
	var self, init unix.Stat_t
	if unix.Stat("/proc/thread-self/ns/net", &self) != nil {
		return ""
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			var st unix.Stat_t
			if unix.Stat(filepath.Join("/run/netns", e.Name()), &st) == nil && st.Ino == self.Ino && st.Dev == self.Dev {
				return e.Name()
			}
		}
	}
	if unix.Stat("/proc/1/ns/net", &init) != nil || (self.Ino == init.Ino && self.Dev == init.Dev) {
		return ""
	}
	return "netns-" + strconv.FormatUint(self.Ino, 10)
}
