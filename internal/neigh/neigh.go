// Package neigh finds the next hop and its link-layer (MAC) address for a
// destination by asking the kernel over rtnetlink, the way `ip route get`
// and `ip neigh` do: RTM_GETROUTE picks the route (output interface,
// gateway, preferred source), an RTM_GETNEIGH dump reads the neighbour
// table, and when the next hop is not resolved yet the kernel is asked to
// resolve it (ARP or IPv6 neighbour discovery).
//
// # Network namespaces
//
// A [Resolver] works in the network namespace its sockets were created in:
// the namespace of the OS thread that called [NewResolver]. Create it in
// the daemon's namespace, or in a test inside netns.Host.Do; afterwards it
// may be used from any goroutine and thread and still looks at (and only
// sends into) that namespace.
//
// # Triggering resolution
//
// Resolve asks the kernel to resolve a missing, incomplete or failed
// neighbour with RTM_NEWNEIGH carrying NTF_USE (as `ip neigh ... use`):
// the kernel creates the entry and sends its ARP request or neighbour
// solicitation, and nothing else goes on the wire. That needs
// CAP_NET_ADMIN; without it Resolve falls back to sending a one-byte UDP
// datagram to the next hop's discard port (9) from a socket made in
// NewResolver, which makes the kernel resolve the next hop before sending.
// A STALE entry is returned at once and refreshed the same way.
package neigh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/internal/rtnl"
)

// ErrNotUnicast is returned when the route to a destination is not a
// unicast route through an interface: the address is local, broadcast,
// multicast, a blackhole and so on.
var ErrNotUnicast = errors.New("neigh: no unicast route")

// ErrNoLinkLayer is returned for a next hop on an interface without
// link-layer addresses (NOARP, point-to-point).
var ErrNoLinkLayer = errors.New("neigh: next hop has no link-layer address")

// Route is the kernel's route to a destination.
type Route struct {
	Ifindex int        // output interface
	Gateway netip.Addr // next-hop router; zero if the destination is on-link
	Src     netip.Addr // preferred source address; zero if the kernel gave none
}

// NextHop is the address whose link-layer address frames to dst carry:
// the gateway, or dst itself when it is on-link.
func (r Route) NextHop(dst netip.Addr) netip.Addr {
	if r.Gateway.IsValid() {
		return r.Gateway
	}
	return dst.Unmap()
}

// Resolver queries one network namespace's routing and neighbour tables.
// It is safe for concurrent use.
type Resolver struct {
	mu     sync.Mutex // serialises requests on fd
	fd     int        // NETLINK_ROUTE socket
	pid    uint32     // fd's netlink port id
	seq    uint32
	udp4   int // UDP sockets for the fallback trigger; -1 if unavailable
	udp6   int
	buf    []byte
	closed bool

	noUse bool // NTF_USE was refused; use the UDP trigger
}

// replyTimeout bounds the wait for a netlink reply; the kernel answers
// route and neighbour requests at once.
const replyTimeout = 5 * time.Second

// NewResolver opens a rtnetlink socket (and two UDP sockets for triggering
// resolution) in the calling thread's network namespace.
func NewResolver() (*Resolver, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("neigh: netlink socket: %w", err)
	}
	r := &Resolver{fd: fd, udp4: -1, udp6: -1, buf: make([]byte, 1<<16)}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		r.Close()
		return nil, fmt.Errorf("neigh: bind netlink socket: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("neigh: netlink getsockname: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		r.Close()
		return nil, fmt.Errorf("neigh: netlink getsockname: unexpected %T", sa)
	}
	r.pid = nl.Pid
	// Best effort: strict checking lets the kernel filter the neighbour
	// dump by interface, and extended acks explain errors.
	for _, opt := range []int{unix.NETLINK_GET_STRICT_CHK, unix.NETLINK_EXT_ACK, unix.NETLINK_CAP_ACK} {
		_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, opt, 1)
	}
	tv := unix.NsecToTimeval(replyTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		r.Close()
		return nil, fmt.Errorf("neigh: netlink SO_RCVTIMEO: %w", err)
	}
	// The UDP sockets may fail (IPv6 disabled, say); the trigger then
	// relies on NTF_USE alone.
	if s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err == nil {
		r.udp4 = s
	}
	if s, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0); err == nil {
		r.udp6 = s
	}
	return r, nil
}

// Close closes the resolver's sockets. It is safe to call more than once.
func (r *Resolver) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	var errs []error
	for _, fd := range []int{r.fd, r.udp4, r.udp6} {
		if fd >= 0 {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("neigh: close: %w", err)
	}
	return nil
}

// request sends one netlink request and passes every reply message that
// is not an error, ACK or DONE to fn. It returns when the reply is
// complete: after the first message for a plain request, at NLMSG_DONE for
// a dump, at the ACK when flags has NLM_F_ACK.
func (r *Resolver) request(typ, flags uint16, body []byte, fn func(typ uint16, data []byte)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return net.ErrClosed
	}
	r.seq++
	seq := r.seq
	flags |= unix.NLM_F_REQUEST
	if err := unix.Sendto(r.fd, rtnl.AppendMessage(nil, typ, flags, seq, body), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink send: %w", err)
	}
	dump := flags&unix.NLM_F_DUMP == unix.NLM_F_DUMP
	ack := flags&unix.NLM_F_ACK != 0
	interrupted := false
	for {
		n, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return fmt.Errorf("netlink: no reply within %v", replyTimeout)
		}
		if err != nil {
			return fmt.Errorf("netlink receive: %w", err)
		}
		for b := r.buf[:n]; len(b) > 0; {
			h, data, rest, ok := nextMessage(b)
			if !ok {
				return fmt.Errorf("netlink: malformed reply")
			}
			b = rest
			if h.seq != seq || h.pid != r.pid {
				continue // a late reply to an earlier request
			}
			if h.flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch h.typ {
			case unix.NLMSG_ERROR:
				return rtnl.DecodeError(h.flags, data)
			case unix.NLMSG_DONE:
				if len(data) >= 4 {
					if code := int32(ne.Uint32(data)); code < 0 {
						return unix.Errno(-code)
					}
				}
				if interrupted {
					return errDumpInterrupted
				}
				return nil
			case unix.NLMSG_NOOP, unix.NLMSG_OVERRUN:
				continue
			}
			fn(h.typ, data)
			if !dump && !ack {
				return nil
			}
		}
	}
}

// family returns the address family of a.
func family(a netip.Addr) byte {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func addrFrom(b []byte) (netip.Addr, bool) {
	switch len(b) {
	case 4:
		return netip.AddrFrom4([4]byte(b)), true
	case 16:
		return netip.AddrFrom16([16]byte(b)), true
	}
	return netip.Addr{}, false
}

// Route returns the kernel's route to dst, like `ip route get dst`.
func (r *Resolver) Route(dst netip.Addr) (Route, error) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return Route{}, fmt.Errorf("neigh: route: invalid address")
	}
	// struct rtmsg, then RTA_DST.
	body := make([]byte, unix.SizeofRtMsg)
	body[0] = family(dst)
	body[1] = byte(dst.BitLen()) // rtm_dst_len
	if dst.Is4() {
		// Report the table that matched, as `ip route get` does. IPv6's
		// strict request check accepts no flag but RTM_F_FIB_MATCH.
		ne.PutUint32(body[8:], unix.RTM_F_LOOKUP_TABLE)
	}
	body = rtnl.AppendAttr(body, unix.RTA_DST, dst.AsSlice())

	var rt Route
	var rtype byte
	got := false
	err := r.request(unix.RTM_GETROUTE, 0, body, func(typ uint16, data []byte) {
		if typ != unix.RTM_NEWROUTE || len(data) < unix.SizeofRtMsg {
			return
		}
		got = true
		rtype = data[7]
		rtnl.Attrs(data[unix.SizeofRtMsg:], func(typ uint16, d []byte) {
			switch typ {
			case unix.RTA_OIF:
				if len(d) >= 4 {
					rt.Ifindex = int(ne.Uint32(d))
				}
			case unix.RTA_GATEWAY:
				rt.Gateway, _ = addrFrom(d)
			case unix.RTA_VIA: // struct rtvia: family, then the address
				if len(d) > 2 {
					rt.Gateway, _ = addrFrom(d[2:])
				}
			case unix.RTA_PREFSRC:
				rt.Src, _ = addrFrom(d)
			}
		})
	})
	if err != nil {
		return Route{}, fmt.Errorf("neigh: route to %s: %w", dst, err)
	}
	if !got {
		return Route{}, fmt.Errorf("neigh: route to %s: no route in the reply", dst)
	}
	if rtype != unix.RTN_UNICAST || rt.Ifindex == 0 {
		return Route{}, fmt.Errorf("%w to %s (route type %s)", ErrNotUnicast, dst, routeType(rtype))
	}
	return rt, nil
}

func routeType(t byte) string {
	names := map[byte]string{
		unix.RTN_UNICAST: "unicast", unix.RTN_LOCAL: "local", unix.RTN_BROADCAST: "broadcast",
		unix.RTN_ANYCAST: "anycast", unix.RTN_MULTICAST: "multicast", unix.RTN_BLACKHOLE: "blackhole",
		unix.RTN_UNREACHABLE: "unreachable", unix.RTN_PROHIBIT: "prohibit", unix.RTN_THROW: "throw",
		unix.RTN_NAT: "nat",
	}
	if s, ok := names[t]; ok {
		return s
	}
	return fmt.Sprintf("%d", t)
}

// entry is one neighbour table entry.
type entry struct {
	mac   net.HardwareAddr
	state uint16
}

// usable reports whether the kernel itself would send to the entry's
// address without resolving it first (STALE, DELAY and PROBE included).
func (e entry) usable() bool {
	const ok = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE |
		unix.NUD_PERMANENT | unix.NUD_NOARP
	return e.state&ok != 0
}

func (e entry) String() string {
	names := []struct {
		bit  uint16
		name string
	}{
		{unix.NUD_INCOMPLETE, "INCOMPLETE"}, {unix.NUD_REACHABLE, "REACHABLE"},
		{unix.NUD_STALE, "STALE"}, {unix.NUD_DELAY, "DELAY"}, {unix.NUD_PROBE, "PROBE"},
		{unix.NUD_FAILED, "FAILED"}, {unix.NUD_NOARP, "NOARP"}, {unix.NUD_PERMANENT, "PERMANENT"},
	}
	for _, n := range names {
		if e.state&n.bit != 0 {
			return n.name
		}
	}
	return "NONE"
}

// Neighbor looks addr up in the neighbour table of interface ifindex. ok
// is true if the entry has a link-layer address the kernel would use
// (REACHABLE, STALE, DELAY, PROBE, PERMANENT or NOARP); it is false if
// there is no entry or it is INCOMPLETE or FAILED. It never triggers
// resolution.
func (r *Resolver) Neighbor(ifindex int, addr netip.Addr) (net.HardwareAddr, bool, error) {
	e, found, err := r.neighbor(ifindex, addr)
	if err != nil {
		return nil, false, err
	}
	if !found || !e.usable() {
		return nil, false, nil
	}
	return e.mac, true, nil
}

func (r *Resolver) neighbor(ifindex int, addr netip.Addr) (entry, bool, error) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return entry{}, false, fmt.Errorf("neigh: neighbour lookup: invalid address")
	}
	// struct ndmsg with only the family set, then NDA_IFINDEX, which the
	// kernel uses as a dump filter.
	body := make([]byte, unix.SizeofNdMsg)
	body[0] = family(addr)
	body = rtnl.AppendAttr(body, unix.NDA_IFINDEX, ne.AppendUint32(nil, uint32(ifindex)))
	var (
		e     entry
		found bool
		err   error
	)
	for range 3 {
		e, found = entry{}, false
		err = r.request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP, body, func(typ uint16, data []byte) {
			if typ != unix.RTM_NEWNEIGH || len(data) < unix.SizeofNdMsg || found {
				return
			}
			if int(int32(ne.Uint32(data[4:]))) != ifindex {
				return
			}
			var dst netip.Addr
			var mac net.HardwareAddr
			rtnl.Attrs(data[unix.SizeofNdMsg:], func(typ uint16, d []byte) {
				switch typ {
				case unix.NDA_DST:
					dst, _ = addrFrom(d)
				case unix.NDA_LLADDR:
					mac = net.HardwareAddr(append([]byte(nil), d...))
				}
			})
			if dst == addr {
				e, found = entry{mac: mac, state: ne.Uint16(data[8:])}, true
			}
		})
		if !errors.Is(err, errDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return entry{}, false, fmt.Errorf("neigh: neighbour %s on ifindex %d: %w", addr, ifindex, err)
	}
	return e, found, nil
}

// trigger asks the kernel to resolve addr on ifindex (see the package
// doc).
func (r *Resolver) trigger(ifindex int, addr netip.Addr) error {
	r.mu.Lock()
	noUse := r.noUse
	r.mu.Unlock()
	if !noUse {
		err := r.use(ifindex, addr)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) &&
			!errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("neigh: resolve %s on ifindex %d: %w", addr, ifindex, err)
		}
		r.mu.Lock()
		r.noUse = true
		r.mu.Unlock()
	}
	return r.poke(ifindex, addr)
}

// use sends RTM_NEWNEIGH with NTF_USE: create the entry if needed and
// start resolving it, as the kernel does for its own first packet.
func (r *Resolver) use(ifindex int, addr netip.Addr) error {
	body := make([]byte, unix.SizeofNdMsg)
	body[0] = family(addr)
	ne.PutUint32(body[4:], uint32(ifindex))
	body[10] = unix.NTF_USE // ndm_flags; ndm_state stays NUD_NONE
	body = rtnl.AppendAttr(body, unix.NDA_DST, addr.AsSlice())
	return r.request(unix.RTM_NEWNEIGH, unix.NLM_F_CREATE|unix.NLM_F_ACK, body, func(uint16, []byte) {})
}

// poke sends one byte to addr's UDP discard port from a socket created in
// the resolver's namespace; the kernel resolves addr to send it.
func (r *Resolver) poke(ifindex int, addr netip.Addr) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return net.ErrClosed
	}
	fd := r.udp6
	var sa unix.Sockaddr = &unix.SockaddrInet6{Port: 9, Addr: addr.As16(), ZoneId: uint32(ifindex)}
	if addr.Is4() {
		fd, sa = r.udp4, &unix.SockaddrInet4{Port: 9, Addr: addr.As4()}
	}
	if fd < 0 {
		return fmt.Errorf("neigh: resolve %s: no UDP socket for its family", addr)
	}
	if err := unix.Sendto(fd, []byte{0}, 0, sa); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("neigh: resolve %s: send UDP probe: %w", addr, err)
	}
	return nil
}

// Resolve finds the link-layer address frames to dst must carry and the
// interface to send them on: it looks up the route, takes its gateway (or
// dst when on-link) and reads that neighbour, asking the kernel to resolve
// it while it is missing, INCOMPLETE or FAILED, until it resolves or ctx
// ends. A STALE entry is returned at once and refreshed in the background
// by the kernel.
func (r *Resolver) Resolve(ctx context.Context, dst netip.Addr) (net.HardwareAddr, int, error) {
	dst = dst.Unmap()
	rt, err := r.Route(dst)
	if err != nil {
		return nil, 0, err
	}
	nh := rt.NextHop(dst)
	wait := time.Millisecond
	var timer *time.Timer
	var triggerErr error
	for attempt := 0; ; attempt++ {
		e, found, err := r.neighbor(rt.Ifindex, nh)
		if err != nil {
			return nil, 0, err
		}
		if found && e.usable() {
			if len(e.mac) == 0 {
				return nil, 0, fmt.Errorf("%w: %s on ifindex %d (%s)", ErrNoLinkLayer, nh, rt.Ifindex, e)
			}
			if e.state&unix.NUD_STALE != 0 {
				_ = r.trigger(rt.Ifindex, nh) // best effort: STALE -> DELAY -> PROBE
			}
			return e.mac, rt.Ifindex, nil
		}
		// Kick resolution on the first pass and whenever the kernel is not
		// already probing (no entry, or it gave up: FAILED).
		if attempt == 0 || !found || e.state&unix.NUD_INCOMPLETE == 0 {
			triggerErr = r.trigger(rt.Ifindex, nh)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			state := "no entry"
			if found {
				state = e.String()
			}
			err := fmt.Errorf("neigh: resolve %s (next hop %s on ifindex %d): %s: %w", dst, nh, rt.Ifindex, state, ctx.Err())
			if triggerErr != nil {
				err = errors.Join(err, triggerErr)
			}
			return nil, 0, err
		case <-timer.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}
