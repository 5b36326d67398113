package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/internal/rtnl"
)

// addrStateDir holds the record of the addresses xlb added, so a start
// after a crash removes what the crashed process left behind.
const addrStateDir = "/run/xlb"

// managedAddr is an address xlb added to an interface.
type managedAddr struct {
	Iface  string       `json:"interface"`
	Prefix netip.Prefix `json:"prefix"`
	Why    string       `json:"why"` // "snat" or "vip"
}

// addrState is the record file's content.
type addrState struct {
	Added []managedAddr `json:"added"`
}

func addrStateFile() string {
	name := "addresses"
	if ns := rtnl.NetnsTag(); ns != "" {
		name += "@" + ns
	}
	return filepath.Join(addrStateDir, name+".json")
}

// wantedAddrs lists the addresses xlb needs on its interfaces: every SNAT
// address (the backends must resolve it over ARP/ND to reply), and in
// one-arm mode every VIP inside a connected subnet (the router or the
// clients ARP for it, as keepalived's VIPs are answered). Each goes on the
// interface whose subnet holds it, else (SNAT) on the backend side.
func (d *Daemon) wantedAddrs(spec dataplane.Spec) []managedAddr {
	type conn struct {
		iface  string
		prefix netip.Prefix
	}
	var conns []conn
	for _, ifc := range d.ifaces {
		addrs, _ := ifc.net.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil {
				conns = append(conns, conn{ifc.net.Name, p.Masked()})
			}
		}
	}
	connected := func(a netip.Addr) string {
		for _, c := range conns {
			if c.prefix.Bits() < c.prefix.Addr().BitLen() && c.prefix.Contains(a) {
				return c.iface
			}
		}
		return ""
	}
	backendSide := d.ifaces[0].net.Name
	for _, ifc := range d.ifaces {
		if ifc.cfg.Role == "backend" {
			backendSide = ifc.net.Name
		}
	}
	var out []managedAddr
	for _, a := range append(append([]netip.Addr(nil), spec.SNAT4...), spec.SNAT6...) {
		ifn := connected(a)
		if ifn == "" {
			ifn = backendSide
		}
		out = append(out, managedAddr{Iface: ifn, Prefix: netip.PrefixFrom(a, a.BitLen()), Why: "snat"})
	}
	if len(d.ifaces) == 1 {
		seen := map[netip.Addr]bool{}
		for _, s := range spec.Services {
			vip := s.VIP.Unmap()
			if seen[vip] {
				continue
			}
			seen[vip] = true
			if ifn := connected(vip); ifn != "" {
				out = append(out, managedAddr{Iface: ifn, Prefix: netip.PrefixFrom(vip, vip.BitLen()), Why: "vip"})
			}
		}
	}
	return out
}

// present reports whether a is on interface ifname (any prefix length).
func present(all []rtnl.Addr, ifindex int, a netip.Addr) bool {
	for _, x := range all {
		if x.Ifindex == ifindex && x.Prefix.Addr() == a {
			return true
		}
	}
	return false
}

// cleanupCrashedAddrs removes the addresses a previous xlb that did not
// stop cleanly recorded as added.
func (d *Daemon) cleanupCrashedAddrs() {
	b, err := os.ReadFile(addrStateFile())
	if err != nil {
		return
	}
	var st addrState
	if json.Unmarshal(b, &st) != nil {
		return
	}
	for _, m := range st.Added {
		ifc := d.ifaceNamed(m.Iface)
		if ifc == 0 {
			continue
		}
		if err := rtnl.DelAddr(ifc, m.Prefix); err == nil {
			d.log.Info().Str("address", m.Prefix.String()).Str("interface", m.Iface).Msg("removed an address a previous xlb added and left behind")
		}
	}
	_ = os.Remove(addrStateFile())
}

func (d *Daemon) ifaceNamed(name string) int {
	for _, ifc := range d.ifaces {
		if ifc.net.Name == name {
			return ifc.net.Index
		}
	}
	return 0
}

// manageAddrs brings the interfaces' addresses to what spec needs: with
// lb.manage_addresses (the default) it adds what is missing (recording it
// first, for crash cleanup) and removes what it added that is no longer
// needed; without, it refuses a missing address with the fix.
func (d *Daemon) manageAddrs(spec dataplane.Spec, manage bool) error {
	want := d.wantedAddrs(spec)
	all, err := rtnl.ListAddrs()
	if err != nil {
		return fmt.Errorf("managed addresses: %w", err)
	}
	var missing []managedAddr
	for _, m := range want {
		if !present(all, d.ifaceNamed(m.Iface), m.Prefix.Addr()) {
			missing = append(missing, m)
		}
	}
	if !manage {
		if len(missing) > 0 {
			m := missing[0] // the first one; the fix is the same for the others
			key := "lb.snat.addresses"
			if m.Why == "vip" {
				key = "services[].vip"
			}
			return &config.FieldError{Field: key, Value: m.Prefix.Addr().String(),
				Reason: fmt.Sprintf("%s is on no interface, so nobody answers ARP/ND for it (the %s would time out): add it (ip addr add %s dev %s) or set lb.manage_addresses: true",
					m.Prefix.Addr(), map[string]string{"snat": "backends' replies", "vip": "clients' requests"}[m.Why], m.Prefix, m.Iface)}
		}
		return nil
	}
	// Keep what we added before and still want; drop the rest.
	keep := map[managedAddr]bool{}
	for _, m := range want {
		keep[m] = true
	}
	var added []managedAddr
	for _, m := range d.added {
		if keep[m] {
			added = append(added, m)
			continue
		}
		if err := rtnl.DelAddr(d.ifaceNamed(m.Iface), m.Prefix); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			d.log.Warn().Err(err).Str("address", m.Prefix.String()).Msg("cannot remove a managed address")
		}
	}
	d.added = append(added, missing...)
	if err := d.writeAddrState(); err != nil {
		return err
	}
	for _, m := range missing {
		if err := rtnl.AddAddr(d.ifaceNamed(m.Iface), m.Prefix); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("lb.manage_addresses: add %s to %s: %w", m.Prefix, m.Iface, err)
		}
		d.log.Info().Str("address", m.Prefix.String()).Str("interface", m.Iface).Str("for", m.Why).Msg("address added (lb.manage_addresses)")
	}
	return nil
}

func (d *Daemon) writeAddrState() error {
	if len(d.added) == 0 {
		_ = os.Remove(addrStateFile())
		return nil
	}
	sort.Slice(d.added, func(i, j int) bool { return d.added[i].Prefix.String() < d.added[j].Prefix.String() })
	b, _ := json.Marshal(addrState{Added: d.added})
	if err := os.MkdirAll(addrStateDir, 0o755); err != nil {
		return fmt.Errorf("lb.manage_addresses: %w", err)
	}
	tmp := addrStateFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("lb.manage_addresses: %w", err)
	}
	return os.Rename(tmp, addrStateFile())
}

// unmanageAddrs removes every address xlb added.
func (d *Daemon) unmanageAddrs() {
	for _, m := range d.added {
		if err := rtnl.DelAddr(d.ifaceNamed(m.Iface), m.Prefix); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			d.log.Warn().Err(err).Str("address", m.Prefix.String()).Msg("cannot remove a managed address")
			continue
		}
		d.log.Info().Str("address", m.Prefix.String()).Str("interface", m.Iface).Msg("address removed")
	}
	d.added = nil
	_ = os.Remove(addrStateFile())
}
