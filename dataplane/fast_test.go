package dataplane

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
)

// fastSpec has a service of each mode (TCP on port 80 of five VIPs, and
// UDP dsr on 53), one the fast path does not take (frag_hash), the same
// over IPv6, and a small MTU towards the fullnat and tunnel backends so
// that large frames meet it.
func fastSpec(states map[int]BackendState) Spec {
	spec := testSpec(ModeDSR, SchedMaglev, false, 3)
	vips := []netip.Addr{vip4, netip.MustParseAddr("198.51.100.11"), netip.MustParseAddr("198.51.100.12"), netip.MustParseAddr("198.51.100.13"),
		netip.MustParseAddr("198.51.100.14"), netip.MustParseAddr("198.51.100.15")}
	mk := func(name string, mode Mode, vip netip.Addr, port uint16, proto uint8) ServiceSpec {
		s := testSpec(mode, SchedMaglev, false, 3).Services[0]
		s.Name, s.VIP, s.Port, s.Proto = name, vip, port, proto
		return s
	}
	spec.Services = []ServiceSpec{
		mk("dsr", ModeDSR, vips[0], 80, 6),
		mk("dns", ModeDSR, vips[0], 53, 17),
		mk("nat", ModeNAT, vips[1], 80, 6),
		mk("fullnat", ModeFullNAT, vips[2], 80, 6),
		mk("l3dsr", ModeL3DSR, vips[3], 80, 6),
		mk("tunnel", ModeTunnel, vips[4], 80, 6),
		mk("fraghash", ModeDSR, vips[5], 80, 6),
	}
	spec.Services[6].FragHash = true
	// The same over IPv6 (6in6 tunnel).
	for i, m := range []Mode{ModeDSR, ModeDSR, ModeNAT, ModeFullNAT, ModeL3DSR, ModeTunnel} {
		proto, port := uint8(6), uint16(80)
		if i == 1 {
			proto, port = 17, 53
		}
		spec.Services = append(spec.Services, mk(fmt.Sprintf("%s6-%d", m, i), m, netip.MustParseAddr(fmt.Sprintf("2001:db8:100::%d", 0x10+i)), port, proto))
	}
	for i := range spec.Services {
		for j := range spec.Services[i].Backends {
			a := netip.AddrFrom4([4]byte{10, 0, byte(i), byte(11 + j)})
			if spec.Services[i].VIP.Is6() {
				a = netip.MustParseAddr(fmt.Sprintf("2001:db8:1:%x::%x", i, 0x11+j))
			}
			spec.Services[i].Backends[j].Address = a
			spec.Services[i].Backends[j].State = states[i*10+j]
		}
	}
	spec.Ifaces = append(spec.Ifaces, Iface{MAC: [6]byte{2, 0, 0, 0, 0, 0xbb}, MTU: 600})
	for _, i := range []int{3, 5, 10, 12} {
		for j := range spec.Services[i].Backends {
			spec.Services[i].Backends[j].Iface = 1
		}
	}
	return spec
}

// TestFastPathMatchesPipeline runs the same random traffic (new flows,
// established flows, closes, resets, replies, fragments, truncated and
// oversized frames, backends drained and taken down, time jumping past
// timeouts) through a worker with the established-flow fast path and one
// without, each with its own table, and checks that every verdict, every
// output frame, the counters and the tables end up identical; with and
// without the prefetching batch loop.
func TestFastPathMatchesPipeline(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefetch=%v", prefetch), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			type side struct {
				w  *Worker
				ct *conntrack.Table
			}
			var sides [2]side
			for i := range sides {
				sides[i].ct = newCT(t, 4096)
				sides[i].w = NewWorker(sides[i].ct, 0)
				sides[i].w.forcePrefetch = &prefetch
			}
			sides[1].w.slow = true
			s := mustBuild(t, fastSpec(nil), nil)
			svcs := fastSpec(nil).Services
			type flowT struct {
				svc   int
				src   netip.Addr
				sport uint16
				reply []byte // the last output frame, for replies
			}
			var flows []flowT
			for i := 0; i < 300; i++ {
				fl := flowT{svc: rng.IntN(len(svcs)), src: client(i), sport: uint16(10000 + i)}
				if svcs[fl.svc].VIP.Is6() {
					fl.src = client6(i)
				}
				flows = append(flows, fl)
			}
			now := int64(1e9)
			fastTaken := 0
			for round := 0; round < 400; round++ {
				if round%50 == 49 {
					// Drain or take down a random backend, or restore all.
					st := map[int]BackendState{}
					if rng.IntN(3) > 0 {
						st[rng.IntN(len(svcs))*10+rng.IntN(3)] = BackendState(1 + rng.IntN(2))
					}
					s = mustBuild(t, fastSpec(st), s)
				}
				switch rng.IntN(10) {
				case 0:
					now += int64(rng.IntN(3)) * 1e9 // past the LRU granule
				case 1:
					now += 400e9 // past the SYN and UDP timeouts
				default:
					now += int64(rng.IntN(1e6))
				}
				n := 1 + rng.IntN(BatchSize)
				var tmpl [][]byte
				var who []int
				for j := 0; j < n; j++ {
					fi := rng.IntN(len(flows))
					fl := &flows[fi]
					svc := svcs[fl.svc]
					p := pkt{src: fl.src, dst: svc.VIP, sport: fl.sport, dport: svc.Port, flags: "A", payload: rng.IntN(64)}
					if svc.Proto == 17 {
						p.udp = true
					}
					switch r := rng.IntN(40); {
					case r < 4:
						p.flags = "S"
					case r < 6:
						p.flags = "FA"
					case r == 6:
						p.flags = "R"
					case r == 7:
						p.flags = "SA"
					case r < 10:
						p.flags = "PA"
						p.payload = 700 // over the fullnat backends' MTU
					case r == 10:
						p.fragOff, p.mf = 0, true // a first fragment
					case r == 11:
						p.fragOff = 100
					case r < 16 && fl.reply != nil:
						tmpl = append(tmpl, fl.reply)
						who = append(who, -1)
						continue
					}
					b := p.bytes(t)
					if rng.IntN(30) == 0 {
						b = b[:20+rng.IntN(len(b)-20)] // truncated
					}
					tmpl = append(tmpl, b)
					who = append(who, fi)
				}
				var outs [2][]encap.Frame
				var ress [2][]Result
				for i := range sides {
					outs[i] = make([]encap.Frame, n)
					ress[i] = make([]Result, n)
					for j := range outs[i] {
						outs[i][j] = frameOf(tmpl[j])
					}
					sides[i].w.Process(s, outs[i], ress[i], now)
				}
				for j := 0; j < n; j++ {
					a, b := outs[0][j], outs[1][j]
					if ress[0][j] != ress[1][j] || a.Off != b.Off || !bytes.Equal(a.Bytes(), b.Bytes()) {
						t.Fatalf("round %d frame %d: fast path %+v % x\nfull pipeline %+v % x", round, j, ress[0][j], a.Bytes(), ress[1][j], b.Bytes())
					}
					if who[j] >= 0 && ress[0][j].Action == ActTx && (svcs[flows[who[j]].svc].Mode == ModeNAT || svcs[flows[who[j]].svc].Mode == ModeFullNAT) {
						flows[who[j]].reply = reverseFrame(t, a.Bytes())
					}
				}
				c0, c1 := sides[0].w.Counters(), sides[1].w.Counters()
				if c0 != c1 {
					t.Fatalf("round %d: counters differ:\nfast %+v\nfull %+v", round, c0, c1)
				}
				fastTaken = int(c0.TxPackets)
			}
			e0, e1 := entries(sides[0].ct), entries(sides[1].ct)
			if len(e0) != len(e1) {
				t.Fatalf("tables hold %d and %d entries", len(e0), len(e1))
			}
			for k, v := range e0 {
				if e1[k] != v {
					t.Fatalf("entry %+v: fast %+v, full %+v", k, v, e1[k])
				}
			}
			replies := sides[0].w.Counters().Replies
			hits := sides[0].w.fastHits
			if fastTaken < 1000 || len(e0) < 50 || hits[0] < 500 || hits[1] < 500 || sides[1].w.fastHits != [2]uint64{} || replies < 100 {
				t.Fatalf("the traffic exercised too little: %d transmitted, %v by the fast path (IPv4, IPv6), %d replies, %d entries", fastTaken, hits, replies, len(e0))
			}
			t.Logf("%d transmitted, %v by the fast path (IPv4, IPv6), %d replies; %d entries", fastTaken, hits, replies, len(e0))
		})
	}
}

func entries(ct *conntrack.Table) map[conntrack.Key]conntrack.Entry {
	m := map[conntrack.Key]conntrack.Entry{}
	ct.Range(func(k *conntrack.Key, e *conntrack.Entry) bool {
		m[*k] = *e
		return true
	})
	return m
}

// FuzzFastPathMatchesPipeline feeds arbitrary frames, seeded with the next
// packets of flows both workers know, to a worker with the fast path and
// one without: the verdict and the output frame must be the same (parse4
// must refuse whatever Decode would read differently).
func FuzzFastPathMatchesPipeline(f *testing.F) {
	spec := fastSpec(nil)
	s, err := Build(spec, nil)
	if err != nil {
		f.Fatal(err)
	}
	var ws [2]*Worker
	for i := range ws {
		ws[i] = NewWorker(newCT(f, 1<<10), 0)
	}
	ws[1].slow = true
	now := int64(1e9)
	for i, svc := range spec.Services {
		base := pkt{src: client(i), dst: svc.VIP, sport: 4000, dport: svc.Port, udp: svc.Proto == 17}
		if svc.VIP.Is6() {
			base.src = client6(i)
		}
		syn, ack := base, base
		syn.flags, ack.flags = "S", "A"
		for _, w := range ws {
			run(w, s, syn.bytes(f), now)
			run(w, s, ack.bytes(f), now)
		}
		ack.payload = 40
		f.Add(ack.bytes(f))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 3000 {
			return
		}
		now += 1000
		r0, o0 := run(ws[0], s, b, now)
		r1, o1 := run(ws[1], s, b, now)
		if r0 != r1 || !bytes.Equal(o0, o1) {
			t.Fatalf("fast path %+v % x\nfull pipeline %+v % x", r0, o0, r1, o1)
		}
	})
}
