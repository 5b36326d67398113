package bench

import (
	"bytes"
	"net/netip"
	"os"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"github.com/xlb/xlb/config"
	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/dataplane"
	"github.com/xlb/xlb/internal/packet"
	"github.com/xlb/xlb/internal/testutil"
)

func load(t testing.TB, mode string) (*dataplane.Snapshot, *conntrack.Table) {
	t.Helper()
	f, err := config.Load("../testdata/replay/" + mode + ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, ctc, err := f.Compile()
	if err != nil {
		t.Fatal(err)
	}
	ctc.Capacity = 1 << 16
	spec.Ifaces = []dataplane.Iface{{MAC: [6]byte{2, 0, 0, 0, 0, 0xaa}, MTU: 1500}}
	s, err := dataplane.Build(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := conntrack.New(ctc, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s, ct
}

func genCapture(t testing.TB, flows int) *Capture {
	t.Helper()
	var buf bytes.Buffer
	if _, err := Generate(&buf, GenOptions{Flows: flows, Packets: 12 * flows, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := ReadPcap(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestReplayEveryMode replays generated traffic through each mode, decodes
// every transmitted frame with gopacket (checksums verified), and checks
// that all packets of a flow went to one backend and that flows spread.
func TestReplayEveryMode(t *testing.T) {
	c := genCapture(t, 300)
	vips := map[netip.Addr]bool{netip.MustParseAddr("198.51.100.10"): true, netip.MustParseAddr("2001:db8:100::10"): true}
	// The frames the pipeline must transmit: well-formed, to a VIP, port 80,
	// not fragments. Everything else is junk it must pass or drop.
	type flowKey struct {
		src   [16]byte
		sport uint16
	}
	var want []flowKey
	var p packet.Parsed
	for _, f := range c.Frames {
		if packet.Decode(f, &p) != packet.OK || p.Frag != packet.FragNone || p.DstPort != 80 || p.Proto != packet.ProtoTCP {
			continue
		}
		a, _ := netip.AddrFromSlice(p.Dst[:p.AddrLen()])
		if vips[a] {
			want = append(want, flowKey{p.Src, p.SrcPort})
		}
	}
	for _, mode := range []string{"dsr", "tunnel", "l3dsr", "nat", "fullnat"} {
		t.Run(mode, func(t *testing.T) {
			s, ct := load(t, mode)
			var out bytes.Buffer
			res, err := Replay(s, ct, c, ReplayOptions{Write: &out})
			if err != nil {
				t.Fatal(err)
			}
			oc, err := ReadPcap(&out)
			if err != nil {
				t.Fatal(err)
			}
			if len(oc.Frames) != len(want) || res.Verdicts["tx"] != uint64(len(want)) {
				t.Fatalf("transmitted %d (counted %d), want %d", len(oc.Frames), res.Verdicts["tx"], len(want))
			}
			if res.Verdicts["tx"]+res.Verdicts["pass"]+res.Verdicts["drop"] != uint64(len(c.Frames)) {
				t.Fatalf("verdicts %v do not add up to %d frames", res.Verdicts, len(c.Frames))
			}
			backendOf := map[flowKey]string{}
			used := map[string]bool{}
			for i, f := range oc.Frames {
				pk := testutil.VerifyFrame(t, f)
				var be string
				switch mode {
				case "dsr":
					be = pk.Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC.String()
				default:
					// tunnel: the outer destination; l3dsr/nat/fullnat: the destination.
					be = pk.NetworkLayer().NetworkFlow().Dst().String()
				}
				k := want[i]
				if prev, ok := backendOf[k]; ok && prev != be {
					t.Fatalf("flow %v:%d went to %s and %s", k.src, k.sport, prev, be)
				}
				backendOf[k] = be
				used[be] = true
			}
			if len(used) < 6 {
				t.Fatalf("flows used only %d backends: %v", len(used), used)
			}
			if res.Reasons["truncated"] == 0 || res.Reasons["not_ip"] == 0 {
				t.Fatalf("junk not seen: %v", res.Reasons)
			}
		})
	}
}

func TestReplayWorkersAndJSONFields(t *testing.T) {
	c := genCapture(t, 200)
	s, ct := load(t, "dsr")
	res, err := Replay(s, ct, c, ReplayOptions{Loops: 3, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packets != uint64(3*len(c.Frames)) || res.NsPerPacket <= 0 || res.Mpps <= 0 {
		t.Fatalf("result %+v", res)
	}
	if res.AllocsPerPacket > 0.01 {
		t.Fatalf("%.3f allocations per packet", res.AllocsPerPacket)
	}
}

func TestCommittedPcapReplays(t *testing.T) {
	f, err := os.Open("../testdata/pcap/mixed-small.pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := ReadPcap(f)
	if err != nil {
		t.Fatal(err)
	}
	s, ct := load(t, "fullnat")
	res, err := Replay(s, ct, c, ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdicts["tx"] == 0 || res.NewFlows == 0 {
		t.Fatalf("result %+v", res)
	}
}

func BenchmarkReplay(b *testing.B) {
	c := genCapture(b, 1000)
	for _, mode := range []string{"dsr", "fullnat"} {
		b.Run(mode, func(b *testing.B) {
			s, ct := load(b, mode)
			b.ReportAllocs()
			var res *ReplayResult
			var err error
			for b.Loop() {
				if res, err = Replay(s, ct, c, ReplayOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(res.NsPerPacket, "ns/pkt")
		})
	}
}
