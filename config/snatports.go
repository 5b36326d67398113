package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// DefaultSNATPorts is lb.snat.ports when unset.
const DefaultSNATPorts = "1024-65535"

// SNATPortRange decides the SNAT port range, for `xlb run` and `xlb check`
// alike. ports is lb.snat.ports as written ("" when unset), local the SNAT
// addresses that are the host's own, ephemeral the kernel's
// net.ipv4.ip_local_port_range (which IPv6 uses too).
//
// When an SNAT address is local, the kernel's own connections from it
// (health checks, SSH) take ports from the ephemeral range: the SNAT range
// must stay out of it, so the steering program can give those replies to
// the kernel. An unset lb.snat.ports then moves below the kernel's range
// (moved is true); a set one that overlaps it is a *FieldError.
func SNATPortRange(ports string, local []netip.Addr, ephemeral [2]uint16) (r [2]uint16, moved bool, err error) {
	written := ports
	if ports == "" {
		ports = DefaultSNATPorts
	}
	lo, hi, err := PortRange(ports)
	if err != nil {
		return r, false, fieldErr("lb.snat.ports", written, "%v", err)
	}
	r = [2]uint16{lo, hi}
	klo, khi := ephemeral[0], ephemeral[1]
	if len(local) == 0 || r[1] < klo || r[0] > khi {
		return r, false, nil
	}
	if written == "" && klo > 1024 {
		return [2]uint16{1024, klo - 1}, true, nil
	}
	owned := make([]string, len(local))
	for i, a := range local {
		owned[i] = a.String()
	}
	return r, false, &FieldError{Field: "lb.snat.ports", Value: written,
		Reason: fmt.Sprintf("%d-%d overlaps the kernel's ephemeral ports %d-%d (net.ipv4.ip_local_port_range), and SNAT address %s is local: "+
			"the replies to the kernel's own connections from it (health checks) would be taken by xlb; use a range below %d, e.g. 1024-%d",
			r[0], r[1], klo, khi, strings.Join(owned, ", "), klo, klo-1)}
}
