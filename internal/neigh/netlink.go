package neigh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Minimal rtnetlink framing: requests are one message, replies are parsed
// in place. Netlink headers and attributes are in host byte order.

var ne = binary.NativeEndian

// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an
// attribute type.
const nlaTypeMask = 0x3fff

// errDumpInterrupted means the table changed during a dump; retry.
var errDumpInterrupted = errors.New("dump interrupted")

// message appends a netlink message of type typ carrying body to b.
func message(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	b = ne.AppendUint32(b, uint32(unix.SizeofNlMsghdr+len(body)))
	b = ne.AppendUint16(b, typ)
	b = ne.AppendUint16(b, flags)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0) // port id: the kernel fills it in
	return append(b, body...)
}

// attr appends a netlink attribute, padded to 4 bytes.
func attr(b []byte, typ uint16, data []byte) []byte {
	b = ne.AppendUint16(b, uint16(unix.SizeofRtAttr+len(data)))
	b = ne.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%unix.NLMSG_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

func align(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// header is a parsed netlink message header.
type header struct {
	len   uint32
	typ   uint16
	flags uint16
	seq   uint32
	pid   uint32
}

// nextMessage splits the first message off b. ok is false when b holds no
// complete message.
func nextMessage(b []byte) (h header, data, rest []byte, ok bool) {
	if len(b) < unix.SizeofNlMsghdr {
		return h, nil, nil, false
	}
	h = header{ne.Uint32(b), ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:]), ne.Uint32(b[12:])}
	if h.len < unix.SizeofNlMsghdr || int(h.len) > len(b) {
		return h, nil, nil, false
	}
	data = b[unix.SizeofNlMsghdr:h.len]
	if n := align(int(h.len)); n < len(b) {
		rest = b[n:]
	}
	return h, data, rest, true
}

// attrs calls fn for every attribute in b; malformed trailing bytes are
// ignored.
func attrs(b []byte, fn func(typ uint16, data []byte)) {
	for len(b) >= unix.SizeofRtAttr {
		l := int(ne.Uint16(b))
		if l < unix.SizeofRtAttr || l > len(b) {
			return
		}
		fn(ne.Uint16(b[2:])&nlaTypeMask, b[unix.SizeofRtAttr:l])
		if align(l) >= len(b) {
			return
		}
		b = b[align(l):]
	}
}

// nlError decodes an NLMSG_ERROR payload: nil for an ACK, else the errno
// with the kernel's extended-ack message if there is one.
func nlError(h header, data []byte) error {
	if len(data) < 4 {
		return fmt.Errorf("short netlink error message")
	}
	code := int32(ne.Uint32(data))
	if code == 0 {
		return nil
	}
	err := error(unix.Errno(-code))
	// NETLINK_EXT_ACK attributes follow the echoed request: a bare header
	// when the kernel capped it (NETLINK_CAP_ACK), else the whole request.
	if h.flags&unix.NLM_F_ACK_TLVS == 0 || len(data) < unix.SizeofNlMsgerr {
		return err
	}
	off := unix.SizeofNlMsgerr
	if h.flags&unix.NLM_F_CAPPED == 0 {
		off = 4 + align(int(ne.Uint32(data[4:])))
	}
	if off > len(data) {
		return err
	}
	attrs(data[off:], func(typ uint16, d []byte) {
		if typ == unix.NLMSGERR_ATTR_MSG {
			if msg := strings.TrimRight(string(d), "\x00"); msg != "" {
				err = fmt.Errorf("%w (%s)", err, msg)
			}
		}
	})
	return err
}
