package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sort"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// GenOptions describes the traffic Generate writes.
type GenOptions struct {
	Flows     int        // TCP connections (default 1000)
	Packets   int        // approximate total packets incl. 4 per connection (default 20 × Flows)
	V6Share   float64    // share of IPv6 flows (default 0.2; negative = none)
	JunkShare float64    // share of junk frames: truncated, ARP, bad headers, fragments, strangers (default 0.01)
	ZipfS     float64    // Zipf exponent of flow popularity (default 1.2)
	VIP4      netip.Addr // default 198.51.100.10
	VIP6      netip.Addr // default 2001:db8:100::10
	Port      uint16     // default 80
	Seed      uint64
	Start     time.Time // timestamp of the first packet (default 2026-01-01)
	Duration  time.Duration
}

func (o *GenOptions) defaults() {
	if o.Flows <= 0 {
		o.Flows = 1000
	}
	if o.Packets <= 0 {
		o.Packets = 20 * o.Flows
	}
	if o.V6Share == 0 {
		o.V6Share = 0.2
	}
	if o.JunkShare == 0 {
		o.JunkShare = 0.01
	}
	if o.ZipfS <= 1 {
		o.ZipfS = 1.2
	}
	if !o.VIP4.IsValid() {
		o.VIP4 = netip.MustParseAddr("198.51.100.10")
	}
	if !o.VIP6.IsValid() {
		o.VIP6 = netip.MustParseAddr("2001:db8:100::10")
	}
	if o.Port == 0 {
		o.Port = 80
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
}

var (
	genClientMAC = net.HardwareAddr{2, 0, 0, 0, 0, 0xfe}
	genLBMAC     = net.HardwareAddr{2, 0, 0, 0, 0, 0xaa}
)

type genPkt struct {
	at   time.Duration
	data []byte
}

// GenStats says what Generate wrote.
type GenStats struct {
	Packets, Flows, V6Flows, Junk int
}

// Generate writes a pcap of client → VIP traffic: every flow is a full TCP
// connection (SYN, ACK, data, FIN, ACK) from its own client address and
// port; data packets are spread over flows by a Zipf law so a few flows are
// heavy; flows start at random times and interleave.
func Generate(w io.Writer, o GenOptions) (GenStats, error) {
	o.defaults()
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x5eed))
	var st GenStats
	data := o.Packets - 4*o.Flows
	if data < 0 {
		data = 0
	}
	per := make([]int, o.Flows)
	if o.Flows > 1 {
		z := rand.NewZipf(rand.New(rand.NewPCG(o.Seed+1, 7)), o.ZipfS, 1, uint64(o.Flows-1))
		for i := 0; i < data; i++ {
			per[z.Uint64()]++
		}
	} else {
		per[0] = data
	}
	var pkts []genPkt
	for f := 0; f < o.Flows; f++ {
		v6 := o.V6Share > 0 && rng.Float64() < o.V6Share
		var src, dst netip.Addr
		if v6 {
			a := netip.MustParseAddr("2001:db8:c::").As16()
			a[12], a[13], a[14], a[15] = byte(f>>24), byte(f>>16), byte(f>>8), byte(f)
			src, dst = netip.AddrFrom16(a), o.VIP6
			st.V6Flows++
		} else {
			src = netip.AddrFrom4([4]byte{100, 64 + byte(f>>16&0x3f), byte(f >> 8), byte(f)})
			dst = o.VIP4
		}
		sport := uint16(1024 + rng.IntN(64000))
		start := time.Duration(rng.Int64N(int64(o.Duration) * 8 / 10))
		step := time.Duration(100+rng.IntN(5000)) * time.Microsecond
		seq := rng.Uint32()
		at := start
		add := func(flags string, payload int) {
			pkts = append(pkts, genPkt{at, tcpFrame(src, dst, sport, o.Port, flags, seq, payload)})
			seq += uint32(payload)
			if flags == "S" || flags == "FA" {
				seq++
			}
			at += step
		}
		add("S", 0)
		add("A", 0)
		for i := 0; i < per[f]; i++ {
			add("PA", 40+rng.IntN(1200))
		}
		add("FA", 0)
		add("A", 0)
	}
	st.Flows = o.Flows
	nJunk := int(float64(len(pkts)) * o.JunkShare)
	for i := 0; i < nJunk; i++ {
		pkts = append(pkts, genPkt{time.Duration(rng.Int64N(int64(o.Duration))), junkFrame(rng, o)})
	}
	st.Junk = nJunk
	sort.SliceStable(pkts, func(i, j int) bool { return pkts[i].at < pkts[j].at })
	pw := pcapgo.NewWriter(w)
	if err := pw.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		return st, fmt.Errorf("bench: write pcap header: %w", err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: o.Start.Add(p.at), CaptureLength: len(p.data), Length: len(p.data)}
		if err := pw.WritePacket(ci, p.data); err != nil {
			return st, fmt.Errorf("bench: write pcap: %w", err)
		}
	}
	st.Packets = len(pkts)
	return st, nil
}

var serOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

func ipLayer(src, dst netip.Addr, proto layers.IPProtocol) (gopacket.NetworkLayer, gopacket.SerializableLayer, layers.EthernetType) {
	if dst.Is6() {
		l := &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: proto, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		return l, l, layers.EthernetTypeIPv6
	}
	l := &layers.IPv4{Version: 4, TTL: 60, Protocol: proto, Flags: layers.IPv4DontFragment, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	return l, l, layers.EthernetTypeIPv4
}

func tcpFrame(src, dst netip.Addr, sport, dport uint16, flags string, seq uint32, payload int) []byte {
	nl, ipl, et := ipLayer(src, dst, layers.IPProtocolTCP)
	t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: 1, Window: 502}
	for _, c := range flags {
		switch c {
		case 'S':
			t.SYN = true
		case 'A':
			t.ACK = true
		case 'F':
			t.FIN = true
		case 'P':
			t.PSH = true
		}
	}
	_ = t.SetNetworkLayerForChecksum(nl)
	buf := gopacket.NewSerializeBuffer()
	pl := make([]byte, payload)
	for i := range pl {
		pl[i] = byte('a' + i%26)
	}
	_ = gopacket.SerializeLayers(buf, serOpts, &layers.Ethernet{SrcMAC: genClientMAC, DstMAC: genLBMAC, EthernetType: et}, ipl, t, gopacket.Payload(pl))
	return append([]byte(nil), buf.Bytes()...)
}

// junkFrame returns one of the frames a balancer must survive.
func junkFrame(rng *rand.Rand, o GenOptions) []byte {
	good := tcpFrame(netip.MustParseAddr("100.127.0.1"), o.VIP4, 5555, o.Port, "PA", 1, 100)
	switch rng.IntN(6) {
	case 0: // truncated inside the TCP header
		return good[:14+20+8]
	case 1: // ARP
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, serOpts,
			&layers.Ethernet{SrcMAC: genClientMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
			&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
				Operation: layers.ARPRequest, SourceHwAddress: genClientMAC, SourceProtAddress: []byte{100, 127, 0, 1},
				DstHwAddress: make([]byte, 6), DstProtAddress: o.VIP4.AsSlice()})
		return append([]byte(nil), buf.Bytes()...)
	case 2: // bad IHL
		b := append([]byte(nil), good...)
		b[14] = 0x43
		return b
	case 3: // a later fragment to the VIP
		nl, ipl, et := ipLayer(netip.MustParseAddr("100.127.0.2"), o.VIP4, layers.IPProtocolUDP)
		ipl.(*layers.IPv4).FragOffset = 100
		ipl.(*layers.IPv4).Flags = 0
		_ = nl
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, serOpts, &layers.Ethernet{SrcMAC: genClientMAC, DstMAC: genLBMAC, EthernetType: et}, ipl, gopacket.Payload(make([]byte, 64)))
		return append([]byte(nil), buf.Bytes()...)
	case 4: // to an address that is not a VIP
		return tcpFrame(netip.MustParseAddr("100.127.0.3"), netip.MustParseAddr("192.0.2.200"), 5555, 22, "S", 1, 0)
	}
	// a VIP port without a service
	return tcpFrame(netip.MustParseAddr("100.127.0.4"), o.VIP4, 5555, 8443, "S", 1, 0)
}
