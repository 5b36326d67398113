package dataplane

import "github.com/xlb/xlb/encap"

// backendMSS compiles a tunnel service's TunnelMSS into the clamp for one
// backend: auto is what fits the backend's egress MTU once the outer header
// of the backend's family is added to a packet of the VIP's family. An
// egress without a known MTU (0) gets no auto clamp.
func backendMSS(ss *ServiceSpec, be *Backend) uint16 {
	if ss.Mode != ModeTunnel || ss.Proto != 6 || ss.TunnelMSS == 0 {
		return 0
	}
	if ss.TunnelMSS != TunnelMSSAuto {
		return ss.TunnelMSS
	}
	if be.Egress.MTU <= 0 {
		return 0
	}
	return encap.TunnelMSS(be.Egress.MTU, be.Addr.V6, !ss.VIP.Unmap().Is4())
}

func protoName(p uint8) string {
	if p == 6 {
		return "tcp"
	}
	return "udp"
}
