package neigh

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// Minimal rtnetlink framing: requests are one message, replies are parsed
// in place. Netlink headers and attributes are in host byte order. The
// framing is internal/rtnl's; the names here keep this package's callers
// short.

var ne = binary.NativeEndian

// errDumpInterrupted means the table changed during a dump; retry.
var errDumpInterrupted = errors.New("dump interrupted")

// message appends a netlink message of type typ carrying body to b.
func message(b []byte, typ, flags uint16, seq uint32, body []byte) []byte {
	return rtnl.AppendMessage(b, typ, flags, seq, body)
}

// attr appends a netlink attribute, padded to 4 bytes.
func attr(b []byte, typ uint16, data []byte) []byte { return rtnl.AppendAttr(b, typ, data) }

// attrs calls fn for every attribute in b; malformed trailing bytes are
// ignored.
func attrs(b []byte, fn func(typ uint16, data []byte)) { rtnl.Attrs(b, fn) }

// nlError decodes an NLMSG_ERROR payload: nil for an ACK, else the errno
// with the kernel's extended-ack message if there is one.
func nlError(h header, data []byte) error { return rtnl.DecodeError(h.flags, data) }

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
	if n := rtnl.Align(int(h.len)); n < len(b) {
		rest = b[n:]
	}
	return h, data, rest, true
}
