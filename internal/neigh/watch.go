package neigh

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// Event is a change in the kernel's neighbour or routing tables.
type Event struct {
	// Route is set for a route change (added, removed or replaced); the
	// other fields are then zero.
	Route bool
	// Addr, Ifindex and MAC identify a neighbour entry; State is its NUD
	// state; Deleted is set when the entry was removed.
	Addr    netip.Addr
	Ifindex int
	MAC     net.HardwareAddr
	State   uint16
	Deleted bool
}

// Usable reports whether the kernel would send to the neighbour without
// resolving it first (REACHABLE, STALE, DELAY, PROBE, PERMANENT, NOARP).
func (e Event) Usable() bool { return !e.Deleted && entry{mac: e.MAC, state: e.State}.usable() }

// Failed reports a neighbour the kernel gave up on (FAILED), or removed.
func (e Event) Failed() bool { return e.Deleted || e.State&unix.NUD_FAILED != 0 }

// StateName is the NUD state as `ip neigh` prints it.
func (e Event) StateName() string { return entry{state: e.State}.String() }

// Watcher delivers neighbour and route events of the calling thread's
// network namespace, by rtnetlink multicast (RTNLGRP_NEIGH, and the IPv4
// and IPv6 route groups).
type Watcher struct {
	fd int
}

// Watch subscribes. Read events with Next; Close stops.
func Watch() (*Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("neigh: watch socket: %w", err)
	}
	groups := uint32(unix.RTMGRP_NEIGH | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("neigh: watch bind: %w", err)
	}
	// A burst of events must not be lost quietly: a bigger buffer, and
	// ENOBUFS (overrun) is reported to the caller, who then resyncs.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20)
	// Next wakes up every watchTick so its caller can stop.
	tv := unix.NsecToTimeval(watchTick.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("neigh: watch SO_RCVTIMEO: %w", err)
	}
	return &Watcher{fd: fd}, nil
}

// ErrOverrun means events were lost: re-read the tables.
var ErrOverrun = errors.New("neigh: netlink events lost (buffer overrun)")

// watchTick bounds how long Next blocks.
const watchTick = 250 * time.Millisecond

// Next waits up to a quarter of a second for the next batch of events
// (none is not an error). It returns ErrOverrun when the kernel dropped
// events, and an error after Close.
func (w *Watcher) Next() ([]Event, error) {
	buf := make([]byte, 1<<16)
	n, _, err := unix.Recvfrom(w.fd, buf, 0)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
		return nil, nil
	}
	if errors.Is(err, unix.ENOBUFS) {
		return nil, ErrOverrun
	}
	if err != nil {
		return nil, fmt.Errorf("neigh: watch: %w", err)
	}
	var out []Event
	b := buf[:n]
	for {
		h, data, rest, ok := nextMessage(b)
		if !ok {
			break
		}
		switch h.typ {
		case unix.RTM_NEWROUTE, unix.RTM_DELROUTE:
			out = append(out, Event{Route: true})
		case unix.RTM_NEWNEIGH, unix.RTM_DELNEIGH:
			if len(data) < unix.SizeofNdMsg {
				break
			}
			ev := Event{Ifindex: int(int32(ne.Uint32(data[4:]))), State: ne.Uint16(data[8:]), Deleted: h.typ == unix.RTM_DELNEIGH}
			rtnl.Attrs(data[unix.SizeofNdMsg:], func(typ uint16, d []byte) {
				switch typ {
				case unix.NDA_DST:
					ev.Addr, _ = addrFrom(d)
				case unix.NDA_LLADDR:
					ev.MAC = net.HardwareAddr(append([]byte(nil), d...))
				}
			})
			if ev.Addr.IsValid() {
				out = append(out, ev)
			}
		}
		if rest == nil {
			break
		}
		b = rest
	}
	return out, nil
}

// Close releases the socket; call it once Next has returned (Next wakes
// within watchTick).
func (w *Watcher) Close() error { return unix.Close(w.fd) }
