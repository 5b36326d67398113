package encap_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// TCP options as bytes, to build option lists the table needs exactly.
var (
	optMSS1460 = []byte{2, 4, 0x05, 0xb4}
	optNOP     = []byte{1}
	optWScale7 = []byte{3, 3, 7}
	optSACKOK  = []byte{4, 2}
	optTS      = []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 0}
)

// segment builds an Ethernet frame with a TCP segment whose options are
// opts (padded with end-of-list to a multiple of four), with valid
// checksums, and a few payload bytes.
func segment(t testing.TB, v6 bool, flags uint8, opts ...[]byte) []byte {
	t.Helper()
	var ob []byte
	for _, o := range opts {
		ob = append(ob, o...)
	}
	for len(ob)%4 != 0 {
		ob = append(ob, 0)
	}
	tcp := make([]byte, 20+len(ob)+5)
	binary.BigEndian.PutUint16(tcp[0:2], 40000)
	binary.BigEndian.PutUint16(tcp[2:4], 80)
	binary.BigEndian.PutUint32(tcp[4:8], 1000)
	tcp[12] = byte((20+len(ob))/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:16], 64240)
	copy(tcp[20:], ob)
	copy(tcp[20+len(ob):], "hello")
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.SerializableLayer = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: net.IP{203, 0, 113, 7}, DstIP: net.IP{198, 51, 100, 10}}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.ParseIP("2001:db8:c::7"), DstIP: net.ParseIP("2001:db8:100::10")}
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, gopacket.Payload(tcp)); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	var p packet.Parsed
	if r := packet.Decode(b, &p); r != packet.OK {
		t.Fatalf("decode: %v", r)
	}
	packet.FixL4Checksum(b, &p)
	return b
}

// mssOf returns the value of the frame's MSS option, or 0.
func mssOf(t testing.TB, frame []byte) uint16 {
	t.Helper()
	pk := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	tl, _ := pk.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tl == nil {
		t.Fatalf("no TCP layer: %v", pk)
	}
	for _, o := range tl.Options {
		if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
			return binary.BigEndian.Uint16(o.OptionData)
		}
	}
	return 0
}

func TestClampMSS(t *testing.T) {
	const syn, ack, rst = packet.TCPSyn, packet.TCPAck, packet.TCPRst
	cases := []struct {
		name    string
		v6      bool
		flags   uint8
		opts    [][]byte
		clamp   uint16
		changed bool
		want    uint16 // MSS option afterwards (0: none)
		// malformed: a decoder stops at the bad option and never sees the MSS.
		malformed bool
	}{
		{name: "ipv4 SYN as Linux sends it", flags: syn, opts: [][]byte{optMSS1460, optSACKOK, optTS, optNOP, optWScale7}, clamp: 1340, changed: true, want: 1340},
		{name: "ipv6 SYN", v6: true, flags: syn, opts: [][]byte{optMSS1460, optSACKOK, optTS, optNOP, optWScale7}, clamp: 1280, changed: true, want: 1280},
		{name: "SYN-ACK is clamped too", flags: syn | ack, opts: [][]byte{optMSS1460}, clamp: 1340, changed: true, want: 1340},
		{name: "MSS at an odd offset", flags: syn, opts: [][]byte{optNOP, optMSS1460, optWScale7}, clamp: 1337, changed: true, want: 1337},
		{name: "MSS after the other options", flags: syn, opts: [][]byte{optNOP, optNOP, optTS, optWScale7, optSACKOK, optMSS1460}, clamp: 1000, changed: true, want: 1000},
		{name: "odd offset, ipv6", v6: true, flags: syn, opts: [][]byte{optWScale7, optMSS1460}, clamp: 1221, changed: true, want: 1221},
		{name: "already below the clamp", flags: syn, opts: [][]byte{optMSS1460}, clamp: 1460, want: 1460},
		{name: "clamp off", flags: syn, opts: [][]byte{optMSS1460}, clamp: 0, want: 1460},
		{name: "no MSS option", flags: syn, opts: [][]byte{optSACKOK, optWScale7}, clamp: 1340},
		{name: "no options at all", flags: syn, clamp: 1340},
		{name: "ACK", flags: ack, opts: [][]byte{optMSS1460}, clamp: 1340, want: 1460},
		{name: "SYN with RST", flags: syn | rst, opts: [][]byte{optMSS1460}, clamp: 1340, want: 1460},
		{name: "end of list before MSS", malformed: true, flags: syn, opts: [][]byte{{0, 0, 0, 0}, optMSS1460}, clamp: 1340, want: 1460},
		{name: "option length 0", malformed: true, flags: syn, opts: [][]byte{{5, 0}, optMSS1460}, clamp: 1340, want: 1460},
		{name: "option runs past the header", malformed: true, flags: syn, opts: [][]byte{{5, 40}, optMSS1460}, clamp: 1340, want: 1460},
		{name: "MSS option of length 3", flags: syn, opts: [][]byte{{2, 3, 0x05}, optNOP}, clamp: 1340},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := segment(t, c.v6, c.flags, c.opts...)
			before := append([]byte(nil), b...)
			var p packet.Parsed
			if r := packet.Decode(b, &p); r != packet.OK {
				t.Fatalf("decode: %v", r)
			}
			if got := encap.ClampMSS(b, &p, c.clamp); got != c.changed {
				t.Fatalf("ClampMSS = %v, want %v", got, c.changed)
			}
			if !c.changed && !bytes.Equal(b, before) {
				t.Fatal("unchanged, but the frame differs")
			}
			if !packet.L4ChecksumOK(b, &p) {
				t.Fatal("TCP checksum invalid after the clamp")
			}
			checkValid(t, b)
			if got := mssOf(t, b); !c.malformed && got != c.want {
				t.Fatalf("MSS option %d, want %d", got, c.want)
			}
			// Only the option value and the checksum may differ.
			for i := range b {
				if b[i] != before[i] && !(i >= int(p.L4Off)+16 && i < int(p.L4Off)+18) && !(i >= int(p.L4Off)+20 && i < int(p.L4Off)+int(b[p.L4Off+12]>>4)*4) {
					t.Fatalf("byte %d changed outside the option and the checksum", i)
				}
			}
		})
	}
}

func TestClampMSSUDPAndFragments(t *testing.T) {
	var p packet.Parsed
	u := mkFrame(t, false, "udp")
	before := append([]byte(nil), u...)
	if packet.Decode(u, &p) != packet.OK {
		t.Fatal("decode")
	}
	if encap.ClampMSS(u, &p, 536) || !bytes.Equal(u, before) {
		t.Fatal("a UDP datagram was changed")
	}
	// A later fragment has no transport header.
	p = packet.Parsed{Proto: packet.ProtoTCP, TCPFlags: packet.TCPSyn, End: uint16(len(u))}
	if encap.ClampMSS(u, &p, 536) {
		t.Fatal("a frame without a transport header was changed")
	}
}

func TestTunnelMSS(t *testing.T) {
	for _, c := range []struct {
		mtu            int
		outer6, inner6 bool
		want           uint16
		what           string
	}{
		{1500, false, false, 1440, "IPIP"},
		{1500, true, false, 1420, "4in6"},
		{1500, true, true, 1400, "IP6IP6"},
		{1500, false, true, 1420, "6in4"},
		{1400, false, false, 1340, "IPIP, 1400-byte MTU"},
		{9000, false, false, 8940, "jumbo"},
		{60, false, false, 0, "nothing fits"},
	} {
		if got := encap.TunnelMSS(c.mtu, c.outer6, c.inner6); got != c.want {
			t.Errorf("%s: TunnelMSS(%d) = %d, want %d", c.what, c.mtu, got, c.want)
		}
	}
}

func TestClampMSSZeroAllocs(t *testing.T) {
	b := segment(t, false, packet.TCPSyn, optMSS1460, optSACKOK, optTS, optNOP, optWScale7)
	var p packet.Parsed
	packet.Decode(b, &p)
	mss := uint16(1000)
	if n := testing.AllocsPerRun(100, func() {
		mss ^= 1 // alternate 1000/1001 so every run rewrites
		binary.BigEndian.PutUint16(b[p.L4Off+22:], 1460)
		encap.ClampMSS(b, &p, mss)
	}); n != 0 {
		t.Fatalf("%v allocations per clamp", n)
	}
}

// FuzzClampMSS: on any frame, ClampMSS never panics, never changes the
// length or any byte outside the TCP options and checksum, keeps a valid
// checksum valid, and, when it reports a change, leaves the MSS option at
// exactly the clamp.
func FuzzClampMSS(f *testing.F) {
	f.Add(segment(f, false, packet.TCPSyn, optMSS1460, optSACKOK, optTS, optNOP, optWScale7), uint16(1340))
	f.Add(segment(f, true, packet.TCPSyn, optNOP, optMSS1460), uint16(1221))
	f.Add(segment(f, false, packet.TCPSyn|packet.TCPAck, optWScale7, optMSS1460), uint16(1))
	f.Add(segment(f, false, packet.TCPSyn, []byte{2, 4}), uint16(500))
	f.Fuzz(func(t *testing.T, data []byte, mss uint16) {
		var p packet.Parsed
		if packet.Decode(data, &p) != packet.OK {
			return
		}
		valid := p.Proto == packet.ProtoTCP && p.Frag == packet.FragNone && packet.L4ChecksumOK(data, &p)
		before := append([]byte(nil), data...)
		changed := encap.ClampMSS(data, &p, mss)
		if !changed {
			if !bytes.Equal(data, before) {
				t.Fatal("reported no change, but the frame differs")
			}
			return
		}
		hl := int(data[p.L4Off+12]>>4) * 4
		for i := range data {
			inOpts := i >= int(p.L4Off)+20 && i < int(p.L4Off)+hl
			inSum := i >= int(p.L4Off)+16 && i < int(p.L4Off)+18
			if data[i] != before[i] && !inOpts && !inSum {
				t.Fatalf("byte %d changed outside the options and the checksum", i)
			}
		}
		if valid && !packet.L4ChecksumOK(data, &p) {
			t.Fatal("a valid checksum became invalid")
		}
		found := false
		for i := int(p.L4Off) + 20; i+3 < int(p.L4Off)+hl; i++ {
			if data[i] == 2 && data[i+1] == 4 && binary.BigEndian.Uint16(data[i+2:]) == mss && binary.BigEndian.Uint16(before[i+2:]) > mss {
				found = true
			}
		}
		if !found {
			t.Fatal("reported a change, but no MSS option holds the clamp")
		}
	})
}

// BenchmarkClampMSS is the clamp alone on a Linux SYN (MSS first, then
// SACK-permitted, timestamps, window scale): the value is restored before
// each call so every call rewrites.
func BenchmarkClampMSS(b *testing.B) {
	f := segment(b, false, packet.TCPSyn, optMSS1460, optSACKOK, optTS, optNOP, optWScale7)
	var p packet.Parsed
	packet.Decode(f, &p)
	at := int(p.L4Off) + 22
	b.ReportAllocs()
	for b.Loop() {
		binary.BigEndian.PutUint16(f[at:], 1460)
		if !encap.ClampMSS(f, &p, 1340) {
			b.Fatal("not clamped")
		}
	}
}
