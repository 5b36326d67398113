package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
	"github.com/xlb/xlb/internal/testutil"
)

// These tests run the realserver program with BPF_PROG_TEST_RUN on frames
// the balancer's own rewrites (encap.Tunnel, encap.L3DSR) produced from a
// client's packet, so they prove the two sides agree: after the program,
// the frame must be the client's packet again, addressed to the VIP, with
// every checksum valid (checked by gopacket, independently of xlb).

var (
	rsVIP4     = netip.MustParseAddr("198.51.100.10") // tunnel VIP, DSCP 10
	rsVIP4b    = netip.MustParseAddr("198.51.100.11") // DSCP 12
	rsVIP6     = netip.MustParseAddr("2001:db8:100::10")
	rsOther4   = netip.MustParseAddr("198.51.100.99") // no VIP
	rsOther6   = netip.MustParseAddr("2001:db8:100::99")
	rsLocal4   = netip.MustParseAddr("10.40.0.11") // this backend
	rsLocal6   = netip.MustParseAddr("fd00:40::11")
	rsNotMe4   = netip.MustParseAddr("10.40.0.12") // another backend
	rsNotMe6   = netip.MustParseAddr("fd00:40::12")
	rsLB4      = netip.MustParseAddr("10.30.0.2") // tunnel source
	rsLB6      = netip.MustParseAddr("fd00:30::2")
	rsClient4  = netip.MustParseAddr("10.10.0.2")
	rsClient6  = netip.MustParseAddr("fd00:10::2")
	rsLBMAC    = [6]byte{0x02, 0, 0, 0, 0, 0x1b}
	rsBackMAC  = [6]byte{0x02, 0, 0, 0, 0, 0xb1}
	rsClientHW = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xc0}
)

func loadRealserver(t testing.TB) *Realserver {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading BPF programs needs root")
	}
	r, err := LoadRealserver(RealserverOptions{MaxEntries: 64})
	if errors.Is(err, ErrNotSupported) || errors.Is(err, unix.EPERM) {
		t.Skipf("skipping: kernel cannot load the realserver program: %v", err)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.Fatalf("%+v", ve)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := r.SetTunnelVIPs([]netip.Addr{rsVIP4, rsVIP6}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetDSCPs([]DSCPMapping{{rsVIP4, 10}, {rsVIP4b, 12}, {rsVIP6, 10}}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetLocals([]netip.Addr{rsLocal4, rsLocal6}); err != nil {
		t.Fatal(err)
	}
	return r
}

// clientPacket is what a client sends to a VIP: Ethernet (optionally one
// 802.1Q tag), IP with the given traffic class, and TCP, UDP or ICMPv6.
type clientPacket struct {
	dst   netip.Addr
	proto layers.IPProtocol
	tos   uint8 // DSCP<<2 | ECN as the client sent it
	vlan  bool
	udp0  bool // UDP over IPv4 without a checksum
	frag  int  // IPv4: 1 first fragment (MF), 2 a later fragment
}

func (c clientPacket) build(t testing.TB) []byte {
	t.Helper()
	src := rsClient4
	etype := layers.EthernetTypeIPv4
	if c.dst.Is6() {
		src, etype = rsClient6, layers.EthernetTypeIPv6
	}
	var ls []gopacket.SerializableLayer
	eth := &layers.Ethernet{SrcMAC: rsClientHW, DstMAC: net.HardwareAddr(rsLBMAC[:]), EthernetType: etype}
	if c.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, eth, &layers.Dot1Q{VLANIdentifier: 42, Type: etype})
	} else {
		ls = append(ls, eth)
	}
	var nl gopacket.NetworkLayer
	if c.dst.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TOS: c.tos, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment,
			Protocol: c.proto, SrcIP: src.AsSlice(), DstIP: c.dst.AsSlice()}
		switch c.frag {
		case 1:
			ip.Flags = layers.IPv4MoreFragments
		case 2:
			ip.Flags, ip.FragOffset = 0, 185
		}
		nl = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, TrafficClass: c.tos, FlowLabel: 0x12345, HopLimit: 64,
			NextHeader: c.proto, SrcIP: src.AsSlice(), DstIP: c.dst.AsSlice()}
		nl = ip
		ls = append(ls, ip)
	}
	payload := gopacket.Payload("GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
	if c.frag == 2 {
		ls = append(ls, payload)
		return rsSerialize(t, ls...)
	}
	switch c.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 7, Ack: 9, ACK: true, PSH: true, Window: 512}
		tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp, payload)
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: 40001, DstPort: 4000}
		udp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, udp, payload)
	case layers.IPProtocolICMPv6:
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		icmp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 2}, payload)
	default:
		t.Fatalf("clientPacket: protocol %v", c.proto)
	}
	b := rsSerialize(t, ls...)
	if c.udp0 {
		p := mustDecode(t, b)
		binary.BigEndian.PutUint16(b[p.L4Off+6:], 0)
	}
	return b
}

func rsSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func mustDecode(t testing.TB, frame []byte) *packet.Parsed {
	t.Helper()
	var p packet.Parsed
	if r := packet.Decode(frame, &p); r != packet.OK {
		t.Fatalf("decode: %v", r)
	}
	return &p
}

var rsEgress = encap.Egress{Dst: rsBackMAC, Src: rsLBMAC}

// tunnelled runs the balancer's tunnel rewrite from src to backend on the
// client's frame.
func tunnelled(t testing.TB, client []byte, src, backend netip.Addr) []byte {
	t.Helper()
	buf := make([]byte, 64+len(client))
	copy(buf[64:], client)
	f := encap.Frame{Buf: buf, Off: 64, Len: len(client)}
	p := mustDecode(t, f.Bytes())
	s, d := encap.AddrFrom(src), encap.AddrFrom(backend)
	if v := encap.Tunnel(&f, p, &s, &d, 0xabcde, &rsEgress); v != encap.Forward {
		t.Fatalf("encap.Tunnel: %v", v)
	}
	return append([]byte(nil), f.Bytes()...)
}

// l3dsred runs the balancer's l3dsr rewrite towards backend with dscp.
func l3dsred(t testing.TB, client []byte, backend netip.Addr, dscp uint8) []byte {
	t.Helper()
	b := append([]byte(nil), client...)
	p := mustDecode(t, b)
	a := encap.AddrFrom(backend)
	if v := encap.L3DSR(b, p, &a, dscp, &rsEgress); v != encap.Forward {
		t.Fatalf("encap.L3DSR: %v", v)
	}
	return b
}

// delivered is the client's frame as the backend's kernel must get it:
// the balancer's MACs and the client's IP packet with DSCP 0 (ECN kept).
// The IPv4 header checksum is recomputed when the TOS changes.
func delivered(t testing.TB, client []byte) []byte {
	t.Helper()
	b := append([]byte(nil), client...)
	copy(b[0:6], rsBackMAC[:])
	copy(b[6:12], rsLBMAC[:])
	p := mustDecode(t, b)
	if p.TOS>>2 == 0 {
		return b
	}
	l3 := b[p.L3Off:]
	if p.Family == 4 {
		l3[1] &= 3
		binary.BigEndian.PutUint16(l3[10:], 0)
		binary.BigEndian.PutUint16(l3[10:], packet.Checksum(l3[:20], 0))
	} else {
		packet.IPv6(l3).SetTrafficClass(p.TOS & 3)
	}
	return b
}

// rsRun runs the program once on frame and returns the action, the
// output frame and the one counter the frame counted.
func rsRun(t testing.TB, r *Realserver, frame []byte) (uint32, []byte, string) {
	t.Helper()
	before, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(frame)+256)
	opts := ebpf.RunOptions{Data: frame, DataOut: out}
	ret, err := r.Program().Run(&opts)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	after, err := r.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	b, a := before.Map(), after.Map()
	total := uint64(0)
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			got = append(got, k)
			total += d
		}
	}
	if total != 1 || len(got) != 1 {
		t.Fatalf("the frame counted %v (total %d), want exactly one counter", got, total)
	}
	return ret, opts.DataOut, got[0]
}

type rsCase struct {
	name  string
	in    func(t testing.TB) []byte
	want  string                         // the counter
	out   func(t testing.TB) []byte      // the expected output; nil: the input unchanged
	check func(t testing.TB, out []byte) // extra checks on the output
}

func tcp4To(dst netip.Addr) clientPacket { return clientPacket{dst: dst, proto: layers.IPProtocolTCP} }
func tcp6To(dst netip.Addr) clientPacket { return clientPacket{dst: dst, proto: layers.IPProtocolTCP} }

// rsCases covers every branch of the program against the maps loadRealserver
// fills in.
func rsCases() []rsCase {
	tun := func(c clientPacket, src, backend netip.Addr) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return tunnelled(t, c.build(t), src, backend) }
	}
	dsr := func(c clientPacket, backend netip.Addr, dscp uint8) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return l3dsred(t, c.build(t), backend, dscp) }
	}
	back := func(c clientPacket) func(testing.TB) []byte {
		return func(t testing.TB) []byte { return delivered(t, c.build(t)) }
	}
	udp4 := clientPacket{dst: rsVIP4, proto: layers.IPProtocolUDP}
	udp6 := clientPacket{dst: rsVIP6, proto: layers.IPProtocolUDP}
	icmp6 := clientPacket{dst: rsVIP6, proto: layers.IPProtocolICMPv6}
	vlan4 := tcp4To(rsVIP4)
	vlan4.vlan = true
	vlan6 := tcp6To(rsVIP6)
	vlan6.vlan = true
	ecn4 := tcp4To(rsVIP4)
	ecn4.tos = 0x2<<2 | 1 // the client's own DSCP 2 is lost at the balancer; ECN survives
	ecn6 := tcp6To(rsVIP6)
	ecn6.tos = 3
	udp0 := udp4
	udp0.udp0 = true
	frag1 := udp4
	frag1.frag = 1
	frag2 := udp4
	frag2.frag = 2
	vip4b := tcp4To(rsVIP4b)
	return []rsCase{
		// tunnel
		{name: "ipip tcp", in: tun(tcp4To(rsVIP4), rsLB4, rsLocal4), want: "decap_4in4", out: back(tcp4To(rsVIP4))},
		{name: "ipip udp", in: tun(udp4, rsLB4, rsLocal4), want: "decap_4in4", out: back(udp4)},
		{name: "ipip vlan", in: tun(vlan4, rsLB4, rsLocal4), want: "decap_4in4", out: back(vlan4)},
		{name: "ip6ip6 tcp", in: tun(tcp6To(rsVIP6), rsLB6, rsLocal6), want: "decap_6in6", out: back(tcp6To(rsVIP6))},
		{name: "ip6ip6 vlan", in: tun(vlan6, rsLB6, rsLocal6), want: "decap_6in6", out: back(vlan6)},
		{name: "4in6 tcp", in: tun(tcp4To(rsVIP4), rsLB6, rsLocal6), want: "decap_4in6", out: back(tcp4To(rsVIP4))},
		{name: "4in6 vlan", in: tun(vlan4, rsLB6, rsLocal6), want: "decap_4in6", out: back(vlan4)},
		{name: "6in4 tcp", in: tun(tcp6To(rsVIP6), rsLB4, rsLocal4), want: "decap_6in4", out: back(tcp6To(rsVIP6))},
		{name: "ip6ip6 with encapsulation limit option", in: func(t testing.TB) []byte {
			return withEncapLimit(t, tunnelled(t, tcp6To(rsVIP6).build(t), rsLB6, rsLocal6))
		}, want: "decap_6in6", out: back(tcp6To(rsVIP6))},
		{name: "4in6 with encapsulation limit option", in: func(t testing.TB) []byte {
			return withEncapLimit(t, tunnelled(t, tcp4To(rsVIP4).build(t), rsLB6, rsLocal6))
		}, want: "decap_4in6", out: back(tcp4To(rsVIP4))},
		{name: "ipip inner not a vip", in: tun(tcp4To(rsOther4), rsLB4, rsLocal4), want: "pass_inner_not_vip"},
		{name: "ip6ip6 inner not a vip", in: tun(tcp6To(rsOther6), rsLB6, rsLocal6), want: "pass_inner_not_vip"},
		{name: "4in6 inner not a vip", in: tun(tcp4To(rsOther4), rsLB6, rsLocal6), want: "pass_inner_not_vip"},
		{name: "ipip to another host", in: tun(tcp4To(rsVIP4), rsLB4, rsNotMe4), want: "pass_not_local"},
		{name: "ip6ip6 to another host", in: tun(tcp6To(rsVIP6), rsLB6, rsNotMe6), want: "pass_not_local"},
		{name: "ipip outer fragment", in: func(t testing.TB) []byte {
			b := tunnelled(t, tcp4To(rsVIP4).build(t), rsLB4, rsLocal4)
			setFlags4(b[14:], 0x2000) // MF
			return b
		}, want: "pass_fragment"},
		{name: "ip6ip6 outer fragment header", in: func(t testing.TB) []byte {
			return withFragHeader(t, tunnelled(t, tcp6To(rsVIP6).build(t), rsLB6, rsLocal6))
		}, want: "pass_fragment"},
		{name: "ipip outer options", in: func(t testing.TB) []byte {
			return withIPv4Options(t, tunnelled(t, tcp4To(rsVIP4).build(t), rsLB4, rsLocal4))
		}, want: "pass_unsupported"},
		{name: "ipip bad inner version", in: func(t testing.TB) []byte {
			b := tunnelled(t, tcp4To(rsVIP4).build(t), rsLB4, rsLocal4)
			b[14+20] = 0x65
			return b
		}, want: "pass_malformed"},

		// l3dsr
		{name: "l3dsr v4 tcp", in: dsr(tcp4To(rsVIP4), rsLocal4, 10), want: "rewrite_v4", out: back(tcp4To(rsVIP4))},
		{name: "l3dsr v4 udp", in: dsr(udp4, rsLocal4, 10), want: "rewrite_v4", out: back(udp4)},
		{name: "l3dsr v4 udp without checksum", in: dsr(udp0, rsLocal4, 10), want: "rewrite_v4", out: back(udp0),
			check: func(t testing.TB, out []byte) {
				if p := mustDecode(t, out); binary.BigEndian.Uint16(out[p.L4Off+6:]) != 0 {
					t.Fatal("a zero UDP checksum must stay zero")
				}
			}},
		{name: "l3dsr v4 second vip", in: dsr(vip4b, rsLocal4, 12), want: "rewrite_v4", out: back(vip4b)},
		{name: "l3dsr v4 ecn kept", in: dsr(ecn4, rsLocal4, 10), want: "rewrite_v4", out: back(ecn4)},
		{name: "l3dsr v4 vlan", in: dsr(vlan4, rsLocal4, 10), want: "rewrite_v4", out: back(vlan4)},
		{name: "l3dsr v4 first fragment", in: dsr(frag1, rsLocal4, 10), want: "rewrite_v4", out: back(frag1)},
		{name: "l3dsr v4 later fragment", in: dsr(frag2, rsLocal4, 10), want: "rewrite_v4", out: back(frag2)},
		{name: "l3dsr v6 tcp", in: dsr(tcp6To(rsVIP6), rsLocal6, 10), want: "rewrite_v6", out: back(tcp6To(rsVIP6))},
		{name: "l3dsr v6 udp", in: dsr(udp6, rsLocal6, 10), want: "rewrite_v6", out: back(udp6)},
		{name: "l3dsr v6 icmpv6", in: dsr(icmp6, rsLocal6, 10), want: "rewrite_v6", out: back(icmp6)},
		{name: "l3dsr v6 ecn kept", in: dsr(ecn6, rsLocal6, 10), want: "rewrite_v6", out: back(ecn6)},
		{name: "l3dsr v6 vlan", in: dsr(vlan6, rsLocal6, 10), want: "rewrite_v6", out: back(vlan6)},
		{name: "l3dsr v4 code not configured", in: dsr(tcp4To(rsVIP4), rsLocal4, 11), want: "pass_dscp_unknown"},
		{name: "l3dsr v6 code of the other family", in: dsr(tcp6To(rsVIP6), rsLocal6, 12), want: "pass_dscp_unknown"},
		{name: "l3dsr v4 to another host", in: dsr(tcp4To(rsVIP4), rsNotMe4, 10), want: "pass_not_local"},
		{name: "l3dsr v6 to another host", in: dsr(tcp6To(rsVIP6), rsNotMe6, 10), want: "pass_not_local"},
		{name: "l3dsr v6 behind hop-by-hop options", in: func(t testing.TB) []byte {
			return withHopByHop(t, l3dsred(t, tcp6To(rsVIP6).build(t), rsLocal6, 10))
		}, want: "pass_unsupported"},

		// neither
		{name: "plain tcp to this host", in: func(t testing.TB) []byte { return tcp4To(rsLocal4).build(t) }, want: "pass_plain"},
		{name: "plain tcp6 to this host", in: func(t testing.TB) []byte { return tcp6To(rsLocal6).build(t) }, want: "pass_plain"},
		{name: "plain tcp to a vip", in: func(t testing.TB) []byte { return tcp4To(rsVIP4).build(t) }, want: "pass_plain"},
		{name: "arp", in: func(t testing.TB) []byte {
			return rsSerialize(t, &layers.Ethernet{SrcMAC: rsClientHW, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
				&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
					Operation: layers.ARPRequest, SourceHwAddress: rsClientHW, SourceProtAddress: rsClient4.AsSlice(),
					DstHwAddress: make([]byte, 6), DstProtAddress: rsVIP4.AsSlice()})
		}, want: "pass_not_ip"},
		{name: "ipv4 bad version", in: func(t testing.TB) []byte {
			b := tcp4To(rsLocal4).build(t)
			b[14] = 0x55
			return b
		}, want: "pass_malformed"},
		{name: "ipv4 header length below 20", in: func(t testing.TB) []byte {
			b := tcp4To(rsLocal4).build(t)
			b[14] = 0x44
			return b
		}, want: "pass_malformed"},
		{name: "ipv4 total length beyond the frame", in: func(t testing.TB) []byte {
			b := dsr(tcp4To(rsVIP4), rsLocal4, 10)(t)
			binary.BigEndian.PutUint16(b[16:], uint16(len(b)))
			return b
		}, want: "pass_truncated"},
	}
}

func setFlags4(l3 []byte, flags uint16) {
	binary.BigEndian.PutUint16(l3[6:], flags)
	binary.BigEndian.PutUint16(l3[10:], 0)
	binary.BigEndian.PutUint16(l3[10:], packet.Checksum(l3[:int(l3[0]&0xf)*4], 0))
}

// insertAfterIPv6 inserts an extension header (whose first byte is set to
// the IPv6 header's next header) after the IPv6 header at offset 14 and
// makes the IPv6 header point to it with nh.
func insertAfterIPv6(t testing.TB, b []byte, nh uint8, ext []byte) []byte {
	t.Helper()
	l3 := b[14:]
	if l3[0]>>4 != 6 {
		t.Fatal("not IPv6 at offset 14")
	}
	ext = append([]byte(nil), ext...)
	ext[0] = l3[6]
	l3[6] = nh
	binary.BigEndian.PutUint16(l3[4:], binary.BigEndian.Uint16(l3[4:])+uint16(len(ext)))
	out := append([]byte(nil), b[:14+40]...)
	out = append(out, ext...)
	return append(out, b[14+40:]...)
}

// withEncapLimit adds the destination options header Linux ip6tnl sends:
// a tunnel encapsulation limit option (RFC 2473) padded to 8 bytes.
func withEncapLimit(t testing.TB, b []byte) []byte {
	return insertAfterIPv6(t, b, protoDstOpts, []byte{0, 0, 4, 1, 4, 1, 1, 0})
}

func withFragHeader(t testing.TB, b []byte) []byte {
	return insertAfterIPv6(t, b, protoFrag6, []byte{0, 0, 0, 1, 0, 0, 0, 7}) // offset 0, M=1
}

func withHopByHop(t testing.TB, b []byte) []byte {
	return insertAfterIPv6(t, b, protoHopOpts, []byte{0, 0, 1, 4, 0, 0, 0, 0}) // PadN
}

// withIPv4Options gives the outer IPv4 header 4 bytes of options (NOPs).
func withIPv4Options(t testing.TB, b []byte) []byte {
	t.Helper()
	out := append([]byte(nil), b[:14+20]...)
	out = append(out, 1, 1, 1, 0) // NOP NOP NOP EOL
	out = append(out, b[14+20:]...)
	l3 := out[14:]
	l3[0] = 0x46
	binary.BigEndian.PutUint16(l3[2:], binary.BigEndian.Uint16(l3[2:])+4)
	setFlags4(l3, binary.BigEndian.Uint16(l3[6:]))
	return out
}

func TestRealserverCases(t *testing.T) {
	r := loadRealserver(t)
	for _, tc := range rsCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in(t)
			ret, out, got := rsRun(t, r, in)
			if ret != xdpPass {
				t.Fatalf("action %d, want XDP_PASS", ret)
			}
			if got != tc.want {
				t.Fatalf("counted %s, want %s", got, tc.want)
			}
			want := in
			if tc.out != nil {
				want = tc.out(t)
			}
			if !bytes.Equal(out, want) {
				t.Fatalf("output differs\n got %x\nwant %x", out, want)
			}
			if tc.out != nil {
				testutil.VerifyFrame(t, out)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

// Every prefix of every case's frame (down to the 14 bytes the test run
// needs) is passed, counted once, and never decapsulated or rewritten
// unless the cut only dropped Ethernet padding.
func TestRealserverTruncated(t *testing.T) {
	r := loadRealserver(t)
	for _, tc := range rsCases() {
		full := tc.in(t)
		for n := 14; n < len(full); n++ {
			ret, _, got := rsRun(t, r, full[:n])
			if ret != xdpPass {
				t.Fatalf("%s cut to %d bytes: action %d", tc.name, n, ret)
			}
			if got != tc.want && !isPass(got) {
				t.Fatalf("%s cut to %d bytes: counted %s", tc.name, n, got)
			}
		}
	}
}

func isPass(counter string) bool { return len(counter) > 5 && counter[:5] == "pass_" }

// Random corruption of valid frames never fails the program or makes it
// drop, and every frame still counts exactly one reason.
func TestRealserverCorrupted(t *testing.T) {
	r := loadRealserver(t)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := rsCases()
	deadline := time.Now().Add(3 * time.Second)
	n := 0
	for ; n < 20000 && time.Now().Before(deadline); n++ {
		tc := cases[rng.IntN(len(cases))]
		in := tc.in(t)
		for k := rng.IntN(4) + 1; k > 0; k-- {
			in[rng.IntN(len(in))] ^= byte(1 << rng.IntN(8))
		}
		ret, _, got := rsRun(t, r, in)
		if ret != xdpPass {
			t.Fatalf("%s corrupted (%x): action %d, counted %s", tc.name, in, ret, got)
		}
	}
	t.Logf("%d corrupted frames", n)
}

func TestRealserverConfig(t *testing.T) {
	r := loadRealserver(t)
	c, err := r.Config()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TunnelVIPs) != 2 || len(c.Locals) != 2 || len(c.DSCPs) != 3 {
		t.Fatalf("config %+v", c)
	}
	// A code is unique per family.
	if err := r.SetDSCPs([]DSCPMapping{{rsVIP4, 10}, {rsVIP4b, 10}}); err == nil {
		t.Fatal("two IPv4 VIPs with one code accepted")
	}
	for _, bad := range []DSCPMapping{{rsVIP4, 0}, {rsVIP4, 64}, {netip.Addr{}, 5}} {
		if err := r.SetDSCPs([]DSCPMapping{bad}); err == nil {
			t.Fatalf("%v accepted", bad)
		}
	}
	if err := r.SetTunnelVIPs([]netip.Addr{rsVIP6}); err != nil {
		t.Fatal(err)
	}
	if c, _ = r.Config(); len(c.TunnelVIPs) != 1 || c.TunnelVIPs[0] != rsVIP6 {
		t.Fatalf("after replace: %v", c.TunnelVIPs)
	}
	// Another handle on the same program by ID sees the same maps.
	info, err := r.Program().Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	o, err := OpenRealserver(id)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	oc, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	if len(oc.TunnelVIPs) != 1 || len(oc.DSCPs) != 3 {
		t.Fatalf("opened by id: %+v", oc)
	}
	if _, err := o.Counters(); err != nil {
		t.Fatal(err)
	}
}

// rsBenchCases are the frames the benchmarks time, by name.
func rsBenchCases(t testing.TB) []struct {
	name string
	in   []byte
} {
	byName := map[string]rsCase{}
	for _, tc := range rsCases() {
		byName[tc.name] = tc
	}
	var out []struct {
		name string
		in   []byte
	}
	for _, c := range []struct{ bench, tc string }{
		{"decap_ipip", "ipip tcp"},
		{"decap_ip6ip6", "ip6ip6 tcp"},
		{"decap_4in6", "4in6 tcp"},
		{"rewrite_l3dsr_v4", "l3dsr v4 tcp"},
		{"rewrite_l3dsr_v6", "l3dsr v6 tcp"},
		{"pass_inner_not_vip", "ipip inner not a vip"},
		{"pass_dscp_unknown", "l3dsr v4 code not configured"},
		{"pass_plain", "plain tcp to this host"},
	} {
		tc, ok := byName[c.tc]
		if !ok {
			t.Fatalf("no case %q", c.tc)
		}
		out = append(out, struct {
			name string
			in   []byte
		}{c.bench, tc.in(t)})
	}
	return out
}

// BenchmarkRealserver times one run of the program per frame. A run that
// decapsulates or rewrites changes its input, and BPF_PROG_TEST_RUN does
// not restore the input between repetitions (a second repetition would
// see the decapsulated frame), so each iteration is one BPF_PROG_TEST_RUN
// of the fresh frame with a repeat count of 1, and ns/pkt is the mean
// kernel-measured time of those runs. It includes the test runner's
// timer reads: compare pass_plain here with BenchmarkRealserverRepeat's.
// ns/op is dominated by the syscall.
func BenchmarkRealserver(b *testing.B) {
	r := loadRealserver(b)
	for _, c := range rsBenchCases(b) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var total time.Duration
			for b.Loop() {
				ret, d, err := r.Program().Benchmark(c.in, 1, nil)
				if err != nil || ret != xdpPass {
					b.Fatalf("run: %d, %v", ret, err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
}

// BenchmarkRealserverRepeat times the frames the program passes unchanged
// (so every repetition takes the same path) with one BPF_PROG_TEST_RUN
// whose repeat count is b.N: ns/pkt is the program's own per-packet cost,
// without the syscall.
func BenchmarkRealserverRepeat(b *testing.B) {
	r := loadRealserver(b)
	for _, c := range rsBenchCases(b) {
		if c.name[:5] != "pass_" {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			ret, d, err := r.Program().Benchmark(c.in, b.N, b.ResetTimer)
			if err != nil || ret != xdpPass {
				b.Fatalf("run: %d, %v", ret, err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
		})
	}
}
