package neigh

import (
	"encoding/binary"
	"errors"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// Minimal rtnetlink: requests are one message, replies are parsed in
// place (internal/rtnl's framing). Netlink headers and attributes are in
// host byte order.

var ne = binary.NativeEndian

// errDumpInterrupted means the table changed during a dump; retry.
var errDumpInterrupted = errors.New("dump interrupted")

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
