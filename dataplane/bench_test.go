package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xlb/xlb/conntrack"

	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// benchFlows prefills the conntrack table with n flows (through the real
// pipeline) and then replays established-flow packets of a 1k-flow working
// set cycling through the table, batch by batch, reporting ns/packet.
func benchEstablished(b *testing.B, mode Mode, n int, cm ChecksumMode) {
	benchEstablishedOpt(b, mode, n, cm, benchOpt{})
}

// benchOpt varies benchEstablished: prefetch sets the worker's prefetch
// knob (on: prefetch whatever the table's size; off: never), and cold
// evicts the CPU caches between batches (untimed), as the kernel's work
// between two rx batches of a forwarding host does.
type benchOpt struct {
	prefetch *bool
	cold     bool
}

// evictBuf is read between batches by a cold benchmark: larger than the
// L2 cache of any CPU we run on, so a batch finds its flows' lines (and
// the VIP index, the snapshot) at best in L3.
var evictBuf = make([]byte, 4<<20)

// evict reads evictBuf, one load per cache line, and returns a sum so the
// loads are not optimised away.
func evict() (sum byte) {
	for i := 0; i < len(evictBuf); i += 64 {
		sum += evictBuf[i]
	}
	return sum
}

var evictSink byte

func benchEstablishedOpt(b *testing.B, mode Mode, n int, cm ChecksumMode, o benchOpt) {
	spec := testSpec(mode, SchedMaglev, false, 8)
	spec.Ifaces[0].Checksum = cm
	s := mustBuild(b, spec, nil)
	ct := newCT(b, 2*n+4096)
	w := NewWorker(ct, 0)
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{100, byte(64 + i>>16&63), byte(i >> 8), byte(i)})
	}
	frames := make([]encap.Frame, BatchSize)
	res := make([]Result, BatchSize)
	now := int64(1e9)
	// Prefill: a batch of SYNs, then the clients' ACKs for them, so the
	// flows are established (and never meet the half-open budget). The
	// frames are templates with the client address patched in and the
	// checksums fixed (new flows' checksums are verified).
	syn := pkt{src: addr(0), dst: vip4, sport: 40000, dport: 80, flags: "S"}.bytes(b)
	ack := pkt{src: addr(0), dst: vip4, sport: 40000, dport: 80, flags: "A"}.bytes(b)
	for j := range frames {
		frames[j] = frameOf(syn)
	}
	for i := 0; i < n; i += BatchSize {
		k := min(BatchSize, n-i)
		for _, tmpl := range [][]byte{syn, ack} {
			for j := 0; j < k; j++ {
				f := frames[j].Buf[headroom : headroom+len(tmpl)]
				copy(f, tmpl)
				frames[j].Off, frames[j].Len = headroom, len(tmpl)
				a := addr(i + j).As4()
				copy(f[26:30], a[:])
				packet.IPv4(f[14:]).SetChecksum(0)
				packet.IPv4(f[14:]).SetChecksum(packet.IPv4(f[14:]).ComputeChecksum())
				fixTCPChecksum(f)
			}
			w.Process(s, frames[:k], res[:k], now)
		}
	}
	if ct.Len() < n {
		b.Fatalf("table holds %d of %d flows", ct.Len(), n)
	}
	// 1024 frame buffers; every pass over them uses the next 1024 flows,
	// so over the run packets visit every flow in the table (its source
	// address is patched in when the frame is restored; the pipeline does
	// not verify checksums, it updates them).
	const set = 1024
	orig := make([][]byte, set)
	for i := range orig {
		orig[i] = pkt{src: addr(i % n), dst: vip4, sport: 40000, dport: 80, flags: "A", payload: 64}.bytes(b)
	}
	flow := 0
	if o.prefetch != nil {
		w.forcePrefetch = o.prefetch
	}
	// Restore the frames (the rewrite changed them), as a NIC would write
	// fresh ones: a ~120-byte copy per packet, measured too (StopTimer
	// per batch would cost more than the pipeline).
	benchTemplates(b, w, s, orig, now, 1000, func(_, off int, batch []encap.Frame) {
		if o.cold {
			b.StopTimer()
			evictSink += evict()
			b.StartTimer()
		}
		for j := range batch {
			copy(batch[j].Buf[headroom:], orig[off+j])
			batch[j].Off, batch[j].Len = headroom, len(orig[off+j])
			a := addr(flow).As4()
			copy(batch[j].Buf[headroom+26:headroom+30], a[:])
			if flow++; flow == n {
				flow = 0
			}
		}
	})
}

func BenchmarkEstablished(b *testing.B) {
	for _, c := range []struct {
		mode Mode
		n    int
	}{{ModeDSR, 1000}, {ModeDSR, 1_000_000}, {ModeTunnel, 1000}, {ModeL3DSR, 1000}, {ModeNAT, 1000}, {ModeFullNAT, 1000}, {ModeFullNAT, 50_000}} {
		b.Run(fmt.Sprintf("%s/flows=%d", c.mode, c.n), func(b *testing.B) { benchEstablished(b, c.mode, c.n, ChecksumVerify) })
	}
	// interfaces[].checksum: fix recomputes every frame's checksum (a
	// 64-byte payload here).
	b.Run("dsr,checksum=fix/flows=1000", func(b *testing.B) { benchEstablished(b, ModeDSR, 1000, ChecksumFix) })
}

// BenchmarkEstablishedCold measures dsr established flows with the CPU
// caches warm and with them evicted between batches (cold: what the
// kernel's work between two rx batches does to them on a busy host), with
// the conntrack prefetch pass forced on and off, in tables of 1k, 10k and
// 100k flows. The worker turns prefetching on from prefetchFlows (64k)
// entries: these figures are what that threshold rests on.
func BenchmarkEstablishedCold(b *testing.B) {
	for _, n := range []int{1000, 10_000, 100_000} {
		for _, cold := range []bool{false, true} {
			for _, pf := range []bool{false, true} {
				cache := "warm"
				if cold {
					cache = "cold"
				}
				b.Run(fmt.Sprintf("flows=%d/%s/prefetch=%v", n, cache, pf), func(b *testing.B) {
					benchEstablishedOpt(b, ModeDSR, n, ChecksumVerify, benchOpt{prefetch: &pf, cold: cold})
				})
			}
		}
	}
}

// BenchmarkEstablished6 is BenchmarkEstablished over IPv6 (1k flows,
// each frame restored from its own template).
func BenchmarkEstablished6(b *testing.B) {
	for _, mode := range []Mode{ModeDSR, ModeNAT, ModeFullNAT} {
		b.Run(mode.String(), func(b *testing.B) {
			s := mustBuild(b, testSpec(mode, SchedMaglev, true, 8), nil)
			w := NewWorker(newCT(b, 8192), 0)
			const n = 1024
			now := int64(1e9)
			tmpl := make([][]byte, n)
			for i := range tmpl {
				p := pkt{src: client6(i), dst: vip6, sport: 40000, dport: 80, flags: "S"}
				run(w, s, p.bytes(b), now)
				p.flags = "A"
				run(w, s, p.bytes(b), now)
				p.payload = 64
				tmpl[i] = p.bytes(b)
			}
			benchTemplates(b, w, s, tmpl, now, 1000, nil)
		})
	}
}

// benchTemplates replays the frames tmpl (a multiple of BatchSize)
// through w, batch by batch, the clock moving by step a batch, and
// reports ns/pkt. Before its batch each frame is restored from its
// template (a NIC writes fresh frames; the copy is measured too), by
// restore if given (the pass over tmpl, the batch's offset in it, the
// batch). The last batch's first frame must have been transmitted.
func benchTemplates(b *testing.B, w *Worker, s *Snapshot, tmpl [][]byte, now, step int64, restore func(round, off int, batch []encap.Frame)) {
	bufs := make([]encap.Frame, len(tmpl))
	for i := range bufs {
		bufs[i] = frameOf(tmpl[i])
	}
	res := make([]Result, BatchSize)
	b.ReportAllocs()
	b.ResetTimer()
	done := 0
	for round := 1; done < b.N; round++ {
		for off := 0; off+BatchSize <= len(tmpl) && done < b.N; off += BatchSize {
			batch := bufs[off : off+BatchSize]
			if restore != nil {
				restore(round, off, batch)
			} else {
				for j := range batch {
					copy(batch[j].Buf[headroom:], tmpl[off+j])
					batch[j].Off, batch[j].Len = headroom, len(tmpl[off+j])
				}
			}
			now += step
			w.Process(s, batch, res, now)
			done += BatchSize
		}
	}
	b.StopTimer()
	if res[0].Action != ActTx {
		b.Fatalf("result %+v", res[0])
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(done), "ns/pkt")
}

// BenchmarkReply measures a nat or fullnat backend's replies on
// established flows (1k flows): the reverse entry's lookup and the
// translation back to VIP and client.
func BenchmarkReply(b *testing.B) {
	for _, mode := range []Mode{ModeNAT, ModeFullNAT} {
		b.Run(mode.String(), func(b *testing.B) {
			s := mustBuild(b, testSpec(mode, SchedMaglev, false, 8), nil)
			w := NewWorker(newCT(b, 8192), 0)
			const n = 1024
			now := int64(1e9)
			replies := make([][]byte, n)
			for i := range replies {
				src := netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)})
				for _, fl := range []string{"S", "A"} {
					r, out := run(w, s, pkt{src: src, dst: vip4, sport: 40000, dport: 80, flags: fl}.bytes(b), now)
					if r.Action != ActTx {
						b.Fatalf("flow %d %s: %+v", i, fl, r)
					}
					replies[i] = reverseFrame(b, out)
				}
				// The backend's SYN-ACK moves the reverse entry to
				// established; the measured packets are its data.
				run(w, s, replies[i], now)
			}
			benchTemplates(b, w, s, replies, now, 1000, nil)
			if w.Counters().Replies == 0 {
				b.Fatal("no replies")
			}
		})
	}
}

// BenchmarkNewFlow measures SYNs of flows never seen before (schedule +
// conntrack insert + rewrite), with expiry keeping the table in steady state.
func BenchmarkNewFlow(b *testing.B) {
	for _, c := range []struct {
		mode Mode
		cm   ChecksumMode
		name string
	}{{ModeDSR, ChecksumVerify, "dsr"}, {ModeFullNAT, ChecksumVerify, "fullnat"}, {ModeDSR, ChecksumTrust, "dsr,checksum=trust"}} {
		mode := c.mode
		b.Run(c.name, func(b *testing.B) {
			spec := testSpec(mode, SchedMaglev, false, 8)
			spec.Ifaces[0].Checksum = c.cm
			s := mustBuild(b, spec, nil)
			// A short SYN timeout and a small table keep the table (and the
			// SNAT ports) in steady state: expiry frees what new flows take.
			ct := newCTWith(b, 1<<15, func(c *conntrack.Config) { c.TCPSyn = time.Second })
			w := NewWorker(ct, 0)
			orig := make([][]byte, BatchSize)
			tmpl := pkt{dst: vip4, dport: 80, flags: "S"}
			for j := range orig {
				tmpl.src = netip.AddrFrom4([4]byte{100, 64, 0, byte(j)})
				orig[j] = tmpl.bytes(b)
			}
			// A fresh source port per round makes every SYN a new flow;
			// its checksum is updated incrementally (the frames arrive
			// valid; a full recomputation here would be the harness's
			// cost, not the pipeline's).
			benchTemplates(b, w, s, orig, int64(1e9), 1e7, func(round, _ int, batch []encap.Frame) {
				for j := range batch {
					copy(batch[j].Buf[headroom:], orig[j])
					batch[j].Off, batch[j].Len = headroom, len(orig[j])
					f := batch[j].Bytes()
					var d packet.Delta
					d.Add16(binary.BigEndian.Uint16(f[34:36]), uint16(round))
					binary.BigEndian.PutUint16(f[34:36], uint16(round))
					binary.BigEndian.PutUint16(f[50:52], d.Apply(binary.BigEndian.Uint16(f[50:52])))
				}
			})
		})
	}
}

// BenchmarkFrameRestore is the baseline the Established benchmarks pay on
// top of the pipeline: restoring 1024 frames (copy + address patch) and
// nothing else. Subtract it to get the pipeline's own cost.
func BenchmarkFrameRestore(b *testing.B) {
	const set = 1024
	orig := make([][]byte, set)
	bufs := make([]encap.Frame, set)
	for i := range orig {
		orig[i] = pkt{src: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), dst: vip4, sport: 40000, dport: 80, flags: "A", payload: 64}.bytes(b)
		bufs[i] = frameOf(orig[i])
	}
	b.ReportAllocs()
	done, flow := 0, 0
	for done < b.N {
		for j := range bufs {
			copy(bufs[j].Buf[headroom:], orig[j])
			bufs[j].Off, bufs[j].Len = headroom, len(orig[j])
			a := netip.AddrFrom4([4]byte{100, byte(64 + flow>>16&63), byte(flow >> 8), byte(flow)}).As4()
			copy(bufs[j].Buf[headroom+26:headroom+30], a[:])
			flow = (flow + 1) % 1000
		}
		done += set
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(done), "ns/pkt")
}

// BenchmarkVIPLookup is classification alone: the VIP index of a snapshot
// with 64 services (64 VIPs on port 80), hit on an exact port.
func BenchmarkVIPLookup(b *testing.B) {
	spec := testSpec(ModeDSR, SchedMaglev, false, 2)
	base := spec.Services[0]
	spec.Services = nil
	for i := range 64 {
		svc := base
		svc.Name = fmt.Sprintf("web%d", i)
		svc.VIP = netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		spec.Services = append(spec.Services, svc)
	}
	s := mustBuild(b, spec, nil)
	dst := [16]byte{198, 51, 100}
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		dst[3] = byte(i & 63)
		if _, ok := s.vips.find(&dst, false, 80, 6); ok {
			n++
		}
	}
	if n == 0 {
		b.Fatal("no hit")
	}
}
