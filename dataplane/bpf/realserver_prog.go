package bpf

import (
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The realserver program runs on a backend ("real server"), not on the
// balancer. It undoes what the balancer's tunnel and l3dsr rewrites
// (package encap) put on the wire, so the kernel sees the client's packet
// addressed to the VIP and the application answers the client directly:
//
//   - tunnel: an IPv4 (protocol 4 or 41) or IPv6 (next header 4 or 41,
//     optionally behind one 8-byte destination options header, as Linux
//     ip6tnl sends with its encapsulation limit) packet to one of this
//     host's addresses whose inner destination is a configured VIP loses
//     its outer header: the Ethernet header (and VLAN tag) moves forward
//     over it, its type becomes the inner family's, and
//     bpf_xdp_adjust_head drops the outer bytes. IPIP, IP6IP6, 4-in-6 and
//     6-in-4 are all understood.
//   - l3dsr: a packet to one of this host's addresses whose DSCP maps to a
//     VIP of its family gets the VIP as destination and DSCP 0 (ECN kept);
//     the IPv4 header checksum and the TCP, UDP (and ICMPv6) checksums are
//     updated incrementally (RFC 1624).
//
// Everything else is passed untouched, and every frame counts exactly one
// reason in a per-CPU array.
//
// Registers: R6 ctx (for bpf_xdp_adjust_head), R7 the L3 header, R8
// data_end, R9 the start of the frame (in the l3dsr rewrite, the DSCP
// map's value). R1 carries the counter index to the exits; R0-R5 are
// scratch and clobbered by calls.

// Counter indices of the realserver program.
const (
	rsDecap4in4 = iota
	rsDecap6in6
	rsDecap4in6
	rsDecap6in4
	rsRewrite4
	rsRewrite6
	rsPassNotIP
	rsPassPlain
	rsPassDSCPUnknown
	rsPassNotLocal
	rsPassInnerNotVIP
	rsPassFragment
	rsPassUnsupported
	rsPassTruncated
	rsPassMalformed
	rsDropAdjust
	numRSCounters
)

// Stack layout of the realserver program (offsets from R10).
const (
	rsStkLocalKey = -24 // 20-byte key: -24..-5 (stkCounter is -4)
	rsStkVIPKey   = -44 // 20-byte key: -44..-25
	rsStkReason   = -48 // u32 counter index kept across bpf_xdp_adjust_head
	rsStkDSCP     = -52 // u32 key of the DSCP array

	// The DSCP array has one slot per (family, code): code for IPv4,
	// 64+code for IPv6. A value is {family u8, 3 pad, addr [16]}.
	rsDSCPSlots   = 128
	rsDSCPValSize = 20
)

// IP protocols and IPv6 extension headers the realserver program handles.
const (
	protoIPIP    = 4
	protoIPv6    = 41
	protoHopOpts = 0
	protoRouting = 43
	protoDstOpts = 60
)

// rsBuilder adds the realserver program's helpers to builder.
type rsBuilder struct {
	*builder
	counters, locals *ebpf.Map
}

// exit emits "R1 = reason; goto pass".
func (b rsBuilder) exit(reason int32) {
	b.emit(
		asm.Mov.Imm(asm.R1, reason),
		asm.Ja.Label("pass"),
	)
}

// missThen emits "if the key at stack offset key is not in m { R1 =
// reason; goto pass }". Clobbers R0-R5.
func (b rsBuilder) missThen(m *ebpf.Map, key int16, reason int32) {
	hit := b.unique("hit")
	b.emit(
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, int32(key)),
		asm.FnMapLookupElem.Call(),
		asm.JNE.Imm(asm.R0, 0, hit),
	)
	b.exit(reason)
	b.label(hit)
}

// addrKey fills the address key at stack offset key with the family and
// the address at ptr+off (4 or 16 bytes). The key's proto and port bytes
// and the tail of an IPv4 address stay zero from the prologue; each key
// slot is written at most once per frame. Clobbers R4.
func (b rsBuilder) addrKey(key int16, family int64, ptr asm.Register, off int16) {
	b.emit(asm.StoreImm(asm.RFP, key+keyFamily, family, asm.Byte))
	words := 1
	if family == 6 {
		words = 4
	}
	b.copyAddr(ptr, off, key+keyAddr, words)
}

// csumApply applies the one's complement difference in delta to the
// 16-bit checksum at ptr+off: HC' = ~(~HC + delta), delta being the sum of
// ~old and new for every changed 16-bit word (RFC 1624, eqn. 3). The words
// are loaded in host byte order throughout, which the one's complement sum
// does not mind (RFC 1071, 2(B)). With udp4 a zero checksum (none: UDP over
// IPv4) is left alone; with udp a result of 0 is written as 0xffff
// (RFC 768). Clobbers t1 and t2.
func (b rsBuilder) csumApply(ptr asm.Register, off int16, delta, t1, t2 asm.Register, udp, udp4 bool) {
	done := b.unique("csum_done")
	b.emit(asm.LoadMem(t1, ptr, off, asm.Half))
	if udp4 {
		b.emit(asm.JEq.Imm(t1, 0, done))
	}
	b.emit(
		asm.Xor.Imm(t1, 0xffff),
		asm.Add.Reg(t1, delta),
	)
	// Two folds bring any 32-bit sum to 16 bits.
	for range 2 {
		b.emit(
			asm.Mov.Reg(t2, t1),
			asm.RSh.Imm(t2, 16),
			asm.And.Imm(t1, 0xffff),
			asm.Add.Reg(t1, t2),
		)
	}
	b.emit(asm.Xor.Imm(t1, 0xffff))
	if udp {
		nz := b.unique("csum_nz")
		b.emit(
			asm.JNE.Imm(t1, 0, nz),
			asm.Mov.Imm(t1, 0xffff),
		)
		b.label(nz)
	}
	b.emit(asm.StoreMem(ptr, off, t1, asm.Half))
	b.label(done)
}

// realserverProgram assembles the realserver XDP program. vips and locals
// are hash maps keyed like the steering rules ({family, 0, 0, addr});
// dscps is the DSCP array; counters the per-CPU counters.
func realserverProgram(vips, locals, dscps, counters *ebpf.Map) asm.Instructions {
	b := rsBuilder{&builder{}, counters, locals}

	// Zero both keys and the reason slot; R6 = ctx, R9 = data, R8 = end.
	b.emit(asm.Mov.Imm(asm.R0, 0))
	for off := int16(rsStkReason); off < 0; off += 8 {
		b.emit(asm.StoreMem(asm.RFP, off, asm.R0, asm.DWord))
	}
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R9, asm.R6, mdData, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, mdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R7, asm.R9),
	)

	// Ethernet and at most one VLAN tag; R7 = L3 header.
	b.ethernet()
	b.exit(rsPassNotIP)

	b.ipv4(locals)
	b.ipv6()
	b.tunnels(vips, locals)
	b.l3dsr4(dscps)
	b.l3dsr6(dscps)

	b.label("truncated")
	b.exit(rsPassTruncated)
	b.label("malformed")
	b.exit(rsPassMalformed)

	// Exit: R1 = counter index.
	b.label("pass")
	b.count(counters, asm.R1)
	b.emit(
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.Return(),
	)
	return b.insns
}

// ipv4 validates an IPv4 header and dispatches on its protocol: 4 and 41
// are tunnels, anything else may carry a DSCP.
func (b rsBuilder) ipv4(locals *ebpf.Map) {
	b.label("ipv4")
	b.need(asm.R7, 20)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 4, "malformed"),
		asm.And.Imm(asm.R1, 0x0f),
		asm.JLT.Imm(asm.R1, 5, "malformed"),
		asm.LSh.Imm(asm.R1, 2), // header length, 20..60
		// The total length must cover the header and fit the frame.
		asm.LoadMem(asm.R3, asm.R7, 2, asm.Half),
		asm.HostTo(asm.BE, asm.R3, asm.Half),
		asm.JLT.Reg(asm.R3, asm.R1, "malformed"),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Reg(asm.R2, asm.R3),
		asm.JGT.Reg(asm.R2, asm.R8, "truncated"),
		asm.LoadMem(asm.R3, asm.R7, 9, asm.Byte),
		asm.JEq.Imm(asm.R3, protoIPIP, "tun4"),
		asm.JEq.Imm(asm.R3, protoIPv6, "tun4"),
		asm.Ja.Label("dscp4"),
	)

	// Outer IPv4: no options (the balancer and Linux ipip send none), no
	// fragments (the kernel would have to reassemble before decap).
	b.label("tun4")
	b.emit(
		asm.JNE.Imm(asm.R1, 20, "unsupported"),
		asm.LoadMem(asm.R4, asm.R7, 6, asm.Half),
		asm.And.Imm(asm.R4, be16(0x3fff)), // MF and fragment offset
		asm.JNE.Imm(asm.R4, 0, "fragment"),
	)
	b.addrKey(rsStkLocalKey, 4, asm.R7, 16)
	b.missThen(locals, rsStkLocalKey, rsPassNotLocal)
	b.emit(
		asm.LoadMem(asm.R3, asm.R7, 9, asm.Byte),
		asm.JEq.Imm(asm.R3, protoIPIP, "tun_4_4_20"),
		asm.Ja.Label("tun_4_6_20"),
	)
	b.label("unsupported")
	b.exit(rsPassUnsupported)
	b.label("fragment")
	b.exit(rsPassFragment)
}

// ipv6 validates an IPv6 header and dispatches on its next header: 4 and
// 41 (directly or behind an 8-byte destination options header) are
// tunnels, anything else may carry a DSCP.
func (b rsBuilder) ipv6() {
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
		asm.LoadMem(asm.R3, asm.R7, 6, asm.Byte),
		asm.JEq.Imm(asm.R3, protoIPIP, "tun6"),
		asm.JEq.Imm(asm.R3, protoIPv6, "tun6"),
		asm.JEq.Imm(asm.R3, protoDstOpts, "tun6_opts"),
		asm.JEq.Imm(asm.R3, protoFrag6, "tun6_frag"),
		asm.Ja.Label("dscp6"),
	)
	// Destination options of 8 bytes (ip6tnl's encapsulation limit) in
	// front of a tunnelled packet; any other options go to the DSCP path.
	b.label("tun6_opts")
	b.need(asm.R7, 48)
	b.emit(
		asm.LoadMem(asm.R3, asm.R7, 40, asm.Byte),
		asm.LoadMem(asm.R4, asm.R7, 41, asm.Byte),
		asm.JNE.Imm(asm.R4, 0, "dscp6"),
		asm.JEq.Imm(asm.R3, protoIPIP, "tun6"),
		asm.JEq.Imm(asm.R3, protoIPv6, "tun6"),
		asm.Ja.Label("dscp6"),
	)
	// A fragmented tunnel packet cannot be decapsulated here.
	b.label("tun6_frag")
	b.need(asm.R7, 48)
	b.emit(
		asm.LoadMem(asm.R3, asm.R7, 40, asm.Byte),
		asm.JEq.Imm(asm.R3, protoIPIP, "fragment"),
		asm.JEq.Imm(asm.R3, protoIPv6, "fragment"),
		asm.Ja.Label("dscp6"),
	)
	// R3 = the tunnelled protocol.
	b.label("tun6")
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 6, asm.Byte),
		asm.JEq.Imm(asm.R1, protoDstOpts, "tun6_48"),
		asm.JEq.Imm(asm.R3, protoIPIP, "tun6_40_4"),
		asm.Ja.Label("tun6_40_6"),
	)
	b.label("tun6_48")
	b.emit(
		asm.JEq.Imm(asm.R3, protoIPIP, "tun6_48_4"),
		asm.Ja.Label("tun6_48_6"),
	)
}

// tunnel is one encapsulation the program strips: outer and inner family
// and the outer header length (IPv6 with destination options is 48).
type tunnel struct {
	outer6, inner6 bool
	hdr            int16
	reason         int32
}

// label names the block: tun_OUTER_INNER_HDRLEN.
func (t tunnel) label() string {
	return "tun_" + famDigit(t.outer6) + "_" + famDigit(t.inner6) + "_" + strconv.Itoa(int(t.hdr))
}

func famDigit(v6 bool) string {
	if v6 {
		return "6"
	}
	return "4"
}

// tunnels emits one decapsulation block per (outer, inner, header
// length): check the outer destination is local (IPv6; IPv4 was checked
// before dispatch), the inner destination a VIP, then strip.
func (b rsBuilder) tunnels(vips, locals *ebpf.Map) {
	tuns := []tunnel{
		{false, false, 20, rsDecap4in4},
		{false, true, 20, rsDecap6in4},
		{true, false, 40, rsDecap4in6},
		{true, true, 40, rsDecap6in6},
		{true, false, 48, rsDecap4in6},
		{true, true, 48, rsDecap6in6},
	}
	// IPv6 entry points: local check, then the block.
	for _, t := range tuns {
		if !t.outer6 {
			continue
		}
		b.label("tun6_" + strconv.Itoa(int(t.hdr)) + "_" + famDigit(t.inner6))
		b.addrKey(rsStkLocalKey, 6, asm.R7, 24)
		b.missThen(locals, rsStkLocalKey, rsPassNotLocal)
		b.emit(asm.Ja.Label(t.label()))
	}
	for _, t := range tuns {
		b.label(t.label())
		b.decap(vips, t)
	}
	// Shared tail: R2 = bytes to strip, the reason on the stack.
	b.label("adjust")
	b.emit(
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.FnXdpAdjustHead.Call(),
		asm.JEq.Imm(asm.R0, 0, "adjusted"),
	)
	// The frame was already rewritten and cannot go up as it is.
	b.emit(asm.Mov.Imm(asm.R1, rsDropAdjust))
	b.count(b.counters, asm.R1)
	b.emit(
		asm.Mov.Imm(asm.R0, 1), // XDP_DROP
		asm.Return(),
	)
	b.label("adjusted")
	b.emit(
		asm.LoadMem(asm.R1, asm.RFP, rsStkReason, asm.Word),
		asm.Ja.Label("pass"),
	)
}

// decap emits the block of one tunnel kind. On entry R7 is the outer
// header, whose destination is local and whose length is t.hdr.
func (b rsBuilder) decap(vips *ebpf.Map, t tunnel) {
	innerLen, innerVer, dstOff, fam := int32(20), int32(4), int16(16), int64(4)
	etype := be16(ethIPv4)
	if t.inner6 {
		innerLen, innerVer, dstOff, fam = 40, 6, 24, 6
		etype = be16(ethIPv6)
	}
	b.need(asm.R7, int32(t.hdr)+innerLen)
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, t.hdr, asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.JNE.Imm(asm.R1, innerVer, "malformed"),
	)
	b.addrKey(rsStkVIPKey, fam, asm.R7, t.hdr+dstOff)
	b.missThen(vips, rsStkVIPKey, rsPassInnerNotVIP)

	// Move the Ethernet header (and VLAN tag) forward over the outer
	// header, with the inner family's type. The source and destination
	// never overlap: the outer header is longer than the L2 header.
	vlan := b.unique("decap_vlan")
	b.emit(
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Sub.Reg(asm.R1, asm.R9), // L2 length: 14 or 18
		asm.JEq.Imm(asm.R1, 18, vlan),
	)
	for _, l2 := range []int16{14, 18} {
		if l2 == 18 {
			b.label(vlan)
		}
		b.need(asm.R9, int32(l2+t.hdr)+innerLen)
		for off := int16(0); off < l2-2; off += 4 {
			b.emit(
				asm.LoadMem(asm.R1, asm.R9, off, asm.Word),
				asm.StoreMem(asm.R9, t.hdr+off, asm.R1, asm.Word),
			)
		}
		b.emit(
			asm.StoreImm(asm.R9, t.hdr+l2-2, int64(etype), asm.Half),
			asm.StoreImm(asm.RFP, rsStkReason, int64(t.reason), asm.Word),
			asm.Mov.Imm(asm.R2, int32(t.hdr)),
			asm.Ja.Label("adjust"),
		)
	}
}

// l3dsr4 rewrites an IPv4 packet whose DSCP maps to a VIP. On entry R1 is
// the header length and R3 the protocol.
func (b rsBuilder) l3dsr4(dscps *ebpf.Map) {
	b.label("dscp4")
	b.emit(
		asm.LoadMem(asm.R2, asm.R7, 1, asm.Byte),
		asm.RSh.Imm(asm.R2, 2),
		asm.JNE.Imm(asm.R2, 0, "dscp4_marked"),
	)
	b.exit(rsPassPlain)
	b.label("dscp4_marked")
	b.emit(asm.StoreMem(asm.RFP, rsStkDSCP, asm.R2, asm.Word))
	b.lookupDSCP(dscps, 4)
	// Destination must be this host. R0-R5 are lost in the lookup.
	b.addrKey(rsStkLocalKey, 4, asm.R7, 16)
	b.missThenLocals()

	// R3 = L4 header, R5 = where its checksum is (0: none to fix).
	b.emit(
		asm.Mov.Imm(asm.R5, 0),
		asm.LoadMem(asm.R4, asm.R7, 6, asm.Half),
		asm.And.Imm(asm.R4, be16(0x1fff)),
		asm.JNE.Imm(asm.R4, 0, "dscp4_rewrite"), // non-first fragment: no L4 header
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Byte),
		asm.And.Imm(asm.R1, 0x0f),
		asm.LSh.Imm(asm.R1, 2),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Reg(asm.R3, asm.R1),
		asm.LoadMem(asm.R1, asm.R7, 9, asm.Byte),
		asm.JEq.Imm(asm.R1, protoTCP, "dscp4_tcp"),
		asm.JEq.Imm(asm.R1, protoUDP, "dscp4_udp"),
		asm.Ja.Label("dscp4_rewrite"),
	)
	b.label("dscp4_tcp")
	b.need(asm.R3, 18)
	b.emit(
		asm.Mov.Imm(asm.R5, 16),
		asm.Ja.Label("dscp4_rewrite"),
	)
	b.label("dscp4_udp")
	b.need(asm.R3, 8)
	b.emit(asm.Mov.Imm(asm.R5, 6))

	// R9 = the VIP; R4 = the one's complement difference of the address.
	b.label("dscp4_rewrite")
	b.rewriteAddr(16, 2)
	// Header checksum: the address and the TOS byte (DSCP cleared, ECN
	// kept). R2 = the header difference.
	b.emit(
		asm.LoadMem(asm.R2, asm.R7, 0, asm.Half),
		asm.Xor.Imm(asm.R2, 0xffff),
		asm.Add.Reg(asm.R2, asm.R4),
		asm.LoadMem(asm.R1, asm.R7, 1, asm.Byte),
		asm.And.Imm(asm.R1, 3),
		asm.StoreMem(asm.R7, 1, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Half),
		asm.Add.Reg(asm.R2, asm.R1),
	)
	b.csumApply(asm.R7, 10, asm.R2, asm.R0, asm.R1, false, false)
	b.emit(
		asm.JEq.Imm(asm.R5, 16, "dscp4_fix_tcp"),
		asm.JEq.Imm(asm.R5, 6, "dscp4_fix_udp"),
	)
	b.exit(rsRewrite4)
	b.label("dscp4_fix_tcp")
	b.csumApply(asm.R3, 16, asm.R4, asm.R0, asm.R1, false, false)
	b.exit(rsRewrite4)
	b.label("dscp4_fix_udp")
	b.csumApply(asm.R3, 6, asm.R4, asm.R0, asm.R1, true, true)
	b.exit(rsRewrite4)
}

// l3dsr6 rewrites an IPv6 packet whose DSCP maps to a VIP.
func (b rsBuilder) l3dsr6(dscps *ebpf.Map) {
	b.label("dscp6")
	// Traffic class = bits 4..11 of the first 16 bits; DSCP its top six.
	b.emit(
		asm.LoadMem(asm.R2, asm.R7, 0, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.RSh.Imm(asm.R2, 6),
		asm.And.Imm(asm.R2, 0x3f),
		asm.JNE.Imm(asm.R2, 0, "dscp6_marked"),
	)
	b.exit(rsPassPlain)
	b.label("dscp6_marked")
	b.emit(
		asm.Add.Imm(asm.R2, 64),
		asm.StoreMem(asm.RFP, rsStkDSCP, asm.R2, asm.Word),
	)
	b.lookupDSCP(dscps, 6)
	b.addrKey(rsStkLocalKey, 6, asm.R7, 24)
	b.missThenLocals()

	// R3 = L4 header, R5 = checksum offset in it (0: none). Extension
	// headers other than a fragment header hide the transport header.
	b.emit(
		asm.Mov.Imm(asm.R5, 0),
		asm.Mov.Reg(asm.R3, asm.R7),
		asm.Add.Imm(asm.R3, 40),
		asm.LoadMem(asm.R1, asm.R7, 6, asm.Byte),
		asm.JNE.Imm(asm.R1, protoFrag6, "dscp6_l4"),
	)
	b.need(asm.R7, 48)
	b.emit(
		asm.LoadMem(asm.R4, asm.R7, 42, asm.Half),
		asm.And.Imm(asm.R4, be16(0xfff8)),
		asm.JNE.Imm(asm.R4, 0, "dscp6_rewrite"), // non-first fragment
		asm.LoadMem(asm.R1, asm.R7, 40, asm.Byte),
		asm.Add.Imm(asm.R3, 8),
	)
	b.label("dscp6_l4")
	b.emit(
		asm.JEq.Imm(asm.R1, protoTCP, "dscp6_tcp"),
		asm.JEq.Imm(asm.R1, protoUDP, "dscp6_udp"),
		asm.JEq.Imm(asm.R1, protoICMPv6, "dscp6_icmp"),
		asm.JEq.Imm(asm.R1, protoHopOpts, "unsupported"),
		asm.JEq.Imm(asm.R1, protoRouting, "unsupported"),
		asm.JEq.Imm(asm.R1, protoDstOpts, "unsupported"),
		asm.JEq.Imm(asm.R1, protoFrag6, "unsupported"),
		asm.Ja.Label("dscp6_rewrite"),
	)
	b.label("dscp6_tcp")
	b.need(asm.R3, 18)
	b.emit(
		asm.Mov.Imm(asm.R5, 16),
		asm.Ja.Label("dscp6_rewrite"),
	)
	b.label("dscp6_udp")
	b.need(asm.R3, 8)
	b.emit(
		asm.Mov.Imm(asm.R5, 6),
		asm.Ja.Label("dscp6_rewrite"),
	)
	b.label("dscp6_icmp")
	b.need(asm.R3, 4)
	b.emit(asm.Mov.Imm(asm.R5, 2))

	b.label("dscp6_rewrite")
	b.rewriteAddr(24, 8)
	// DSCP 0, ECN kept: the traffic class's top nibble is the low nibble
	// of byte 0, its bits 3..2 the top bits of byte 1. IPv6 has no header
	// checksum.
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, 0, asm.Byte),
		asm.And.Imm(asm.R1, 0xf0),
		asm.StoreMem(asm.R7, 0, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R7, 1, asm.Byte),
		asm.And.Imm(asm.R1, 0x3f),
		asm.StoreMem(asm.R7, 1, asm.R1, asm.Byte),
		asm.JEq.Imm(asm.R5, 16, "dscp6_fix_tcp"),
		asm.JEq.Imm(asm.R5, 6, "dscp6_fix_udp"),
		asm.JEq.Imm(asm.R5, 2, "dscp6_fix_icmp"),
	)
	b.exit(rsRewrite6)
	b.label("dscp6_fix_tcp")
	b.csumApply(asm.R3, 16, asm.R4, asm.R0, asm.R1, false, false)
	b.exit(rsRewrite6)
	b.label("dscp6_fix_udp")
	b.csumApply(asm.R3, 6, asm.R4, asm.R0, asm.R1, true, false)
	b.exit(rsRewrite6)
	b.label("dscp6_fix_icmp")
	b.csumApply(asm.R3, 2, asm.R4, asm.R0, asm.R1, false, false)
	b.exit(rsRewrite6)
}

// lookupDSCP emits the DSCP array lookup of the slot at rsStkDSCP; a slot
// without a VIP of this family passes the frame. R9 = the value.
func (b rsBuilder) lookupDSCP(dscps *ebpf.Map, family int32) {
	found := b.unique("dscp_found")
	b.emit(
		asm.LoadMapPtr(asm.R1, dscps.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, rsStkDSCP),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "dscp_unknown"+strconv.Itoa(int(family))),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Byte),
		asm.JEq.Imm(asm.R1, family, found),
	)
	b.label("dscp_unknown" + strconv.Itoa(int(family)))
	b.exit(rsPassDSCPUnknown)
	b.label(found)
	b.emit(asm.Mov.Reg(asm.R9, asm.R0))
}

// missThenLocals passes the frame unless the local key names one of this
// host's addresses.
func (b rsBuilder) missThenLocals() {
	b.missThen(b.locals, rsStkLocalKey, rsPassNotLocal)
}

// rewriteAddr copies the VIP (R9 + 4) over the destination address at
// R7+off, words 16-bit words, and leaves the one's complement difference
// in R4. Clobbers R1, R2.
func (b rsBuilder) rewriteAddr(off int16, words int16) {
	b.emit(asm.Mov.Imm(asm.R4, 0))
	for i := range words {
		b.emit(
			asm.LoadMem(asm.R1, asm.R7, off+2*i, asm.Half),
			asm.Xor.Imm(asm.R1, 0xffff),
			asm.Add.Reg(asm.R4, asm.R1),
			asm.LoadMem(asm.R2, asm.R9, 4+2*i, asm.Half),
			asm.Add.Reg(asm.R4, asm.R2),
			asm.StoreMem(asm.R7, off+2*i, asm.R2, asm.Half),
		)
	}
}
