package dataplane

import (
	"encoding/binary"
	"errors"
	"sync/atomic"

	"github.com/xlb/xlb/conntrack"
	"github.com/xlb/xlb/encap"
	"github.com/xlb/xlb/internal/packet"
)

// Action is what to do with a frame after Process.
type Action uint8

// Actions.
const (
	ActDrop Action = iota // free the frame
	ActTx                 // transmit it on Result.Iface
	ActPass               // hand it to the kernel (XDP_PASS semantics)
)

func (a Action) String() string {
	switch a {
	case ActTx:
		return "tx"
	case ActPass:
		return "pass"
	}
	return "drop"
}

// Result is the verdict for one frame.
type Result struct {
	Action Action
	Reason Reason // why dropped or passed; ReasonNone for ActTx
	Iface  uint8  // egress interface index (Spec.Ifaces) for ActTx
	// Service and Backend name the objects the frame was counted against
	// (valid when HasBackend). Used by flow lookup and tests.
	HasBackend bool
	Service    uint32
	Backend    uint32
}

const (
	prefetchFlows = 64 << 10
	prefetchCheck = 1024
)

// ExpireBudget is the number of conntrack slots a worker examines for
// expiry after each batch.
const ExpireBudget = 64

// Worker runs the pipeline for one receive queue. A Worker is used by one
// goroutine; several Workers share one conntrack table.
type Worker struct {
	ct      *conntrack.Table
	ingress uint8 // interface the worker receives on (echo replies leave there)
	dry     bool  // flow lookup: no conntrack inserts, no SNAT allocation
	// Per-frame state, one per frame of a batch (the pipeline passes a
	// *flow from stage to stage); reasons and the hashes by family are the
	// prefetch pass's.
	ps       []packet.Parsed
	xs       []flow
	reasons  []packet.Reason
	heads    []head        // parse4's or parse6's results, for the fast path after a prefetch
	fp       packet.Parsed // the fast path's header fields for the general rewrites (fastParsed)
	hs4, hs6 []uint64
	// prefetch is on while the conntrack table holds at least
	// prefetchFlows entries (checked every prefetchCheck batches).
	prefetch bool
	// Test knobs: slow turns the fast path off; forcePrefetch, when set,
	// turns the prefetching batch loop on or off whatever the table's
	// size (TestFastPathMatchesPipeline compares the loops,
	// BenchmarkEstablishedCold measures them).
	slow          bool
	forcePrefetch *bool
	fastHits      [2]uint64    // frames the fast path took, IPv4 and IPv6 (tests)
	csum          ChecksumMode // the ingress interface's, for this batch
	tick          uint32       // conntrack's Tick of this batch's now

	c        Counters
	svc      []objState // by service ID
	be       []objState // by backend ID
	touched  []uint32   // service IDs and backend IDs | 1<<31 touched this batch
	overflow bool       // touched filled up: publish everything
	batch    uint32     // batch number, for objState.mark
	rr       []uint32   // per service ID
	wrr      []int64    // smooth WRR current weight per backend ID

	pub  atomic.Pointer[published]
	last [countersWords]uint64 // the totals in pub
	snap *Snapshot
	nat  natReplies // nat replies without state (natreply.go)
}

// NewWorker returns a worker for the queue on interface ingress, sharing ct.
func NewWorker(ct *conntrack.Table, ingress int) *Worker {
	w := &Worker{ct: ct, ingress: uint8(ingress), touched: make([]uint32, 0, 4*BatchSize)}
	w.pub.Store(&published{})
	return w
}

// objState is a worker's own counters of one object, and the batch in
// which they were last queued for publishing.
type objState struct {
	ObjCounters
	mark uint32
}

// SetIngress sets the interface the next frames were received on (echo
// replies leave through it).
func (w *Worker) SetIngress(iface int) { w.ingress = uint8(iface) }

// BatchSize is the number of frames a worker moves per batch.
const BatchSize = 64

// Process runs the pipeline over frames with snapshot s at time now
// (monotonic nanoseconds), rewriting frames in place and writing one Result
// per frame. A tunnel rewrite moves a frame's Off into its headroom.
func (w *Worker) Process(s *Snapshot, frames []encap.Frame, res []Result, now int64) {
	if s != w.snap {
		w.adopt(s)
	}
	w.batch++
	if w.batch == 0 { // marks start at 0: skip it on wrap-around
		w.batch = 1
		for i := range w.svc {
			w.svc[i].mark = 0
		}
		for i := range w.be {
			w.be[i].mark = 0
		}
	}
	// With a large table, decode the whole batch first and warm the
	// conntrack buckets its lookups will read, so their cache misses
	// overlap (VPP batches the same way), then run the pipeline frame by
	// frame; with a small one, decode each frame just before its turn.
	// Either way a packet's key is hashed once.
	if len(frames) > len(w.xs) {
		w.ps = make([]packet.Parsed, len(frames))
		w.xs = make([]flow, len(frames))
		w.reasons = make([]packet.Reason, len(frames))
		w.heads = make([]head, len(frames))
		w.hs4 = make([]uint64, 0, len(frames))
		w.hs6 = make([]uint64, 0, len(frames))
	}
	if w.batch%prefetchCheck == 1 && !w.dry {
		// Prefetching pays once the table outgrows the CPU caches; before
		// that it costs a batch of decoded headers in L1.
		w.prefetch = w.ct.Len() >= prefetchFlows
		if w.forcePrefetch != nil {
			w.prefetch = *w.forcePrefetch
		}
	}
	w.c.RxPackets += uint64(len(frames))
	w.csum = ChecksumVerify
	if int(w.ingress) < len(s.Ifaces) {
		w.csum = s.Ifaces[w.ingress].Checksum
	}
	// The established-flow fast path (fast.go) takes what it can; not
	// for a flow lookup (which must not refresh entries) or with
	// checksum: fix (which rewrites every frame's checksum).
	fast := !w.dry && !w.slow && w.csum != ChecksumFix
	w.tick = w.ct.Tick(now)
	if !w.prefetch {
		var k6 conntrack.Flow6
		x := &w.xs[0]
		p := &w.ps[0]
		x.p = p
		for i := range frames {
			if fast {
				b := frames[i].Bytes()
				if k, fl, n, ok := parse4(b); ok {
					if w.established4(s, &frames[i], k, w.ct.Hash4(k), fl, n, &res[i]) {
						continue
					}
				} else if fl, n, ok := parse6(b, &k6); ok && w.established6(s, &frames[i], &k6, w.ct.Hash6(&k6), fl, n, &res[i]) {
					continue
				}
			}
			x.f = &frames[i]
			r := packet.Decode(frames[i].Bytes(), p)
			if keyed(r, p) { // setKey, by hand: it is too big to be inlined
				k := &x.key
				copyAddr(&k.SrcIP, &p.Src)
				copyAddr(&k.DstIP, &p.Dst)
				k.SrcPort, k.DstPort, k.Proto, k.V6 = p.SrcPort, p.DstPort, p.Proto, p.Family == 6
				x.hash = w.ct.Hash(k)
			}
			res[i] = w.one(s, x, r, now)
		}
	} else {
		// Frames the fast path may take are parsed by parse4 and decoded
		// only if it does not take them.
		hs4, hs6 := w.hs4[:0], w.hs6[:0]
		for i := range frames {
			x := &w.xs[i]
			x.p, x.f = &w.ps[i], &frames[i]
			if fast {
				hd := &w.heads[i]
				b := frames[i].Bytes()
				var ok bool
				hd.fam = 0
				if hd.k4, hd.flags, hd.ipLen, ok = parse4(b); ok {
					hd.fam, hd.h = 4, w.ct.Hash4(hd.k4)
					hs4 = append(hs4, hd.h)
					continue
				}
				if hd.flags, hd.ipLen, ok = parse6(b, &hd.k6); ok {
					hd.fam, hd.h = 6, w.ct.Hash6(&hd.k6)
					hs6 = append(hs6, hd.h)
					continue
				}
			}
			w.decode(x, i)
			if keyed(w.reasons[i], x.p) {
				if x.key.V6 {
					hs6 = append(hs6, x.hash)
				} else {
					hs4 = append(hs4, x.hash)
				}
			}
		}
		if len(hs4) > 0 {
			w.ct.Prefetch(false, hs4)
		}
		if len(hs6) > 0 {
			w.ct.Prefetch(true, hs6)
		}
		for i := range frames {
			x := &w.xs[i]
			if hd := &w.heads[i]; fast && hd.fam != 0 {
				if hd.fam == 4 && w.established4(s, x.f, hd.k4, hd.h, hd.flags, hd.ipLen, &res[i]) ||
					hd.fam == 6 && w.established6(s, x.f, &hd.k6, hd.h, hd.flags, hd.ipLen, &res[i]) {
					continue
				}
				w.decode(x, i)
			}
			res[i] = w.one(s, x, w.reasons[i], now)
		}
	}
	if !w.dry {
		w.ct.Expire(now, ExpireBudget)
	}
	w.publish()
}

// decode decodes frame i of a prefetched batch into x and keys it.
func (w *Worker) decode(x *flow, i int) {
	r := packet.Decode(x.f.Bytes(), x.p)
	w.reasons[i] = r
	if keyed(r, x.p) {
		w.setKey(x)
	}
}

// adopt sizes the per-ID state for a new snapshot (allocates only when the
// snapshot has more IDs than any before).
func (w *Worker) adopt(s *Snapshot) {
	w.snap = s
	if n := len(s.Services); n > len(w.svc) {
		w.svc = append(w.svc, make([]objState, n-len(w.svc))...)
		w.rr = append(w.rr, make([]uint32, n-len(w.rr))...)
	}
	if n := len(s.Backends); n > len(w.be) {
		w.be = append(w.be, make([]objState, n-len(w.be))...)
		w.wrr = append(w.wrr, make([]int64, n-len(w.wrr))...)
	}
	old := w.pub.Load()
	if len(old.svc) < 3*len(w.svc) || len(old.be) < 3*len(w.be) {
		np := &published{svc: make([]atomic.Uint64, 3*len(w.svc)), be: make([]atomic.Uint64, 3*len(w.be))}
		for i := range old.total {
			np.total[i].Store(old.total[i].Load())
		}
		for i := range w.svc {
			storeObj(np.svc, i, &w.svc[i].ObjCounters)
		}
		for i := range w.be {
			storeObj(np.be, i, &w.be[i].ObjCounters)
		}
		w.pub.Store(np)
	}
}

func storeObj(dst []atomic.Uint64, i int, o *ObjCounters) {
	dst[3*i].Store(o.Packets)
	dst[3*i+1].Store(o.Bytes)
	dst[3*i+2].Store(o.NewFlows)
}

// publish stores what changed in this batch for the readers: the totals
// that moved (an atomic store is a locked instruction on amd64, so the
// unchanged ones are skipped) and the objects touched.
func (w *Worker) publish() {
	pub := w.pub.Load()
	words := w.c.words()
	for i := range words {
		if words[i] != w.last[i] {
			pub.total[i].Store(words[i])
			w.last[i] = words[i]
		}
	}
	if w.overflow {
		for i := range w.svc {
			storeObj(pub.svc, i, &w.svc[i].ObjCounters)
		}
		for i := range w.be {
			storeObj(pub.be, i, &w.be[i].ObjCounters)
		}
		w.overflow = false
	}
	for _, t := range w.touched {
		if t&(1<<31) != 0 {
			id := t &^ (1 << 31)
			storeObj(pub.be, int(id), &w.be[id].ObjCounters)
		} else {
			storeObj(pub.svc, int(t), &w.svc[t].ObjCounters)
		}
	}
	w.touched = w.touched[:0]
}

// Counters returns the worker's published totals (safe from any goroutine).
func (w *Worker) Counters() Counters {
	pub := w.pub.Load()
	var words [countersWords]uint64
	for i := range words {
		words[i] = pub.total[i].Load()
	}
	var c Counters
	c.fromWords(&words)
	return c
}

// ServiceCounters returns the published counters of a service ID.
func (w *Worker) ServiceCounters(id uint32) ObjCounters { return loadObj(w.pub.Load().svc, id) }

// BackendCounters returns the published counters of a backend ID.
func (w *Worker) BackendCounters(id uint32) ObjCounters { return loadObj(w.pub.Load().be, id) }

func loadObj(a []atomic.Uint64, id uint32) ObjCounters {
	i := 3 * int(id)
	if i+2 >= len(a) {
		return ObjCounters{}
	}
	return ObjCounters{a[i].Load(), a[i+1].Load(), a[i+2].Load()}
}

func (w *Worker) drop(r Reason) Result {
	w.c.Dropped++
	w.c.Reasons[r]++
	return Result{Action: ActDrop, Reason: r}
}

func (w *Worker) pass(r Reason) Result {
	w.c.Passed++
	w.c.Reasons[r]++
	return Result{Action: ActPass, Reason: r}
}

func (w *Worker) tx(f *encap.Frame, iface uint8, svc, be uint32) Result {
	w.count(f, svc, be)
	return Result{Action: ActTx, Iface: iface, HasBackend: true, Service: svc, Backend: be}
}

// txTo is tx writing the verdict to *out: a Result returned by value is
// assembled in narrow stores and copied in wide loads by the caller, a
// store-forwarding stall per return.
func (w *Worker) txTo(out *Result, f *encap.Frame, iface uint8, svc, be uint32) {
	w.count(f, svc, be)
	out.Action, out.Reason, out.Iface, out.HasBackend, out.Service, out.Backend = ActTx, ReasonNone, iface, true, svc, be
}

// count counts a transmitted frame against its service and backend.
func (w *Worker) count(f *encap.Frame, svc, be uint32) {
	n := uint64(f.Len)
	w.c.TxPackets++
	w.c.TxBytes += n
	so, bo := &w.svc[svc], &w.be[be]
	so.Packets++
	so.Bytes += n
	bo.Packets++
	bo.Bytes += n
	if so.mark != w.batch {
		so.mark = w.batch
		w.touch(svc)
	}
	if bo.mark != w.batch {
		bo.mark = w.batch
		w.touch(be | 1<<31)
	}
}

// touch remembers an object whose counters changed in this batch; when the
// list is full, publish stores every object instead.
func (w *Worker) touch(t uint32) {
	if len(w.touched) < cap(w.touched) {
		w.touched = append(w.touched, t)
	} else {
		w.overflow = true
	}
}

func (w *Worker) rewriteFailed(v encap.Verdict) Result {
	switch v {
	case encap.TooBig:
		return w.drop(DropTooBig)
	case encap.NoHeadroom:
		return w.drop(DropNoHeadroom)
	}
	return w.drop(DropCannotRewrite)
}

func isL4(proto uint8) bool { return proto == packet.ProtoTCP || proto == packet.ProtoUDP }

// one runs the pipeline for a single frame.
func (w *Worker) one(s *Snapshot, x *flow, r packet.Reason, now int64) Result {
	w.c.RxBytes += uint64(x.f.Len) // (RxPackets is counted per batch)
	p := x.p
	if r != packet.OK {
		if r == packet.ReasonNotIP {
			return w.pass(PassNotIP)
		}
		return w.drop(decodeReason(r))
	}
	v6 := p.Family == 6
	if p.Frag == packet.FragLater {
		if id, ok := s.vips.findFrag(&p.Dst, v6, p.Proto); ok {
			return w.forward(s, &s.Services[id], x, now)
		}
		if s.vips.isVIP(&p.Dst, v6) {
			return w.drop(DropFragment)
		}
		return w.pass(PassNoService)
	}
	if isL4(p.Proto) {
		if p.Frag == packet.FragNone && w.csum == ChecksumFix {
			packet.FixL4Checksum(x.f.Bytes(), p)
		}
		if id, ok := s.vips.find(&p.Dst, v6, p.DstPort, p.Proto); ok {
			return w.forward(s, &s.Services[id], x, now)
		}
		if p.Frag == packet.FragNone {
			if r, ok := w.reply(s, x, now); ok {
				return r
			}
		}
		return w.pass(PassNoService)
	}
	if (p.Proto == packet.ProtoICMP || p.Proto == packet.ProtoICMPv6) && s.vips.isVIP(&p.Dst, v6) {
		return w.icmpToVIP(s, x, now)
	}
	return w.pass(PassNoService)
}

// addrHash hashes the addresses and protocol of a packet of a frag_hash
// service, whose later fragments carry no ports, with the snapshot's seed.
// It is a fixed function, so every instance of a fleet agrees.
func addrHash(p *packet.Parsed, seed uint64) uint64 {
	h := seed ^ uint64(p.Proto)<<40
	if p.Family == 4 {
		return mix(mix(h) ^ uint64(binary.LittleEndian.Uint32(p.Src[0:4]))<<32 ^ uint64(binary.LittleEndian.Uint32(p.Dst[0:4])))
	}
	h = mix(h ^ binary.LittleEndian.Uint64(p.Src[0:8]))
	h = mix(h ^ binary.LittleEndian.Uint64(p.Src[8:16]))
	h = mix(h ^ binary.LittleEndian.Uint64(p.Dst[0:8]))
	return mix(h ^ binary.LittleEndian.Uint64(p.Dst[8:16]))
}

// srcHash hashes the client address only (the sh scheduler).
func srcHash(p *packet.Parsed, seed uint64) uint64 {
	if p.Family == 4 {
		return mix(seed ^ uint64(binary.LittleEndian.Uint32(p.Src[0:4])))
	}
	return mix(mix(seed^binary.LittleEndian.Uint64(p.Src[0:8])) ^ binary.LittleEndian.Uint64(p.Src[8:16]))
}

// keeps reports whether the conntrack entry e found for a client packet p
// to svc may go on serving the flow: a forward entry made for the
// service's mode, whose backend exists, belongs to svc and is not down;
// and p is not a fresh SYN (no ACK) towards a draining backend: that is a
// client reusing the port of a finished connection (within tcp_closing),
// a new connection to be scheduled as one (as IPVS's conn_reuse_mode and
// Katran do), not sent to the draining backend.
func keeps(s *Snapshot, svc *Service, p *packet.Parsed, e *conntrack.Entry) bool {
	if e.Flags&conntrack.FlagReverse != 0 || !modeMatches(svc.Mode, e.Flags) || int(e.Backend) >= len(s.Backends) {
		return false
	}
	be := &s.Backends[e.Backend]
	return be.Present && be.Service == svc.ID && be.State != StateDown && (be.State != StateDraining || !freshSYN(p))
}

// freshSYN reports a TCP SYN without ACK.
func freshSYN(p *packet.Parsed) bool {
	return p.Proto == packet.ProtoTCP && p.TCPFlags&(packet.TCPSyn|packet.TCPAck) == packet.TCPSyn
}

// usable reports whether an existing flow may stay on backend id.
func usable(s *Snapshot, svc *Service, id uint32) bool {
	be := s.Backend(id)
	return be != nil && be.Service == svc.ID && be.State != StateDown
}

// modeMatches reports whether a conntrack entry was made for a service in
// mode m (a reload may change a service's mode under the same name).
func modeMatches(m Mode, flags uint8) bool {
	switch m {
	case ModeNAT:
		return flags&conntrack.FlagNAT != 0
	case ModeFullNAT:
		return flags&conntrack.FlagFullNAT != 0
	}
	return flags&(conntrack.FlagNAT|conntrack.FlagFullNAT) == 0
}

// forward handles a client packet to a service.
func (w *Worker) forward(s *Snapshot, svc *Service, x *flow, now int64) Result {
	p, e := x.p, &x.e
	if p.Frag != packet.FragNone && !svc.FragHash {
		return w.drop(DropFragment)
	}
	found := false
	if !svc.FragHash {
		if w.dry {
			found = w.ct.Peek(&x.key, x.hash, now, e)
		} else {
			found = w.ct.Lookup(&x.key, x.hash, p.TCPFlags, now, e)
		}
		if found && !keeps(s, svc, p, e) {
			// The backend is gone or down: schedule again (a SYN then
			// opens a fresh connection on a live backend; mid-flow
			// packets meet a backend that will reset them).
			if e.Flags&conntrack.FlagReverse == 0 {
				w.c.Rescheduled++
				if !w.dry {
					w.ct.Delete(&x.key)
				}
			}
			found = false
		}
	} else {
		// Stateless by choice: every packet, fragments too, is scheduled
		// by a hash of its addresses.
		x.hash = addrHash(p, s.Seed)
	}
	if !found {
		// The first packet of a new flow: the one place its checksum is
		// checked (interfaces[].checksum: verify), so established flows
		// pay nothing for it.
		if !svc.FragHash && !w.dry && w.csum == ChecksumVerify && !packet.L4ChecksumOK(x.f.Bytes(), p) {
			w.c.BadChecksum[w.ingress]++
			return w.drop(DropBadChecksum)
		}
		if r, ok := w.newFlow(s, svc, x, now); !ok {
			return r
		}
	}
	be := &s.Backends[e.Backend]
	f := x.f
	if be.MSS != 0 {
		encap.ClampMSS(f.Bytes(), p, be.MSS) // tunnel_mss: SYNs only
	}
	var v encap.Verdict
	switch svc.Mode {
	case ModeDSR:
		v = encap.DSR(f.Bytes(), p, &be.Egress)
	case ModeTunnel, ModeL3DSR:
		v = directRewrite(f, p, svc, be, uint32(x.hash))
	case ModeNAT:
		v = encap.NAT(f.Bytes(), p, &be.Endpoint, &be.Egress)
	case ModeFullNAT:
		snat := encap.Endpoint{Addr: s.SNAT[e.SNATAddr], Port: e.SNATPort}
		v = encap.FullNAT(f.Bytes(), p, &snat, &be.Endpoint, &be.Egress)
	}
	if v == encap.TooBig {
		return w.tooBig(s, svc, be, x)
	}
	if v != encap.Forward {
		return w.rewriteFailed(v)
	}
	return w.tx(f, be.Iface, svc.ID, be.ID)
}

// tooBig answers a packet that does not fit the egress MTU with the ICMP
// error path MTU discovery needs (the MTU minus what the mode adds), sent
// back out of the interface it came in on; without DF it is dropped.
func (w *Worker) tooBig(s *Snapshot, svc *Service, be *Backend, x *flow) Result {
	f := x.f
	w.c.Reasons[DropTooBig]++
	mtu := be.Egress.MTU
	if svc.Mode == ModeTunnel {
		mtu -= encap.TunnelHeaderLen(be.Addr.V6)
	}
	if int(w.ingress) >= len(s.Ifaces) || encap.TooBigReply(f, x.p, mtu, s.Ifaces[w.ingress].MAC) != encap.Forward {
		w.c.Dropped++
		return Result{Action: ActDrop, Reason: DropTooBig}
	}
	w.c.TooBigSent++
	w.c.TxPackets++
	w.c.TxBytes += uint64(f.Len)
	return Result{Action: ActTx, Iface: w.ingress, Reason: DropTooBig}
}

// directRewrite sends a packet to a backend in one of the modes whose
// replies bypass the balancer (dsr, tunnel, l3dsr); flowHash is the outer
// IPv6 flow label of tunnel mode (the flow's hash, so a flow keeps one).
func directRewrite(f *encap.Frame, p *packet.Parsed, svc *Service, be *Backend, flowHash uint32) encap.Verdict {
	switch svc.Mode {
	case ModeTunnel:
		return encap.Tunnel(f, p, &be.TunnelSrc, &be.Addr, flowHash, &be.Egress)
	case ModeL3DSR:
		return encap.L3DSR(f.Bytes(), p, &be.Addr, svc.DSCP, &be.Egress)
	}
	return encap.DSR(f.Bytes(), p, &be.Egress)
}

// newFlow schedules a backend for a flow without usable state and records
// it in conntrack (both halves for nat/fullnat).
func (w *Worker) newFlow(s *Snapshot, svc *Service, x *flow, now int64) (Result, bool) {
	id, ok := w.schedule(s, svc, x)
	if !ok {
		return w.drop(DropNoBackend), false
	}
	x.e = conntrack.Entry{Backend: id, Service: svc.ID}
	e := &x.e
	if svc.FragHash {
		// Stateless by choice: every packet is scheduled by hash, and
		// none is a "new flow".
		return Result{}, true
	}
	if w.dry {
		if svc.Mode == ModeFullNAT && len(s.SNAT) > 0 {
			e.SNATAddr = w.snatIndex(s, x.p)
		}
		w.c.NewFlows++
		return Result{}, true
	}
	var err error
	switch svc.Mode {
	case ModeNAT:
		err = w.insertNAT(s, x, now, false)
		if err != nil && errors.Is(err, conntrack.ErrFull) {
			err = w.stateless(svc, x) // and replyStateless translates the replies
		}
	case ModeFullNAT:
		err = w.insertNAT(s, x, now, true)
		if err != nil && errors.Is(err, conntrack.ErrSNATExhausted) {
			return w.drop(DropSNATExhausted), false
		}
	default:
		e.State = conntrack.InitialState(x.p.Proto, x.p.TCPFlags)
		err = w.ct.Insert(&x.key, e, now)
		if err != nil && errors.Is(err, conntrack.ErrFull) {
			// Keep serving: a consistent hash gives the same answer on
			// every packet of the flow without state.
			w.c.Stateless++
			if mid, ok := svc.Maglev.Lookup(x.hash); ok {
				e.Backend = mid
			}
			err = nil
		}
	}
	if err != nil { // nat/fullnat cannot work without their state
		return w.drop(DropConntrackFull), false
	}
	w.c.NewFlows++
	w.newFlowOf(svc.ID, e.Backend)
	return Result{}, true
}

func (w *Worker) newFlowOf(svc, be uint32) {
	w.svc[svc].NewFlows++
	w.be[be].NewFlows++
}

// schedule picks a backend for a new flow by the service's scheduler.
func (w *Worker) schedule(s *Snapshot, svc *Service, x *flow) (uint32, bool) {
	n := len(svc.Schedulable)
	if n == 0 {
		return 0, false
	}
	switch svc.Scheduler {
	case SchedRR:
		i := w.rr[svc.ID] % uint32(n)
		w.rr[svc.ID]++
		return svc.Schedulable[i], true
	case SchedWRR:
		// Smooth weighted round robin (as nginx): every backend gains its
		// weight, the largest wins and pays back the total.
		var total int64
		best := -1
		for i, id := range svc.Schedulable {
			wt := int64(s.Backends[id].Weight)
			w.wrr[id] += wt
			total += wt
			if best < 0 || w.wrr[id] > w.wrr[svc.Schedulable[best]] {
				best = i
			}
		}
		id := svc.Schedulable[best]
		w.wrr[id] -= total
		return id, true
	case SchedLC, SchedWLC:
		best, bestN, bestW := uint32(0), int64(-1), uint64(1)
		for _, id := range svc.Schedulable {
			c := w.ct.BackendFlows(id)
			wt := uint64(1)
			if svc.Scheduler == SchedWLC {
				wt = uint64(s.Backends[id].Weight)
			}
			// c/wt < bestN/bestW without division.
			if bestN < 0 || uint64(c)*bestW < uint64(bestN)*wt {
				best, bestN, bestW = id, c, wt
			}
		}
		return best, true
	case SchedSH:
		return svc.Maglev.Lookup(srcHash(x.p, s.Seed))
	}
	return svc.Maglev.Lookup(x.hash)
}

// reply translates a nat/fullnat reply (backend → client) found in
// conntrack by its reverse entry. ok is false when the packet is not a
// known reply.
func (w *Worker) reply(s *Snapshot, x *flow, now int64) (Result, bool) {
	p, e := x.p, &x.e
	if !w.lookup(&x.key, x.hash, p.TCPFlags, now, e) {
		return w.replyStateless(s, x)
	}
	if e.Flags&conntrack.FlagReverse == 0 {
		return Result{}, false
	}
	svc := s.Service(e.Service)
	if svc == nil || s.Backend(e.Backend) == nil {
		return Result{}, false
	}
	f := x.f
	vip := encap.Endpoint{Addr: svc.VIP, Port: e.VPort}
	var v encap.Verdict
	if e.Flags&conntrack.FlagFullNAT != 0 {
		client := encap.Endpoint{Addr: encap.Addr{V6: p.Family == 6}, Port: e.PeerPort}
		copyAddr(&client.Addr.IP, &e.PeerIP)
		v = encap.FullNATReply(f.Bytes(), p, &vip, &client, &s.Reply)
	} else {
		v = encap.NATReply(f.Bytes(), p, &vip, &s.Reply)
	}
	if v != encap.Forward {
		return w.rewriteFailed(v), true
	}
	w.c.Replies++
	return w.tx(f, s.ReplyIface, svc.ID, e.Backend), true
}
