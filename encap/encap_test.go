package encap_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// refSum is a plain RFC 1071 sum, independent of packet.Sum.
func refSum(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// l4Sum returns the folded sum of pseudo-header + transport bytes; a valid
// checksum makes it 0xffff.
func l4Sum(frame []byte, p *packet.Parsed) uint16 {
	l3 := frame[p.L3Off:]
	seg := frame[p.L4Off:p.End]
	var s uint32
	if p.Family == 4 {
		s = refSum(l3[12:20])
	} else {
		s = refSum(l3[8:40])
	}
	if p.Proto != packet.ProtoICMP {
		s += uint32(p.Proto) + uint32(len(seg))
	} else {
		s = 0
	}
	return fold(s + refSum(seg))
}

func ckOffset(p *packet.Parsed) int {
	switch p.Proto {
	case packet.ProtoTCP:
		return int(p.L4Off) + 16
	case packet.ProtoUDP:
		return int(p.L4Off) + 6
	case packet.ProtoICMP, packet.ProtoICMPv6:
		return int(p.L4Off) + 2
	}
	return -1
}

// fixChecksums makes the IPv4 header and transport checksums of a decoded
// frame valid by full recomputation (the fuzzers start from valid frames).
func fixChecksums(frame []byte, p *packet.Parsed) {
	l3 := frame[p.L3Off:]
	if p.Family == 4 {
		hl := int(l3[0]&0xf) * 4
		l3[10], l3[11] = 0, 0
		binary.BigEndian.PutUint16(l3[10:], ^fold(refSum(l3[:hl])))
	}
	if p.L4Off == 0 || p.Frag != packet.FragNone {
		return
	}
	at := ckOffset(p)
	if at < 0 || at+2 > int(p.End) {
		return
	}
	if p.Proto == packet.ProtoUDP && p.Family == 4 && binary.BigEndian.Uint16(frame[at:]) == 0 {
		return // no checksum, legal over IPv4
	}
	frame[at], frame[at+1] = 0, 0
	c := ^l4Sum(frame, p)
	if c == 0 && p.Proto == packet.ProtoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(frame[at:], c)
}

// checkValid decodes a frame and fails unless every checksum in it is valid.
func checkValid(t *testing.T, frame []byte) {
	t.Helper()
	var p packet.Parsed
	if r := packet.Decode(frame, &p); r != packet.OK {
		t.Fatalf("output does not decode: %v", r)
	}
	l3 := frame[p.L3Off:]
	if p.Family == 4 {
		if s := fold(refSum(l3[:int(l3[0]&0xf)*4])); s != 0xffff {
			t.Fatalf("IPv4 header checksum invalid (sum %#04x)", s)
		}
	}
	if p.L4Off == 0 || p.Frag != packet.FragNone || ckOffset(&p) < 0 || ckOffset(&p)+2 > int(p.End) {
		return
	}
	if p.Proto == packet.ProtoUDP && p.Family == 4 && binary.BigEndian.Uint16(frame[ckOffset(&p):]) == 0 {
		return
	}
	if s := l4Sum(frame, &p); s != 0xffff {
		t.Fatalf("transport checksum invalid (proto %d, sum %#04x)", p.Proto, s)
	}
}

var egress = encap.Egress{Dst: [6]byte{2, 0, 0, 0, 0xb, 1}, Src: [6]byte{2, 0, 0, 0, 0, 0xaa}, MTU: 1500}

func ep(s string, port uint16) *encap.Endpoint {
	return &encap.Endpoint{Addr: encap.AddrFrom(netip.MustParseAddr(s)), Port: port}
}

func ad(s string) *encap.Addr {
	a := encap.AddrFrom(netip.MustParseAddr(s))
	return &a
}

func mkFrame(tb testing.TB, v6 bool, proto string) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	var nl gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	pr := layers.IPProtocolTCP
	if proto == "udp" {
		pr = layers.IPProtocolUDP
	}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: pr, SrcIP: net.ParseIP("2001:db8::7"), DstIP: net.ParseIP("2001:db8:100::10")}
		nl, ipl = l, l
	} else {
		l := &layers.IPv4{Version: 4, TTL: 64, Protocol: pr, Flags: layers.IPv4DontFragment, SrcIP: net.IP{203, 0, 113, 7}, DstIP: net.IP{198, 51, 100, 10}}
		nl, ipl = l, l
	}
	var l4 gopacket.SerializableLayer
	if proto == "udp" {
		u := &layers.UDP{SrcPort: 40000, DstPort: 7777}
		_ = u.SetNetworkLayerForChecksum(nl)
		l4 = u
	} else {
		tc := &layers.TCP{SrcPort: 51000, DstPort: 80, ACK: true, PSH: true, Window: 512}
		_ = tc.SetNetworkLayerForChecksum(nl)
		l4 = tc
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ipl, l4, gopacket.Payload(bytes.Repeat([]byte("x"), 100))); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// rewrite is one mode under test.
type rewrite struct {
	name string
	run  func(f *encap.Frame, p *packet.Parsed) encap.Verdict
}

func rewrites(v6 bool) []rewrite {
	be, vip, cl, sn, tsrc := "10.0.0.11", "198.51.100.10", "203.0.113.7", "10.0.0.1", "10.0.0.1"
	if v6 {
		be, vip, cl, sn, tsrc = "2001:db8:1::11", "2001:db8:100::10", "2001:db8::7", "2001:db8:1::1", "2001:db8:1::1"
	}
	backend, vipEP, client, snat := ep(be, 8080), ep(vip, 80), ep(cl, 51000), ep(sn, 20000)
	beA, tsrcA := ad(be), ad(tsrc)
	return []rewrite{
		{"dsr", func(f *encap.Frame, p *packet.Parsed) encap.Verdict { return encap.DSR(f.Bytes(), p, &egress) }},
		{"tunnel", func(f *encap.Frame, p *packet.Parsed) encap.Verdict {
			return encap.Tunnel(f, p, tsrcA, beA, 7, &egress)
		}},
		{"l3dsr", func(f *encap.Frame, p *packet.Parsed) encap.Verdict {
			return encap.L3DSR(f.Bytes(), p, beA, 12, &egress)
		}},
		{"nat", func(f *encap.Frame, p *packet.Parsed) encap.Verdict { return encap.NAT(f.Bytes(), p, backend, &egress) }},
		{"nat-reply", func(f *encap.Frame, p *packet.Parsed) encap.Verdict {
			return encap.NATReply(f.Bytes(), p, vipEP, &egress)
		}},
		{"fullnat", func(f *encap.Frame, p *packet.Parsed) encap.Verdict {
			return encap.FullNAT(f.Bytes(), p, snat, backend, &egress)
		}},
		{"fullnat-reply", func(f *encap.Frame, p *packet.Parsed) encap.Verdict {
			return encap.FullNATReply(f.Bytes(), p, vipEP, client, &egress)
		}},
		{"too-big", func(f *encap.Frame, p *packet.Parsed) encap.Verdict { return encap.TooBigReply(f, p, 1400, egress.Src) }},
	}
}

func TestRewritesZeroAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, rw := range rewrites(v6) {
			in := mkFrame(t, v6, "tcp")
			buf := make([]byte, 256+len(in))
			copy(buf[256:], in)
			var p packet.Parsed
			f := encap.Frame{Buf: buf, Off: 256, Len: len(in)}
			if r := packet.Decode(f.Bytes(), &p); r != packet.OK {
				t.Fatal(r)
			}
			rw := rw
			n := testing.AllocsPerRun(1000, func() {
				f.Off, f.Len = 256, len(in)
				if v := rw.run(&f, &p); v != encap.Forward {
					t.Fatalf("%s: %v", rw.name, v)
				}
			})
			if n != 0 {
				t.Errorf("%s v6=%v allocates %v per packet", rw.name, v6, n)
			}
		}
	}
}

func TestTunnelKeepsInnerPacket(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		in := mkFrame(t, v6, "udp")
		buf := make([]byte, 64+len(in))
		copy(buf[64:], in)
		f := encap.Frame{Buf: buf, Off: 64, Len: len(in)}
		var p packet.Parsed
		packet.Decode(f.Bytes(), &p)
		src, dst := ad("10.0.0.1"), ad("10.0.0.11")
		if v := encap.Tunnel(&f, &p, src, dst, 0, &egress); v != encap.Forward {
			t.Fatal(v)
		}
		out := f.Bytes()
		if !bytes.Equal(out[14+20:], in[14:]) {
			t.Fatal("inner packet changed")
		}
		checkValid(t, out)
	}
}

func TestMismatchedFamiliesRefused(t *testing.T) {
	in := mkFrame(t, false, "tcp")
	var p packet.Parsed
	packet.Decode(in, &p)
	orig := append([]byte(nil), in...)
	if v := encap.NAT(in, &p, ep("2001:db8::1", 80), &egress); v != encap.Unsupported {
		t.Fatalf("nat v4→v6: %v", v)
	}
	if v := encap.L3DSR(in, &p, ad("2001:db8::1"), 1, &egress); v != encap.Unsupported {
		t.Fatalf("l3dsr v4→v6: %v", v)
	}
	f := encap.Frame{Buf: in, Off: 0, Len: len(in)}
	if v := encap.Tunnel(&f, &p, ad("10.0.0.1"), ad("2001:db8::1"), 0, &egress); v != encap.Unsupported {
		t.Fatalf("tunnel with mixed outer families: %v", v)
	}
	if !bytes.Equal(in, orig) {
		t.Fatal("refused rewrite changed the frame")
	}
}

func benchRewrite(b *testing.B, v6 bool, name string) {
	in := mkFrame(b, v6, "tcp")
	buf := make([]byte, 256+len(in))
	copy(buf[256:], in)
	f := encap.Frame{Buf: buf, Off: 256, Len: len(in)}
	var p packet.Parsed
	packet.Decode(f.Bytes(), &p)
	var rw rewrite
	for _, r := range rewrites(v6) {
		if r.name == name {
			rw = r
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		f.Off, f.Len = 256, len(in)
		rw.run(&f, &p)
	}
}

func BenchmarkRewrite(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "v4"
		if v6 {
			fam = "v6"
		}
		for _, rw := range rewrites(v6) {
			b.Run(rw.name+"/"+fam, func(b *testing.B) { benchRewrite(b, v6, rw.name) })
		}
	}
}
