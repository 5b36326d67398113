package conntrack

import (
	"testing"
	"time"
)

func flow4(k *key4) Flow4 {
	return Flow4{Addrs: addrWord(k), SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto}
}

// TestLookupFast4MatchesLookup: LookupFast4 hits exactly where Lookup's
// lock-free read would, with the entry Lookup would report, and misses
// (changing nothing) wherever Lookup has work to do: a miss, a state
// change, an LRU move, an expired entry.
func TestLookupFast4MatchesLookup(t *testing.T) {
	tbl := newTable(t, smallConfig())
	type tc struct {
		name  string
		proto uint8
		state uint8 // as inserted
		flags uint8 // of the looked-up packet
		after time.Duration
		hit   bool
	}
	cases := []tc{
		{"established ACK", protoTCP, StateEstablished, TCPFlagACK, 5 * time.Millisecond, true},
		{"established ACK same tick", protoTCP, StateEstablished, TCPFlagACK, 0, true},
		{"established PSH ACK", protoTCP, StateEstablished, TCPFlagACK | 0x08, 5 * time.Millisecond, true},
		{"established FIN", protoTCP, StateEstablished, TCPFlagFIN | TCPFlagACK, 0, false},
		{"established RST", protoTCP, StateEstablished, TCPFlagRST, 0, false},
		{"established SYN (no state change)", protoTCP, StateEstablished, TCPFlagSYN, 0, true},
		{"syn-sent ACK", protoTCP, StateSynSent, TCPFlagACK, 0, false},
		{"closing ACK", protoTCP, StateClosing, TCPFlagACK, 0, true},
		{"next LRU granule", protoTCP, StateEstablished, TCPFlagACK, time.Second, false},
		{"expired", protoTCP, StateEstablished, TCPFlagACK, 200 * time.Second, false},
		{"udp", protoUDP, StateUDP, 0, 5 * time.Millisecond, true},
		{"udp expired", protoUDP, StateUDP, 0, 10 * time.Minute, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			k := testKey4(100+i, c.proto)
			wk := wide4(&k)
			in := &Entry{Backend: uint32(i), Service: 3, PeerPort: 8080, VPort: 80, SNATPort: 999, SNATAddr: 0, State: c.state}
			in.PeerIP[0], in.VIP[0] = 10, 198
			if err := tbl.Insert(&wk, in, at(0)); err != nil {
				t.Fatal(err)
			}
			h := tbl.Hash4(flow4(&k))
			if h != tbl.Hash(&wk) {
				t.Fatalf("Hash4 %x, Hash %x", h, tbl.Hash(&wk))
			}
			var want Entry
			peeked := tbl.Peek(&wk, h, at(c.after), &want)
			var got Entry4
			hit := tbl.LookupFast4(flow4(&k), h, c.flags, at(c.after), &got)
			if hit != c.hit {
				t.Fatalf("LookupFast4 hit %v, want %v", hit, c.hit)
			}
			if hit {
				if !peeked || got != narrowEntry4(&want) || got.State != c.state {
					t.Fatalf("LookupFast4 %+v, Peek %v %+v", got, peeked, want)
				}
			}
			// What Lookup does next is unaffected: the same state.
			var e Entry
			if ok := tbl.Lookup(&wk, h, c.flags, at(c.after), &e); ok && hit && e.State != c.state {
				t.Fatalf("Lookup after a fast hit: state %d, want %d", e.State, c.state)
			}
			// A key that is not there.
			miss := testKey4(5000+i, c.proto)
			if tbl.LookupFast4(flow4(&miss), tbl.Hash4(flow4(&miss)), c.flags, at(0), &got) {
				t.Fatal("LookupFast4 found a key never inserted")
			}
		})
	}
	checkTable(t, tbl)
}
