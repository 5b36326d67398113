// Command goldengen writes the golden rewrite fixtures in testdata/golden:
// for every case an input frame and the expected output frame (pcap files)
// plus cases.json (parameters, expected verdict, description) and README.md.
//
// Both frames are built with gopacket from a description of their headers;
// the expected output is written down as the headers it must have, not
// produced by running xlb's rewrite code, so the golden test is an
// independent check. Run it with `make golden` after changing a case.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Case is one fixture; its JSON form is what encap's golden test reads.
type Case struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Mode        string `json:"mode"` // dsr tunnel l3dsr nat nat-reply fullnat fullnat-reply
	Verdict     string `json:"verdict"`
	EgressDst   string `json:"egress_dst"`
	EgressSrc   string `json:"egress_src"`
	MTU         int    `json:"mtu,omitempty"`
	Headroom    int    `json:"headroom"`
	Backend     string `json:"backend,omitempty"`
	BackendPort uint16 `json:"backend_port,omitempty"`
	TunnelSrc   string `json:"tunnel_src,omitempty"`
	FlowHash    uint32 `json:"flow_hash,omitempty"`
	DSCP        uint8  `json:"dscp,omitempty"`
	SNAT        string `json:"snat,omitempty"`
	SNATPort    uint16 `json:"snat_port,omitempty"`
	VIP         string `json:"vip,omitempty"`
	VIPPort     uint16 `json:"vip_port,omitempty"`
	Client      string `json:"client,omitempty"`
	ClientPort  uint16 `json:"client_port,omitempty"`
	In          string `json:"in"`
	Out         string `json:"out"`

	in, out []byte
}

// pkt describes one IP packet in an Ethernet frame.
type pkt struct {
	dstMAC, srcMAC string
	vlan           uint16 // 0 = untagged
	src, dst       string
	tos            uint8
	ttl            uint8
	id             uint16
	df             bool
	fragOff        uint16 // IPv4 fragment offset in 8-byte units
	mf             bool
	ipOpts         []layers.IPv4Option
	proto          string // tcp udp icmp
	sport, dport   uint16
	flags          string // S A F R P
	payload        []byte
	zeroUDPSum     bool // IPv4 UDP sent without checksum
	flowLabel      uint32
}

const (
	clientMAC  = "02:00:00:00:00:01"
	lbMAC      = "02:00:00:00:00:aa"
	routerMAC  = "02:00:00:00:00:fe"
	backendMAC = "02:00:00:00:0b:01"
)

var opts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		log.Fatal(err)
	}
	return m
}

func ip(s string) net.IP {
	a := net.ParseIP(s)
	if a == nil {
		log.Fatalf("bad ip %q", s)
	}
	if v4 := a.To4(); v4 != nil {
		return v4
	}
	return a
}

func serialize(ls ...gopacket.SerializableLayer) []byte {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		log.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ipLayers returns the IP, transport and payload layers of p.
func (p pkt) ipLayers() []gopacket.SerializableLayer {
	var netl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	var proto layers.IPProtocol
	v6 := strings.Contains(p.dst, ":")
	switch p.proto {
	case "tcp":
		proto = layers.IPProtocolTCP
	case "udp":
		proto = layers.IPProtocolUDP
	case "icmp", "icmp-reply":
		proto = layers.IPProtocolICMPv4
		if v6 {
			proto = layers.IPProtocolICMPv6
		}
	}
	ttl := p.ttl
	if ttl == 0 {
		ttl = 61
	}
	if v6 {
		l := &layers.IPv6{Version: 6, TrafficClass: p.tos, FlowLabel: p.flowLabel, NextHeader: proto, HopLimit: ttl, SrcIP: ip(p.src), DstIP: ip(p.dst)}
		netl, ipl = l, l
	} else {
		l := &layers.IPv4{Version: 4, TOS: p.tos, Id: p.id, TTL: ttl, Protocol: proto, SrcIP: ip(p.src), DstIP: ip(p.dst), Options: p.ipOpts, FragOffset: p.fragOff}
		if p.df {
			l.Flags |= layers.IPv4DontFragment
		}
		if p.mf {
			l.Flags |= layers.IPv4MoreFragments
		}
		netl, ipl = l, l
	}
	out := []gopacket.SerializableLayer{ipl}
	if p.fragOff != 0 {
		return append(out, gopacket.Payload(p.payload))
	}
	switch p.proto {
	case "tcp":
		t := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Seq: 0x01020304, Window: 64240,
			SYN: strings.Contains(p.flags, "S"), ACK: strings.Contains(p.flags, "A"), FIN: strings.Contains(p.flags, "F"),
			RST: strings.Contains(p.flags, "R"), PSH: strings.Contains(p.flags, "P")}
		if t.ACK {
			t.Ack = 0x0a0b0c0d
		}
		if t.SYN {
			t.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}}}
		}
		_ = t.SetNetworkLayerForChecksum(netl)
		out = append(out, t)
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		_ = u.SetNetworkLayerForChecksum(netl)
		out = append(out, u)
	case "icmp", "icmp-reply":
		t4, t6 := uint8(layers.ICMPv4TypeEchoRequest), uint8(layers.ICMPv6TypeEchoRequest)
		if p.proto == "icmp-reply" {
			t4, t6 = layers.ICMPv4TypeEchoReply, layers.ICMPv6TypeEchoReply
		}
		if v6 {
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(t6, 0)}
			_ = ic.SetNetworkLayerForChecksum(netl)
			out = append(out, ic, &layers.ICMPv6Echo{Identifier: p.sport, SeqNumber: 1})
		} else {
			out = append(out, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(t4, 0), Id: p.sport, Seq: 1})
		}
	}
	return append(out, gopacket.Payload(p.payload))
}

// ipBytes serializes the IP packet of p (no Ethernet header).
func (p pkt) ipBytes() []byte {
	b := serialize(p.ipLayers()...)
	if p.zeroUDPSum {
		hl := int(b[0]&0x0f) * 4
		b[hl+6], b[hl+7] = 0, 0
	}
	return b
}

// frame wraps an IP packet (given as bytes) in Ethernet (+ VLAN).
func frame(dstMAC, srcMAC string, vlan uint16, v6 bool, ipPkt []byte) []byte {
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
	}
	eth := &layers.Ethernet{DstMAC: mac(dstMAC), SrcMAC: mac(srcMAC), EthernetType: et}
	if vlan == 0 {
		return serialize(eth, gopacket.Payload(ipPkt))
	}
	eth.EthernetType = layers.EthernetTypeDot1Q
	return serialize(eth, &layers.Dot1Q{VLANIdentifier: vlan, Type: et}, gopacket.Payload(ipPkt))
}

func (p pkt) frame() []byte {
	return frame(p.dstMAC, p.srcMAC, p.vlan, strings.Contains(p.dst, ":"), p.ipBytes())
}

// tunnel builds the expected encapsulated frame: outer header around inner.
func tunnel(dstMAC, srcMAC string, vlan uint16, outerSrc, outerDst string, tos uint8, id uint16, df bool, flowLabel uint32, inner []byte) []byte {
	innerV6 := inner[0]>>4 == 6
	proto := layers.IPProtocolIPv4
	if innerV6 {
		proto = layers.IPProtocolIPv6
	}
	var outer gopacket.SerializableLayer
	outerV6 := strings.Contains(outerDst, ":")
	if outerV6 {
		outer = &layers.IPv6{Version: 6, TrafficClass: tos, FlowLabel: flowLabel, NextHeader: proto, HopLimit: 64, SrcIP: ip(outerSrc), DstIP: ip(outerDst)}
	} else {
		l := &layers.IPv4{Version: 4, TOS: tos, Id: id, TTL: 64, Protocol: proto, SrcIP: ip(outerSrc), DstIP: ip(outerDst)}
		if df {
			l.Flags = layers.IPv4DontFragment
		}
		outer = l
	}
	return frame(dstMAC, srcMAC, vlan, outerV6, serialize(outer, gopacket.Payload(inner)))
}

// icmpErr4 builds an IPv4 ICMP "fragmentation needed" (MTU 1400) carrying quote.
func icmpErr4(src, dst string, quote []byte) []byte {
	l := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ip(src), DstIP: ip(dst)}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), Seq: 1400}
	// Seq is the low half of the rest-of-header word: the next-hop MTU.
	return serialize(l, ic, gopacket.Payload(quote))
}

// icmpErr6 builds an ICMPv6 "packet too big" (MTU 1280) carrying quote.
func icmpErr6(src, dst string, quote []byte) []byte {
	l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: ip(src), DstIP: ip(dst)}
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
	_ = ic.SetNetworkLayerForChecksum(l)
	return serialize(l, ic, gopacket.Payload(append([]byte{0, 0, 5, 0}, quote...)))
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

func cases() []Case {
	var cs []Case
	add := func(c Case, in, out []byte) {
		c.in, c.out = in, out
		if c.EgressDst == "" {
			c.EgressDst = backendMAC
		}
		if c.EgressSrc == "" {
			c.EgressSrc = lbMAC
		}
		if c.Headroom == 0 {
			c.Headroom = 256
		}
		cs = append(cs, c)
	}
	// Client → VIP packets.
	syn4 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "203.0.113.7", dst: "198.51.100.10", id: 0x1234, df: true, proto: "tcp", sport: 51000, dport: 80, flags: "S"}
	data4 := syn4
	data4.flags, data4.payload = "PA", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	udp6 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "2001:db8:c::7", dst: "2001:db8:100::10", proto: "udp", sport: 40000, dport: 7777, payload: payload(40), flowLabel: 0x12345}
	tcp6 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "2001:db8:c::7", dst: "2001:db8:100::10", proto: "tcp", sport: 51000, dport: 443, flags: "A", payload: payload(100), tos: 0x2a}
	udp4 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "203.0.113.9", dst: "198.51.100.10", id: 7, proto: "udp", sport: 5353, dport: 7777, payload: payload(33)}

	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	out := func(p pkt, f func(*pkt)) []byte { q := with(p, f); return q.frame() }
	toBackend := func(q *pkt) { q.dstMAC, q.srcMAC = backendMAC, lbMAC }

	// dsr
	add(Case{Name: "dsr-tcp4-syn", Mode: "dsr", Verdict: "forward", Description: "IPv4 TCP SYN to VIP:80. DSR rewrites only the Ethernet addresses: dst := backend MAC, src := the balancer's egress MAC; the IP packet, TTL and checksums are untouched."},
		syn4.frame(), out(syn4, toBackend))
	add(Case{Name: "dsr-udp6", Mode: "dsr", Verdict: "forward", Description: "IPv6 UDP to [VIP]:7777: only MACs change."}, udp6.frame(), out(udp6, toBackend))
	vl := with(data4, func(q *pkt) { q.vlan = 100 })
	add(Case{Name: "dsr-vlan-tcp4", Mode: "dsr", Verdict: "forward", Description: "802.1Q-tagged (VLAN 100) IPv4 TCP data: MACs change, the tag is kept as it was."}, vl.frame(), out(vl, toBackend))
	opt := with(data4, func(q *pkt) {
		q.ipOpts = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}} // router alert
	})
	add(Case{Name: "dsr-ipv4-options", Mode: "dsr", Verdict: "forward", Description: "IPv4 with a Router Alert option (IHL 6) carrying TCP: MACs change, options kept."}, opt.frame(), out(opt, toBackend))
	add(Case{Name: "dsr-too-big", Mode: "dsr", Verdict: "too_big", MTU: 1280, Description: "A 1500-byte IPv4 packet towards an egress with MTU 1280: reported as too big, frame left unchanged."},
		with(data4, func(q *pkt) { q.payload = payload(1500 - 20 - 20) }).frame(), with(data4, func(q *pkt) { q.payload = payload(1500 - 20 - 20) }).frame())

	// tunnel
	tin := with(data4, func(q *pkt) { q.tos = 0x2a }) // DSCP 10, ECN 2
	add(Case{Name: "tunnel-4in4-tcp", Mode: "tunnel", Verdict: "forward", Backend: "10.1.0.11", TunnelSrc: "10.1.0.1", MTU: 1500,
		Description: "IPv4 TCP with DSCP 10/ECN 2 and DF, IP-in-IP to backend 10.1.0.11 from tunnel source 10.1.0.1: outer IPv4 proto 4, TTL 64, TOS 0x2a copied, DF copied, ID copied from inner, inner packet byte-identical."},
		tin.frame(), tunnel(backendMAC, lbMAC, 0, "10.1.0.1", "10.1.0.11", 0x2a, 0x1234, true, 0, tin.ipBytes()))
	nodf := with(udp4, func(q *pkt) { q.df = false; q.id = 0xbeef })
	add(Case{Name: "tunnel-4in4-udp-nodf", Mode: "tunnel", Verdict: "forward", Backend: "10.1.0.12", TunnelSrc: "10.1.0.1", MTU: 1500,
		Description: "IPv4 UDP without DF: the outer header has DF clear and the inner ID 0xbeef."},
		nodf.frame(), tunnel(backendMAC, lbMAC, 0, "10.1.0.1", "10.1.0.12", 0, 0xbeef, false, 0, nodf.ipBytes()))
	add(Case{Name: "tunnel-6in6-udp", Mode: "tunnel", Verdict: "forward", Backend: "2001:db8:1::11", TunnelSrc: "2001:db8:1::1", FlowHash: 0xabcde, MTU: 1500,
		Description: "IPv6 UDP in IPv6 (next header 41) to backend 2001:db8:1::11: hop limit 64, traffic class copied, flow label = the flow hash 0xabcde for ECMP entropy."},
		udp6.frame(), tunnel(backendMAC, lbMAC, 0, "2001:db8:1::1", "2001:db8:1::11", 0, 0, false, 0xabcde, udp6.ipBytes()))
	add(Case{Name: "tunnel-4in6-tcp", Mode: "tunnel", Verdict: "forward", Backend: "2001:db8:1::12", TunnelSrc: "2001:db8:1::1", FlowHash: 0x1, MTU: 1500,
		Description: "IPv4 TCP in IPv6 (next header 4): EtherType becomes 0x86dd, traffic class = inner TOS 0x2a."},
		tin.frame(), tunnel(backendMAC, lbMAC, 0, "2001:db8:1::1", "2001:db8:1::12", 0x2a, 0, false, 0x1, tin.ipBytes()))
	add(Case{Name: "tunnel-6in4-tcp", Mode: "tunnel", Verdict: "forward", Backend: "10.1.0.13", TunnelSrc: "10.1.0.1", MTU: 1500,
		Description: "IPv6 TCP in IPv4 (protocol 41): outer DF set (IPv6 is never fragmented by routers), TOS = traffic class 0x2a, ID 0."},
		tcp6.frame(), tunnel(backendMAC, lbMAC, 0, "10.1.0.1", "10.1.0.13", 0x2a, 0, true, 0, tcp6.ipBytes()))
	add(Case{Name: "tunnel-4in4-vlan", Mode: "tunnel", Verdict: "forward", Backend: "10.1.0.11", TunnelSrc: "10.1.0.1", MTU: 1500,
		Description: "VLAN 100 IPv4 TCP: the tag moves forward with the Ethernet header and the outer IPv4 header follows it."},
		vl.frame(), tunnel(backendMAC, lbMAC, 100, "10.1.0.1", "10.1.0.11", 0, 0x1234, true, 0, vl.ipBytes()))
	big := with(data4, func(q *pkt) { q.payload = payload(1500 - 20 - 20) })
	add(Case{Name: "tunnel-too-big", Mode: "tunnel", Verdict: "too_big", Backend: "10.1.0.11", TunnelSrc: "10.1.0.1", MTU: 1500,
		Description: "A full 1500-byte IPv4 packet cannot take a 20-byte outer header on a 1500 MTU link: too_big, frame unchanged (the dataplane answers with ICMP fragmentation-needed)."},
		big.frame(), big.frame())
	add(Case{Name: "tunnel-no-headroom", Mode: "tunnel", Verdict: "no_headroom", Backend: "10.1.0.11", TunnelSrc: "10.1.0.1", MTU: 1500, Headroom: 8,
		Description: "Only 8 bytes of headroom in front of the frame: no_headroom, frame unchanged."},
		syn4.frame(), syn4.frame())

	// l3dsr
	l3in := with(data4, func(q *pkt) { q.tos = 0x03 }) // ECN CE
	add(Case{Name: "l3dsr-tcp4", Mode: "l3dsr", Verdict: "forward", Backend: "10.2.0.11", DSCP: 10,
		Description: "IPv4 TCP (ECN CE): dst 198.51.100.10 → 10.2.0.11, DSCP := 10 keeping ECN (TOS 0x2b), IPv4 and TCP checksums fixed incrementally."},
		l3in.frame(), out(l3in, func(q *pkt) { toBackend(q); q.dst = "10.2.0.11"; q.tos = 10<<2 | 3 }))
	add(Case{Name: "l3dsr-udp6", Mode: "l3dsr", Verdict: "forward", Backend: "2001:db8:2::11", DSCP: 46,
		Description: "IPv6 UDP: dst → 2001:db8:2::11, traffic class DSCP 46 (EF), flow label kept, UDP checksum fixed for the pseudo-header."},
		udp6.frame(), out(udp6, func(q *pkt) { toBackend(q); q.dst = "2001:db8:2::11"; q.tos = 46 << 2 }))
	add(Case{Name: "l3dsr-ipv4-options", Mode: "l3dsr", Verdict: "forward", Backend: "10.2.0.12", DSCP: 20,
		Description: "IPv4 with options: the header checksum over the longer header stays valid after dst and TOS change."},
		opt.frame(), out(opt, func(q *pkt) { toBackend(q); q.dst = "10.2.0.12"; q.tos = 20 << 2 }))
	add(Case{Name: "l3dsr-family-mismatch", Mode: "l3dsr", Verdict: "unsupported", Backend: "10.2.0.11", DSCP: 10,
		Description: "An IPv6 packet cannot be L3DSR-rewritten to an IPv4 backend: unsupported, frame unchanged."},
		udp6.frame(), udp6.frame())

	// nat
	add(Case{Name: "nat-tcp4-port", Mode: "nat", Verdict: "forward", Backend: "10.3.0.11", BackendPort: 8080,
		Description: "Half-NAT IPv4 TCP SYN VIP:80 → 10.3.0.11:8080: dst address and port rewritten, client source kept, checksums fixed."},
		syn4.frame(), out(syn4, func(q *pkt) { toBackend(q); q.dst = "10.3.0.11"; q.dport = 8080 }))
	add(Case{Name: "nat-udp4-zero-checksum", Mode: "nat", Verdict: "forward", Backend: "10.3.0.12", BackendPort: 7778,
		Description: "IPv4 UDP sent without a checksum (0): after DNAT the UDP checksum stays 0 (RFC 768), the IPv4 header checksum is fixed."},
		with(udp4, func(q *pkt) { q.zeroUDPSum = true }).frame(), out(udp4, func(q *pkt) { toBackend(q); q.zeroUDPSum = true; q.dst = "10.3.0.12"; q.dport = 7778 }))
	add(Case{Name: "nat-tcp6", Mode: "nat", Verdict: "forward", Backend: "2001:db8:3::11", BackendPort: 8443,
		Description: "Half-NAT IPv6 TCP [VIP]:443 → [2001:db8:3::11]:8443."},
		tcp6.frame(), out(tcp6, func(q *pkt) { toBackend(q); q.dst = "2001:db8:3::11"; q.dport = 8443 }))
	add(Case{Name: "nat-vlan-udp4", Mode: "nat", Verdict: "forward", Backend: "10.3.0.13", BackendPort: 7777,
		Description: "VLAN 100 IPv4 UDP DNAT keeping the port 7777: the tag is kept, only the address changes."},
		with(udp4, func(q *pkt) { q.vlan = 100 }).frame(), out(udp4, func(q *pkt) { toBackend(q); q.vlan = 100; q.dst = "10.3.0.13" }))
	frag := with(udp4, func(q *pkt) { q.fragOff = 185; q.payload = payload(64) })
	add(Case{Name: "nat-fragment-port-translation", Mode: "nat", Verdict: "unsupported", Backend: "10.3.0.11", BackendPort: 7778,
		Description: "A non-first IPv4 fragment carries no UDP header, so its port cannot be translated: unsupported, unchanged."},
		frag.frame(), frag.frame())
	rep4 := pkt{dstMAC: lbMAC, srcMAC: backendMAC, src: "10.3.0.11", dst: "203.0.113.7", id: 99, df: true, proto: "tcp", sport: 8080, dport: 51000, flags: "SA"}
	add(Case{Name: "nat-reply-tcp4", Mode: "nat-reply", Verdict: "forward", VIP: "198.51.100.10", VIPPort: 80, EgressDst: routerMAC,
		Description: "Backend's SYN-ACK 10.3.0.11:8080 → client: source becomes VIP:80, sent to the router's MAC."},
		rep4.frame(), out(rep4, func(q *pkt) { q.dstMAC, q.srcMAC = routerMAC, lbMAC; q.src = "198.51.100.10"; q.sport = 80 }))
	rep6 := pkt{dstMAC: lbMAC, srcMAC: backendMAC, src: "2001:db8:3::11", dst: "2001:db8:c::7", proto: "udp", sport: 7778, dport: 40000, payload: payload(70)}
	add(Case{Name: "nat-reply-udp6", Mode: "nat-reply", Verdict: "forward", VIP: "2001:db8:100::10", VIPPort: 7777, EgressDst: routerMAC,
		Description: "Backend's IPv6 UDP reply: source becomes [VIP]:7777."},
		rep6.frame(), out(rep6, func(q *pkt) { q.dstMAC, q.srcMAC = routerMAC, lbMAC; q.src = "2001:db8:100::10"; q.sport = 7777 }))

	// fullnat
	add(Case{Name: "fullnat-tcp4", Mode: "fullnat", Verdict: "forward", Backend: "10.4.0.11", BackendPort: 8080, SNAT: "10.4.0.1", SNATPort: 20001,
		Description: "Full NAT IPv4 TCP data: dst := 10.4.0.11:8080, src := SNAT 10.4.0.1:20001, checksums fixed for four changed fields."},
		data4.frame(), out(data4, func(q *pkt) { toBackend(q); q.dst, q.dport, q.src, q.sport = "10.4.0.11", 8080, "10.4.0.1", 20001 }))
	add(Case{Name: "fullnat-udp6", Mode: "fullnat", Verdict: "forward", Backend: "2001:db8:4::11", BackendPort: 7778, SNAT: "2001:db8:4::1", SNATPort: 1024,
		Description: "Full NAT IPv6 UDP."},
		udp6.frame(), out(udp6, func(q *pkt) {
			toBackend(q)
			q.dst, q.dport, q.src, q.sport = "2001:db8:4::11", 7778, "2001:db8:4::1", 1024
		}))
	add(Case{Name: "fullnat-vlan-tcp4", Mode: "fullnat", Verdict: "forward", Backend: "10.4.0.12", BackendPort: 80, SNAT: "10.4.0.1", SNATPort: 65535,
		Description: "Full NAT on a VLAN 100 tagged SYN, SNAT port 65535 (top of range)."},
		with(syn4, func(q *pkt) { q.vlan = 100 }).frame(), out(syn4, func(q *pkt) { toBackend(q); q.vlan = 100; q.dst, q.src, q.sport = "10.4.0.12", "10.4.0.1", 65535 }))
	frep4 := pkt{dstMAC: lbMAC, srcMAC: backendMAC, src: "10.4.0.11", dst: "10.4.0.1", id: 5, df: true, proto: "tcp", sport: 8080, dport: 20001, flags: "PA", payload: payload(200)}
	add(Case{Name: "fullnat-reply-tcp4", Mode: "fullnat-reply", Verdict: "forward", VIP: "198.51.100.10", VIPPort: 80, Client: "203.0.113.7", ClientPort: 51000, EgressDst: routerMAC,
		Description: "Backend's reply to the SNAT address: src := VIP:80, dst := client 203.0.113.7:51000."},
		frep4.frame(), out(frep4, func(q *pkt) {
			q.dstMAC, q.srcMAC = routerMAC, lbMAC
			q.src, q.sport, q.dst, q.dport = "198.51.100.10", 80, "203.0.113.7", 51000
		}))
	frep6 := pkt{dstMAC: lbMAC, srcMAC: backendMAC, src: "2001:db8:4::11", dst: "2001:db8:4::1", proto: "tcp", sport: 8443, dport: 1024, flags: "A", payload: payload(10)}
	add(Case{Name: "fullnat-reply-tcp6", Mode: "fullnat-reply", Verdict: "forward", VIP: "2001:db8:100::10", VIPPort: 443, Client: "2001:db8:c::7", ClientPort: 51000, EgressDst: routerMAC,
		Description: "IPv6 full NAT reply: src := [VIP]:443, dst := [client]:51000."},
		frep6.frame(), out(frep6, func(q *pkt) {
			q.dstMAC, q.srcMAC = routerMAC, lbMAC
			q.src, q.sport, q.dst, q.dport = "2001:db8:100::10", 443, "2001:db8:c::7", 51000
		}))

	// ICMP: the balancer answers echo to a VIP; errors about a VIP flow go to
	// the backend, with the quoted packet reverse-translated for nat/fullnat.
	echo4 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "203.0.113.7", dst: "198.51.100.10", id: 3, ttl: 60, proto: "icmp", sport: 0x4242, payload: payload(32)}
	add(Case{Name: "icmp-echo-reply4", Mode: "echo-reply", Verdict: "forward",
		Description: "Ping to the VIP: answered in place: MACs and addresses swapped, type 8 → 0, TTL 64, IPv4 and ICMP checksums fixed."},
		echo4.frame(), out(echo4, func(q *pkt) {
			q.dstMAC, q.srcMAC, q.src, q.dst, q.ttl = routerMAC, lbMAC, q.dst, q.src, 64
			q.proto = "icmp-reply"
		}))
	echo6 := pkt{dstMAC: lbMAC, srcMAC: routerMAC, src: "2001:db8:c::7", dst: "2001:db8:100::10", ttl: 60, proto: "icmp", sport: 0x4243, payload: payload(16)}
	add(Case{Name: "icmp-echo-reply6", Mode: "echo-reply", Verdict: "forward",
		Description: "ICMPv6 echo request to the VIP: answered with type 129, hop limit 64, addresses swapped (the pseudo-header sum is unchanged)."},
		echo6.frame(), out(echo6, func(q *pkt) {
			q.dstMAC, q.srcMAC, q.src, q.dst, q.ttl = routerMAC, lbMAC, q.dst, q.src, 64
			q.proto = "icmp-reply"
		}))
	// A router says "fragmentation needed" about the VIP's reply to a client.
	quoted4 := pkt{src: "198.51.100.10", dst: "203.0.113.7", id: 9, df: true, proto: "tcp", sport: 80, dport: 51000, flags: "A", payload: payload(1400)}
	quotedAfter := with(quoted4, func(q *pkt) { q.src, q.sport = "10.3.0.11", 8080 })
	fn := icmpErr4("192.0.2.254", "198.51.100.10", quoted4.ipBytes()[:28])
	add(Case{Name: "icmp-error-nat4", Mode: "icmp-error", Verdict: "forward", Backend: "10.3.0.11", BackendPort: 8080,
		Description: "ICMP fragmentation-needed from router 192.0.2.254 about VIP:80 → client: forwarded to the nat backend with outer dst := 10.3.0.11 and the quoted source := 10.3.0.11:8080 (what the backend sent), quoted IPv4 checksum and ICMP checksum fixed."},
		frame(lbMAC, routerMAC, 0, false, fn), frame(backendMAC, lbMAC, 0, false, icmpErr4("192.0.2.254", "10.3.0.11", quotedAfter.ipBytes()[:28])))
	quoted6 := pkt{src: "2001:db8:100::10", dst: "2001:db8:c::7", proto: "udp", sport: 7777, dport: 40000, payload: payload(1300)}
	q6After := with(quoted6, func(q *pkt) { q.src, q.sport, q.dst, q.dport = "2001:db8:4::11", 7778, "2001:db8:4::1", 1024 })
	add(Case{Name: "icmp-error-fullnat6", Mode: "icmp-error", Verdict: "forward", Backend: "2001:db8:4::11", BackendPort: 7778, SNAT: "2001:db8:4::1", SNATPort: 1024,
		Description: "ICMPv6 packet-too-big (MTU 1280) about [VIP]:7777 → client, for a fullnat flow: outer src := SNAT, outer dst := backend; the quoted UDP packet becomes backend:7778 → SNAT:1024 with its UDP checksum fixed; ICMPv6 checksum fixed (pseudo-header too)."},
		frame(lbMAC, routerMAC, 0, true, icmpErr6("2001:db8:ffff::1", "2001:db8:100::10", quoted6.ipBytes()[:1232])),
		frame(backendMAC, lbMAC, 0, true, icmpErr6("2001:db8:4::1", "2001:db8:4::11", q6After.ipBytes()[:1232])))

	// A packet too big for the egress is answered with the ICMP error path
	// MTU discovery needs, from the VIP, quoting what the error may carry.
	big4 := with(data4, func(q *pkt) { q.payload = payload(1460) })
	add(Case{Name: "too-big-reply4", Mode: "too-big", Verdict: "forward", MTU: 1400, EgressSrc: lbMAC,
		Description: "1500-byte IPv4 TCP with DF to the VIP, egress MTU 1400 (say a tunnel): answered in place with ICMP fragmentation-needed (3/4, next-hop MTU 1400) from the VIP to the client, back to the router's MAC, quoting the first 548 bytes so the error is 576 bytes."},
		big4.frame(), frame(routerMAC, lbMAC, 0, false, icmpErr4("198.51.100.10", "203.0.113.7", big4.ipBytes()[:548])))
	big6 := with(tcp6, func(q *pkt) { q.payload = payload(1440) })
	add(Case{Name: "too-big-reply6", Mode: "too-big", Verdict: "forward", MTU: 1280, EgressSrc: lbMAC,
		Description: "1500-byte IPv6 TCP to the VIP, egress MTU 1280: answered with ICMPv6 packet-too-big (MTU 1280) from the VIP, quoting 1232 bytes so the error is 1280 bytes."},
		big6.frame(), frame(routerMAC, lbMAC, 0, true, icmpErr6("2001:db8:100::10", "2001:db8:c::7", big6.ipBytes()[:1232])))
	nodfBig := with(big4, func(q *pkt) { q.df = false })
	add(Case{Name: "too-big-no-df", Mode: "too-big", Verdict: "unsupported", MTU: 1400,
		Description: "The same packet without DF: no ICMP error (the sender would not act on it); unsupported, frame unchanged, the dataplane drops it as too_big."},
		nodfBig.frame(), nodfBig.frame())

	// malformed and not-IP inputs: the decoder refuses them before any rewrite.
	good := syn4.frame()
	add(Case{Name: "malformed-truncated-tcp", Mode: "dsr", Verdict: "decode:truncated",
		Description: "The SYN cut 10 bytes into its TCP header (IPv4 total length claims more): decode reports truncated; nothing is rewritten."},
		good[:14+20+10], good[:14+20+10])
	badihl := append([]byte(nil), good...)
	badihl[14] = 0x44 // IHL 4 (16 bytes) is below the minimum
	add(Case{Name: "malformed-ipv4-ihl", Mode: "nat", Verdict: "decode:bad_ipv4", Backend: "10.3.0.11", BackendPort: 80,
		Description: "IPv4 header with IHL 4 (< 5): bad_ipv4."}, badihl, badihl)
	g6 := udp6.frame()
	add(Case{Name: "malformed-ipv6-payload-length", Mode: "tunnel", Verdict: "decode:truncated", Backend: "2001:db8:1::11", TunnelSrc: "2001:db8:1::1",
		Description: "IPv6 UDP whose payload length claims 20 bytes more than the frame holds: truncated."}, g6[:len(g6)-20], g6[:len(g6)-20])
	badoff := append([]byte(nil), good...)
	badoff[14+20+12] = 0x20 // data offset 2 words
	add(Case{Name: "malformed-tcp-data-offset", Mode: "fullnat", Verdict: "decode:bad_l4", Backend: "10.4.0.11", BackendPort: 80, SNAT: "10.4.0.1", SNATPort: 2000,
		Description: "TCP data offset 8 bytes (< 20): bad_l4."}, badoff, badoff)
	arp := serialize(&layers.Ethernet{DstMAC: mac("ff:ff:ff:ff:ff:ff"), SrcMAC: mac(routerMAC), EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: mac(routerMAC), SourceProtAddress: ip("198.51.100.1"), DstHwAddress: make([]byte, 6), DstProtAddress: ip("198.51.100.10")})
	add(Case{Name: "arp-not-ip", Mode: "dsr", Verdict: "decode:not_ip",
		Description: "ARP who-has for the VIP: not IP, so the balancer leaves it to the kernel (pass)."}, arp, arp)
	add(Case{Name: "malformed-ethernet-runt", Mode: "dsr", Verdict: "decode:truncated",
		Description: "A 10-byte runt: shorter than an Ethernet header."}, good[:10], good[:10])
	return cs
}

func writePcap(path string, frame []byte) {
	f, err := os.Create(path)
	if err != nil {
		log.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		log.Fatal(err)
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(frame), Length: len(frame)}
	if err := w.WritePacket(ci, frame); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func main() {
	dir := flag.String("out", "testdata/golden", "output directory")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}
	cs := cases()
	var md strings.Builder
	md.WriteString("# Golden rewrite fixtures\n\nGenerated by `go run ./internal/tools/goldengen` (`make golden`); do not edit by hand.\n")
	md.WriteString("Each case is an input frame (`NN-name.in.pcap`), the expected output frame (`NN-name.out.pcap`; equal to the input when the verdict is not `forward`) and the expected verdict. Parameters are in `cases.json`. `decode:<reason>` means packet.Decode refuses the frame before any rewrite.\n\n")
	md.WriteString("| # | case | mode | verdict | what and why |\n|---|---|---|---|---|\n")
	for i := range cs {
		c := &cs[i]
		base := fmt.Sprintf("%02d-%s", i+1, c.Name)
		c.In, c.Out = base+".in.pcap", base+".out.pcap"
		writePcap(filepath.Join(*dir, c.In), c.in)
		writePcap(filepath.Join(*dir, c.Out), c.out)
		fmt.Fprintf(&md, "| %d | %s | %s | %s | %s |\n", i+1, c.Name, c.Mode, c.Verdict, c.Description)
	}
	js, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "cases.json"), append(js, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "README.md"), []byte(md.String()), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("wrote %d cases to %s\n", len(cs), *dir)
}
