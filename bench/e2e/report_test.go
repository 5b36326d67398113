package e2e

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", name, got)
	}
}

func TestReportGolden(t *testing.T) {
	r, err := Load("testdata/result.json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "result.md.golden", Markdown(r, "chart.svg"))
	golden(t, "result.svg.golden", SVG(r))
}

func TestReportSummaries(t *testing.T) {
	r, err := Load("testdata/result.json")
	if err != nil {
		t.Fatal(err)
	}
	udp := SummarizeUDP(r.UDP)
	if len(udp) != 15 || udp[0].Case != "xlb dsr" || udp[10].Workers != 2 {
		t.Fatalf("summaries %+v", udp)
	}
	if s := udp[0].Forwarded; s.Median != 201e3 || s.Min != 195e3 || s.Max != 210e3 {
		t.Errorf("xlb dsr forwarded %+v, want median 201k of 195k–210k", s)
	}
	tun := find(udp, "xlb tunnel")
	if tun.Runs != 3 || tun.Failed != 1 || tun.FirstError != "e2e: xlb exited: exit status 1" {
		t.Errorf("tunnel %+v: want 3 runs, 1 failed with its first error line", tun)
	}
	md := Markdown(r, "")
	for _, want := range []string{"0.93× the packets/s (target ≥ 0.9×: met)", "| 1 worker, generator on CPU 0 | 201 k (195 k–210 k) | 4710 (4700–4720) | 4230 | 1.29× |", "| scaling | 1.79× | |", "xlb tunnel (1 of 3 runs failed)", "Paced to 100 k/s: xlb dsr forwarded 99.0 % of what was offered against 100.0 % for the bare forwarder, at 1.06× its CPU ns/packet"} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}
}

func TestSpan(t *testing.T) {
	if s := span([]float64{3, 1, 2, 10}); s.Median != 2.5 || s.Min != 1 || s.Max != 10 {
		t.Errorf("span = %+v", s)
	}
	if s := span(nil); s.Median == s.Median {
		t.Errorf("span(nil) = %+v, want NaN", s)
	}
}

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://198.51.100.10/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.02ms  310.15us   8.97ms   90.12%
    Req/Sec    31.45k     1.20k   33.01k    72.00%
  Latency Distribution
     50%  980.00us
     75%    1.10ms
     90%    1.30ms
     99%    2.41ms
  156432 requests in 5.00s, 23.12MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  31280.54
Transfer/sec:      4.62MB
`
	var c ConnRun
	if err := parseWrk(out, &c); err != nil {
		t.Fatal(err)
	}
	if c.RPS != 31280.54 || c.Requests != 156432 || c.Seconds != 5 || c.P50Ms != 0.98 || c.P99Ms != 2.41 || c.Errors != 6 {
		t.Errorf("parsed %+v", c)
	}
	if err := parseWrk("unable to connect", &c); err == nil {
		t.Error("no error for output without a result")
	}
}

func TestUpdateDoc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "doc.md")
	orig := "# Doc\n\nbefore\n\n" + DocBegin + "\nold table\n" + DocEnd + "\n\nafter\n"
	if err := os.WriteFile(p, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(p, "| new |\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := "# Doc\n\nbefore\n\n" + DocBegin + "\n\n| new |\n\n" + DocEnd + "\n\nafter\n"
	if string(b) != want {
		t.Errorf("got\n%s\nwant\n%s", b, want)
	}
	os.WriteFile(p, []byte("no markers\n"), 0o644)
	if err := UpdateDoc(p, "x"); err == nil {
		t.Error("no error without markers")
	}
}

func TestGeneratedFrame(t *testing.T) {
	g := GenFrame{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, Src: ClientAddr, Dst: VIP, DstPort: 9, Flows: 10000, BasePort: 10000}
	for _, i := range []int{0, 1, 9999} {
		f := g.Frame(i)
		if len(f) != FrameLen {
			t.Fatalf("frame %d is %d bytes", i, len(f))
		}
		if c := fold(sum16(f[offIPv4 : offIPv4+20])); c != 0xffff {
			t.Errorf("flow %d: IP header sums to %#x, want 0xffff", i, c)
		}
		// UDP: pseudo-header plus the datagram sums to 0xffff.
		s := sum16(f[offIPv4+12:offIPv4+20]) + 17 + uint32(FrameLen-offUDP) + sum16(f[offUDP:])
		if c := fold(s); c != 0xffff {
			t.Errorf("flow %d: UDP sums to %#x, want 0xffff", i, c)
		}
	}
}
