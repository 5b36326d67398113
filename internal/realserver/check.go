package realserver

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/xlb/xlb/dataplane/bpf"
	"github.com/xlb/xlb/internal/rtnl"
)

// CheckResult is one line of `xlb realserver --check`.
type CheckResult struct {
	OK       bool
	Blocking bool   // a failure means this host drops or misroutes the service's traffic
	What     string // what was checked and what was found
	Fix      string // how to fix a failure
}

// Check reports, for cfg's mode, whether this host would accept the
// balancer's traffic for cfg's VIPs, and why not. cfg must be valid.
// It only reads.
func Check(cfg *Config) []CheckResult {
	var rs []CheckResult
	add := func(ok, blocking bool, what, fix string) {
		rs = append(rs, CheckResult{OK: ok, Blocking: blocking, What: what, Fix: fix})
	}
	iface := cfg.Interface
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		add(false, true, fmt.Sprintf("interface %s: %v", iface, err), "give the interface the balancer's packets arrive on (--interface)")
		return rs
	}
	add(ifi.Flags&net.FlagUp != 0, true, fmt.Sprintf("interface %s is %s", iface, upDown(ifi.Flags)), "ip link set "+iface+" up")

	addrs, err := rtnl.ListAddrs()
	if err != nil {
		add(false, true, "list addresses: "+err.Error(), "run as root in the backend's network namespace")
		return rs
	}
	lo, _ := net.InterfaceByName("lo")
	loIndex := -1
	if lo != nil {
		loIndex = lo.Index
	}
	has4, has6 := false, false
	for _, v := range cfg.VIPs {
		has4 = has4 || v.Addr.Is4()
		has6 = has6 || v.Addr.Is6()
		var on []string
		onLo := false
		for _, a := range addrs {
			if a.Prefix.Addr() != v.Addr {
				continue
			}
			if a.Ifindex == loIndex {
				onLo = true
			} else if ifi, err := net.InterfaceByIndex(a.Ifindex); err == nil {
				on = append(on, ifi.Name)
			}
		}
		fam := "-4"
		nodad := ""
		if v.Addr.Is6() {
			fam, nodad = "-6", " nodad"
		}
		add(onLo, true, fmt.Sprintf("VIP %s on lo", v.Prefix()), fmt.Sprintf("ip %s addr add %s dev lo%s", fam, v.Prefix(), nodad))
		if len(on) > 0 {
			add(false, true, fmt.Sprintf("VIP %s is also on %s: this host answers ARP/ND for it and takes the VIP's traffic from the balancer", v.Addr, strings.Join(on, ", ")),
				fmt.Sprintf("ip addr del %s dev %s", v.Prefix(), on[0]))
		}
	}
	if has4 {
		rs = append(rs, checkARP(iface)...)
	}
	if has6 {
		rs = append(rs, checkND(iface)...)
	}
	rs = append(rs, checkRPFilter(iface))

	if cfg.Mode.needsProgram() {
		rs = append(rs, checkProgram(cfg)...)
	}
	if cfg.Mode == ModeTunnel {
		rs = append(rs, checkKernelTunnel(cfg, rs))
	}
	return rs
}

func upDown(f net.Flags) string {
	if f&net.FlagUp != 0 {
		return "up"
	}
	return "down"
}

// effective reads a sysctl of all/ and of iface; the kernel applies the
// larger for arp_ignore, arp_announce and rp_filter.
func effective(family, iface, key string) (all, dev, eff int, err error) {
	if all, err = sysctlInt("net/" + family + "/conf/all/" + key); err != nil {
		return
	}
	if dev, err = sysctlInt("net/" + family + "/conf/" + iface + "/" + key); err != nil {
		return
	}
	return all, dev, max(all, dev), nil
}

func checkARP(iface string) []CheckResult {
	var rs []CheckResult
	all, dev, eff, err := effective("ipv4", iface, "arp_ignore")
	if err != nil {
		return append(rs, CheckResult{Blocking: true, What: err.Error()})
	}
	rs = append(rs, CheckResult{OK: arpIgnoreOK(eff), Blocking: true,
		What: fmt.Sprintf("arp_ignore = %d (all %d, %s %d): %s", eff, all, iface, dev,
			map[bool]string{true: "ARP for the VIPs on lo is not answered on " + iface, false: "this host answers ARP for the VIPs and steals their traffic"}[arpIgnoreOK(eff)]),
		Fix: "sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf." + iface + ".arp_ignore=1"})
	all, dev, eff, err = effective("ipv4", iface, "arp_announce")
	if err != nil {
		return append(rs, CheckResult{Blocking: true, What: err.Error()})
	}
	rs = append(rs, CheckResult{OK: eff == 2, Blocking: true,
		What: fmt.Sprintf("arp_announce = %d (all %d, %s %d): %s", eff, all, iface, dev,
			map[bool]string{true: "ARP requests never carry a VIP as sender", false: "ARP requests may carry a VIP as sender and poison neighbours' caches"}[eff == 2]),
		Fix: "sysctl -w net.ipv4.conf.all.arp_announce=2 net.ipv4.conf." + iface + ".arp_announce=2"})
	return rs
}

// checkND: a /128 on lo is not answered by neighbour discovery on another
// interface unless that interface proxies ND.
func checkND(iface string) []CheckResult {
	var rs []CheckResult
	if v, err := sysctlInt("net/ipv6/conf/lo/disable_ipv6"); err == nil && v != 0 {
		rs = append(rs, CheckResult{Blocking: true, What: "IPv6 is disabled on lo: IPv6 VIPs cannot be configured",
			Fix: "sysctl -w net.ipv6.conf.lo.disable_ipv6=0"})
	}
	if v, err := sysctlInt("net/ipv6/conf/" + iface + "/disable_ipv6"); err == nil && v != 0 {
		rs = append(rs, CheckResult{Blocking: true, What: "IPv6 is disabled on " + iface + ": IPv6 traffic is dropped",
			Fix: "sysctl -w net.ipv6.conf." + iface + ".disable_ipv6=0"})
	}
	all, dev, eff, err := effective("ipv6", iface, "proxy_ndp")
	if err != nil {
		return append(rs, CheckResult{Blocking: true, What: err.Error()})
	}
	return append(rs, CheckResult{OK: eff == 0, Blocking: true,
		What: fmt.Sprintf("proxy_ndp = %d (all %d, %s %d): neighbour discovery for IPv6 VIPs on lo is %s on %s", eff, all, iface, dev,
			map[bool]string{true: "not answered", false: "possibly answered (proxy)"}[eff == 0], iface),
		Fix: "sysctl -w net.ipv6.conf.all.proxy_ndp=0 net.ipv6.conf." + iface + ".proxy_ndp=0"})
}

func checkRPFilter(iface string) CheckResult {
	all, dev, eff, err := effective("ipv4", iface, "rp_filter")
	if err != nil {
		return CheckResult{What: err.Error()}
	}
	return CheckResult{OK: eff != 1,
		What: fmt.Sprintf("rp_filter = %d (all %d, %s %d): %s", eff, all, iface, dev,
			map[bool]string{true: "packets with the client's source are accepted on " + iface,
				false: "strict: client packets are dropped unless the route back to the client is via " + iface}[eff != 1]),
		Fix: "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf." + iface + ".rp_filter=2"}
}

// checkProgram checks the realserver program is attached and maps every
// VIP.
func checkProgram(cfg *Config) []CheckResult {
	fix := "xlb realserver --interface " + cfg.Interface + " --mode " + string(cfg.Mode) + " --vip " + vipList(cfg.VIPs)
	r, how, err := AttachedProgram(cfg.Interface)
	switch {
	case errors.Is(err, ErrNoProgram):
		return []CheckResult{{Blocking: true, What: "no XDP program on " + cfg.Interface + ": " + modeJob(cfg.Mode) + " nobody", Fix: fix}}
	case errors.Is(err, bpf.ErrNotRealserver):
		return []CheckResult{{Blocking: true, What: "another XDP program is attached to " + cfg.Interface + " (" + err.Error() + ")", Fix: "detach it, then " + fix}}
	case err != nil:
		return []CheckResult{{Blocking: true, What: "XDP program on " + cfg.Interface + ": " + err.Error(), Fix: fix}}
	}
	defer r.Close()
	c, err := r.Config()
	if err != nil {
		return []CheckResult{{Blocking: true, What: "read the program's maps: " + err.Error(), Fix: fix}}
	}
	var missing []string
	for _, v := range cfg.VIPs {
		switch cfg.Mode {
		case ModeTunnel:
			if !slices.Contains(c.TunnelVIPs, v.Addr) {
				missing = append(missing, v.Addr.String())
			}
		case ModeL3DSR:
			if !slices.Contains(c.DSCPs, bpf.DSCPMapping{VIP: v.Addr, DSCP: v.DSCP}) {
				missing = append(missing, v.String())
			}
		}
	}
	if len(missing) > 0 {
		return []CheckResult{{Blocking: true, What: fmt.Sprintf("program %s attached to %s (xdp %s) but %s: %s", bpf.RealserverProgName, cfg.Interface, how,
			"not configured for", strings.Join(missing, ", ")), Fix: "restart it with " + fix}}
	}
	return []CheckResult{{OK: true, Blocking: true, What: fmt.Sprintf("program %s attached to %s (xdp %s): %s %s",
		bpf.RealserverProgName, cfg.Interface, how, modeJob(cfg.Mode), vipList(cfg.VIPs))}}
}

func modeJob(m Mode) string {
	if m == ModeTunnel {
		return "decapsulates for"
	}
	return "maps DSCP to"
}

func vipList(vs []VIP) string {
	var s []string
	for _, v := range vs {
		s = append(s, v.String())
	}
	return strings.Join(s, ",")
}

// checkKernelTunnel reports the kernel's own decapsulation (ipip,
// ip6_tunnel modules with tunl0/ip6tnl0 up), the alternative to the
// program. It blocks only when the program check failed too.
func checkKernelTunnel(cfg *Config, sofar []CheckResult) CheckResult {
	progOK := false
	for _, r := range sofar {
		if strings.HasPrefix(r.What, "program "+bpf.RealserverProgName+" attached") && r.OK {
			progOK = true
		}
	}
	var have, lack []string
	for _, m := range []struct{ mod, dev string }{{"ipip", "tunl0"}, {"ip6_tunnel", "ip6tnl0"}} {
		ifi, err := net.InterfaceByName(m.dev)
		if moduleLoaded(m.mod) && err == nil && ifi.Flags&net.FlagUp != 0 {
			have = append(have, m.mod+" ("+m.dev+" up)")
		} else if moduleAvailable(m.mod) {
			lack = append(lack, m.mod+" (available, "+m.dev+" not up)")
		} else {
			lack = append(lack, m.mod+" (not available in this kernel)")
		}
	}
	ok := len(lack) == 0 || progOK
	what := "kernel tunnel decapsulation (the alternative to the program): " + strings.Join(append(have, lack...), ", ")
	if progOK {
		what += "; not needed, the program decapsulates"
	}
	return CheckResult{OK: ok, Blocking: !progOK, What: what,
		Fix: "modprobe ipip ip6_tunnel; ip link set tunl0 up; ip link set ip6tnl0 up (or run xlb realserver)"}
}

func moduleLoaded(name string) bool {
	_, err := os.Stat("/sys/module/" + name)
	return err == nil
}

// moduleAvailable looks for the module in modules.dep or built in.
func moduleAvailable(name string) bool {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return false
	}
	for _, f := range []string{"modules.dep", "modules.builtin"} {
		b, err := os.ReadFile("/lib/modules/" + strings.TrimSpace(string(rel)) + "/" + f)
		if err != nil {
			continue
		}
		if strings.Contains(string(b), "/"+name+".ko") {
			return true
		}
	}
	return false
}

// PrintChecks writes one line per check and a summary, and reports
// whether a blocking check failed.
func PrintChecks(w io.Writer, cfg *Config, rs []CheckResult) (blocked bool) {
	fmt.Fprintf(w, "xlb realserver --check: %s\n", cfg.String())
	failed := 0
	for _, r := range rs {
		mark := "✔"
		line := r.What
		if !r.OK {
			mark = "✘"
			if !r.Blocking {
				line += " (not blocking)"
			} else {
				failed++
			}
			if r.Fix != "" {
				line += "\n    fix: " + r.Fix
			}
		}
		fmt.Fprintf(w, "%s %s\n", mark, line)
	}
	if failed > 0 {
		fmt.Fprintf(w, "%d blocking check(s) failed: this host would not accept the %s traffic for %s\n", failed, cfg.Mode, vipList(cfg.VIPs))
		return true
	}
	fmt.Fprintf(w, "this host accepts the %s traffic for %s\n", cfg.Mode, vipList(cfg.VIPs))
	return false
}
