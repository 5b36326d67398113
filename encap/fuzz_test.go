package encap_test

import (
	"bytes"
	"testing"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

const (
	fuzzHeadroom = 48
	canary       = 0xa5
)

// fuzzRewrite decodes an arbitrary frame, makes its checksums valid, runs
// one rewrite inside a canary-filled buffer, and checks the invariants: no
// panic, nothing written outside the (possibly grown) frame, a refused
// rewrite leaves the frame untouched, and a forwarded frame decodes with
// every checksum valid.
func fuzzRewrite(t *testing.T, data []byte, v6Targets bool, name string) {
	var p packet.Parsed
	if packet.Decode(data, &p) != packet.OK {
		return
	}
	buf := bytes.Repeat([]byte{canary}, fuzzHeadroom+len(data)+fuzzHeadroom)
	copy(buf[fuzzHeadroom:], data)
	f := encap.Frame{Buf: buf[:fuzzHeadroom+len(data)], Off: fuzzHeadroom, Len: len(data)}
	fixChecksums(f.Bytes(), &p)
	before := append([]byte(nil), f.Bytes()...)
	var rw rewrite
	for _, r := range rewrites(v6Targets) {
		if r.name == name {
			rw = r
		}
	}
	v := rw.run(&f, &p)
	for i := 0; i < f.Off; i++ {
		if buf[i] != canary {
			t.Fatalf("%s wrote before the frame at %d", name, i)
		}
	}
	for i := f.Off + f.Len; i < len(buf); i++ {
		if i >= fuzzHeadroom+len(data) && buf[i] != canary {
			t.Fatalf("%s wrote past the buffer's frame at %d", name, i)
		}
	}
	if v != encap.Forward {
		if !bytes.Equal(f.Bytes(), before) {
			t.Fatalf("%s returned %v but changed the frame", name, v)
		}
		return
	}
	checkValid(t, f.Bytes())
}

func addSeeds(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, pr := range []string{"tcp", "udp"} {
			f.Add(mkFrame(f, v6, pr), v6)
		}
	}
	f.Add([]byte{}, false)
}

func FuzzDSR(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "dsr") })
}

func FuzzTunnel(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "tunnel") })
}

func FuzzL3DSR(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "l3dsr") })
}

func FuzzNAT(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "nat") })
}

func FuzzNATReply(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "nat-reply") })
}

func FuzzFullNAT(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "fullnat") })
}

func FuzzTooBigReply(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "too-big") })
}

func FuzzFullNATReply(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) { fuzzRewrite(t, b, v6, "fullnat-reply") })
}

// icmpSeeds are the golden ICMP inputs (echo requests and errors).
func icmpSeeds(f *testing.F) {
	for _, name := range []string{"icmp-echo-reply4", "icmp-echo-reply6", "icmp-error-nat4", "icmp-error-fullnat6"} {
		m, _ := filepathGlob(goldenDir + "/*-" + name + ".in.pcap")
		for _, p := range m {
			f.Add(readPcapF(f, p), false)
		}
	}
}

func FuzzEchoReply(f *testing.F) {
	icmpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, _ bool) {
		var p packet.Parsed
		if packet.Decode(b, &p) != packet.OK {
			return
		}
		fixChecksums(b, &p)
		before := append([]byte(nil), b...)
		if encap.EchoReply(b, &p) != encap.Forward {
			if !bytes.Equal(b, before) {
				t.Fatal("refused echo reply changed the frame")
			}
			return
		}
		checkValid(t, b)
	})
}

func FuzzICMPError(f *testing.F) {
	icmpSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte, full bool) {
		var p packet.Parsed
		if packet.Decode(b, &p) != packet.OK || !p.Inner.Valid {
			return
		}
		fixChecksums(b, &p)
		before := append([]byte(nil), b...)
		v6 := p.Family == 6
		be, sn := ep("10.0.0.11", 8080), ep("10.0.0.1", 20000)
		if v6 {
			be, sn = ep("2001:db8:1::11", 8080), ep("2001:db8:1::1", 20000)
		}
		var v encap.Verdict
		if full {
			v = encap.ICMPError(b, &p, &sn.Addr, &be.Addr, be, sn, &egress)
		} else {
			v = encap.ICMPError(b, &p, nil, &be.Addr, be, nil, &egress)
		}
		if v != encap.Forward {
			if !bytes.Equal(b, before) {
				t.Fatalf("refused ICMP error rewrite (%v) changed the frame", v)
			}
			return
		}
		checkValid(t, b)
	})
}
