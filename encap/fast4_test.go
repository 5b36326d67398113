package encap_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// TestTranslate4MatchesTranslate: the fast path's IPv4 rewrite leaves
// every frame byte for byte as Translate does (nat, fullnat, their
// replies; TCP, UDP, UDP without a checksum; ports kept or changed), with
// valid checksums.
func TestTranslate4MatchesTranslate(t *testing.T) {
	type pair struct {
		name     string
		src, dst *encap.Endpoint
	}
	pairs := []pair{
		{"nat", nil, ep("10.0.0.11", 8080)},
		{"nat same port", nil, ep("10.0.0.11", 0)},
		{"fullnat", ep("10.0.0.2", 40001), ep("10.0.0.11", 8080)},
		{"fullnat reply", ep("198.51.100.10", 80), ep("203.0.113.99", 51000)},
		{"nat reply", ep("198.51.100.10", 80), nil},
		{"identity", ep("203.0.113.7", 0), ep("198.51.100.10", 0)},
	}
	for _, proto := range []string{"tcp", "udp", "udp0"} {
		for _, c := range pairs {
			t.Run(fmt.Sprintf("%s/%s", proto, c.name), func(t *testing.T) {
				kind := proto
				if kind == "udp0" {
					kind = "udp"
				}
				orig := mkFrame(t, false, kind)
				if proto == "udp0" {
					orig[14+20+6], orig[14+20+7] = 0, 0
				}
				a, b := bytes.Clone(orig), bytes.Clone(orig)
				var p packet.Parsed
				if r := packet.Decode(a, &p); r != packet.OK {
					t.Fatal(r)
				}
				if v := encap.Translate(a, &p, c.src, c.dst, &egress); v != encap.Forward {
					t.Fatal(v)
				}
				encap.Translate4(b, p.Proto, c.src, c.dst, &egress)
				if !bytes.Equal(a, b) {
					t.Fatalf("Translate  % x\nTranslate4 % x", a, b)
				}
				checkValid(t, b)
			})
		}
	}
}
