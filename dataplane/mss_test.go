package dataplane

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/testutil"
)

// synWithMSS is a client's SYN to dst:80 carrying Linux's options (MSS
// first), with valid checksums.
func synWithMSS(t testing.TB, src, dst netip.Addr, sport uint16, mss uint16) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macRouter[:]), DstMAC: net.HardwareAddr(macLB[:]), EthernetType: layers.EthernetTypeIPv4}
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	if dst.Is6() {
		eth.EthernetType = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		nl, ipl = l, l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		nl, ipl = l, l
	}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, SYN: true, Seq: 12345, Window: 64240, Options: []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: binary.BigEndian.AppendUint16(nil, mss)},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: make([]byte, 8)},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}}
	_ = tc.SetNetworkLayerForChecksum(nl)
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, tc); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// innerMSS returns the MSS option of the TCP segment inside a tunnelled frame.
func innerMSS(t *testing.T, frame []byte) uint16 {
	t.Helper()
	pk := verify(t, frame)
	tl, ok := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !ok {
		t.Fatalf("no TCP in %v", pk)
	}
	for _, o := range tl.Options {
		if o.OptionType == layers.TCPOptionKindMSS {
			return binary.BigEndian.Uint16(o.OptionData)
		}
	}
	t.Fatalf("no MSS option in %v", pk)
	return 0
}

func TestTunnelMSSClampsSYNs(t *testing.T) {
	c6 := netip.MustParseAddr("2001:db8:c::7")
	for _, c := range []struct {
		name           string
		v6VIP, v6Backs bool
		mtu            int
		tunnelMSS      uint16
		want           uint16
	}{
		{"ipip auto, 1400-byte egress", false, false, 1400, TunnelMSSAuto, 1340},
		{"ipip auto, 1500-byte egress", false, false, 1500, TunnelMSSAuto, 1440},
		{"ip6ip6 auto", true, true, 1400, TunnelMSSAuto, 1300},
		{"4in6 auto", false, true, 1400, TunnelMSSAuto, 1320},
		{"fixed 1200", false, false, 1500, 1200, 1200},
		{"fixed above the client's", false, false, 1500, 1480, 1460},
		{"off", false, false, 1400, 0, 1460},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := testSpec(ModeTunnel, SchedMaglev, c.v6Backs, 2)
			spec.Ifaces[0].MTU = c.mtu
			spec.Services[0].TunnelMSS = c.tunnelMSS
			src := client(3)
			spec.Services[0].VIP = vip4
			if c.v6VIP {
				spec.Services[0].VIP = vip6
				src = c6
			}
			s := mustBuild(t, spec, nil)
			w := NewWorker(newCT(t, 1024), 0)
			r, out := run(w, s, synWithMSS(t, src, spec.Services[0].VIP, 40000, 1460), sec)
			if r.Action != ActTx {
				t.Fatalf("result %+v", r)
			}
			if got := innerMSS(t, out); got != c.want {
				t.Fatalf("MSS %d, want %d", got, c.want)
			}
			// A retransmitted SYN (the flow is known now) is clamped the same.
			if _, out := run(w, s, synWithMSS(t, src, spec.Services[0].VIP, 40000, 1460), sec+1000); innerMSS(t, out) != c.want {
				t.Fatal("retransmitted SYN not clamped")
			}
		})
	}
}

func TestTunnelMSSOnlyForTunnelTCP(t *testing.T) {
	for _, mode := range []Mode{ModeDSR, ModeL3DSR, ModeNAT, ModeFullNAT} {
		spec := testSpec(mode, SchedMaglev, false, 2)
		spec.Services[0].TunnelMSS = TunnelMSSAuto
		var se *SpecError
		if _, err := Build(spec, nil); !errors.As(err, &se) || se.Field != "TunnelMSS" {
			t.Errorf("%s with TunnelMSS: %v", mode, err)
		}
	}
	spec := testSpec(ModeTunnel, SchedMaglev, false, 2)
	spec.Services[0].Proto = 17
	spec.Services[0].TunnelMSS = 1200
	if _, err := Build(spec, nil); err == nil {
		t.Error("a udp tunnel service with TunnelMSS was accepted")
	}
}

// TestTunnelMSSChangeRecompiles: a service whose only change is its
// TunnelMSS is not taken over unchanged from the previous snapshot.
func TestTunnelMSSChangeRecompiles(t *testing.T) {
	spec := testSpec(ModeTunnel, SchedMaglev, false, 2)
	s1 := mustBuild(t, spec, nil)
	spec.Services[0].TunnelMSS = 1000
	s2 := mustBuild(t, spec, s1)
	w := NewWorker(newCT(t, 1024), 0)
	if _, out := run(w, s2, synWithMSS(t, client(1), vip4, 40001, 1460), sec); innerMSS(t, out) != 1000 {
		t.Fatal("the new TunnelMSS did not apply")
	}
}

// TestTunnelSYNClampZeroAllocs: the SYN path with a clamp allocates nothing.
func TestTunnelSYNClampZeroAllocs(t *testing.T) {
	spec := testSpec(ModeTunnel, SchedMaglev, false, 4)
	spec.Services[0].TunnelMSS = TunnelMSSAuto
	s := mustBuild(t, spec, nil)
	w := NewWorker(newCT(t, 1<<12), 0)
	var frames []encap.Frame
	var orig [][]byte
	for i := range BatchSize {
		b := synWithMSS(t, client(i), vip4, 7000, 1460)
		orig = append(orig, b)
		frames = append(frames, frameOf(b))
	}
	res := make([]Result, BatchSize)
	now := sec
	reset := func() {
		for i := range frames {
			copy(frames[i].Buf[headroom:], orig[i])
			frames[i].Off, frames[i].Len = headroom, len(orig[i])
		}
	}
	reset()
	w.Process(s, frames, res, now)
	if n := testutil.Mallocs(200, func() {
		reset()
		now += 1000
		w.Process(s, frames, res, now)
	}); n != 0 {
		t.Fatalf("%d allocations in 200 batches", n)
	}
	if res[0].Action != ActTx {
		t.Fatalf("result %+v", res[0])
	}
}

// BenchmarkTunnelSYN measures SYNs of new flows to a tunnel service
// (schedule + conntrack insert + clamp + encapsulation), without and with
// tunnel_mss, as BenchmarkNewFlow does.
func BenchmarkTunnelSYN(b *testing.B) {
	for _, c := range []struct {
		name string
		mss  uint16
	}{{"tunnel_mss=off", 0}, {"tunnel_mss=auto", TunnelMSSAuto}} {
		b.Run(c.name, func(b *testing.B) {
			spec := testSpec(ModeTunnel, SchedMaglev, false, 8)
			spec.Services[0].TunnelMSS = c.mss
			spec.Ifaces[0].Checksum = ChecksumTrust
			s := mustBuild(b, spec, nil)
			ct := newCTWith(b, 1<<15, func(c *conntrack.Config) { c.TCPSyn = time.Second })
			w := NewWorker(ct, 0)
			orig := make([][]byte, BatchSize)
			for j := range orig {
				orig[j] = synWithMSS(b, netip.AddrFrom4([4]byte{100, 64, 0, byte(j)}), vip4, 1, 1460)
			}
			// A fresh source port per round makes every SYN a new flow
			// (checksum: trust, so it need not be fixed).
			benchTemplates(b, w, s, orig, int64(1e9), 1e7, func(round, _ int, batch []encap.Frame) {
				for j := range batch {
					copy(batch[j].Buf[headroom:], orig[j])
					batch[j].Off, batch[j].Len = headroom, len(orig[j])
					batch[j].Buf[headroom+34], batch[j].Buf[headroom+35] = byte(round>>8), byte(round)
				}
			})
		})
	}
}
