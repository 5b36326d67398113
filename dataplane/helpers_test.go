package dataplane

import (
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
	"github.com/xlb/xlb/internal/testutil"
)

var (
	macLB     = [6]byte{2, 0, 0, 0, 0, 0xaa}
	macRouter = [6]byte{2, 0, 0, 0, 0, 0xfe}
	vip4      = netip.MustParseAddr("198.51.100.10")
	vip6      = netip.MustParseAddr("2001:db8:100::10")
)

func beMAC(i int) [6]byte { return [6]byte{2, 0, 0, 0, 0x0b, byte(i)} }

// testSpec returns a spec with one service of the given mode on vip:80 and
// n backends 10.0.0.11.. (or 2001:db8:1::11.. for IPv6).
func testSpec(mode Mode, sched Scheduler, v6 bool, n int) Spec {
	vip := vip4
	if v6 {
		vip = vip6
	}
	svc := ServiceSpec{Name: "web", VIP: vip, Port: 80, Proto: 6, Mode: mode, Scheduler: sched}
	if mode == ModeL3DSR {
		svc.DSCP = 10
	}
	for i := 0; i < n; i++ {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(11 + i)})
		if v6 {
			a = netip.MustParseAddr("2001:db8:1::11").Next()
			for j := 0; j < i; j++ {
				a = a.Next()
			}
		}
		port := uint16(0)
		if mode == ModeNAT || mode == ModeFullNAT {
			port = 8080
		}
		svc.Backends = append(svc.Backends, BackendSpec{Address: a, Port: port, Weight: 100, MAC: beMAC(i)})
	}
	return Spec{
		Services:      []ServiceSpec{svc},
		Ifaces:        []Iface{{MAC: macLB, MTU: 1500}},
		Router:        macRouter,
		TunnelSource4: netip.MustParseAddr("10.0.0.1"),
		TunnelSource6: netip.MustParseAddr("2001:db8:1::1"),
		SNAT4:         []netip.Addr{netip.MustParseAddr("10.0.0.2")},
		SNAT6:         []netip.Addr{netip.MustParseAddr("2001:db8:1::2")},
		MaglevSize:    65537,
		HashSeed:      42,
	}
}

func mustBuild(t testing.TB, spec Spec, prev *Snapshot) *Snapshot {
	t.Helper()
	s, err := Build(spec, prev)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newCT(t testing.TB, capacity int) *conntrack.Table {
	t.Helper()
	return newCTWith(t, capacity, nil)
}

func newCTWith(t testing.TB, capacity int, adjust func(*conntrack.Config)) *conntrack.Table {
	t.Helper()
	cfg := conntrack.DefaultConfig()
	cfg.Capacity = capacity
	cfg.Shards = 16
	cfg.SNATIPs4 = [][4]byte{{10, 0, 0, 2}}
	cfg.SNATIPs6 = [][16]byte{netip.MustParseAddr("2001:db8:1::2").As16()}
	cfg.Seed = 7
	if adjust != nil {
		adjust(&cfg)
	}
	ct, err := conntrack.New(cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

// ctKey is the conntrack key of a packet from src:sport to dst:dport.
func ctKey(src, dst netip.Addr, sport, dport uint16, proto uint8) conntrack.Key {
	k := conntrack.Key{SrcPort: sport, DstPort: dport, Proto: proto, V6: src.Is6()}
	copy(k.SrcIP[:], src.AsSlice())
	copy(k.DstIP[:], dst.AsSlice())
	return k
}

// pkt describes a test packet.
type pkt struct {
	src, dst     netip.Addr
	sport, dport uint16
	flags        string // S A F R P
	udp          bool
	payload      int
	srcMAC       [6]byte
	fragOff      uint16
	mf           bool
}

func (p pkt) bytes(t testing.TB) []byte {
	t.Helper()
	srcMAC := p.srcMAC
	if srcMAC == ([6]byte{}) {
		srcMAC = macRouter
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(srcMAC[:]), DstMAC: net.HardwareAddr(macLB[:]), EthernetType: layers.EthernetTypeIPv4}
	proto := layers.IPProtocolTCP
	if p.udp {
		proto = layers.IPProtocolUDP
	}
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if p.dst.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice()}
		nl, ipl = l, l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), FragOffset: p.fragOff}
		if p.mf {
			l.Flags = layers.IPv4MoreFragments
		}
		nl, ipl = l, l
	}
	ls := []gopacket.SerializableLayer{eth, ipl}
	if p.fragOff == 0 {
		if p.udp {
			u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
			_ = u.SetNetworkLayerForChecksum(nl)
			ls = append(ls, u)
		} else {
			tc := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Window: 1000, Seq: 1}
			for _, c := range p.flags {
				switch c {
				case 'S':
					tc.SYN = true
				case 'A':
					tc.ACK = true
				case 'F':
					tc.FIN = true
				case 'R':
					tc.RST = true
				case 'P':
					tc.PSH = true
				}
			}
			_ = tc.SetNetworkLayerForChecksum(nl)
			ls = append(ls, tc)
		}
	}
	ls = append(ls, gopacket.Payload(make([]byte, p.payload)))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const headroom = 256

// frameOf copies b into a buffer with headroom.
func frameOf(b []byte) encap.Frame {
	buf := make([]byte, headroom+len(b)+64)
	copy(buf[headroom:], b)
	return encap.Frame{Buf: buf, Off: headroom, Len: len(b)}
}

// run processes one frame and returns its result and output bytes.
func run(w *Worker, s *Snapshot, b []byte, now int64) (Result, []byte) {
	fr := []encap.Frame{frameOf(b)}
	res := make([]Result, 1)
	w.Process(s, fr, res, now)
	return res[0], fr[0].Bytes()
}

func client(i int) netip.Addr { return netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)}) }

func client6(i int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:c::").As16()
	a[14], a[15] = byte(i>>8), byte(i)
	return netip.AddrFrom16(a)
}

// fixTCPChecksum recomputes the TCP checksum of an untagged IPv4 frame.
func fixTCPChecksum(f []byte) {
	ip := f[14:]
	hl := int(ip[0]&0xf) * 4
	tl := int(ip[2])<<8 | int(ip[3])
	seg := ip[hl:tl]
	seg[16], seg[17] = 0, 0
	var s uint32
	for i := 12; i < 20; i += 2 {
		s += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	s += 6 + uint32(len(seg))
	for i := 0; i+1 < len(seg); i += 2 {
		s += uint32(seg[i])<<8 | uint32(seg[i+1])
	}
	if len(seg)%2 == 1 {
		s += uint32(seg[len(seg)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	c := ^uint16(s)
	seg[16], seg[17] = byte(c>>8), byte(c)
}

// verify decodes a frame with gopacket and checks every checksum.
func verify(t *testing.T, frame []byte) gopacket.Packet { return testutil.VerifyFrame(t, frame) }

// reverseFrame returns the reply a backend would send to an IPv4 TCP
// frame the balancer sent it: addresses, ports and MACs swapped, an ACK.
func reverseFrame(t testing.TB, b []byte) []byte {
	var p packet.Parsed
	if r := packet.Decode(b, &p); r != packet.OK {
		t.Fatalf("reverseFrame: %v", r)
	}
	src, dst := netip.AddrFrom16(p.Src), netip.AddrFrom16(p.Dst)
	if p.Family == 4 {
		src, dst = netip.AddrFrom4([4]byte(p.Src[:4])), netip.AddrFrom4([4]byte(p.Dst[:4]))
	}
	return pkt{src: dst, dst: src, sport: p.DstPort, dport: p.SrcPort, flags: "A", payload: 10, srcMAC: [6]byte(b[0:6])}.bytes(t)
}
