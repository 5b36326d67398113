package bpf

import (
	"encoding/binary"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// XDP actions (enum xdp_action).
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// Offsets in struct xdp_md.
const (
	mdData         = 0
	mdDataEnd      = 4
	mdRxQueueIndex = 16
)

// Counter indices in the per-CPU counters array.
const (
	cntMatchVIP = iota
	cntMatchAnyPort
	cntMatchBackend
	cntMatchFragment
	cntMatchSNAT
	cntRedirected
	cntNoSocket
	cntHeld
	cntPassNoMatch
	cntPassLocal
	cntPassSNATOtherPort
	cntPassSNATFragment
	cntPassNotIP
	cntPassNeighbor
	cntPassUnsupported
	cntPassTruncated
	cntPassMalformed
	numCounters
)

// The hold map's one value (key 0): the deadline, in bpf_ktime_get_ns
// time (CLOCK_MONOTONIC), until which matched frames whose queue has no
// socket are dropped rather than passed, and the pid of the process that
// set it, which tells SweepPins whether the link is still served.
const (
	holdDeadline = 0 // u64
	holdPid      = 8 // u32
	holdSize     = 16
)

// Stack layout (offsets from the frame pointer R10). Two rule keys are
// built while parsing, one for the destination and one for the source, so
// lookups need no re-parse.
const (
	stkCounter = -4  // u32 counter index for the counters lookup
	stkDstKey  = -24 // 20-byte key: -24..-5
	stkQueue   = -28 // u32 rx queue index
	stkSrcKey  = -48 // 20-byte key: -48..-29

	keyFamily = 0
	keyProto  = 1
	keyPort   = 2
	keyAddr   = 4
	keySize   = 20
)

// Ethernet types and IP protocols.
const (
	ethIPv4   = 0x0800
	ethIPv6   = 0x86DD
	eth8021Q  = 0x8100
	eth8021AD = 0x88A8

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoFrag6  = 44
	protoICMPv6 = 58
)

// be16 returns the value a 16-bit load of the big-endian bytes of v yields
// on this host, so packet fields can be compared without a byte swap.
func be16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// builder appends instructions and attaches labels (symbols) to the next
// instruction emitted.
type builder struct {
	insns   asm.Instructions
	pending string
	n       int
}

func (b *builder) label(name string) {
	if b.pending != "" {
		panic("bpf: two labels on one instruction: " + b.pending + ", " + name)
	}
	b.pending = name
}

func (b *builder) emit(ins ...asm.Instruction) {
	for _, in := range ins {
		if b.pending != "" {
			in = in.WithSymbol(b.pending)
			b.pending = ""
		}
		b.insns = append(b.insns, in)
	}
}

func (b *builder) unique(prefix string) string {
	b.n++
	return fmt.Sprintf("%s_%d", prefix, b.n)
}

// need emits "if ptr+n > data_end goto truncated" using R2 as scratch.
func (b *builder) need(ptr asm.Register, n int32) {
	b.emit(
		asm.Mov.Reg(asm.R2, ptr),
		asm.Add.Imm(asm.R2, n),
		asm.JGT.Reg(asm.R2, asm.R8, "truncated"),
	)
}

// count increments counters[idx] for this CPU, idx in register r.
// Clobbers R0-R5.
func (b *builder) count(counters *ebpf.Map, r asm.Register) {
	skip := b.unique("count_done")
	b.emit(
		asm.StoreMem(asm.RFP, stkCounter, r, asm.Word),
		asm.LoadMapPtr(asm.R1, counters.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkCounter),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, skip),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
	)
	b.label(skip)
}

// lookup emits "if map[key at stack offset key] exists { R9 = reason; goto
// redirect }". Clobbers R0-R5.
func (b *builder) lookup(m *ebpf.Map, key int16, reason int32) {
	b.lookupTo(m, key, reason, "redirect")
}

// lookupTo is lookup with another target label.
func (b *builder) lookupTo(m *ebpf.Map, key int16, reason int32, target string) {
	miss := b.unique("miss")
	b.emit(
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
		asm.Mov.Imm(asm.R9, reason),
		asm.Ja.Label(target),
	)
	b.label(miss)
}

// local emits "if the destination is a local address { R9 = PassLocal;
// goto pass }": replies to the balancer's own connections (health checks,
// SSH) are never steered by a backend-source rule. The destination key
// becomes {family, 0, 0, addr}. Clobbers R0-R5.
func (b *builder) local(locals *ebpf.Map) {
	b.emit(
		asm.StoreImm(asm.RFP, stkDstKey+keyProto, 0, asm.Byte),
		asm.StoreImm(asm.RFP, stkDstKey+keyPort, 0, asm.Half),
	)
	b.lookupTo(locals, stkDstKey, cntPassLocal, "pass")
}

// snat emits the SNAT address check for TCP and UDP frames: "if the
// destination is an SNAT address { R0 = its port range; fall through }
// else goto miss". Other protocols (ICMP to an SNAT address) go to miss
// unchanged. The destination key's port must already be 0; its protocol
// becomes 0. Clobbers R0-R5.
func (b *builder) snat(snat *ebpf.Map, miss string) {
	lookup := b.unique("snat_lookup")
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkDstKey+keyProto, asm.Byte),
		asm.JEq.Imm(asm.R1, protoTCP, lookup),
		asm.JNE.Imm(asm.R1, protoUDP, miss),
	)
	b.label(lookup)
	b.emit(
		asm.StoreImm(asm.RFP, stkDstKey+keyProto, 0, asm.Byte),
		asm.LoadMapPtr(asm.R1, snat.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkDstKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, miss),
	)
}

// copyAddr copies words 32-bit words from the packet at ptr+off to the
// stack at dst. Clobbers R4.
func (b *builder) copyAddr(ptr asm.Register, off int16, dst int16, words int) {
	for i := range int16(words) {
		b.emit(
			asm.LoadMem(asm.R4, ptr, off+4*i, asm.Word),
			asm.StoreMem(asm.RFP, dst+4*i, asm.R4, asm.Word),
		)
	}
}

// ethernet parses Ethernet and at most one VLAN tag from R7 (which then
// points at the L3 header) and jumps to "ipv4" or "ipv6"; other frames
// fall through with R1 = the ethertype as loaded. Shared by the steering
// and realserver programs.
func (b *builder) ethernet() {
	b.need(asm.R7, 14)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 12, asm.Half),
		asm.Add.Imm(asm.R7, 14),
		asm.JEq.Imm(asm.R1, be16(eth8021Q), "vlan"),
		asm.JEq.Imm(asm.R1, be16(eth8021AD), "vlan"),
		asm.Ja.Label("l3"),
	)
	b.label("vlan")
	b.need(asm.R7, 4)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 2, asm.Half),
		asm.Add.Imm(asm.R7, 4),
	)
	b.label("l3")
	b.emit(
		asm.JEq.Imm(asm.R1, be16(ethIPv4), "ipv4"),
		asm.JEq.Imm(asm.R1, be16(ethIPv6), "ipv6"),
	)
}

// steeringProgram assembles the XDP steering program.
//
// Registers: R6 holds ctx until the queue index is saved, then the L4
// header pointer (at least 8 bytes of it bounds-checked once L4 parsing is
// done); R7 the L3 header pointer; R8 data_end; R9 the counter index
// (reason) at the exits, R7 also the action at the redirect exit. R0-R5
// are scratch and clobbered by calls.
func steeringProgram(xsks, dsts, srcs, locals, snat, hold, counters *ebpf.Map) asm.Instructions {
	b := &builder{}

	// Zero both keys (and the slots between them), save the rx queue.
	b.emit(asm.Mov.Imm(asm.R0, 0))
	for off := int16(stkSrcKey); off < 0; off += 8 {
		b.emit(asm.StoreMem(asm.RFP, off, asm.R0, asm.DWord))
	}
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, mdRxQueueIndex, asm.Word),
		asm.StoreMem(asm.RFP, stkQueue, asm.R2, asm.Word),
		asm.LoadMem(asm.R7, asm.R6, mdData, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, mdDataEnd, asm.Word),
	)

	b.ethernet()
	b.emit(
		asm.Mov.Imm(asm.R9, cntPassNotIP),
		asm.Ja.Label("pass"),
	)

	// IPv4.
	b.label("ipv4")
	b.need(asm.R7, 20)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 4, "malformed"),
		asm.And.Imm(asm.R1, 0x0f),
		asm.JLT.Imm(asm.R1, 5, "malformed"),
		asm.LSh.Imm(asm.R1, 2), // R1 = header length, 20..60
		// The total length must cover the header and fit the frame.
		asm.LoadMem(asm.R3, asm.R7, 2, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JLT.Reg(asm.R3, asm.R1, "malformed"),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.JGT.Reg(asm.R2, asm.R8, "truncated"),
		// Keys: family, protocol, addresses.
		asm.LoadMem(asm.R3, asm.R7, 9, asm.Byte),
		asm.StoreImm(asm.RFP, stkDstKey+keyFamily, 4, asm.Byte),
		asm.StoreImm(asm.RFP, stkSrcKey+keyFamily, 4, asm.Byte),
		asm.StoreMem(asm.RFP, stkDstKey+keyProto, asm.R3, asm.Byte),
		asm.StoreMem(asm.RFP, stkSrcKey+keyProto, asm.R3, asm.Byte),
	)
	b.copyAddr(asm.R7, 16, stkDstKey+keyAddr, 1)
	b.copyAddr(asm.R7, 12, stkSrcKey+keyAddr, 1)
	b.emit(
		// Non-first fragment: fragment offset (low 13 bits) != 0.
		asm.LoadMem(asm.R4, asm.R7, 6, asm.Half),
		asm.And.Imm(asm.R4, be16(0x1fff)),
		asm.JNE.Imm(asm.R4, 0, "fragment"),
		asm.Mov.Reg(asm.R6, asm.R7),
		asm.Add.Reg(asm.R6, asm.R1),
		asm.Ja.Label("l4"),
	)

	// IPv6.
	b.label("ipv6")
	b.need(asm.R7, 40)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.JNE.Imm(asm.R1, 6, "malformed"),
		// The payload length must fit the frame.
		asm.LoadMem(asm.R3, asm.R7, 4, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, 40),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.JGT.Reg(asm.R2, asm.R8, "truncated"),
		asm.StoreImm(asm.RFP, stkDstKey+keyFamily, 6, asm.Byte),
		asm.StoreImm(asm.RFP, stkSrcKey+keyFamily, 6, asm.Byte),
	)
	b.copyAddr(asm.R7, 24, stkDstKey+keyAddr, 4)
	b.copyAddr(asm.R7, 8, stkSrcKey+keyAddr, 4)
	b.emit(
		asm.LoadMem(asm.R3, asm.R7, 6, asm.Byte), // next header
		asm.Mov.Reg(asm.R6, asm.R7),
		asm.Add.Imm(asm.R6, 40),
		asm.Mov.Imm(asm.R4, 0), // fragment offset
		asm.JNE.Imm(asm.R3, protoFrag6, "ipv6_proto"),
	)
	// Fragment header: next header, reserved, offset(13)|res(2)|M(1), id.
	b.need(asm.R6, 8)
	b.emit(
		asm.LoadMem(asm.R3, asm.R6, 0, asm.Byte),
		asm.LoadMem(asm.R4, asm.R6, 2, asm.Half),
		asm.And.Imm(asm.R4, be16(0xfff8)),
		asm.Add.Imm(asm.R6, 8),
	)
	b.label("ipv6_proto")
	b.emit(
		asm.StoreMem(asm.RFP, stkDstKey+keyProto, asm.R3, asm.Byte),
		asm.StoreMem(asm.RFP, stkSrcKey+keyProto, asm.R3, asm.Byte),
		asm.JNE.Imm(asm.R4, 0, "fragment"),
	)

	// L4: R6 = header. Ports go straight into the keys.
	b.label("l4")
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkDstKey+keyProto, asm.Byte),
		asm.JEq.Imm(asm.R1, protoTCP, "tcp"),
		asm.JEq.Imm(asm.R1, protoUDP, "udp"),
		asm.JEq.Imm(asm.R1, protoICMP, "icmp"),
		asm.JEq.Imm(asm.R1, protoICMPv6, "icmp6"),
		asm.Mov.Imm(asm.R9, cntPassUnsupported),
		asm.Ja.Label("pass"),
	)
	b.label("tcp")
	b.need(asm.R6, 20)
	b.emit(asm.Ja.Label("ports"))
	b.label("udp")
	b.need(asm.R6, 8)
	b.label("ports")
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, 0, asm.Half),
		asm.StoreMem(asm.RFP, stkSrcKey+keyPort, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R6, 2, asm.Half),
		asm.StoreMem(asm.RFP, stkDstKey+keyPort, asm.R1, asm.Half),
		asm.Ja.Label("lookup"),
	)
	b.label("icmp6")
	b.need(asm.R6, 8)
	b.emit(
		// Router/neighbour solicitation/advertisement and redirect
		// (133-137) always belong to the kernel.
		asm.LoadMem(asm.R1, asm.R6, 0, asm.Byte),
		asm.JLT.Imm(asm.R1, 133, "lookup"),
		asm.JGT.Imm(asm.R1, 137, "lookup"),
		asm.Mov.Imm(asm.R9, cntPassNeighbor),
		asm.Ja.Label("pass"),
	)
	b.label("icmp")
	b.need(asm.R6, 8)

	// Lookups: destination exact port, destination port 0, then SNAT
	// address (TCP and UDP: steered only inside the SNAT port range,
	// passed outside it), then (unless the destination is one of the
	// balancer's own addresses) source exact port, source port 0. A zero
	// port skips the exact lookup.
	b.label("lookup")
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkDstKey+keyPort, asm.Half),
		asm.JEq.Imm(asm.R1, 0, "dst_any"),
	)
	b.lookup(dsts, stkDstKey, cntMatchVIP)
	b.emit(asm.StoreImm(asm.RFP, stkDstKey+keyPort, 0, asm.Half))
	b.label("dst_any")
	b.lookup(dsts, stkDstKey, cntMatchAnyPort)
	b.snat(snat, "local")
	// R0 = {lo, hi} in host byte order. Every path here has checked at
	// least 8 bytes of the L4 header, so the destination port at R6+2
	// can be read again (the key's copy was zeroed).
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, 2, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Half),
		asm.LoadMem(asm.R3, asm.R0, 2, asm.Half),
		asm.Mov.Imm(asm.R9, cntPassSNATOtherPort),
		asm.JLT.Reg(asm.R1, asm.R2, "pass"),
		asm.JGT.Reg(asm.R1, asm.R3, "pass"),
		asm.Mov.Imm(asm.R9, cntMatchSNAT),
		asm.Ja.Label("redirect"),
	)
	b.label("local")
	b.local(locals)
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, stkSrcKey+keyPort, asm.Half),
		asm.JEq.Imm(asm.R1, 0, "src_any"),
	)
	b.lookup(srcs, stkSrcKey, cntMatchBackend)
	b.emit(asm.StoreImm(asm.RFP, stkSrcKey+keyPort, 0, asm.Half))
	b.label("src_any")
	b.lookup(srcs, stkSrcKey, cntMatchBackend)
	b.emit(
		asm.Mov.Imm(asm.R9, cntPassNoMatch),
		asm.Ja.Label("pass"),
	)

	// Non-first fragments: ports are unknown (both keys hold port 0), so
	// a TCP or UDP fragment to an SNAT address cannot be placed in or out
	// of the SNAT port range: it goes to the kernel (fullnat could not
	// translate it anyway).
	b.label("fragment")
	b.lookup(dsts, stkDstKey, cntMatchFragment)
	b.snat(snat, "fragment_local")
	b.emit(
		asm.Mov.Imm(asm.R9, cntPassSNATFragment),
		asm.Ja.Label("pass"),
	)
	b.label("fragment_local")
	b.local(locals)
	b.lookup(srcs, stkSrcKey, cntMatchFragment)
	b.emit(
		asm.Mov.Imm(asm.R9, cntPassNoMatch),
		asm.Ja.Label("pass"),
	)

	b.label("truncated")
	b.emit(
		asm.Mov.Imm(asm.R9, cntPassTruncated),
		asm.Ja.Label("pass"),
	)
	b.label("malformed")
	b.emit(asm.Mov.Imm(asm.R9, cntPassMalformed))

	// Exits. R9 = reason.
	b.label("pass")
	b.count(counters, asm.R9)
	b.emit(
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.Return(),
	)

	b.label("redirect")
	b.count(counters, asm.R9)
	b.emit(
		asm.LoadMapPtr(asm.R1, xsks.FD()),
		asm.LoadMem(asm.R2, asm.RFP, stkQueue, asm.Word),
		asm.Mov.Imm(asm.R3, xdpPass), // returned when the queue has no socket
		asm.FnRedirectMap.Call(),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.Mov.Imm(asm.R9, cntRedirected),
		asm.JEq.Imm(asm.R7, xdpRedirect, "redirect_count"),
		// The queue has no socket (no xlb serves it, or none yet): until
		// the hold deadline the frame is dropped, so that the peers
		// retransmit to the next xlb instead of meeting a kernel that
		// resets or forwards it untranslated; after it, passed.
		asm.Mov.Imm(asm.R7, xdpPass),
		asm.Mov.Imm(asm.R9, cntNoSocket),
		asm.StoreImm(asm.RFP, stkCounter, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, hold.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stkCounter),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "redirect_count"),
		asm.LoadMem(asm.R6, asm.R0, holdDeadline, asm.DWord),
		asm.FnKtimeGetNs.Call(),
		asm.JGE.Reg(asm.R0, asm.R6, "redirect_count"),
		asm.Mov.Imm(asm.R7, xdpDrop),
		asm.Mov.Imm(asm.R9, cntHeld),
	)
	b.label("redirect_count")
	b.count(counters, asm.R9)
	b.emit(
		asm.Mov.Reg(asm.R0, asm.R7),
		asm.Return(),
	)
	return b.insns
}
