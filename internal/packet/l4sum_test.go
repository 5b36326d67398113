package packet

import (
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// partial rewrites a frame's TCP/UDP checksum the way a sender that left
// it to offload (CHECKSUM_PARTIAL) hands it over: only the folded
// pseudo-header sum, not complemented.
func partial(t *testing.T, frame []byte, p *Parsed) {
	t.Helper()
	seg := frame[p.L4Off:p.End]
	var ps uint16
	if p.Family == 4 {
		ps = PseudoSum4(p.Src[:4], p.Dst[:4], p.Proto, uint16(len(seg)))
	} else {
		ps = PseudoSum6(p.Src[:16], p.Dst[:16], p.Proto, uint32(len(seg)))
	}
	binary.BigEndian.PutUint16(seg[csumOff(p.Proto):], ps)
}

func TestL4Checksum(t *testing.T) {
	payload := gopacket.Payload("some request bytes, odd length.")
	cases := []struct {
		name  string
		frame func() []byte
	}{
		{"tcp4", func() []byte {
			tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Seq: 7, Window: 1000}
			ipl := ip4(layers.IPProtocolTCP)
			_ = tcp.SetNetworkLayerForChecksum(ipl)
			return ser(t, eth(false), ipl, tcp, payload)
		}},
		{"udp4", func() []byte {
			udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
			ipl := ip4(layers.IPProtocolUDP)
			_ = udp.SetNetworkLayerForChecksum(ipl)
			return ser(t, eth(false), ipl, udp, payload)
		}},
		{"tcp6", func() []byte {
			tcp := &layers.TCP{SrcPort: 40000, DstPort: 443, ACK: true, Seq: 9, Window: 1000}
			ipl := ip6(layers.IPProtocolTCP)
			_ = tcp.SetNetworkLayerForChecksum(ipl)
			return ser(t, eth(true), ipl, tcp, payload)
		}},
		{"udp6", func() []byte {
			udp := &layers.UDP{SrcPort: 5353, DstPort: 53}
			ipl := ip6(layers.IPProtocolUDP)
			_ = udp.SetNetworkLayerForChecksum(ipl)
			return ser(t, eth(true), ipl, udp, payload)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := c.frame()
			var p Parsed
			if r := Decode(good, &p); r != OK {
				t.Fatalf("decode: %v", r)
			}
			if !L4ChecksumOK(good, &p) {
				t.Fatal("a valid checksum fails")
			}
			bad := append([]byte(nil), good...)
			partial(t, bad, &p)
			if L4ChecksumOK(bad, &p) {
				t.Fatal("a partial (pseudo-header only) checksum passes")
			}
			if !FixL4Checksum(bad, &p) {
				t.Fatal("fix refused")
			}
			if string(bad) != string(good) {
				t.Fatalf("fixed frame differs from the sender's real one:\n%x\n%x", bad, good)
			}
			// A flipped payload bit fails too.
			bad[len(bad)-1] ^= 1
			if L4ChecksumOK(bad, &p) {
				t.Fatal("a corrupted payload passes")
			}
		})
	}
	// UDP over IPv4 without a checksum (0) is valid and stays 0 when fixed
	// only if the computed sum is not zero: RFC 768 sends 0xffff instead.
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	ipl := ip4(layers.IPProtocolUDP)
	_ = udp.SetNetworkLayerForChecksum(ipl)
	f := ser(t, eth(false), ipl, udp, payload)
	var p Parsed
	Decode(f, &p)
	binary.BigEndian.PutUint16(f[p.L4Off+6:], 0)
	if !L4ChecksumOK(f, &p) {
		t.Fatal("UDP/IPv4 checksum 0 (none) fails")
	}
}

func BenchmarkFixL4Checksum(b *testing.B) {
	for _, size := range []int{64, 1400} {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, Window: 1000}
		ipl := ip4(layers.IPProtocolTCP)
		_ = tcp.SetNetworkLayerForChecksum(ipl)
		buf := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth(false), ipl, tcp, gopacket.Payload(make([]byte, size)))
		f := buf.Bytes()
		var p Parsed
		Decode(f, &p)
		b.Run(map[int]string{64: "payload64", 1400: "payload1400"}[size], func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				FixL4Checksum(f, &p)
			}
		})
		b.Run(map[int]string{64: "verify64", 1400: "verify1400"}[size], func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if !L4ChecksumOK(f, &p) {
					b.Fatal("bad")
				}
			}
		})
	}
}
