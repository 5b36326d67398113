package encap_test

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
	"github.com/xlb/xlb/internal/testutil"
)

const goldenDir = "../testdata/golden"

// goldenCase mirrors the JSON written by internal/tools/goldengen.
type goldenCase struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Mode        string `json:"mode"`
	Verdict     string `json:"verdict"`
	EgressDst   string `json:"egress_dst"`
	EgressSrc   string `json:"egress_src"`
	MTU         int    `json:"mtu"`
	Headroom    int    `json:"headroom"`
	Backend     string `json:"backend"`
	BackendPort uint16 `json:"backend_port"`
	TunnelSrc   string `json:"tunnel_src"`
	FlowHash    uint32 `json:"flow_hash"`
	DSCP        uint8  `json:"dscp"`
	SNAT        string `json:"snat"`
	SNATPort    uint16 `json:"snat_port"`
	VIP         string `json:"vip"`
	VIPPort     uint16 `json:"vip_port"`
	Client      string `json:"client"`
	ClientPort  uint16 `json:"client_port"`
	In          string `json:"in"`
	Out         string `json:"out"`
}

func readPcap(t *testing.T, name string) []byte {
	t.Helper()
	f, err := os.Open(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	data, _, err := r.ReadPacketData()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return data
}

func addr(t *testing.T, s string) encap.Addr {
	t.Helper()
	if s == "" {
		return encap.Addr{}
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return encap.AddrFrom(a)
}

func mac(t *testing.T, s string) (m [6]byte) {
	t.Helper()
	hw, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	copy(m[:], hw)
	return m
}

// apply runs the rewrite a case names.
func apply(t *testing.T, c *goldenCase, f *encap.Frame, p *packet.Parsed) encap.Verdict {
	e := encap.Egress{Dst: mac(t, c.EgressDst), Src: mac(t, c.EgressSrc), MTU: c.MTU}
	ep := func(a string, port uint16) *encap.Endpoint { return &encap.Endpoint{Addr: addr(t, a), Port: port} }
	b := f.Bytes()
	switch c.Mode {
	case "dsr":
		return encap.DSR(b, p, &e)
	case "tunnel":
		src, dst := addr(t, c.TunnelSrc), addr(t, c.Backend)
		return encap.Tunnel(f, p, &src, &dst, c.FlowHash, &e)
	case "l3dsr":
		dst := addr(t, c.Backend)
		return encap.L3DSR(b, p, &dst, c.DSCP, &e)
	case "nat":
		return encap.NAT(b, p, ep(c.Backend, c.BackendPort), &e)
	case "nat-reply":
		return encap.NATReply(b, p, ep(c.VIP, c.VIPPort), &e)
	case "fullnat":
		return encap.FullNAT(b, p, ep(c.SNAT, c.SNATPort), ep(c.Backend, c.BackendPort), &e)
	case "too-big":
		return encap.TooBigReply(f, p, c.MTU, mac(t, c.EgressSrc))
	case "echo-reply":
		return encap.EchoReply(b, p)
	case "icmp-error":
		be := ep(c.Backend, c.BackendPort)
		if c.SNAT == "" {
			return encap.ICMPError(b, p, nil, &be.Addr, be, nil, &e)
		}
		sn := ep(c.SNAT, c.SNATPort)
		return encap.ICMPError(b, p, &sn.Addr, &be.Addr, be, sn, &e)
	case "fullnat-reply":
		return encap.FullNATReply(b, p, ep(c.VIP, c.VIPPort), ep(c.Client, c.ClientPort), &e)
	}
	t.Fatalf("unknown mode %q", c.Mode)
	return 0
}

// TestGolden runs every fixture in testdata/golden: the rewrite's output must
// equal the expected frame byte for byte, and gopacket must decode it with
// every checksum valid.
func TestGolden(t *testing.T) {
	js, err := os.ReadFile(filepath.Join(goldenDir, "cases.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(js, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 24 {
		t.Fatalf("only %d golden cases", len(cases))
	}
	for i := range cases {
		c := &cases[i]
		t.Run(c.Name, func(t *testing.T) {
			in, want := readPcap(t, c.In), readPcap(t, c.Out)
			buf := make([]byte, c.Headroom+len(in))
			copy(buf[c.Headroom:], in)
			f := encap.Frame{Buf: buf, Off: c.Headroom, Len: len(in)}
			var p packet.Parsed
			got := "decode:"
			if r := packet.Decode(f.Bytes(), &p); r != packet.OK {
				got += r.String()
			} else {
				got = apply(t, c, &f, &p).String()
			}
			if got != c.Verdict {
				t.Fatalf("%s\nverdict %s, want %s", c.Description, got, c.Verdict)
			}
			if out := f.Bytes(); !bytes.Equal(out, want) {
				t.Fatalf("%s\noutput differs\n got %x\nwant %x", c.Description, out, want)
			}
			if c.Verdict == "forward" {
				testutil.VerifyFrame(t, f.Bytes())
			}
		})
	}
}

var filepathGlob = filepath.Glob

// readPcapF reads the first frame of a pcap for a fuzz seed.
func readPcapF(f *testing.F, path string) []byte {
	fh, err := os.Open(path)
	if err != nil {
		f.Fatal(err)
	}
	defer fh.Close()
	r, err := pcapgo.NewReader(fh)
	if err != nil {
		f.Fatal(err)
	}
	data, _, err := r.ReadPacketData()
	if err != nil {
		f.Fatal(err)
	}
	return data
}
