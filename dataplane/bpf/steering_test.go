package bpf

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"
)

// These tests run the program with BPF_PROG_TEST_RUN. The XSKMAP stays
// empty and the hold is not set, so bpf_redirect_map falls back to
// XDP_PASS and every run returns XDP_PASS; what the program decided is read
// from its counters instead: a frame it steers counts its Match* reason and
// NoSocket, a frame it leaves to the kernel counts one Pass* reason
// (TestSteeringHold sets the hold: steered frames are then dropped). A live redirect into a real socket
// is covered by TestSteeringVeth.

// loadSteering loads the program or skips when BPF is unavailable (not
// root, or a kernel without BPF). Other errors fail the test.
func loadSteering(t testing.TB) *Steering {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root")
	}
	s, err := LoadSteering(SteeringOptions{MaxQueues: 4, MaxEntries: 64})
	if errors.Is(err, ErrNotSupported) || errors.Is(err, unix.EPERM) {
		t.Skipf("skipping: kernel cannot load the steering program: %v", err)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("%+v", ve)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var (
	vip4     = netip.MustParseAddr("198.51.100.10")  // tcp/80, udp/53, icmp
	vip4Any  = netip.MustParseAddr("198.51.100.11")  // tcp, every port
	vip6     = netip.MustParseAddr("2001:db8::10")   // tcp/443, icmpv6
	vip6Any  = netip.MustParseAddr("2001:db8::11")   // tcp, every port
	snat4    = netip.MustParseAddr("192.0.2.1")      // fullnat SNAT address, also local
	snatB4   = netip.MustParseAddr("192.0.2.2")      // SNAT address only
	snatVIP4 = netip.MustParseAddr("192.0.2.3")      // SNAT address and VIP tcp/80, udp every port
	snat6    = netip.MustParseAddr("2001:db8::1")    // SNAT address, also local
	backend4 = netip.MustParseAddr("10.0.0.11")      // half-NAT backend 10.0.0.11:8080/tcp
	backend6 = netip.MustParseAddr("2001:db8:b::11") // half-NAT backend, every udp port
	local4   = netip.MustParseAddr("192.0.2.50")     // the balancer's own address
	local6   = netip.MustParseAddr("2001:db8::50")
	client4  = netip.MustParseAddr("203.0.113.7")
	client6  = netip.MustParseAddr("2001:db8:c::7")
	other4   = netip.MustParseAddr("198.51.100.99")
)

func addRules(t testing.TB, s *Steering) {
	t.Helper()
	for _, r := range []Rule{
		{vip4, 80, ProtoTCP}, {vip4, 53, ProtoUDP}, {vip4, 0, ProtoICMP},
		{vip4Any, 0, ProtoTCP},
		{vip6, 443, ProtoTCP}, {vip6, 0, ProtoICMPv6},
		{vip6Any, 0, ProtoTCP},
		{snatVIP4, 80, ProtoTCP}, {snatVIP4, 0, ProtoUDP},
		// Given as IPv4-mapped IPv6, stored and matched as IPv4.
		{netip.MustParseAddr("::ffff:198.51.100.12"), 80, ProtoTCP},
	} {
		if err := s.AddVIP(r.Addr, r.Port, r.Proto); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddBackendSource(backend4, 8080, ProtoTCP); err != nil {
		t.Fatal(err)
	}
	if err := s.AddBackendSource(backend6, 0, ProtoUDP); err != nil {
		t.Fatal(err)
	}
	// snat4 and snat6 are the balancer's own addresses too (the
	// one-address appliance): inside the SNAT port range the SNAT rule
	// still wins, outside it the kernel gets the frame.
	for _, a := range []netip.Addr{local4, local6, snat4, snat6} {
		if err := s.AddLocal(a); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range []netip.Addr{snat4, snatB4, snatVIP4, snat6} {
		if err := s.AddSNAT(a, snatRange); err != nil {
			t.Fatal(err)
		}
	}
}

// snatRange is the SNAT port range of the test rules: below the kernel's
// default ephemeral ports (32768-60999).
var snatRange = [2]uint16{1024, 32767}

func udp4Frame(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return l4(t, layers.IPProtocolUDP, src, sport, dst, dport, false) }
}

// laterFragment4 is a non-first IPv4 fragment (offset 1480) of proto.
func laterFragment4(src, dst netip.Addr, proto layers.IPProtocol) func(testing.TB) []byte {
	return func(t testing.TB) []byte {
		ip := ip4L(src, dst, proto)
		ip.FragOffset = 185
		return frame(t, ethL(layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 24)))
	}
}

// snatCases are the SNAT address cases; see addRules.
func snatCases() []steerCase {
	tcp := layers.IPProtocolTCP
	udp := layers.IPProtocolUDP
	tcp6 := func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return l4(t, tcp, src, sport, dst, dport, false) }
	}
	udp6 := func(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return l4(t, udp, src, sport, dst, dport, false) }
	}
	return []steerCase{
		// TCP to an SNAT address that is also local.
		{"snat: fullnat tcp reply, port in range", tcp4(backend4, 80, snat4, 30000), "match_snat"},
		{"snat: tcp to low end of range", tcp4(backend4, 80, snat4, 1024), "match_snat"},
		{"snat: tcp to high end of range", tcp4(backend4, 80, snat4, 32767), "match_snat"},
		{"snat: tcp just below range", tcp4(backend4, 80, snat4, 1023), "pass_snat_other_port"},
		{"snat: tcp just above range", tcp4(backend4, 80, snat4, 32768), "pass_snat_other_port"},
		{"snat: ssh to snat address (port below range)", tcp4(client4, 50000, snat4, 22), "pass_snat_other_port"},
		{"snat: reply to kernel's own connection (ephemeral port above range)", tcp4(other4, 443, snat4, 45000), "pass_snat_other_port"},
		{"snat: health-check reply from half-NAT backend source (port above range)", tcp4(backend4, 8080, snat4, 45000), "pass_snat_other_port"},
		{"snat: tcp port 0", tcp4(backend4, 80, snat4, 0), "pass_snat_other_port"},
		{"snat: vlan tcp in range", func(t testing.TB) []byte { return l4(t, tcp, backend4, 80, snat4, 2000, true) }, "match_snat"},
		{"snat: first fragment (MF, offset 0) in range", func(t testing.TB) []byte {
			ip := ip4L(backend4, snat4, tcp)
			ip.Flags = layers.IPv4MoreFragments
			tc := &layers.TCP{SrcPort: 80, DstPort: 2000}
			tc.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeIPv4), ip, tc, gopacket.Payload(make([]byte, 32)))
		}, "match_snat"},
		// UDP.
		{"snat: udp in range", udp4Frame(backend4, 53, snat4, 20000), "match_snat"},
		{"snat: udp below range", udp4Frame(other4, 123, snat4, 123), "pass_snat_other_port"},
		{"snat: udp dns reply above range", udp4Frame(other4, 53, snat4, 50000), "pass_snat_other_port"},
		// An SNAT address that is not local.
		{"snat: not local, tcp in range", tcp4(backend4, 80, snatB4, 5000), "match_snat"},
		{"snat: not local, tcp above range", tcp4(backend4, 80, snatB4, 40000), "pass_snat_other_port"},
		{"snat: not local, udp below range", udp4Frame(backend4, 80, snatB4, 1000), "pass_snat_other_port"},
		// IPv6.
		{"snat: ipv6 tcp in range", tcp6(backend6, 80, snat6, 30000), "match_snat"},
		{"snat: ipv6 tcp below range", tcp6(client6, 50000, snat6, 22), "pass_snat_other_port"},
		{"snat: ipv6 tcp above range", tcp6(client6, 443, snat6, 50000), "pass_snat_other_port"},
		{"snat: ipv6 udp in range (from port-0 backend source)", udp6(backend6, 53, snat6, 1024), "match_snat"},
		{"snat: ipv6 udp above range (from port-0 backend source)", udp6(backend6, 53, snat6, 32768), "pass_snat_other_port"},
		// Non-first fragments carry no port.
		{"snat: ipv4 later tcp fragment", laterFragment4(backend4, snat4, tcp), "pass_snat_fragment"},
		{"snat: ipv4 later udp fragment, not local", laterFragment4(backend4, snatB4, udp), "pass_snat_fragment"},
		{"snat: ipv6 later udp fragment from port-0 backend", func(t testing.TB) []byte {
			ip := ip6L(backend6, snat6, layers.IPProtocolIPv6Fragment)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip,
				&layers.IPv6Fragment{NextHeader: udp, FragmentOffset: 100, Identification: 9}, gopacket.Payload(make([]byte, 16)))
		}, "pass_snat_fragment"},
		{"snat: ipv4 later icmp fragment (as before: local)", laterFragment4(other4, snat4, layers.IPProtocolICMPv4), "pass_local"},
		// ICMP and other protocols are unchanged.
		{"snat: icmp echo to local snat address", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, snat4, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})
		}, "pass_local"},
		{"snat: icmp frag-needed to non-local snat address", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(other4, snatB4, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded)},
				gopacket.Payload(make([]byte, 28)))
		}, "pass_no_match"},
		{"snat: icmpv6 echo to local snat address", func(t testing.TB) []byte { return icmp6Frame(t, client6, snat6, 128, false) }, "pass_local"},
		{"snat: icmpv6 neighbour solicitation", func(t testing.TB) []byte { return icmp6Frame(t, client6, snat6, 135, false) }, "pass_neighbor"},
		{"snat: gre", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, snat4, layers.IPProtocolGRE), gopacket.Payload(make([]byte, 24)))
		}, "pass_unsupported"},
		// Destination rules are looked up first.
		{"snat: vip rule on snat address, vip port outside range", tcp4(client4, 40000, snatVIP4, 80), "match_vip"},
		{"snat: vip rule on snat address, other port outside range", tcp4(client4, 40000, snatVIP4, 22), "pass_snat_other_port"},
		{"snat: vip rule on snat address, other port in range", tcp4(backend4, 80, snatVIP4, 2000), "match_snat"},
		{"snat: port-0 udp vip on snat address, port outside range", udp4Frame(client4, 40000, snatVIP4, 53), "match_any_port"},
		{"snat: port-0 udp vip on snat address, later fragment", laterFragment4(client4, snatVIP4, udp), "match_fragment"},
		{"snat: tcp vip on snat address, later fragment", laterFragment4(client4, snatVIP4, tcp), "pass_snat_fragment"},
	}
}

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// frame serializes layers with lengths and checksums filled in.
func frame(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func ethL(typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macB, DstMAC: macA, EthernetType: typ}
}

func ip4L(src, dst netip.Addr, proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

func ip6L(src, dst netip.Addr, next layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: next, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
}

// l4 builds a TCP or UDP datagram from src:sport to dst:dport over IPv4 or
// IPv6, optionally VLAN-tagged.
func l4(t testing.TB, proto layers.IPProtocol, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, vlan bool) []byte {
	t.Helper()
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	etype := layers.EthernetTypeIPv4
	if src.Is6() {
		etype = layers.EthernetTypeIPv6
	}
	if vlan {
		ls = append(ls, ethL(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 42, Type: etype})
	} else {
		ls = append(ls, ethL(etype))
	}
	if src.Is4() {
		ip := ip4L(src, dst, proto)
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := ip6L(src, dst, proto)
		nl = ip
		ls = append(ls, ip)
	}
	switch proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 1024}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp, gopacket.Payload("hello"))
	default:
		t.Fatalf("l4: protocol %v", proto)
	}
	return frame(t, ls...)
}

func tcp4(src netip.Addr, sport uint16, dst netip.Addr, dport uint16) func(testing.TB) []byte {
	return func(t testing.TB) []byte { return l4(t, layers.IPProtocolTCP, src, sport, dst, dport, false) }
}

func icmp6Frame(t testing.TB, src, dst netip.Addr, typ uint8, vlan bool) []byte {
	ip := ip6L(src, dst, layers.IPProtocolICMPv6)
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	body := make(gopacket.Payload, 20) // reserved/flags + target address
	if vlan {
		return frame(t, ethL(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv6}, ip, icmp, body)
	}
	return frame(t, ethL(layers.EthernetTypeIPv6), ip, icmp, body)
}

type steerCase struct {
	name  string
	frame func(testing.TB) []byte
	want  string // the counter (Counters.Map key) the frame must count
}

// steerCases covers every branch of the program; see addRules for the
// rules they run against.
func steerCases() []steerCase {
	tcp := layers.IPProtocolTCP
	udp := layers.IPProtocolUDP
	return []steerCase{
		{"tcp to vip:port", tcp4(client4, 40000, vip4, 80), "match_vip"},
		{"tcp to vip other port", tcp4(client4, 40000, vip4, 81), "pass_no_match"},
		{"tcp to other address", tcp4(client4, 40000, other4, 80), "pass_no_match"},
		{"tcp to port-0 vip, any port", tcp4(client4, 40000, vip4Any, 12345), "match_any_port"},
		{"tcp to port-0 vip, port 0", tcp4(client4, 40000, vip4Any, 0), "match_any_port"},
		{"udp to vip:port", func(t testing.TB) []byte { return l4(t, udp, client4, 5353, vip4, 53, false) }, "match_vip"},
		{"udp to tcp-only vip port", func(t testing.TB) []byte { return l4(t, udp, client4, 5353, vip4, 80, false) }, "pass_no_match"},
		{"udp to tcp port-0 vip", func(t testing.TB) []byte { return l4(t, udp, client4, 5353, vip4Any, 80, false) }, "pass_no_match"},
		{"ipv6 tcp to vip:port", func(t testing.TB) []byte { return l4(t, tcp, client6, 40000, vip6, 443, false) }, "match_vip"},
		{"ipv6 tcp to vip other port", func(t testing.TB) []byte { return l4(t, tcp, client6, 40000, vip6, 80, false) }, "pass_no_match"},
		{"ipv6 tcp to port-0 vip", func(t testing.TB) []byte { return l4(t, tcp, client6, 40000, vip6Any, 8443, false) }, "match_any_port"},
		{"vlan tcp to vip:port", func(t testing.TB) []byte { return l4(t, tcp, client4, 40000, vip4, 80, true) }, "match_vip"},
		{"vlan tcp to vip other port", func(t testing.TB) []byte { return l4(t, tcp, client4, 40000, vip4, 22, true) }, "pass_no_match"},
		{"vlan ipv6 tcp to vip:port", func(t testing.TB) []byte { return l4(t, tcp, client6, 40000, vip6, 443, true) }, "match_vip"},
		{"qinq outer tag", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4, tcp)
			tc := &layers.TCP{SrcPort: 1, DstPort: 80}
			tc.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeQinQ), &layers.Dot1Q{VLANIdentifier: 5, Type: layers.EthernetTypeIPv4}, ip, tc)
		}, "match_vip"},
		{"two vlan tags", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4, tcp)
			tc := &layers.TCP{SrcPort: 1, DstPort: 80}
			tc.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeDot1Q), &layers.Dot1Q{VLANIdentifier: 5, Type: layers.EthernetTypeDot1Q},
				&layers.Dot1Q{VLANIdentifier: 6, Type: layers.EthernetTypeIPv4}, ip, tc)
		}, "pass_not_ip"},
		{"arp", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeARP), &layers.ARP{
				AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: macB, SourceProtAddress: client4.AsSlice(),
				DstHwAddress: make([]byte, 6), DstProtAddress: vip4.AsSlice(),
			})
		}, "pass_not_ip"},
		{"lldp ethertype", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeLinkLayerDiscovery), gopacket.Payload(make([]byte, 46)))
		}, "pass_not_ip"},
		{"icmpv6 neighbour solicitation to vip (gopacket NS)", func(t testing.TB) []byte {
			ip := ip6L(client6, vip6, layers.IPProtocolICMPv6)
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
			icmp.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip, icmp, &layers.ICMPv6NeighborSolicitation{TargetAddress: vip6.AsSlice()})
		}, "pass_neighbor"},
		{"icmpv6 router solicitation (133) to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 133, false) }, "pass_neighbor"},
		{"icmpv6 router advertisement (134) to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 134, false) }, "pass_neighbor"},
		{"icmpv6 neighbour solicitation (135) to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 135, false) }, "pass_neighbor"},
		{"icmpv6 neighbour advertisement (136) to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 136, false) }, "pass_neighbor"},
		{"icmpv6 redirect (137) to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 137, false) }, "pass_neighbor"},
		{"vlan icmpv6 NS to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 135, true) }, "pass_neighbor"},
		{"icmpv6 echo request to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 128, false) }, "match_any_port"},
		{"icmpv6 type 138 to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 138, false) }, "match_any_port"},
		{"icmpv6 packet too big to vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6, 2, false) }, "match_any_port"},
		{"icmpv6 echo to port-0 tcp vip", func(t testing.TB) []byte { return icmp6Frame(t, client6, vip6Any, 128, false) }, "pass_no_match"},
		{"icmp echo to vip", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, vip4, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1})
		}, "match_any_port"},
		{"icmp frag-needed error to vip", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, vip4, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded)},
				gopacket.Payload(make([]byte, 28)))
		}, "match_any_port"},
		{"icmp echo to other address", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, other4, layers.IPProtocolICMPv4),
				&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0)})
		}, "pass_no_match"},
		{"reply from backend source", tcp4(backend4, 8080, client4, 40000), "match_backend"},
		{"from backend other port", tcp4(backend4, 22, client4, 40000), "pass_no_match"},
		{"udp from port-0 ipv6 backend", func(t testing.TB) []byte { return l4(t, udp, backend6, 9999, client6, 1234, false) }, "match_backend"},
		{"tcp from port-0 udp ipv6 backend", func(t testing.TB) []byte { return l4(t, tcp, backend6, 9999, client6, 1234, false) }, "pass_no_match"},
		{"health-check reply from backend to local address", tcp4(backend4, 8080, local4, 45000), "pass_local"},
		{"ssh to local address", tcp4(client4, 50000, local4, 22), "pass_local"},
		{"ipv6 udp from port-0 backend to local address", func(t testing.TB) []byte { return l4(t, udp, backend6, 53, local6, 40000, false) }, "pass_local"},
		{"ipv6 later fragment from port-0 backend to local address", func(t testing.TB) []byte {
			ip := ip6L(backend6, local6, layers.IPProtocolIPv6Fragment)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip,
				&layers.IPv6Fragment{NextHeader: udp, FragmentOffset: 100, Identification: 9}, gopacket.Payload(make([]byte, 16)))
		}, "pass_local"},
		{"ipv4 options", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4, tcp)
			ip.Options = []layers.IPv4Option{{OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 1}, {OptionType: 0}}
			tc := &layers.TCP{SrcPort: 1, DstPort: 80}
			tc.SetNetworkLayerForChecksum(ip)
			b := frame(t, ethL(layers.EthernetTypeIPv4), ip, tc)
			if b[14]&0x0f != 7 {
				t.Fatalf("IHL %d, want 7", b[14]&0x0f)
			}
			return b
		}, "match_vip"},
		{"ipv4 first fragment (MF, offset 0)", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4, tcp)
			ip.Flags = layers.IPv4MoreFragments
			tc := &layers.TCP{SrcPort: 1, DstPort: 80}
			tc.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeIPv4), ip, tc, gopacket.Payload(make([]byte, 32)))
		}, "match_vip"},
		{"ipv4 later fragment to port-0 vip", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4Any, tcp)
			ip.FragOffset = 185
			return frame(t, ethL(layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 3)))
		}, "match_fragment"},
		{"ipv4 later fragment to port-specific vip", func(t testing.TB) []byte {
			ip := ip4L(client4, vip4, tcp)
			ip.FragOffset = 185
			return frame(t, ethL(layers.EthernetTypeIPv4), ip, gopacket.Payload(make([]byte, 40)))
		}, "pass_no_match"},
		{"ipv6 later fragment from port-0 backend", func(t testing.TB) []byte {
			ip := ip6L(backend6, client6, layers.IPProtocolIPv6Fragment)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip,
				&layers.IPv6Fragment{NextHeader: udp, FragmentOffset: 100, Identification: 9}, gopacket.Payload(make([]byte, 16)))
		}, "match_fragment"},
		{"ipv6 later fragment to port-0 vip", func(t testing.TB) []byte {
			ip := ip6L(client6, vip6Any, layers.IPProtocolIPv6Fragment)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip,
				&layers.IPv6Fragment{NextHeader: tcp, FragmentOffset: 100, Identification: 9}, gopacket.Payload(make([]byte, 16)))
		}, "match_fragment"},
		{"ipv6 first fragment to vip:port", func(t testing.TB) []byte {
			ip := ip6L(client6, vip6, layers.IPProtocolIPv6Fragment)
			tc := &layers.TCP{SrcPort: 1, DstPort: 443}
			tc.SetNetworkLayerForChecksum(ip)
			return frame(t, ethL(layers.EthernetTypeIPv6), ip,
				&layers.IPv6Fragment{NextHeader: tcp, MoreFragments: true, Identification: 9}, tc, gopacket.Payload(make([]byte, 16)))
		}, "match_vip"},
		{"ipv6 hop-by-hop header", func(t testing.TB) []byte {
			b := l4(t, tcp, client6, 1, vip6, 443, false)
			b[14+6] = 0 // next header: hop-by-hop, not walked
			return b
		}, "pass_unsupported"},
		{"gre to vip", func(t testing.TB) []byte {
			return frame(t, ethL(layers.EthernetTypeIPv4), ip4L(client4, vip4, layers.IPProtocolGRE), gopacket.Payload(make([]byte, 24)))
		}, "pass_unsupported"},
		{"ipv4 version 5", func(t testing.TB) []byte {
			b := tcp4(client4, 1, vip4, 80)(t)
			b[14] = 0x55
			return b
		}, "pass_malformed"},
		{"ipv4 ihl 4", func(t testing.TB) []byte {
			b := tcp4(client4, 1, vip4, 80)(t)
			b[14] = 0x44
			return b
		}, "pass_malformed"},
		{"ipv4 total length below header", func(t testing.TB) []byte {
			b := tcp4(client4, 1, vip4, 80)(t)
			b[16], b[17] = 0, 19
			return b
		}, "pass_malformed"},
		{"ipv4 total length beyond frame", func(t testing.TB) []byte {
			b := tcp4(client4, 1, vip4, 80)(t)
			b[16], b[17] = 0, byte(len(b)-14+1)
			return b
		}, "pass_truncated"},
		{"ipv6 version 4", func(t testing.TB) []byte {
			b := l4(t, tcp, client6, 1, vip6, 443, false)
			b[14] = 0x40
			return b
		}, "pass_malformed"},
		{"ethernet padding after short udp", func(t testing.TB) []byte {
			return append(l4(t, udp, client4, 5353, vip4, 53, false), make([]byte, 20)...)
		}, "match_vip"},
		{"ipv4-mapped rule matches ipv4", tcp4(client4, 1, netip.MustParseAddr("198.51.100.12"), 80), "match_vip"},
	}
}

// allCases are steerCases and snatCases.
func allCases() []steerCase { return append(steerCases(), snatCases()...) }

// run runs the program once on frame and returns the counters it moved.
func run(t testing.TB, s *Steering, frame []byte) (uint32, map[string]uint64) {
	t.Helper()
	before, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	ret, err := s.Program().Run(&ebpf.RunOptions{Data: frame})
	if err != nil {
		t.Fatalf("test run of %d-byte frame: %v", len(frame), err)
	}
	after, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	diff := map[string]uint64{}
	a, b := after.Map(), before.Map()
	for k, v := range a {
		if v != b[k] {
			diff[k] = v - b[k]
		}
	}
	return ret, diff
}

func isMatch(counter string) bool { return len(counter) > 6 && counter[:6] == "match_" }

func TestSteeringCases(t *testing.T) {
	s := loadSteering(t)
	addRules(t, s)
	for _, tc := range allCases() {
		t.Run(tc.name, func(t *testing.T) {
			ret, diff := run(t, s, tc.frame(t))
			if ret != xdpPass {
				t.Errorf("returned %d, want XDP_PASS (%d) with an empty XSKMAP", ret, xdpPass)
			}
			want := map[string]uint64{tc.want: 1}
			if isMatch(tc.want) {
				want["no_socket"] = 1
			}
			if !equalCounts(diff, want) {
				t.Errorf("counters moved %v, want %v", diff, want)
			}
		})
	}
}

// TestSteeringHold: while the hold lasts, every frame the program steers
// (VIP, SNAT port range, backend reply, fragment) is dropped when its queue
// has no socket, and counted Held; frames it leaves to the kernel are
// passed as before. Once the hold deadline is past, steered frames are
// passed again (NoSocket).
func TestSteeringHold(t *testing.T) {
	s := loadSteering(t)
	addRules(t, s)
	if err := s.SetHold(time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, tc := range allCases() {
		t.Run(tc.name, func(t *testing.T) {
			ret, diff := run(t, s, tc.frame(t))
			want := map[string]uint64{tc.want: 1}
			wantRet := uint32(xdpPass)
			if isMatch(tc.want) {
				want["held"] = 1
				wantRet = xdpDrop
			}
			if ret != wantRet || !equalCounts(diff, want) {
				t.Errorf("returned %d and moved %v, want %d and %v", ret, diff, wantRet, want)
			}
		})
	}
	snat := tcp4(backend4, 8080, snat4, 20000)(t)
	if ret, diff := run(t, s, snat); ret != xdpDrop || !equalCounts(diff, map[string]uint64{"match_snat": 1, "held": 1}) {
		t.Fatalf("SNAT-range frame during the hold: returned %d, moved %v", ret, diff)
	}
	// The deadline passes inside the program.
	if err := s.SetHold(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if ret, _ := run(t, s, snat); ret != xdpDrop {
		t.Fatalf("returned %d right after SetHold(50ms)", ret)
	}
	time.Sleep(100 * time.Millisecond)
	if ret, diff := run(t, s, snat); ret != xdpPass || !equalCounts(diff, map[string]uint64{"match_snat": 1, "no_socket": 1}) {
		t.Fatalf("SNAT-range frame after the hold: returned %d, moved %v", ret, diff)
	}
	if err := s.SetHold(0); err != nil {
		t.Fatal(err)
	}
	if ret, _ := run(t, s, tcp4(client4, 1, vip4, 80)(t)); ret != xdpPass {
		t.Fatalf("VIP frame after SetHold(0): returned %d", ret)
	}
}

func equalCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// ipEnd returns the length of frame up to the end of its IP packet.
func ipEnd(t testing.TB, frame []byte) int {
	l3 := 14
	if et := binary.BigEndian.Uint16(frame[12:]); et == 0x8100 || et == 0x88a8 {
		l3 = 18
	}
	switch frame[l3] >> 4 {
	case 4:
		return l3 + int(binary.BigEndian.Uint16(frame[l3+2:]))
	case 6:
		return l3 + 40 + int(binary.BigEndian.Uint16(frame[l3+4:]))
	}
	t.Fatalf("no IP header at offset %d", l3)
	return 0
}

// TestSteeringTruncated cuts every steered frame at every length: each
// prefix must be passed and counted (truncated or, for the few prefixes
// that still parse, something other than a match).
func TestSteeringTruncated(t *testing.T) {
	s := loadSteering(t)
	addRules(t, s)
	for _, tc := range allCases() {
		if !isMatch(tc.want) {
			continue
		}
		full := tc.frame(t)
		full = full[:ipEnd(t, full)] // drop Ethernet padding
		for n := range len(full) {
			ret, err := s.Program().Run(&ebpf.RunOptions{Data: full[:n]})
			if n < 14 {
				// BPF_PROG_TEST_RUN refuses XDP input shorter than
				// an Ethernet header, so the program never sees it.
				if !errors.Is(err, unix.EINVAL) {
					t.Fatalf("%s: %d bytes: got %v, want EINVAL from the kernel", tc.name, n, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %d bytes: %v", tc.name, n, err)
			}
			if ret != xdpPass {
				t.Fatalf("%s: %d bytes: returned %d", tc.name, n, ret)
			}
			_, diff := run(t, s, full[:n])
			if diff["pass_truncated"] != 1 || len(diff) != 1 {
				t.Fatalf("%s cut to %d of %d bytes: counters moved %v, want pass_truncated", tc.name, n, len(full), diff)
			}
		}
	}
}

func TestRules(t *testing.T) {
	s := loadSteering(t)
	for _, r := range []Rule{
		{netip.Addr{}, 80, ProtoTCP},
		{vip4, 80, 47},
		{vip4, 1, ProtoICMP},
		{vip4, 0, ProtoICMPv6},
		{vip6, 0, ProtoICMP},
	} {
		if err := s.AddVIP(r.Addr, r.Port, r.Proto); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("AddVIP(%s) = %v, want ErrInvalidRule", r, err)
		}
	}
	addRules(t, s)
	if err := s.RemoveVIP(vip4, 80, ProtoTCP); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveVIP(vip4, 80, ProtoTCP); err != nil {
		t.Fatalf("removing a missing rule: %v", err)
	}
	if _, diff := run(t, s, tcp4(client4, 1, vip4, 80)(t)); diff["pass_no_match"] != 1 {
		t.Fatalf("after RemoveVIP: %v", diff)
	}
	if err := s.RemoveBackendSource(backend4, 8080, ProtoTCP); err != nil {
		t.Fatal(err)
	}
	if _, diff := run(t, s, tcp4(backend4, 8080, client4, 1)(t)); diff["pass_no_match"] != 1 {
		t.Fatalf("after RemoveBackendSource: %v", diff)
	}

	if err := s.RemoveLocal(local4); err != nil {
		t.Fatal(err)
	}
	if _, diff := run(t, s, tcp4(client4, 1, local4, 22)(t)); diff["pass_no_match"] != 1 {
		t.Fatalf("after RemoveLocal: %v", diff)
	}
	if err := s.AddLocal(netip.Addr{}); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("AddLocal(invalid) = %v", err)
	}

	// SNAT addresses: invalid input, removal, range update.
	for _, c := range []struct {
		addr  netip.Addr
		ports [2]uint16
	}{
		{netip.Addr{}, snatRange},
		{snat4, [2]uint16{0, 0}},
		{snat4, [2]uint16{0, 100}},
		{snat4, [2]uint16{2000, 1999}},
	} {
		if err := s.AddSNAT(c.addr, c.ports); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("AddSNAT(%s, %v) = %v, want ErrInvalidRule", c.addr, c.ports, err)
		}
	}
	if err := s.RemoveSNAT(snatB4); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveSNAT(snatB4); err != nil {
		t.Fatalf("removing a missing SNAT address: %v", err)
	}
	if _, diff := run(t, s, tcp4(backend4, 80, snatB4, 5000)(t)); diff["pass_no_match"] != 1 {
		t.Fatalf("after RemoveSNAT: %v", diff)
	}
	if err := s.AddSNAT(snat4, [2]uint16{40000, 40000}); err != nil {
		t.Fatal(err)
	}
	if _, diff := run(t, s, tcp4(backend4, 80, snat4, 40000)(t)); diff["match_snat"] != 1 {
		t.Fatalf("after AddSNAT with a new range, port in it: %v", diff)
	}
	if _, diff := run(t, s, tcp4(backend4, 80, snat4, 30000)(t)); diff["pass_snat_other_port"] != 1 {
		t.Fatalf("after AddSNAT with a new range, port in the old one: %v", diff)
	}
	// Addresses with different ranges are reported with one range
	// covering them all.
	if got, err := s.Rules(); err != nil || len(got.SNAT) != 3 || got.SNATPorts != [2]uint16{1024, 40000} {
		t.Fatalf("Rules after AddSNAT with two ranges: %+v, %v", got, err)
	}

	want := RuleSet{
		Destinations:   []Rule{{vip4, 80, ProtoTCP}, {vip6, 0, ProtoICMPv6}},
		BackendSources: []Rule{{backend4, 8080, ProtoTCP}},
		Local:          []netip.Addr{local6, snat4},
		// Given as IPv4-mapped IPv6, stored and reported as IPv4.
		SNAT:      []netip.Addr{netip.MustParseAddr("::ffff:192.0.2.1"), snat6},
		SNATPorts: [2]uint16{10000, 19999},
	}
	if err := s.Replace(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Rules()
	if err != nil {
		t.Fatal(err)
	}
	wantRules := want
	wantRules.SNAT = []netip.Addr{snat4, snat6}
	if !sameRuleSet(got, wantRules) {
		t.Fatalf("after Replace: %+v", got)
	}
	if _, diff := run(t, s, tcp4(client4, 1, vip4Any, 80)(t)); diff["pass_no_match"] != 1 {
		t.Fatalf("rule dropped by Replace still matches: %v", diff)
	}
	for _, c := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"snat4 in the new range", tcp4(backend4, 80, snat4, 10000)(t), "match_snat"},
		{"snat4 in the old range only", tcp4(backend4, 80, snat4, 40000)(t), "pass_snat_other_port"},
		{"snat6 in the new range", l4(t, layers.IPProtocolUDP, backend6, 53, snat6, 19999, false), "match_snat"},
		{"snat6 above the new range", l4(t, layers.IPProtocolUDP, backend6, 53, snat6, 20000, false), "pass_snat_other_port"},
		{"snatVIP4 dropped by Replace", tcp4(backend4, 80, snatVIP4, 10000)(t), "pass_no_match"},
	} {
		if _, diff := run(t, s, c.frame); diff[c.want] != 1 {
			t.Errorf("after Replace, %s: counters moved %v, want %s", c.name, diff, c.want)
		}
	}
	for _, bad := range []RuleSet{
		{Destinations: []Rule{{vip4, 81, ProtoTCP}, {netip.Addr{}, 1, ProtoTCP}}},
		{SNAT: []netip.Addr{snatB4, {}}, SNATPorts: snatRange},
		{SNAT: []netip.Addr{snatB4}},
		{SNAT: []netip.Addr{snatB4}, SNATPorts: [2]uint16{3000, 2000}},
	} {
		if err := s.Replace(bad); !errors.Is(err, ErrInvalidRule) {
			t.Fatalf("Replace(%+v): %v, want ErrInvalidRule", bad, err)
		}
		if got, _ := s.Rules(); !sameRuleSet(got, wantRules) {
			t.Fatalf("a rejected Replace(%+v) changed the maps: %+v", bad, got)
		}
	}
	// Without SNAT addresses the range is not needed, and not reported.
	if err := s.Replace(RuleSet{Local: []netip.Addr{snat4}, SNATPorts: [2]uint16{3000, 2000}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Rules(); !sameRuleSet(got, RuleSet{Local: []netip.Addr{snat4}}) {
		t.Fatalf("after Replace without SNAT: %+v", got)
	}
	if _, diff := run(t, s, tcp4(backend4, 80, snat4, 10000)(t)); diff["pass_local"] != 1 {
		t.Fatalf("SNAT address dropped by Replace: %v", diff)
	}
	if err := s.Replace(RuleSet{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Rules(); len(got.Destinations)+len(got.BackendSources)+len(got.Local)+len(got.SNAT) != 0 || got.SNATPorts != [2]uint16{} {
		t.Fatalf("Replace of an empty set left %+v", got)
	}
	if err := s.SetSocket(4, 0); err == nil {
		t.Error("SetSocket beyond MaxQueues succeeded")
	}
	if err := s.ClearSocket(0); err != nil {
		t.Errorf("ClearSocket of an empty slot: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.AddVIP(vip4, 80, ProtoTCP); !errors.Is(err, ErrClosed) {
		t.Errorf("AddVIP after Close: %v", err)
	}
	if err := s.AddSNAT(snat4, snatRange); !errors.Is(err, ErrClosed) {
		t.Errorf("AddSNAT after Close: %v", err)
	}
	if err := s.RemoveSNAT(snat4); !errors.Is(err, ErrClosed) {
		t.Errorf("RemoveSNAT after Close: %v", err)
	}
	if _, err := s.Rules(); !errors.Is(err, ErrClosed) {
		t.Errorf("Rules after Close: %v", err)
	}
	if _, err := s.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close: %v", err)
	}
}

func sameRuleSet(a, b RuleSet) bool {
	return sameRules(a.Destinations, b.Destinations) && sameRules(a.BackendSources, b.BackendSources) &&
		sameAddrs(a.Local, b.Local) && sameAddrs(a.SNAT, b.SNAT) && a.SNATPorts == b.SNATPorts
}

func sameAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[netip.Addr]bool{}
	for _, x := range a {
		set[x] = true
	}
	for _, x := range b {
		if !set[x] {
			return false
		}
	}
	return true
}

func sameRules(a, b []Rule) bool {
	if len(a) != len(b) {
		return false
	}
	set := map[Rule]bool{}
	for _, r := range a {
		set[r] = true
	}
	for _, r := range b {
		if !set[r] {
			return false
		}
	}
	return true
}

// TestCounterNames checks that every counter has one name in Map, and
// that Matched and Passed together cover every reason.
func TestCounterNames(t *testing.T) {
	var c Counters
	fields := reflect.ValueOf(&c).Elem()
	for i := range fields.NumField() {
		fields.Field(i).SetUint(uint64(i + 1))
	}
	m := c.Map()
	if len(m) != numCounters || fields.NumField() != numCounters {
		t.Fatalf("%d names and %d fields for %d counters", len(m), fields.NumField(), numCounters)
	}
	seen := map[uint64]string{}
	var reasons uint64
	for k, v := range m {
		if seen[v] != "" {
			t.Errorf("%s and %s report the same field", k, seen[v])
		}
		seen[v] = k
		if k != "redirected" && k != "no_socket" && k != "held" {
			reasons += v
		}
	}
	if c.Matched()+c.Passed() != reasons {
		t.Errorf("Matched()+Passed() = %d, want the sum of every reason, %d", c.Matched()+c.Passed(), reasons)
	}
}

func TestParseAttachMode(t *testing.T) {
	for _, m := range []AttachMode{Auto, Native, Generic} {
		if got, err := ParseAttachMode(m.String()); err != nil || got != m {
			t.Errorf("ParseAttachMode(%q) = %v, %v", m, got, err)
		}
	}
	if _, err := ParseAttachMode("offload"); err == nil {
		t.Error("offload accepted")
	}
}

// FuzzSteering feeds arbitrary frames to the program: it must always
// return XDP_PASS (no sockets) and count exactly one reason, plus NoSocket
// for a match.
func FuzzSteering(f *testing.F) {
	for _, tc := range allCases() {
		f.Add(tc.frame(f))
	}
	s := loadSteering(f)
	addRules(f, s)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 14 || len(data) > 1500 {
			return
		}
		ret, diff := run(t, s, data)
		if ret != xdpPass {
			t.Fatalf("returned %d", ret)
		}
		reasons := 0
		for k, v := range diff {
			if v != 1 {
				t.Fatalf("counter %s moved by %d", k, v)
			}
			if k != "no_socket" {
				reasons++
			}
			if isMatch(k) && diff["no_socket"] != 1 {
				t.Fatalf("match without outcome: %v", diff)
			}
		}
		if reasons != 1 {
			t.Fatalf("counters moved %v, want exactly one reason", diff)
		}
	})
}

func BenchmarkSteering(b *testing.B) {
	s := loadSteering(b)
	addRules(b, s)
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"vip", tcp4(client4, 1, vip4, 80)(b)},
		{"nomatch", tcp4(client4, 1, other4, 80)(b)},
		{"ipv6-vip", l4(b, layers.IPProtocolTCP, client6, 1, vip6, 443, false)},
		{"snat", tcp4(backend4, 80, snat4, 30000)(b)},
		{"snat-other-port", tcp4(other4, 443, snat4, 45000)(b)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			const repeat = 100000
			var total float64
			for range b.N {
				_, d, err := s.Program().Benchmark(tc.frame, repeat, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(d.Nanoseconds())
			}
			b.ReportMetric(total/float64(b.N), "ns/frame")
		})
	}
}
