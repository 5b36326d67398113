package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Layout selects how the load balancer is wired.
type Layout int

const (
	// OneArm: the lb has one interface, on the backend segment; the router
	// routes the VIP to it over the bridge.
	OneArm Layout = iota
	// TwoArm: the lb has a client-side interface linked to the router and a
	// backend-side interface on the bridge.
	TwoArm
)

func (l Layout) String() string {
	switch l {
	case OneArm:
		return "one-arm"
	case TwoArm:
		return "two-arm"
	}
	return "Layout(" + strconv.Itoa(int(l)) + ")"
}

// Forwarding modes. They decide how the backends are configured.
const (
	ModeDSR     = "dsr"     // VIP on lo, default route via the router
	ModeNAT     = "nat"     // default route via the lb
	ModeFullNAT = "fullnat" // default route via the router; SNAT on the lb
	ModeTunnel  = "tunnel"  // VIP on lo, default route via the router
	ModeL3DSR   = "l3dsr"   // VIP on lo, default route via the router
)

// Defaults for Options.
var (
	DefaultVIP   = netip.MustParseAddr("198.51.100.10")
	DefaultVIP6  = netip.MustParseAddr("2001:db8:100::10")
	DefaultSNAT  = netip.MustParseAddr("10.30.0.200")
	DefaultSNAT6 = netip.MustParseAddr("fd00:30::200")
)

// ErrUnsupported reports that network namespaces cannot be built here: not
// root, or `ip netns` is unavailable. [New] skips the test on it.
var ErrUnsupported = errors.New("netns: network namespaces unavailable")

// MaxBackends is the largest Options.Backends (10.30.0.11 .. 10.30.0.110).
const MaxBackends = 100

// Options describes a topology. The zero value is a one-arm DSR topology
// with two backends.
type Options struct {
	Layout   Layout
	Backends int        // number of backends; default 2
	Mode     string     // ModeDSR (default), ModeNAT, ModeFullNAT, ModeTunnel, ModeL3DSR
	VIP      netip.Addr // default DefaultVIP
	SNAT     netip.Addr // fullnat only; default DefaultSNAT

	// IPv6 adds the IPv6 addresses and routes of the package doc. Without
	// it IPv6 is disabled in every namespace.
	IPv6  bool
	VIP6  netip.Addr // default DefaultVIP6
	SNAT6 netip.Addr // fullnat only; default DefaultSNAT6

	// RoutedBackends puts the backends on their own subnet, 10.40.0.0/24
	// (fd00:40::/64) on the router's second bridge br1, one routed hop
	// away from the lb (the lb stays on br0, 10.30.0.0/24): what the lb
	// sends them crosses the router. Not with ModeNAT, whose backends
	// route through the lb.
	RoutedBackends bool
	// BareBackends leaves the backends without the VIP on lo and with
	// the ARP sysctls at 0 in every mode, for tests in which the backends
	// set themselves up (`xlb realserver`).
	BareBackends bool
	// TxChecksumOffload leaves tx checksum offload on on every veth, as a
	// fresh host has it: locally sent TCP/UDP frames then carry only the
	// pseudo-header sum (CHECKSUM_PARTIAL) when xlb receives them.
	TxChecksumOffload bool
}

func (o Options) withDefaults() (Options, error) {
	if o.Layout != OneArm && o.Layout != TwoArm {
		return o, fmt.Errorf("netns: unknown layout %v", o.Layout)
	}
	if o.Backends == 0 {
		o.Backends = 2
	}
	if o.Backends < 0 || o.Backends > MaxBackends {
		return o, fmt.Errorf("netns: %d backends, want 1..%d", o.Backends, MaxBackends)
	}
	switch o.Mode {
	case "":
		o.Mode = ModeDSR
	case ModeDSR, ModeNAT, ModeFullNAT, ModeTunnel, ModeL3DSR:
	default:
		return o, fmt.Errorf("netns: unknown mode %q", o.Mode)
	}
	if !o.VIP.IsValid() {
		o.VIP = DefaultVIP
	}
	if !o.SNAT.IsValid() {
		o.SNAT = DefaultSNAT
	}
	if !o.VIP6.IsValid() {
		o.VIP6 = DefaultVIP6
	}
	if !o.SNAT6.IsValid() {
		o.SNAT6 = DefaultSNAT6
	}
	if o.RoutedBackends && o.Mode == ModeNAT {
		return o, fmt.Errorf("netns: nat backends route through the lb and cannot sit behind the router (RoutedBackends)")
	}
	if !o.VIP.Is4() || !o.SNAT.Is4() || !o.VIP6.Is6() || o.VIP6.Is4In6() || !o.SNAT6.Is6() || o.SNAT6.Is4In6() {
		return o, fmt.Errorf("netns: VIP/SNAT must be IPv4 and VIP6/SNAT6 IPv6 (got %v %v %v %v)", o.VIP, o.SNAT, o.VIP6, o.SNAT6)
	}
	return o, nil
}

// vipOnLo reports whether backends own the VIP on lo.
func (o Options) vipOnLo() bool {
	return !o.BareBackends && (o.Mode == ModeDSR || o.Mode == ModeTunnel || o.Mode == ModeL3DSR)
}

// Topology is a built set of namespaces. Close deletes them.
type Topology struct {
	Prefix string // namespace name prefix, "xlb-<8 hex digits>-"
	Layout Layout
	Mode   string
	VIP    netip.Addr
	VIP6   netip.Addr // zero without Options.IPv6
	SNAT   netip.Addr // configured on the lb in fullnat only; zero otherwise
	SNAT6  netip.Addr // fullnat with IPv6 only; zero otherwise

	Client, Router, LB *Host
	Backends           []*Host

	// The lb's interfaces: client side and backend side ("eth0" for both in
	// OneArm; "eth0" and "eth1" in TwoArm).
	LBClientIface, LBBackendIface string

	mu       sync.Mutex
	lock     *os.File // held while the namespaces exist; see reap.go
	made     []string // namespaces created, in order
	closers  []func()
	closed   bool
	closeErr error
}

// Hosts returns every host: client, router, lb, then the backends.
func (tp *Topology) Hosts() []*Host {
	return append([]*Host{tp.Client, tp.Router, tp.LB}, tp.Backends...)
}

// New builds the topology described by o and registers Close with
// t.Cleanup. It skips the test if not root or `ip netns` is unavailable and
// fails it on any other error.
func New(t testing.TB, o Options) *Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tp, err := Build(ctx, o)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatalf("build %v %s topology: %v", o.Layout, o.Mode, err)
	}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Errorf("close topology %s: %v", tp.Prefix, err)
		}
	})
	return tp
}

// Available returns nil if namespaces can be built here, or an error
// wrapping ErrUnsupported that says why not.
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root", ErrUnsupported)
	}
	if _, err := lookTool("ip"); err != nil {
		return fmt.Errorf("%w: ip (iproute2) not found: %v", ErrUnsupported, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := ipCmd(ctx, "netns", "list"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return nil
}

// Build builds the topology described by o. The caller must Close it. On
// error everything built so far is deleted again.
func Build(ctx context.Context, o Options) (_ *Topology, err error) {
	o, err = o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	if _, err := lookTool("ethtool"); err != nil {
		return nil, fmt.Errorf("netns: ethtool not found (scripts/deps.sh installs it): %w", err)
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("netns: random prefix: %w", err)
	}
	tp := &Topology{
		Prefix: "xlb-" + hex.EncodeToString(rnd[:]) + "-",
		Layout: o.Layout,
		Mode:   o.Mode,
		VIP:    o.VIP,
	}
	if o.IPv6 {
		tp.VIP6 = o.VIP6
	}
	if o.Mode == ModeFullNAT {
		tp.SNAT = o.SNAT
		if o.IPv6 {
			tp.SNAT6 = o.SNAT6
		}
	}
	reapStale(ctx)
	if tp.lock, err = lockPrefix(tp.Prefix); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tp.Close())
		}
	}()
	b := &builder{ctx: ctx, o: o, tp: tp}
	b.plan()
	for _, h := range tp.Hosts() {
		if err := b.addNamespace(h); err != nil {
			return nil, err
		}
	}
	for _, step := range []func() error{b.links, b.offloads, b.ifaceSysctls, b.addresses, b.routes} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return tp, nil
}

// Close shuts down the servers started on the topology and deletes every
// namespace it made. It is idempotent: later calls return the first
// call's result.
func (tp *Topology) Close() error {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.closed {
		return tp.closeErr
	}
	tp.closed = true
	for i := len(tp.closers) - 1; i >= 0; i-- {
		tp.closers[i]()
	}
	tp.closers = nil
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for i := len(tp.made) - 1; i >= 0; i-- {
		ns := tp.made[i]
		if _, err := ipCmd(ctx, "netns", "del", ns); err != nil {
			if _, serr := os.Stat(filepath.Join("/run/netns", ns)); serr == nil {
				errs = append(errs, fmt.Errorf("netns: delete %s: %w", ns, err))
			}
		}
	}
	tp.made = nil
	if tp.lock != nil && len(errs) == 0 {
		unlockPrefix(tp.lock, tp.Prefix)
		tp.lock = nil // on errors the lock goes with the process and a later Build reaps
	}
	tp.closeErr = errors.Join(errs...)
	return tp.closeErr
}

// addCloser registers fn to run in Close. If the topology is already
// closed it runs fn at once and returns false.
func (tp *Topology) addCloser(fn func()) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.closed {
		fn()
		return false
	}
	tp.closers = append(tp.closers, fn)
	return true
}

// Addressing; see the package doc.
var (
	clientNet  = netip.MustParsePrefix("10.10.0.0/24")
	armNet     = netip.MustParsePrefix("10.20.0.0/24")
	segmentNet = netip.MustParsePrefix("10.30.0.0/24")
	clientNet6 = netip.MustParsePrefix("fd00:10::/64")
	armNet6    = netip.MustParsePrefix("fd00:20::/64")
	segNet6    = netip.MustParsePrefix("fd00:30::/64")
	backNet    = netip.MustParsePrefix("10.40.0.0/24") // RoutedBackends
	backNet6   = netip.MustParsePrefix("fd00:40::/64")
)

// host returns the address with host part n in p: the last octet for
// IPv4, and n written as hex digits for IPv6 (11 -> ::11).
func host(p netip.Prefix, n int) netip.Prefix {
	a := p.Addr().As16()
	if p.Addr().Is4() {
		a4 := p.Addr().As4()
		a4[3] = byte(n)
		return netip.PrefixFrom(netip.AddrFrom4(a4), p.Bits())
	}
	v, _ := strconv.ParseUint(strconv.Itoa(n), 16, 16)
	a[14], a[15] = byte(v>>8), byte(v)
	return netip.PrefixFrom(netip.AddrFrom16(a), p.Bits())
}

type link struct {
	a     *Host
	aName string
	b     *Host
	bName string
}

type route struct {
	dst string // "default" or a prefix
	via netip.Addr
}

type builder struct {
	ctx    context.Context
	o      Options
	tp     *Topology
	veths  []link
	rts    map[*Host][]route
	onLo   map[*Host][]netip.Prefix // addresses on lo
	master map[string]string        // router port -> bridge
}

// plan fills in hosts, interfaces, addresses and routes without touching
// the system.
func (b *builder) plan() {
	tp, o := b.tp, b.o
	newHost := func(name string) *Host {
		return &Host{Name: name, NS: tp.Prefix + name, Ifaces: map[string]Iface{}}
	}
	tp.Client, tp.Router, tp.LB = newHost("client"), newHost("router"), newHost("lb")
	for i := 1; i <= o.Backends; i++ {
		tp.Backends = append(tp.Backends, newHost("b"+strconv.Itoa(i)))
	}
	b.rts = map[*Host][]route{}
	b.onLo = map[*Host][]netip.Prefix{}
	b.master = map[string]string{}

	addr := func(h *Host, ifname string, v4 netip.Prefix, v6 netip.Prefix) {
		ifc := h.Ifaces[ifname]
		ifc.Name = ifname
		ifc.Addr = v4
		if o.IPv6 {
			ifc.Addr6 = v6
		}
		h.Ifaces[ifname] = ifc
	}
	veth := func(a *Host, aName string, c *Host, cName string) {
		b.veths = append(b.veths, link{a, aName, c, cName})
		a.Ifaces[aName] = Iface{Name: aName, Peer: c, PeerIface: cName}
		c.Ifaces[cName] = Iface{Name: cName, Peer: a, PeerIface: aName}
	}
	gw := func(h *Host, dst string, v4, v6 netip.Prefix) {
		b.rts[h] = append(b.rts[h], route{dst, v4.Addr()})
		if o.IPv6 {
			b.rts[h] = append(b.rts[h], route{dst, v6.Addr()})
		}
	}

	c, r, lb := tp.Client, tp.Router, tp.LB
	veth(r, "r0", c, "c0")
	addr(c, "c0", host(clientNet, 2), host(clientNet6, 2))
	addr(r, "r0", host(clientNet, 1), host(clientNet6, 1))
	gw(c, "default", host(clientNet, 1), host(clientNet6, 1))

	r.Ifaces["br0"] = Iface{Name: "br0"}
	addr(r, "br0", host(segmentNet, 1), host(segNet6, 1))

	tp.LBClientIface, tp.LBBackendIface = "eth0", "eth0"
	lbFront, lbFront6 := host(segmentNet, 2), host(segNet6, 2)
	if o.Layout == TwoArm {
		tp.LBBackendIface = "eth1"
		lbFront, lbFront6 = host(armNet, 2), host(armNet6, 2)
		veth(r, "ra", lb, "eth0")
		addr(r, "ra", host(armNet, 1), host(armNet6, 1))
		addr(lb, "eth0", lbFront, lbFront6)
		gw(lb, "default", host(armNet, 1), host(armNet6, 1))
	}
	veth(r, "rlb", lb, tp.LBBackendIface)
	b.master["rlb"] = "br0"
	addr(lb, tp.LBBackendIface, host(segmentNet, 2), host(segNet6, 2))
	if o.Layout == OneArm {
		gw(lb, "default", host(segmentNet, 1), host(segNet6, 1))
	}
	bkBridge, bkNet, bkNet6 := "br0", segmentNet, segNet6
	if o.RoutedBackends {
		bkBridge, bkNet, bkNet6 = "br1", backNet, backNet6
		r.Ifaces["br1"] = Iface{Name: "br1"}
		addr(r, "br1", host(backNet, 1), host(backNet6, 1))
		if o.Layout == TwoArm {
			// The lb's default route points at its client side.
			b.rts[lb] = append(b.rts[lb], route{backNet.String(), host(segmentNet, 1).Addr()})
			if o.IPv6 {
				b.rts[lb] = append(b.rts[lb], route{backNet6.String(), host(segNet6, 1).Addr()})
			}
		}
	}
	b.rts[r] = append(b.rts[r], route{netip.PrefixFrom(o.VIP, 32).String(), lbFront.Addr()})
	if o.IPv6 {
		b.rts[r] = append(b.rts[r], route{netip.PrefixFrom(o.VIP6, 128).String(), lbFront6.Addr()})
	}

	for i, bk := range tp.Backends {
		port := "rb" + strconv.Itoa(i+1)
		veth(r, port, bk, "eth0")
		b.master[port] = bkBridge
		addr(bk, "eth0", host(bkNet, 11+i), host(bkNet6, 11+i))
		if o.Mode == ModeNAT {
			gw(bk, "default", host(segmentNet, 2), host(segNet6, 2))
		} else {
			gw(bk, "default", host(bkNet, 1), host(bkNet6, 1))
		}
		if o.vipOnLo() {
			b.onLo[bk] = append(b.onLo[bk], netip.PrefixFrom(o.VIP, 32))
			if o.IPv6 {
				b.onLo[bk] = append(b.onLo[bk], netip.PrefixFrom(o.VIP6, 128))
			}
		}
	}

	for _, h := range tp.Hosts() {
		primary := map[*Host]string{c: "c0", r: "r0", lb: "eth0"}[h]
		if primary == "" {
			primary = "eth0"
		}
		h.Addr = h.Ifaces[primary].Addr.Addr()
		h.Addr6 = h.Ifaces[primary].Addr6.Addr()
	}
}

// ip runs `ip -n NS args...`.
func (b *builder) ip(h *Host, args ...string) error {
	_, err := ipCmd(b.ctx, append([]string{"-n", h.NS}, args...)...)
	return err
}

// addNamespace creates h's namespace and sets its namespace-wide sysctls.
// It runs before any interface exists, so the "default" values apply to
// every interface created later.
func (b *builder) addNamespace(h *Host) error {
	if _, err := ipCmd(b.ctx, "netns", "add", h.NS); err != nil {
		return fmt.Errorf("netns: add namespace: %w", err)
	}
	b.tp.mu.Lock()
	b.tp.made = append(b.tp.made, h.NS)
	b.tp.mu.Unlock()

	isRouter := h == b.tp.Router
	vipBackend := b.o.vipOnLo() && h != b.tp.Client && !isRouter && h != b.tp.LB
	set := [][2]string{{"net/ipv4/ip_forward", bit(isRouter)}}
	for _, scope := range []string{"all", "default"} {
		c := "net/ipv4/conf/" + scope + "/"
		set = append(set,
			[2]string{c + "rp_filter", "0"},
			[2]string{c + "accept_redirects", "0"},
			[2]string{c + "send_redirects", "0"},
			[2]string{c + "arp_ignore", bit(vipBackend)},
			[2]string{c + "arp_announce", map[bool]string{true: "2", false: "0"}[vipBackend]},
		)
		c6 := "net/ipv6/conf/" + scope + "/"
		if b.o.IPv6 {
			set = append(set,
				[2]string{c6 + "disable_ipv6", "0"},
				[2]string{c6 + "accept_dad", "0"},
				[2]string{c6 + "accept_ra", "0"},
				[2]string{c6 + "forwarding", bit(isRouter)},
			)
		} else {
			set = append(set, [2]string{c6 + "disable_ipv6", "1"})
		}
	}
	return h.Do(func() error {
		for _, kv := range set {
			if err := writeSysctl(h.NS, kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// links creates the veth pairs and the bridge and brings everything up.
func (b *builder) links() error {
	for _, l := range b.veths {
		err := b.ip(l.a, "link", "add", l.aName, "mtu", "1500", "type", "veth",
			"peer", "name", l.bName, "mtu", "1500", "netns", l.b.NS)
		if err != nil {
			return fmt.Errorf("netns: add veth %s/%s <-> %s/%s: %w", l.a.Name, l.aName, l.b.Name, l.bName, err)
		}
	}
	r := b.tp.Router
	bridges := []string{"br0"}
	if b.o.RoutedBackends {
		bridges = append(bridges, "br1")
	}
	for _, br := range bridges {
		err := b.ip(r, "link", "add", br, "mtu", "1500", "type", "bridge",
			"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
		if err != nil {
			return fmt.Errorf("netns: add bridge %s: %w", br, err)
		}
	}
	for port, br := range b.master {
		if err := b.ip(r, "link", "set", port, "master", br); err != nil {
			return fmt.Errorf("netns: add %s to %s: %w", port, br, err)
		}
	}
	for _, h := range b.tp.Hosts() {
		names := []string{"lo"}
		for name := range h.Ifaces {
			names = append(names, name)
		}
		for _, name := range names {
			if err := b.ip(h, "link", "set", name, "up"); err != nil {
				return fmt.Errorf("netns: %s: set %s up: %w", h.Name, name, err)
			}
		}
	}
	return nil
}

// offloads turns off checksum offload, GRO, TSO and GSO on every interface
// (with Options.TxChecksumOffload, tx checksum offload stays on).
func (b *builder) offloads() error {
	tx := "off"
	if b.o.TxChecksumOffload {
		tx = "on"
	}
	for _, h := range b.tp.Hosts() {
		for name := range h.Ifaces {
			_, err := h.Run(b.ctx, "ethtool", "-K", name,
				"tx", tx, "rx", "off", "gro", "off", "tso", "off", "gso", "off")
			if err != nil {
				return fmt.Errorf("netns: %s: disable offloads on %s: %w", h.Name, name, err)
			}
		}
	}
	return nil
}

// ifaceSysctls sets the per-interface sysctls explicitly, in case an
// interface did not pick up the namespace defaults.
func (b *builder) ifaceSysctls() error {
	for _, h := range b.tp.Hosts() {
		vipBackend := len(b.onLo[h]) > 0
		err := h.Do(func() error {
			for name := range h.Ifaces {
				c := "net/ipv4/conf/" + name + "/"
				set := [][2]string{{c + "rp_filter", "0"}}
				if vipBackend {
					set = append(set, [2]string{c + "arp_ignore", "1"}, [2]string{c + "arp_announce", "2"})
				}
				for _, kv := range set {
					if err := writeSysctl(h.NS, kv[0], kv[1]); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// addresses adds every interface address, and the VIP/SNAT extras.
func (b *builder) addresses() error {
	add := func(h *Host, p netip.Prefix, dev string) error {
		args := []string{"addr", "add", p.String(), "dev", dev}
		if p.Addr().Is6() {
			args = append(args, "nodad")
		}
		if err := b.ip(h, args...); err != nil {
			return fmt.Errorf("netns: %s: add address %s to %s: %w", h.Name, p, dev, err)
		}
		return nil
	}
	for _, h := range b.tp.Hosts() {
		for name, ifc := range h.Ifaces {
			for _, p := range []netip.Prefix{ifc.Addr, ifc.Addr6} {
				if p.IsValid() {
					if err := add(h, p, name); err != nil {
						return err
					}
				}
			}
		}
		for _, p := range b.onLo[h] {
			if err := add(h, p, "lo"); err != nil {
				return err
			}
		}
	}
	lb := b.tp.LB
	for _, a := range []netip.Addr{b.tp.SNAT, b.tp.SNAT6} {
		if a.IsValid() {
			if err := add(lb, netip.PrefixFrom(a, a.BitLen()), b.tp.LBBackendIface); err != nil {
				return err
			}
		}
	}
	return nil
}

// routes adds the default and VIP routes.
func (b *builder) routes() error {
	for _, h := range b.tp.Hosts() {
		for _, rt := range b.rts[h] {
			args := []string{"route", "add", rt.dst, "via", rt.via.String()}
			if rt.via.Is6() {
				args = append([]string{"-6"}, args...)
			}
			if err := b.ip(h, args...); err != nil {
				return fmt.Errorf("netns: %s: add route %s via %s: %w", h.Name, rt.dst, rt.via, err)
			}
		}
	}
	return nil
}
