package neigh

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

func TestMessageAndAttrs(t *testing.T) {
	body := make([]byte, unix.SizeofRtMsg)
	body = rtnl.AppendAttr(body, unix.RTA_DST, []byte{10, 0, 0, 1})
	body = rtnl.AppendAttr(body, unix.RTA_OIF, ne.AppendUint32(nil, 7))
	body = rtnl.AppendAttr(body, unix.RTA_GATEWAY|0x8000, []byte{1, 2, 3}) // padded, flag bit set
	b := rtnl.AppendMessage(nil, unix.RTM_NEWROUTE, unix.NLM_F_REQUEST, 42, body)
	b = rtnl.AppendMessage(b, unix.NLMSG_DONE, 0, 42, make([]byte, 4))

	h, data, rest, ok := nextMessage(b)
	if !ok || h.typ != unix.RTM_NEWROUTE || h.seq != 42 || int(h.len) != unix.SizeofNlMsghdr+len(body) {
		t.Fatalf("first message: %+v ok=%v", h, ok)
	}
	var got []string
	rtnl.Attrs(data[unix.SizeofRtMsg:], func(typ uint16, d []byte) {
		got = append(got, fmt.Sprintf("%d:%d", typ, len(d)))
	})
	want := []string{
		fmt.Sprintf("%d:4", unix.RTA_DST), fmt.Sprintf("%d:4", unix.RTA_OIF), fmt.Sprintf("%d:3", unix.RTA_GATEWAY),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("attrs %v, want %v", got, want)
	}
	h, _, rest, ok = nextMessage(rest)
	if !ok || h.typ != unix.NLMSG_DONE || rest != nil {
		t.Errorf("second message: %+v ok=%v rest=%d", h, ok, len(rest))
	}
	if _, _, _, ok := nextMessage(b[:10]); ok {
		t.Error("truncated header parsed")
	}
	if _, _, _, ok := nextMessage(b[:20]); ok {
		t.Error("truncated message parsed")
	}
}

func TestNLError(t *testing.T) {
	errMsg := func(code int32, capped bool, msg string) (header, []byte) {
		d := ne.AppendUint32(nil, uint32(code))
		req := rtnl.AppendMessage(nil, unix.RTM_GETROUTE, unix.NLM_F_REQUEST, 1, bytes.Repeat([]byte{0xee}, 12))
		flags := uint16(unix.NLM_F_ACK_TLVS)
		if capped {
			req = req[:unix.SizeofNlMsghdr]
			flags |= unix.NLM_F_CAPPED
		}
		d = append(d, req...)
		d = rtnl.AppendAttr(d, unix.NLMSGERR_ATTR_MSG, append([]byte(msg), 0))
		return header{flags: flags}, d
	}
	if err := rtnl.DecodeError(0, make([]byte, 20)); err != nil {
		t.Errorf("ACK: %v", err)
	}
	for _, capped := range []bool{true, false} {
		h, d := errMsg(-int32(unix.EINVAL), capped, "bad flags")
		err := rtnl.DecodeError(h.flags, d)
		if !errors.Is(err, unix.EINVAL) || !strings.Contains(err.Error(), "(bad flags)") {
			t.Errorf("capped=%v: %v, want EINVAL with the message", capped, err)
		}
	}
	if err := rtnl.DecodeError(0, []byte{1}); err == nil {
		t.Error("short error message: no error")
	}
}

// FuzzParse feeds arbitrary bytes to the reply parsers: no panics, and
// every attribute stays inside its buffer.
func FuzzParse(f *testing.F) {
	body := rtnl.AppendAttr(make([]byte, unix.SizeofNdMsg), unix.NDA_DST, []byte{10, 0, 0, 1})
	f.Add(rtnl.AppendMessage(nil, unix.RTM_NEWNEIGH, 0, 1, body))
	f.Add(rtnl.AppendMessage(nil, unix.NLMSG_ERROR, unix.NLM_F_ACK_TLVS, 1, make([]byte, 24)))
	f.Add([]byte{0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for len(b) > 0 {
			h, data, rest, ok := nextMessage(b)
			if !ok {
				return
			}
			_ = rtnl.DecodeError(h.flags, data)
			rtnl.Attrs(data, func(_ uint16, d []byte) {
				if len(d) > len(data) {
					t.Fatalf("attribute of %d bytes in %d", len(d), len(data))
				}
			})
			if len(rest) >= len(b) {
				t.Fatal("no progress")
			}
			b = rest
		}
	})
}
