package packet

import (
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = net.HardwareAddr{2, 0, 0, 0, 0, 1}
	macB = net.HardwareAddr{2, 0, 0, 0, 0, 2}
)

func ser(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func eth(v6 bool) *layers.Ethernet {
	et := layers.EthernetTypeIPv4
	if v6 {
		et = layers.EthernetTypeIPv6
	}
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: et}
}

func ip4(proto layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, TTL: 64, TOS: 0x2a, Flags: layers.IPv4DontFragment, Protocol: proto,
		SrcIP: net.IP{203, 0, 113, 7}, DstIP: net.IP{198, 51, 100, 10}}
}

func ip6(nh layers.IPProtocol) *layers.IPv6 {
	return &layers.IPv6{Version: 6, HopLimit: 60, TrafficClass: 0xb8, NextHeader: nh,
		SrcIP: net.ParseIP("2001:db8::7"), DstIP: net.ParseIP("2001:db8:100::10")}
}

func tcp(nl gopacket.NetworkLayer) *layers.TCP {
	t := &layers.TCP{SrcPort: 51000, DstPort: 80, SYN: true, ACK: true, Window: 1000}
	_ = t.SetNetworkLayerForChecksum(nl)
	return t
}

func udp(nl gopacket.NetworkLayer) *layers.UDP {
	u := &layers.UDP{SrcPort: 4000, DstPort: 53}
	_ = u.SetNetworkLayerForChecksum(nl)
	return u
}

// rawEth returns an unpadded Ethernet header (gopacket pads frames to 60
// bytes, which would separate hand-appended headers from the IP header).
func rawEth(v6 bool) []byte {
	b := append(append([]byte{}, macB...), macA...)
	if v6 {
		return append(b, 0x86, 0xdd)
	}
	return append(b, 0x08, 0x00)
}

func tcp4Frame(t testing.TB) []byte {
	i := ip4(layers.IPProtocolTCP)
	return ser(t, eth(false), i, tcp(i), gopacket.Payload("hello"))
}

func TestDecodeTable(t *testing.T) {
	v4 := func() *layers.IPv4 { return ip4(layers.IPProtocolTCP) }
	type want struct {
		r                Reason
		family, proto    uint8
		l3, l4           uint16
		sport, dport     uint16
		frag             Frag
		flags            uint8
		tagged           bool
		innerValid       bool
		innerProto       uint8
		innerSP, innerDP uint16
	}
	cases := []struct {
		name  string
		frame func(t *testing.T) []byte
		want  want
	}{
		{"tcp4", func(t *testing.T) []byte { return tcp4Frame(t) },
			want{r: OK, family: 4, proto: 6, l3: 14, l4: 34, sport: 51000, dport: 80, flags: TCPSyn | TCPAck}},
		{"tcp4 padded to 60 bytes", func(t *testing.T) []byte {
			i := v4()
			return append(ser(t, eth(false), i, tcp(i)), make([]byte, 6)...)
		}, want{r: OK, family: 4, proto: 6, l3: 14, l4: 34, sport: 51000, dport: 80, flags: TCPSyn | TCPAck}},
		{"vlan udp4", func(t *testing.T) []byte {
			e := eth(false)
			e.EthernetType = layers.EthernetTypeDot1Q
			i := ip4(layers.IPProtocolUDP)
			return ser(t, e, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}, i, udp(i), gopacket.Payload("x"))
		}, want{r: OK, family: 4, proto: 17, l3: 18, l4: 38, sport: 4000, dport: 53, tagged: true}},
		{"ipv4 options", func(t *testing.T) []byte {
			i := v4()
			i.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
			return ser(t, eth(false), i, tcp(i))
		}, want{r: OK, family: 4, proto: 6, l3: 14, l4: 38, sport: 51000, dport: 80, flags: TCPSyn | TCPAck}},
		{"ipv4 first fragment", func(t *testing.T) []byte {
			i := v4()
			i.Flags = layers.IPv4MoreFragments
			return ser(t, eth(false), i, tcp(i))
		}, want{r: OK, family: 4, proto: 6, l3: 14, l4: 34, sport: 51000, dport: 80, frag: FragFirst, flags: TCPSyn | TCPAck}},
		{"udp4 first fragment: udp length covers the whole datagram", func(t *testing.T) []byte {
			i := ip4(layers.IPProtocolUDP)
			i.Flags = layers.IPv4MoreFragments
			b := ser(t, eth(false), i, udp(i), gopacket.Payload(make([]byte, 16)))
			b[14+20+4], b[14+20+5] = 0x05, 0xc8 // 1480: longer than this fragment
			return b
		}, want{r: OK, family: 4, proto: 17, l3: 14, l4: 34, sport: 4000, dport: 53, frag: FragFirst}},
		{"ipv4 later fragment", func(t *testing.T) []byte {
			i := v4()
			i.FragOffset = 100
			return ser(t, eth(false), i, gopacket.Payload(make([]byte, 40)))
		}, want{r: OK, family: 4, proto: 6, l3: 14, frag: FragLater}},
		{"udp6 with hop-by-hop and destination options", func(t *testing.T) []byte {
			b := append(rawEth(true), ser(t, ip6(layers.IPProtocolIPv6HopByHop))...)
			u := udp(ip6(layers.IPProtocolUDP))
			ub := ser(t, u, gopacket.Payload("abcd"))
			ext := []byte{60, 0, 1, 4, 0, 0, 0, 0, 17, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			b = append(b, ext...)
			b = append(b, ub...)
			pl := len(ext) + len(ub)
			b[14+4], b[14+5] = byte(pl>>8), byte(pl)
			return b
		}, want{r: OK, family: 6, proto: 17, l3: 14, l4: 14 + 40 + 24, sport: 4000, dport: 53}},
		{"ipv6 later fragment", func(t *testing.T) []byte {
			i := ip6(layers.IPProtocolIPv6Fragment)
			return ser(t, eth(true), i, &layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, FragmentOffset: 10}, gopacket.Payload(make([]byte, 16)))
		}, want{r: OK, family: 6, proto: 6, l3: 14, frag: FragLater}},
		{"ipv6 later fragment whose payload looks like a routing header", func(t *testing.T) []byte {
			i := ip6(layers.IPProtocolIPv6Fragment)
			pl := []byte{6, 0, 0, 1, 0, 0, 0, 0} // would be "routing header, segments left 1"
			return ser(t, eth(true), i, &layers.IPv6Fragment{NextHeader: layers.IPProtocolIPv6Routing, FragmentOffset: 10}, gopacket.Payload(pl))
		}, want{r: OK, family: 6, proto: 43, l3: 14, frag: FragLater}},
		{"ipv6 first fragment", func(t *testing.T) []byte {
			i := ip6(layers.IPProtocolIPv6Fragment)
			return ser(t, eth(true), i, &layers.IPv6Fragment{NextHeader: layers.IPProtocolTCP, MoreFragments: true}, tcp(ip6(layers.IPProtocolTCP)))
		}, want{r: OK, family: 6, proto: 6, l3: 14, l4: 62, sport: 51000, dport: 80, frag: FragFirst, flags: TCPSyn | TCPAck}},
		{"ipv6 routing header in use", func(t *testing.T) []byte {
			b := append(rawEth(true), ser(t, ip6(layers.IPProtocolIPv6Routing))...)
			b = append(b, 6, 0, 0, 1, 0, 0, 0, 0)
			b[14+5] = 8
			return b
		}, want{r: ReasonUnsupported, family: 6, proto: 43, l3: 14}},
		{"icmp4 echo", func(t *testing.T) []byte {
			i := ip4(layers.IPProtocolICMPv4)
			return ser(t, eth(false), i, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 77, Seq: 1})
		}, want{r: OK, family: 4, proto: 1, l3: 14, l4: 34, sport: 77, dport: 77}},
		{"icmp4 frag needed quoting tcp", func(t *testing.T) []byte {
			in := ip4(layers.IPProtocolTCP)
			in.SrcIP, in.DstIP = in.DstIP, in.SrcIP
			quoted := ser(t, in, tcp(in))[:28]
			o := ip4(layers.IPProtocolICMPv4)
			return ser(t, eth(false), o, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)}, gopacket.Payload(quoted))
		}, want{r: OK, family: 4, proto: 1, l3: 14, l4: 34, innerValid: true, innerProto: 6, innerSP: 51000, innerDP: 80}},
		{"icmp4 error with short quote", func(t *testing.T) []byte {
			o := ip4(layers.IPProtocolICMPv4)
			return ser(t, eth(false), o, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)}, gopacket.Payload([]byte{0x45, 0, 0}))
		}, want{r: OK, family: 4, proto: 1, l3: 14, l4: 34}},
		{"icmp6 packet too big quoting tcp6", func(t *testing.T) []byte {
			in := ip6(layers.IPProtocolTCP)
			quoted := ser(t, in, tcp(in))
			o := ip6(layers.IPProtocolICMPv6)
			ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
			_ = ic.SetNetworkLayerForChecksum(o)
			return ser(t, eth(true), o, ic, gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted...)))
		}, want{r: OK, family: 6, proto: 58, l3: 14, l4: 54, innerValid: true, innerProto: 6, innerSP: 51000, innerDP: 80}},
		{"arp", func(t *testing.T) []byte {
			e := eth(false)
			e.EthernetType = layers.EthernetTypeARP
			return ser(t, e, gopacket.Payload(make([]byte, 28)))
		}, want{r: ReasonNotIP, l3: 14}},
		{"qinq", func(t *testing.T) []byte {
			e := eth(false)
			e.EthernetType = layers.EthernetTypeDot1Q
			return ser(t, e, &layers.Dot1Q{VLANIdentifier: 7, Type: layers.EthernetTypeDot1Q}, gopacket.Payload(make([]byte, 40)))
		}, want{r: ReasonUnsupported, l3: 18, tagged: true}},
		{"ipv4 version 5", func(t *testing.T) []byte {
			b := tcp4Frame(t)
			b[14] = 0x55
			return b
		}, want{r: ReasonBadIPv4, l3: 14}},
		{"ipv4 total length below header", func(t *testing.T) []byte {
			b := tcp4Frame(t)
			b[16], b[17] = 0, 10
			return b
		}, want{r: ReasonBadIPv4, l3: 14}},
		{"udp length beyond packet", func(t *testing.T) []byte {
			i := ip4(layers.IPProtocolUDP)
			b := ser(t, eth(false), i, udp(i))
			b[14+20+5] = 200
			return b
		}, want{r: ReasonBadL4, family: 4, proto: 17, l3: 14, l4: 34}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := c.frame(t)
			var p Parsed
			r := Decode(f, &p)
			w := c.want
			got := want{r: r, family: p.Family, proto: p.Proto, l3: p.L3Off, l4: p.L4Off, sport: p.SrcPort, dport: p.DstPort,
				frag: p.Frag, flags: p.TCPFlags, tagged: p.Tagged, innerValid: p.Inner.Valid, innerProto: p.Inner.Proto,
				innerSP: p.Inner.SrcPort, innerDP: p.Inner.DstPort}
			if r == OK {
				// End is where the IP packet ends; gopacket pads short frames to 60 bytes.
				l3 := f[p.L3Off:]
				iplen := int(l3[2])<<8 | int(l3[3])
				if p.Family == 6 {
					iplen = 40 + (int(l3[4])<<8 | int(l3[5]))
				}
				if int(p.End) != int(p.L3Off)+iplen || int(p.End) > len(f) {
					t.Fatalf("End %d, IP packet ends at %d, frame %d", p.End, int(p.L3Off)+iplen, len(f))
				}
			}
			if got != w {
				t.Fatalf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestDecodeFields(t *testing.T) {
	var p Parsed
	if r := Decode(tcp4Frame(t), &p); r != OK {
		t.Fatal(r)
	}
	if p.DSCP() != 10 || p.ECN() != 2 || !p.DF || p.TTL != 64 {
		t.Fatalf("dscp %d ecn %d df %v ttl %d", p.DSCP(), p.ECN(), p.DF, p.TTL)
	}
	if [4]byte(p.Src[:4]) != [4]byte{203, 0, 113, 7} || [4]byte(p.Dst[:4]) != [4]byte{198, 51, 100, 10} {
		t.Fatalf("addresses %v %v", p.Src, p.Dst)
	}
}

// Every prefix of a valid frame must decode without panicking and either
// fail or report offsets inside the prefix.
func TestDecodeEveryTruncation(t *testing.T) {
	i := ip6(layers.IPProtocolICMPv6)
	in := ip6(layers.IPProtocolTCP)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
	_ = ic.SetNetworkLayerForChecksum(i)
	frames := [][]byte{tcp4Frame(t), ser(t, eth(true), i, ic, gopacket.Payload(append([]byte{0, 0, 5, 0}, ser(t, in, tcp(in))...)))}
	for _, f := range frames {
		var full Parsed
		if r := Decode(f, &full); r != OK {
			t.Fatal(r)
		}
		for n := 0; n < int(full.End); n++ {
			var p Parsed
			if r := Decode(f[:n], &p); r == OK {
				t.Fatalf("prefix %d of %d decoded OK", n, len(f))
			}
		}
	}
}

func TestDecodeZeroAllocs(t *testing.T) {
	f := tcp4Frame(t)
	var p Parsed
	if n := testing.AllocsPerRun(1000, func() { Decode(f, &p) }); n != 0 {
		t.Fatalf("Decode allocates %v per frame", n)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(tcp4Frame(f))
	i := ip6(layers.IPProtocolUDP)
	f.Add(ser(f, eth(true), i, udp(i), gopacket.Payload("x")))
	o := ip4(layers.IPProtocolICMPv4)
	in := ip4(layers.IPProtocolUDP)
	f.Add(ser(f, eth(false), o, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4)}, gopacket.Payload(ser(f, in, udp(in)))))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		r := Decode(b, &p)
		// The fast path decodes what it takes exactly as the general one.
		var q Parsed
		if rq := decode(b, &q); rq != r || q != p {
			t.Fatalf("Decode: %v %+v\ndecode: %v %+v", r, p, rq, q)
		}
		if r >= NumReasons {
			t.Fatalf("reason %d out of range", r)
		}
		if r != OK {
			return
		}
		if int(p.End) > len(b) || p.L3Off >= p.End || (p.L4Off != 0 && (p.L4Off < p.L3Off || p.L4Off > p.End)) {
			t.Fatalf("offsets outside frame: l3 %d l4 %d end %d len %d", p.L3Off, p.L4Off, p.End, len(b))
		}
		if p.Family != 4 && p.Family != 6 {
			t.Fatalf("OK with family %d", p.Family)
		}
		if in := p.Inner; in.Valid && (int(in.L4Off)+8 > int(p.End) || in.L3Off < p.L4Off) {
			t.Fatalf("inner offsets outside packet: %+v end %d", in, p.End)
		}
	})
}

func BenchmarkDecodeTCP4(b *testing.B) {
	f := tcp4Frame(b)
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		Decode(f, &p)
	}
}

func BenchmarkDecodeUDP6(b *testing.B) {
	i := ip6(layers.IPProtocolUDP)
	f := ser(b, eth(true), i, udp(i), gopacket.Payload("x"))
	var p Parsed
	b.ReportAllocs()
	for b.Loop() {
		Decode(f, &p)
	}
}
