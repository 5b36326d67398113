package conntrack

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"
)

func flow4(k *key4) Flow4 {
	return Flow4{Addrs: addrWord(k), SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto}
}

func flow6(k *key6) *Flow6 {
	le := binary.LittleEndian
	return &Flow6{Src: [2]uint64{le.Uint64(k.SrcIP[0:8]), le.Uint64(k.SrcIP[8:16])}, Dst: [2]uint64{le.Uint64(k.DstIP[0:8]), le.Uint64(k.DstIP[8:16])},
		SrcPort: k.SrcPort, DstPort: k.DstPort, Proto: k.Proto}
}

// fastCase is a key of either family with its fast lookup.
type fastCase struct {
	wide Key
	hash func(*Table) uint64
	look func(tbl *Table, h uint64, flags uint8, now int64) (Entry, bool)
}

func fastKey(i int, proto uint8, v6 bool) fastCase {
	if !v6 {
		k := testKey4(i, proto)
		return fastCase{wide4(&k), func(t *Table) uint64 { return t.Hash4(flow4(&k)) },
			func(tbl *Table, h uint64, flags uint8, now int64) (Entry, bool) {
				var e4 Entry4
				var e Entry
				ok := tbl.LookupFast4(flow4(&k), h, flags, tbl.Tick(now), &e4)
				if ok {
					wideEntry4(&e4, e4.State, &e)
				}
				return e, ok
			}}
	}
	k := testKey6(i, proto)
	return fastCase{wide6(&k), func(t *Table) uint64 { return t.Hash6(flow6(&k)) },
		func(tbl *Table, h uint64, flags uint8, now int64) (Entry, bool) {
			var e Entry
			ok := tbl.LookupFast6(flow6(&k), h, flags, tbl.Tick(now), &e)
			return e, ok
		}}
}

// TestLookupFast4MatchesLookup: LookupFast4 (and LookupFast6) hits exactly where Lookup's
// lock-free read would, with the entry Lookup would report, and misses
// (changing nothing) wherever Lookup has work to do: a miss, a state
// change, an LRU move, an expired entry.
func TestLookupFast4MatchesLookup(t *testing.T) {
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
	for _, v6 := range []bool{false, true} {
		tbl := newTable(t, smallConfig())
		for i, c := range cases {
			t.Run(fmt.Sprintf("v6=%v/%s", v6, c.name), func(t *testing.T) {
				k := fastKey(100+i, c.proto, v6)
				in := &Entry{Backend: uint32(i), Service: 3, PeerPort: 8080, VPort: 80, SNATPort: 999, SNATAddr: 0, State: c.state}
				in.PeerIP[0], in.VIP[0] = 10, 198
				if err := tbl.Insert(&k.wide, in, at(0)); err != nil {
					t.Fatal(err)
				}
				h := k.hash(tbl)
				if h != tbl.Hash(&k.wide) {
					t.Fatalf("Hash4/6 %x, Hash %x", h, tbl.Hash(&k.wide))
				}
				var want Entry
				peeked := tbl.Peek(&k.wide, h, at(c.after), &want)
				got, hit := k.look(tbl, h, c.flags, at(c.after))
				if hit != c.hit {
					t.Fatalf("fast lookup hit %v, want %v", hit, c.hit)
				}
				if hit && (!peeked || got != want || got.State != c.state) {
					t.Fatalf("fast lookup %+v, Peek %v %+v", got, peeked, want)
				}
				// What Lookup does next is unaffected: the same state.
				var e Entry
				if ok := tbl.Lookup(&k.wide, h, c.flags, at(c.after), &e); ok && hit && e.State != c.state {
					t.Fatalf("Lookup after a fast hit: state %d, want %d", e.State, c.state)
				}
				// A key that is not there.
				miss := fastKey(5000+i, c.proto, v6)
				if _, ok := miss.look(tbl, miss.hash(tbl), c.flags, at(0)); ok {
					t.Fatal("the fast lookup found a key never inserted")
				}
			})
		}
		checkTable(t, tbl)
	}
}
