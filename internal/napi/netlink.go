package napi

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NAPI is one NAPI instance of an interface as the kernel's netdev netlink
// family reports it (`ynl --family netdev --dump napi-get`).
type NAPI struct {
	ID      uint32 // the id SO_INCOMING_NAPI_ID and busy polling use
	Ifindex int
	IRQ     int // -1 when the NAPI has no interrupt (veth)
	// PID is the NAPI's kthread ("napi/<if>-<id>") in threaded mode,
	// 0 otherwise.
	PID             int
	DeferHardIRQs   uint32
	GROFlushTimeout time.Duration
	// IRQSuspendTimeout applies to epoll-based busy polling only.
	IRQSuspendTimeout time.Duration
	// Threaded is the raw threaded mode (0 off, 1 on; Linux 6.17+ only,
	// 0 on older kernels).
	Threaded uint32
}

// From include/uapi/linux/netdev.h.
const (
	netdevCmdNAPIGet = 11

	netdevANAPIIfindex           = 1
	netdevANAPIID                = 2
	netdevANAPIIRQ               = 3
	netdevANAPIPID               = 4
	netdevANAPIDeferHardIRQs     = 5
	netdevANAPIGROFlushTimeout   = 6
	netdevANAPIIRQSuspendTimeout = 7
	netdevANAPIThreaded          = 8

	nlaTypeMask = 0x3fff // ^(NLA_F_NESTED | NLA_F_NET_BYTEORDER)
)

// List returns the NAPI instances of the interface, in the network
// namespace of the calling thread. Kernels without the netdev family's
// napi-get (before 6.9) give an error wrapping unix.ENOENT or
// unix.EOPNOTSUPP.
func List(ifindex int) ([]NAPI, error) {
	c, err := dialGeneric()
	if err != nil {
		return nil, err
	}
	defer c.close()
	fam, err := c.family("netdev")
	if err != nil {
		return nil, err
	}
	var attr [8]byte
	putAttr(attr[:], netdevANAPIIfindex, 4)
	binary.NativeEndian.PutUint32(attr[4:], uint32(ifindex))
	msgs, err := c.request(fam, netdevCmdNAPIGet, unix.NLM_F_DUMP, attr[:])
	if err != nil {
		return nil, fmt.Errorf("napi: napi-get ifindex %d: %w", ifindex, err)
	}
	var out []NAPI
	for _, m := range msgs {
		n := NAPI{IRQ: -1}
		for typ, v := range attrs(m) {
			switch typ {
			case netdevANAPIIfindex:
				n.Ifindex = int(nlUint(v))
			case netdevANAPIID:
				n.ID = uint32(nlUint(v))
			case netdevANAPIIRQ:
				n.IRQ = int(nlUint(v))
			case netdevANAPIPID:
				n.PID = int(nlUint(v))
			case netdevANAPIDeferHardIRQs:
				n.DeferHardIRQs = uint32(nlUint(v))
			case netdevANAPIGROFlushTimeout:
				n.GROFlushTimeout = time.Duration(nlUint(v))
			case netdevANAPIIRQSuspendTimeout:
				n.IRQSuspendTimeout = time.Duration(nlUint(v))
			case netdevANAPIThreaded:
				n.Threaded = uint32(nlUint(v))
			}
		}
		if n.Ifindex == ifindex {
			out = append(out, n)
		}
	}
	return out, nil
}

// genl is a minimal generic netlink client: requests with one level of
// attributes, answers parsed into their attribute bytes.
type genl struct {
	fd  int
	seq uint32
}

func dialGeneric() (*genl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("napi: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("napi: netlink bind: %w", err)
	}
	return &genl{fd: fd}, nil
}

func (c *genl) close() { unix.Close(c.fd) }

// family resolves a generic netlink family name to its id.
func (c *genl) family(name string) (uint16, error) {
	a := make([]byte, nlAlign(4+len(name)+1))
	putAttr(a, unix.CTRL_ATTR_FAMILY_NAME, len(name)+1)
	copy(a[4:], name)
	msgs, err := c.request(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, 0, a)
	if err != nil {
		return 0, fmt.Errorf("napi: generic netlink family %q: %w", name, err)
	}
	for _, m := range msgs {
		for typ, v := range attrs(m) {
			if typ == unix.CTRL_ATTR_FAMILY_ID && len(v) >= 2 {
				return binary.NativeEndian.Uint16(v), nil
			}
		}
	}
	return 0, fmt.Errorf("napi: generic netlink family %q: no id in the answer", name)
}

const (
	nlHdrLen   = int(unsafe.Sizeof(unix.NlMsghdr{}))
	genlHdrLen = int(unsafe.Sizeof(unix.Genlmsghdr{}))
)

// request sends one generic netlink message and returns the payloads
// (after the genl header) of the answers, following a dump to its end.
func (c *genl) request(family uint16, cmd uint8, flags uint16, attrs []byte) ([][]byte, error) {
	c.seq++
	b := make([]byte, nlHdrLen+genlHdrLen+len(attrs))
	*(*unix.NlMsghdr)(unsafe.Pointer(&b[0])) = unix.NlMsghdr{
		Len: uint32(len(b)), Type: family, Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | flags, Seq: c.seq,
	}
	*(*unix.Genlmsghdr)(unsafe.Pointer(&b[nlHdrLen])) = unix.Genlmsghdr{Cmd: cmd, Version: 1}
	copy(b[nlHdrLen+genlHdrLen:], attrs)
	if err := unix.Sendto(c.fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	var out [][]byte
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("short netlink error")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return nil, os.NewSyscallError("netlink", unix.Errno(-e))
				}
				return out, nil // the ack that ends a non-dump request
			default:
				if len(m.Data) >= genlHdrLen {
					// Copy: the next read reuses buf.
					out = append(out, append([]byte(nil), m.Data[genlHdrLen:]...))
				}
			}
		}
	}
}

// attrs iterates over the netlink attributes in b.
func attrs(b []byte) func(yield func(uint16, []byte) bool) {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= 4 {
			l := int(binary.NativeEndian.Uint16(b))
			typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
			if l < 4 || l > len(b) {
				return
			}
			if !yield(typ, b[4:l]) {
				return
			}
			b = b[min(nlAlign(l), len(b)):]
		}
	}
}

func putAttr(b []byte, typ uint16, payload int) {
	binary.NativeEndian.PutUint16(b, uint16(4+payload))
	binary.NativeEndian.PutUint16(b[2:], typ)
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// nlUint reads a u8/u16/u32/u64 attribute (NLA_UINT is 4 or 8 bytes).
func nlUint(v []byte) uint64 {
	switch len(v) {
	case 1:
		return uint64(v[0])
	case 2:
		return uint64(binary.NativeEndian.Uint16(v))
	case 4:
		return uint64(binary.NativeEndian.Uint32(v))
	case 8:
		return binary.NativeEndian.Uint64(v)
	}
	return 0
}
