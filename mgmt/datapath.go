package mgmt

import (
	"net/netip"
	"time"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/mgmt/health"
)

// Datapath probes (mgmt/health, TypeDatapath) for the backends of tunnel
// and l3dsr services. They run whether or not the service has an ordinary
// health check, with its timing (health.interval, timeout, rise, fall,
// dampening; the defaults without a health section), unless the service
// says health.datapath: off. A backend is down when either its ordinary
// check or its datapath probe is down: the datapath probe alone takes it
// out, because a backend that cannot decapsulate black-holes every client
// while a check of its own address still passes.

// datapathKey names a backend's datapath probe target: its ordinary key
// with "#datapath" appended ("web/10.0.0.11:80#datapath").
func datapathKey(svc string, b *config.Backend) string { return targetKey(svc, b) + "#datapath" }

// datapathWanted reports whether svc's backends get datapath probes.
func datapathWanted(svc *config.Service) bool {
	return (svc.Mode == "tunnel" || svc.Mode == "l3dsr") && svc.Protocol == "tcp" && svc.Health.Datapath != "off" &&
		(svc.Port != 0 || svc.Health.Port != 0)
}

// checked reports whether anything checks svc's backends.
func checked(svc *config.Service) bool {
	return svc.Health.Type != "" && svc.Health.Type != "none" || datapathWanted(svc)
}

// datapathTargets lists the datapath probes cfg asks for: every backend of
// a tcp tunnel or l3dsr service, except disabled ones. The probe goes to
// VIP:port (the service's port, or health.port for a service on every
// port); a tunnel probe's outer source is the tunnel source of the
// backend's family, and its inner source the balancer's tunnel source of
// the VIP's family when the families differ (4in6, 6in4), otherwise the
// address the kernel picks towards the backend.
func datapathTargets(cfg *config.File) []health.Target {
	var ts []health.Target
	src4, _ := netip.ParseAddr(cfg.LB.TunnelSource)
	src6, _ := netip.ParseAddr(cfg.LB.TunnelSource6)
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		if !datapathWanted(svc) {
			continue
		}
		vip, err := netip.ParseAddr(svc.VIP)
		if err != nil {
			continue
		}
		vip = vip.Unmap()
		port := svc.Port
		if port == 0 {
			port = svc.Health.Port
		}
		h := svc.Health
		spec := health.Spec{Type: health.TypeDatapath, Interval: h.Interval.D(), Timeout: h.Timeout.D(), Rise: h.Rise,
			Fall: h.Fall, FlapLimit: h.Dampening.Flaps, FlapWindow: h.Dampening.Window.D(), Hold: h.Dampening.Hold.D()}
		spec.Datapath = health.Datapath{Mode: svc.Mode, VIP: vip, DSCP: uint8(svc.DSCP)}
		for j := range svc.Backends {
			b := &svc.Backends[j]
			if b.State == "disabled" {
				continue
			}
			a, err := netip.ParseAddr(b.Address)
			if err != nil {
				continue
			}
			a = a.Unmap()
			sp := spec
			if svc.Mode == "tunnel" {
				sp.Datapath.Outer = src4
				if a.Is6() {
					sp.Datapath.Outer = src6
				}
				if a.Is4() != vip.Is4() {
					sp.Datapath.Source = src4
					if vip.Is6() {
						sp.Datapath.Source = src6
					}
				}
			}
			ts = append(ts, health.Target{Key: datapathKey(svc.Name, b), Addr: netip.AddrPortFrom(a, uint16(port)), Spec: sp})
		}
	}
	return ts
}

// backendDown reports whether b is down by its ordinary check or by its
// datapath probe. Callers hold s.mu.
func (s *Server) backendDown(svc *config.Service, b *config.Backend) bool {
	if st, ok := s.health.Status(targetKey(svc.Name, b)); ok && st.State == health.Down {
		return true
	}
	st, ok := s.health.Status(datapathKey(svc.Name, b))
	return ok && st.State == health.Down
}

// DatapathView is a backend's datapath probe as the API shows it, in its
// health object next to the ordinary check.
type DatapathView struct {
	State      string    `json:"state"` // up | down | unknown
	Since      time.Time `json:"since,omitzero"`
	LastCheck  time.Time `json:"last_check,omitzero"`
	LastResult string    `json:"last_result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	HeldUntil  time.Time `json:"held_until,omitzero"`
}

// datapathView adds b's datapath probe to hv, and makes hv.State the
// backend's verdict: down when either check is down, up when every check
// that ran says up, unknown otherwise.
func (s *Server) datapathView(svc *config.Service, b *config.Backend, hv *HealthView) {
	st, ok := s.health.Status(datapathKey(svc.Name, b))
	if !ok {
		return
	}
	hv.Datapath = &DatapathView{State: st.State.String(), Since: st.Since, LastCheck: st.LastCheck,
		LastResult: st.LastResult, LastError: st.LastError, HeldUntil: st.HeldUntil}
	ordinary := svc.Health.Type != "" && svc.Health.Type != "none"
	switch {
	case !ordinary:
		hv.State = st.State.String()
	case st.State == health.Down:
		hv.State = "down"
	case st.State == health.Unknown && hv.State == "up":
		hv.State = "unknown"
	}
	hv.Checked = true
}
