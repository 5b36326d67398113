package config

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/xlb/xlb/dataplane"
)

// TunnelMSS is services[].tunnel_mss: "off" (the default, also written as
// ""), "auto" or a number of bytes, written as a string or a number. It
// clamps the MSS option of the TCP SYNs a tunnel service sends to its
// backends: "auto" to what fits the backend's egress MTU once the tunnel
// header is added (MTU − outer header − inner IP header − 20), a number to
// that number. See docs/pmtu.md for what it does and does not cover.
type TunnelMSS string

// Limits of a numeric tunnel_mss: the IPv4 default MSS (RFC 9293) and the
// largest MSS an IPv4 packet can carry.
const (
	MinTunnelMSS = 536
	MaxTunnelMSS = 65495
)

// UnmarshalJSON takes a string ("auto", "1340") or a number (1340).
func (m *TunnelMSS) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*m = TunnelMSS(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return &valueError{value: string(b), reason: fmt.Sprintf("%s is not auto, off or a number", b)}
	}
	*m = TunnelMSS(n.String())
	return nil
}

// parse returns the dataplane's value: 0 (off), dataplane.TunnelMSSAuto,
// or the number.
func (m TunnelMSS) parse() (uint16, error) {
	switch m {
	case "", "off":
		return 0, nil
	case "auto":
		return dataplane.TunnelMSSAuto, nil
	}
	n, err := strconv.Atoi(string(m))
	if err != nil || n < MinTunnelMSS || n > MaxTunnelMSS {
		return 0, fmt.Errorf("%q is not auto, off or a number %d..%d", string(m), MinTunnelMSS, MaxTunnelMSS)
	}
	return uint16(n), nil
}

// compileTunnelMSS checks services[i].tunnel_mss against the service's
// mode and protocol and sets it in ss.
func (s *Service) compileTunnelMSS(key string, ss *dataplane.ServiceSpec) error {
	v, err := s.TunnelMSS.parse()
	if err != nil {
		return fieldErr(key, string(s.TunnelMSS), "%v", err)
	}
	if v != 0 && s.Mode != "tunnel" {
		return fieldErr(key, string(s.TunnelMSS), "MSS clamping applies to mode tunnel only, and this service is %s (use off)", s.Mode)
	}
	if v != 0 && s.Protocol != "tcp" {
		return fieldErr(key, string(s.TunnelMSS), "MSS clamping applies to tcp services only (use off)")
	}
	ss.TunnelMSS = v
	return nil
}
