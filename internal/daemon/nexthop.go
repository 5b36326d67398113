package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/internal/neigh"
)

// hop is a resolved next hop.
type hop struct {
	mac     [6]byte
	ifindex int
}

// hopTable caches next hops (MAC and egress interface per address) and
// resolves misses in the background, so compiling a configuration never
// waits for ARP or neighbour discovery. A good MAC is kept when a later
// refresh fails; the kernel's neighbour state decides when it is wrong.
type hopTable struct {
	r   *neigh.Resolver
	log zerolog.Logger

	mu       sync.Mutex
	hops     map[netip.Addr]hop
	routes   map[netip.Addr]int // ifindex of the route, for static MACs
	inflight map[netip.Addr]bool
	failed   map[netip.Addr]string // last error, logged once
	closed   bool

	changed chan struct{} // something new was learnt (capacity 1)
	sem     chan struct{} // bounds concurrent resolutions
	wg      sync.WaitGroup
	quit    chan struct{}
}

// resolveTimeout bounds one background resolution.
const resolveTimeout = 3 * time.Second

func newHopTable(r *neigh.Resolver, log zerolog.Logger) *hopTable {
	return &hopTable{r: r, log: log, hops: map[netip.Addr]hop{}, routes: map[netip.Addr]int{}, inflight: map[netip.Addr]bool{},
		failed: map[netip.Addr]string{}, changed: make(chan struct{}, 1), sem: make(chan struct{}, 32), quit: make(chan struct{})}
}

func (h *hopTable) get(a netip.Addr) (hop, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	x, ok := h.hops[a]
	return x, ok
}

// want starts a background resolution of a unless one is running.
func (h *hopTable) want(a netip.Addr) {
	h.mu.Lock()
	if h.closed || h.inflight[a] {
		h.mu.Unlock()
		return
	}
	h.inflight[a] = true
	h.wg.Add(1)
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		select {
		case h.sem <- struct{}{}:
		case <-h.quit:
			return
		}
		h.resolve(a, resolveTimeout)
		<-h.sem
	}()
}

// resolve resolves a now (bounded by timeout) and records the result.
func (h *hopTable) resolve(a netip.Addr, timeout time.Duration) {
	h.resolveCtx(context.Background(), a, timeout)
}

// resolveCtx is resolve, ended early when parent ends.
func (h *hopTable) resolveCtx(parent context.Context, a netip.Addr, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	go func() {
		select {
		case <-h.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	mac, ifindex, err := h.r.Resolve(ctx, a)
	if err == nil && len(mac) != 6 {
		err = errors.New("the next hop has no 6-byte link-layer address")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.inflight, a)
	if err != nil {
		if h.failed[a] == "" {
			h.log.Warn().Str("address", a.String()).Err(err).Msg("cannot resolve the next hop: the backend takes no new flows until it resolves (its last known MAC, if any, stays in use)")
		}
		h.failed[a] = err.Error()
		return
	}
	if h.failed[a] != "" {
		h.log.Info().Str("address", a.String()).Msg("next hop resolved")
		delete(h.failed, a)
	}
	n := hop{mac: [6]byte(mac), ifindex: ifindex}
	if old, ok := h.hops[a]; !ok || old != n {
		// One line per next hop, like the health transitions: what the
		// forwarded frames carry is in the journal when they go nowhere.
		ev := h.log.Info()
		if ok {
			ev = ev.Str("was", net.HardwareAddr(old.mac[:]).String()).Int("was_ifindex", old.ifindex)
		}
		ev.Str("address", a.String()).Str("mac", net.HardwareAddr(n.mac[:]).String()).Int("ifindex", n.ifindex).Msg("next hop learnt")
		h.hops[a] = n
		select {
		case h.changed <- struct{}{}:
		default:
		}
	}
}

// resolveAll resolves addrs in parallel and waits at most timeout.
func (h *hopTable) resolveAll(ctx context.Context, addrs []netip.Addr, timeout time.Duration) {
	var wg sync.WaitGroup
	for _, a := range addrs {
		h.mu.Lock()
		busy := h.inflight[a]
		h.inflight[a] = true
		h.mu.Unlock()
		if busy {
			continue
		}
		wg.Add(1)
		h.sem <- struct{}{}
		go func(a netip.Addr) {
			defer wg.Done()
			h.resolveCtx(ctx, a, timeout)
			<-h.sem
		}(a)
	}
	wg.Wait()
	// What started here is recorded; drain the change signal so the
	// first build is not followed by a useless rebuild.
	select {
	case <-h.changed:
	default:
	}
}

// refresh re-resolves addrs in the background (and forgets the routes,
// which are looked up again on the next build).
func (h *hopTable) refresh(addrs []netip.Addr) {
	h.mu.Lock()
	h.routes = map[netip.Addr]int{}
	h.mu.Unlock()
	for _, a := range addrs {
		h.want(a)
	}
}

// route returns the ifindex of the route to a (cached).
func (h *hopTable) route(a netip.Addr) (int, error) {
	h.mu.Lock()
	if ix, ok := h.routes[a]; ok {
		h.mu.Unlock()
		return ix, nil
	}
	h.mu.Unlock()
	rt, err := h.r.Route(a)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	h.routes[a] = rt.Ifindex
	h.mu.Unlock()
	return rt.Ifindex, nil
}

// gateway returns the default gateway of ifindex, if any.
func (h *hopTable) gateway(ifindex int) (netip.Addr, bool) {
	for _, probe := range []netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("2001:db8::fffe")} {
		rt, err := h.r.Route(probe)
		if err == nil && rt.Gateway.IsValid() && rt.Ifindex == ifindex {
			return rt.Gateway, true
		}
	}
	return netip.Addr{}, false
}

func (h *hopTable) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.quit)
	h.mu.Unlock()
	h.wg.Wait()
	_ = h.r.Close()
}

// addresses lists the addresses whose next hop the configuration needs:
// backends without a static MAC, and the client side's gateway.
func (d *Daemon) addresses(comp config.Compiled) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	if comp.Spec.Router == ([6]byte{}) {
		if gw, ok := d.hops.gateway(d.ifaces[d.clientIface()].net.Index); ok {
			seen[gw] = true
			out = append(out, gw)
		}
	}
	for _, s := range comp.Spec.Services {
		for _, b := range s.Backends {
			if b.MAC == ([6]byte{}) && !seen[b.Address] {
				seen[b.Address] = true
				out = append(out, b.Address)
			}
		}
	}
	return out
}

func (d *Daemon) clientIface() int {
	for i, ifc := range d.ifaces {
		if ifc.cfg.Role == "client" {
			return i
		}
	}
	return 0
}

func (d *Daemon) ifaceIndex(ifindex int) (int, bool) {
	for i, ifc := range d.ifaces {
		if ifc.net.Index == ifindex {
			return i, true
		}
	}
	return 0, false
}

func (d *Daemon) ifaceByName(name string) (int, bool) {
	for i, ifc := range d.ifaces {
		if ifc.net.Name == name {
			return i, true
		}
	}
	return 0, false
}

// buildSnapshot completes the compiled spec with the real interfaces and
// the cached next hops and compiles it. Backends whose next hop is not
// known yet are compiled as down (no new flows) and resolved in the
// background; the egress interface of every backend is its route's (or
// its explicit interface), also when its MAC is static.
func (d *Daemon) buildSnapshot(comp config.Compiled, prev *dataplane.Snapshot) (*dataplane.Snapshot, error) {
	spec := comp.Spec
	spec.Services = append([]dataplane.ServiceSpec(nil), spec.Services...)
	for _, ifc := range d.ifaces {
		cm, _ := config.ChecksumMode(ifc.cfg.Checksum) // validated by Compile
		spec.Ifaces = append(spec.Ifaces, dataplane.Iface{MAC: [6]byte(ifc.net.HardwareAddr), MTU: ifc.net.MTU, Checksum: cm})
	}
	clientIf := d.clientIface()
	spec.RouterIface = clientIf
	if spec.Router == ([6]byte{}) {
		if gw, ok := d.hops.gateway(d.ifaces[clientIf].net.Index); ok {
			if x, ok := d.hops.get(gw); ok {
				spec.Router = x.mac
			} else {
				d.hops.want(gw)
			}
		}
		if spec.Router == ([6]byte{}) && prev != nil {
			spec.Router = prev.Reply.Dst
		}
	}
	for si := range spec.Services {
		bs := append([]dataplane.BackendSpec(nil), spec.Services[si].Backends...)
		spec.Services[si].Backends = bs
		for bi := range bs {
			b := &bs[bi]
			explicit, hasExplicit := comp.BackendIfaces[[2]int{si, bi}]
			if b.MAC != ([6]byte{}) {
				// A static MAC replaces the neighbour lookup, not the route.
				if ix, err := d.hops.route(b.Address); err == nil {
					if i, ok := d.ifaceIndex(ix); ok {
						b.Iface = i
					}
				}
			} else if x, ok := d.hops.get(b.Address); ok {
				b.MAC = x.mac
				if i, ok := d.ifaceIndex(x.ifindex); ok {
					b.Iface = i
				}
			} else {
				d.hops.want(b.Address)
				if b.State != dataplane.StateDown {
					b.State = dataplane.StateDown // no next hop yet: no new flows
				}
			}
			if hasExplicit {
				if i, ok := d.ifaceByName(explicit); ok {
					b.Iface = i
				}
			}
		}
	}
	s, err := dataplane.Build(spec, prev)
	if err == nil {
		d.saveIDs(s) // before s runs: entries name its IDs
	}
	return s, err
}

// onNeighbor applies a neighbour event to the table at once (the periodic
// refresh stays as a safety net): a new MAC for a known address replaces
// the old one; a FAILED entry (the host does not answer) takes the address
// out, so its backend gets no new flows, and resolution starts again; a
// removed entry (the kernel's garbage collection of an entry it no longer
// uses, since xlb's own traffic never touches it) keeps the last MAC and
// is re-resolved. It reports whether the table changed.
func (h *hopTable) onNeighbor(ev neigh.Event) bool {
	a := ev.Addr.Unmap()
	h.mu.Lock()
	old, known := h.hops[a]
	h.mu.Unlock()
	if !known {
		return false
	}
	switch {
	case ev.Usable() && len(ev.MAC) == 6:
		n := hop{mac: [6]byte(ev.MAC), ifindex: ev.Ifindex}
		if n == old {
			return false
		}
		h.mu.Lock()
		h.hops[a] = n
		h.mu.Unlock()
		h.log.Info().Str("address", a.String()).Str("mac", ev.MAC.String()).Str("was", net.HardwareAddr(old.mac[:]).String()).
			Msg("next hop changed (neighbour event)")
		return true
	case ev.Deleted:
		h.want(a)
		return false
	case ev.Failed():
		h.mu.Lock()
		delete(h.hops, a)
		h.mu.Unlock()
		h.log.Warn().Str("address", a.String()).Str("state", ev.StateName()).
			Msg("next hop does not answer ARP/ND: it takes no new flows until it resolves again")
		h.want(a)
		return true
	}
	return false
}
