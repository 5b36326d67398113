package preflight

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/internal/neigh"
)

// ipForward: on the balancer, kernel forwarding is off unless nat
// backends use the lb as their gateway for their own traffic.
func (c *checker) ipForward() Result {
	v4, err := readTrim(c.o.proc("sys", "net", "ipv4", "ip_forward"))
	if err != nil {
		return Result{Name: "ip_forward", Status: Warn, Detail: fmt.Sprintf("cannot read net.ipv4.ip_forward: %v", err),
			Fix: "check it: sysctl net.ipv4.ip_forward (0 on a balancer unless nat backends route through it)"}
	}
	v6 := ""
	if c.hasIPv6() {
		v6, _ = readTrim(c.o.proc("sys", "net", "ipv6", "conf", "all", "forwarding"))
	}
	return ipForwardResult(v4, v6, c.hasMode("nat"))
}

func ipForwardResult(v4, v6 string, nat bool) Result {
	r := Result{Name: "ip_forward"}
	on := v4 == "1" || v6 == "1"
	r.Detail = "net.ipv4.ip_forward=" + v4
	if v6 != "" {
		r.Detail += ", net.ipv6.conf.all.forwarding=" + v6
	}
	switch {
	case nat && !on:
		r.Status = Warn
		r.Detail += ": nat backends use the lb as their gateway, and their own traffic that is no reply to a service (DNS, updates) is dropped by the lb's kernel"
		r.Fix = "sysctl -w net.ipv4.ip_forward=1 if the backends need other traffic routed"
	case nat:
		r.Detail += " (the kernel routes the nat backends' other traffic)"
	case on:
		r.Status = Warn
		r.Detail += ": frames xlb cannot take (before it starts, after it stops, on a queue without a worker) are forwarded by the kernel instead of being dropped"
		r.Fix = "sysctl -w net.ipv4.ip_forward=0"
		if v6 == "1" {
			r.Fix += " net.ipv6.conf.all.forwarding=0"
		}
		r.Fix += " (unless this host also routes for others)"
	default:
		r.Detail += ": frames xlb does not take are dropped, not forwarded"
	}
	return r
}

// rpFilter: reverse path filtering applies to what xlb passes to the
// kernel, health-check replies among them.
func (c *checker) rpFilter(ifc *ifaceInfo) Result {
	all, err1 := readTrim(c.o.proc("sys", "net", "ipv4", "conf", "all", "rp_filter"))
	own, err2 := readTrim(c.o.proc("sys", "net", "ipv4", "conf", ifc.cfg.Name, "rp_filter"))
	if err := errors.Join(err1, err2); err != nil {
		return Result{Name: "rp_filter " + ifc.cfg.Name, Status: Warn, Detail: fmt.Sprintf("cannot read it: %v", err),
			Fix: fmt.Sprintf("check it: sysctl net.ipv4.conf.all.rp_filter net.ipv4.conf.%s.rp_filter (0 or 2 is safe)", ifc.cfg.Name)}
	}
	a, _ := strconv.Atoi(all)
	o, _ := strconv.Atoi(own)
	need := c.hasMode("nat", "fullnat")
	for _, s := range c.f.Services {
		if s.Health.Type != "" && s.Health.Type != "none" {
			need = true
		}
	}
	asym := len(c.f.Interfaces) > 1
	for _, rt := range c.routes {
		if rt.err == nil && rt.route.Gateway.IsValid() {
			asym = true
		}
	}
	return rpFilterResult(ifc.cfg.Name, a, o, need, asym)
}

func rpFilterResult(name string, all, own int, need, asym bool) Result {
	r := Result{Name: "rp_filter " + name}
	eff := max(all, own) // the kernel uses the larger of all and the interface's
	word := map[int]string{0: "off", 1: "strict", 2: "loose"}[eff]
	r.Detail = fmt.Sprintf("%s (%d: the larger of conf.all=%d and conf.%s=%d)", word, eff, all, name, own)
	if eff != 1 {
		return r
	}
	switch {
	case need && asym:
		r.Status = Warn
		r.Detail += ": health-check and nat replies that arrive on another interface than the route back to their source leaves by (two arms, routers, ECMP) are dropped by the kernel"
		r.Fix = fmt.Sprintf("sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.%s.rp_filter=2 (loose)", name)
	case need:
		r.Detail += ": fine while replies from the backends come back on the interface their route leaves by (one arm, on-link backends)"
	}
	return r
}

// snat checks that every SNAT address is on the interface the daemon
// wants it on (or that xlb adds it, lb.manage_addresses) and the SNAT
// port range against the kernel's ephemeral ports (config.SNATPortRange).
func (c *checker) snat() []Result {
	if len(c.f.LB.SNAT.Addresses) == 0 {
		return nil
	}
	manage := c.f.LB.ManagesAddresses()
	var backendSide *ifaceInfo
	for _, ifc := range c.ifaces {
		if backendSide == nil || ifc.cfg.Role == "backend" {
			backendSide = ifc
		}
	}
	var rs []Result
	var local []netip.Addr
	for i, s := range c.f.LB.SNAT.Addresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue // the config line reports it
		}
		a = a.Unmap()
		k := key("lb.snat.addresses[%d]", i)
		target := backendSide
		for _, ifc := range c.ifaces {
			if ifc.connected(a) {
				target = ifc
				break
			}
		}
		r := Result{Name: "snat " + a.String(), Blocking: true}
		switch {
		case target == nil || target.ni == nil:
			r.Status = Warn
			r.Detail = "cannot check: the interface it belongs on is missing (see above)"
			r.Fix = "fix the interfaces first"
		case target.has(a):
			r.Detail = "on " + target.cfg.Name
			local = append(local, a)
		case manage:
			r.Detail = fmt.Sprintf("not on %s yet: xlb adds it at start and removes it on exit (lb.manage_addresses)", target.cfg.Name)
			local = append(local, a)
		default:
			r.Status = Fail
			r.Detail = fmt.Sprintf("not on %s and lb.manage_addresses is false: nobody answers ARP/ND for it, so the backends' replies never arrive; xlb run refuses to start", target.cfg.Name)
			if other := localIface(a); other != "" {
				r.Detail += " (it is on " + other + ")"
			}
			bits := 32
			if a.Is6() {
				bits = 128
			}
			r.Fix = fmt.Sprintf("ip addr add %s/%d dev %s, or lb.manage_addresses: true, or correct %s", a, bits, target.cfg.Name, k)
		}
		rs = append(rs, r)
	}
	var kernel [2]uint16
	if s, err := readTrim(c.o.proc("sys", "net", "ipv4", "ip_local_port_range")); err == nil {
		if fs := strings.Fields(s); len(fs) == 2 {
			lo, err1 := strconv.ParseUint(fs[0], 10, 16)
			hi, err2 := strconv.ParseUint(fs[1], 10, 16)
			if err1 == nil && err2 == nil {
				kernel = [2]uint16{uint16(lo), uint16(hi)}
			}
		}
	}
	return append(rs, snatPortsResult(c.f.LB.SNAT.Ports, local, kernel))
}

func snatPortsResult(ports string, local []netip.Addr, kernel [2]uint16) Result {
	r := Result{Name: "snat ports", Blocking: true}
	if kernel == ([2]uint16{}) && len(local) > 0 {
		r.Status = Warn
		r.Detail = "cannot read net.ipv4.ip_local_port_range to check lb.snat.ports against it"
		r.Fix = "keep lb.snat.ports below the kernel's ephemeral ports (sysctl net.ipv4.ip_local_port_range)"
		return r
	}
	if ports == config.DefaultSNATPorts {
		ports = "" // Defaults filled it: unset
	}
	got, moved, err := config.SNATPortRange(ports, local, kernel)
	switch {
	case err != nil:
		r.Status = Fail
		r.Detail = err.Error()
		r.Fix = fmt.Sprintf("lb.snat.ports: 1024-%d, or move the kernel's range (sysctl -w net.ipv4.ip_local_port_range=…)", kernel[0]-1)
		if kernel[0] <= 1024 {
			r.Fix = "narrow the kernel's ephemeral ports (sysctl -w net.ipv4.ip_local_port_range=\"32768 60999\") and keep lb.snat.ports below them"
		}
	case moved:
		r.Detail = fmt.Sprintf("%d-%d: lb.snat.ports is unset and an SNAT address is local, so the range stays below the kernel's ephemeral ports %d-%d",
			got[0], got[1], kernel[0], kernel[1])
	case len(local) == 0:
		r.Detail = fmt.Sprintf("%d-%d (no SNAT address is local, so the kernel's ephemeral ports do not matter)", got[0], got[1])
	default:
		r.Detail = fmt.Sprintf("%d-%d, clear of the kernel's ephemeral ports %d-%d", got[0], got[1], kernel[0], kernel[1])
	}
	return r
}

// has reports whether a is one of the interface's addresses.
func (ifc *ifaceInfo) has(a netip.Addr) bool {
	for _, x := range ifc.addrs {
		if p, err := netip.ParsePrefix(x.String()); err == nil && p.Addr().Unmap() == a {
			return true
		}
	}
	return false
}

// connected reports whether a is inside one of the interface's subnets
// (not a host route).
func (ifc *ifaceInfo) connected(a netip.Addr) bool {
	for _, x := range ifc.addrs {
		if p, err := netip.ParsePrefix(x.String()); err == nil && p.Bits() < p.Addr().BitLen() && p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

// localIface names an interface of this namespace that has a.
func localIface(a netip.Addr) string {
	ifs, _ := net.Interfaces()
	for _, ni := range ifs {
		info := ifaceInfo{}
		info.addrs, _ = ni.Addrs()
		if info.has(a) {
			return ni.Name
		}
	}
	return ""
}

func (c *checker) hasIPv6() bool {
	for _, s := range c.f.Services {
		if a, err := netip.ParseAddr(s.VIP); err == nil && a.Unmap().Is6() {
			return true
		}
	}
	return false
}

// backendRef is a backend address and where the configuration uses it.
type backendRef struct {
	addr  netip.Addr
	keys  []string // services[i].backends[j]
	mac   string   // static next hop
	iface string   // explicit egress interface
}

func (c *checker) backendRefs() []*backendRef {
	var out []*backendRef
	seen := map[netip.Addr]*backendRef{}
	for i, s := range c.f.Services {
		for j, b := range s.Backends {
			a, err := netip.ParseAddr(b.Address)
			if err != nil {
				continue
			}
			a = a.Unmap()
			ref := seen[a]
			if ref == nil {
				ref = &backendRef{addr: a}
				seen[a] = ref
				out = append(out, ref)
			}
			ref.keys = append(ref.keys, key("services[%d].backends[%d]", i, j))
			if b.MAC != "" && ref.mac == "" {
				ref.mac = b.MAC
			}
			if b.Interface != "" && ref.iface == "" {
				ref.iface = b.Interface
			}
		}
	}
	return out
}

// routeInfo is the kernel's route to a backend.
type routeInfo struct {
	route neigh.Route
	err   error
}

// routeBackends looks up every backend's route (no resolution yet).
func (c *checker) routeBackends() {
	c.routes = map[string]routeInfo{}
	if c.resolver == nil {
		return
	}
	for _, ref := range c.backendRefs() {
		rt, err := c.resolver.Route(ref.addr)
		c.routes[ref.addr.String()] = routeInfo{rt, err}
	}
}

// ifname names an interface by index ("ifindex 7" when it is gone).
func ifname(index int) string {
	if ni, err := net.InterfaceByIndex(index); err == nil {
		return ni.Name
	}
	return fmt.Sprintf("ifindex %d", index)
}

func (c *checker) owned(name string) bool {
	for _, ifc := range c.ifaces {
		if ifc.ni != nil && ifc.cfg.Name == name {
			return true
		}
	}
	return false
}

// firstIface is the interface the daemon sends a backend's frames out of
// when the route's interface is not one of its own.
func (c *checker) firstIface() string {
	if len(c.f.Interfaces) > 0 {
		return c.f.Interfaces[0].Name
	}
	return "?"
}

// gateway and backends resolve every next hop the daemon needs, in
// parallel, within Options.ResolveTimeout.
func (c *checker) nextHops() []Result {
	if c.resolver == nil {
		return []Result{{Name: "next hops", Status: Warn, Detail: fmt.Sprintf("cannot open rtnetlink to resolve them: %v", c.resolverErr),
			Fix: "run xlb check as root"}}
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.o.ResolveTimeout)
	defer cancel()
	refs := c.backendRefs()
	rs := make([]Result, 1+len(refs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rs[0] = c.gateway(ctx)
	}()
	for i, ref := range refs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			rs[1+i] = c.backend(ctx, ref)
		}()
	}
	wg.Wait()
	if rs[0].Name == "" {
		rs = rs[1:]
	}
	return rs
}

// gateway checks the next hop of replies to clients: lb.router, or the
// default gateway on the client-side interface (as the daemon finds it).
func (c *checker) gateway(ctx context.Context) Result {
	if len(c.f.Services) == 0 {
		return Result{}
	}
	r := Result{Name: "gateway"}
	if c.f.LB.Router != "" {
		r.Detail = "lb.router " + c.f.LB.Router + ": replies to clients go to this MAC"
		return r
	}
	var client *ifaceInfo
	for _, ifc := range c.ifaces {
		if client == nil || ifc.cfg.Role == "client" {
			client = ifc
		}
	}
	if client == nil || client.ni == nil {
		return Result{}
	}
	var gw netip.Addr
	for _, probe := range []netip.Addr{netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("2001:db8::fffe")} {
		if rt, err := c.resolver.Route(probe); err == nil && rt.Gateway.IsValid() && rt.Ifindex == client.ni.Index {
			gw = rt.Gateway
			break
		}
	}
	if !gw.IsValid() {
		r.Detail = "no default route via " + client.cfg.Name
		if c.hasMode("nat", "fullnat") {
			r.Status = Warn
			r.Detail += ": nat and fullnat replies to clients have no next hop"
			r.Fix = fmt.Sprintf("ip route add default via ROUTER dev %s, or lb.router: the router's MAC", client.cfg.Name)
		} else {
			r.Detail += " (dsr, tunnel and l3dsr replies go from the backends; only xlb's own ICMP errors to clients need one)"
		}
		return r
	}
	mac, _, err := c.resolver.Resolve(ctx, gw)
	if err != nil {
		r.Status = Warn
		r.Detail = fmt.Sprintf("default gateway %s via %s does not resolve (%v): replies to clients wait until it does", gw, client.cfg.Name, resolveErr(err))
		r.Fix = fmt.Sprintf("check the router %s (ip neigh show %s), or lb.router: its MAC", gw, gw)
		return r
	}
	r.Detail = fmt.Sprintf("default gateway %s via %s, %s (replies to clients)", gw, client.cfg.Name, mac)
	return r
}

func resolveErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer in time"
	}
	return err.Error()
}

// backend resolves one backend's next hop and says where it egresses.
func (c *checker) backend(ctx context.Context, ref *backendRef) Result {
	r := Result{Name: "backend " + ref.addr.String()}
	where := ref.keys[0]
	if len(ref.keys) > 1 {
		where += fmt.Sprintf(" and %d more", len(ref.keys)-1)
	}
	rt := c.routes[ref.addr.String()]
	if rt.err != nil {
		r.Status = Warn
		if errors.Is(rt.err, neigh.ErrNotUnicast) {
			r.Detail = fmt.Sprintf("no unicast route to it (%v): a local, broadcast or blackhole address here", rt.err)
			r.Fix = "correct " + ref.keys[0] + ".address"
		} else {
			r.Detail = fmt.Sprintf("no route to it: %v", rt.err)
			r.Fix = fmt.Sprintf("add a route (ip route add %s via … dev …) or correct %s.address", ref.addr, ref.keys[0])
		}
		return r
	}
	egress := ifname(rt.route.Ifindex)
	path := "on-link"
	if rt.route.Gateway.IsValid() {
		path = "through " + rt.route.Gateway.String()
	}
	hop := rt.route.NextHop(ref.addr)
	var mac string
	if ref.mac != "" {
		mac = "static MAC " + ref.mac
	} else {
		hw, ix, err := c.resolver.Resolve(ctx, ref.addr)
		if err != nil {
			r.Status = Warn
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				r.Detail = fmt.Sprintf("via %s %s: no ARP/ND answer from %s within %v: xlb sends it no new flows until it answers",
					egress, path, hop, c.o.ResolveTimeout)
			} else {
				r.Detail = fmt.Sprintf("via %s %s: %s does not resolve (%v): xlb sends it no new flows until it does", egress, path, hop, err)
			}
			r.Fix = fmt.Sprintf("check that %s is up on %s's link (ip neigh show %s), or correct %s.address (or give it a static .mac)",
				hop, egress, hop, ref.keys[0])
			return r
		}
		egress = ifname(ix)
		mac = hw.String()
	}
	r.Detail = fmt.Sprintf("via %s %s, %s (%s)", egress, path, mac, where)
	switch {
	case ref.iface != "" && ref.iface != egress:
		r.Status = Warn
		r.Detail = fmt.Sprintf("the route leaves by %s %s, but %s.interface is %s: frames go out of %s to a next hop learnt on %s (%s)",
			egress, path, ref.keys[0], ref.iface, ref.iface, egress, mac)
		r.Fix = fmt.Sprintf("make the route to %s leave by %s, or drop %s.interface", ref.addr, ref.iface, ref.keys[0])
	case ref.iface == "" && !c.owned(egress):
		r.Status = Warn
		r.Detail = fmt.Sprintf("the route leaves by %s %s (%s), which is not one of xlb's interfaces: xlb would send its frames out of %s to a next hop on another link",
			egress, path, mac, c.firstIface())
		r.Fix = fmt.Sprintf("add %s to interfaces, route %s via an xlb interface, or set %s.interface", egress, ref.addr, ref.keys[0])
	}
	return r
}
