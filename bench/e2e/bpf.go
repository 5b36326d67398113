package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// The harness's XDP programs, written with cilium/ebpf's asm package in
// the style of dataplane/bpf: the generator (run with
// BPF_F_TEST_XDP_LIVE_FRAMES), the counting sink, the in-kernel XDP
// forwarder baseline and a plain XDP_PASS program.

// XDP actions.
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
)

// Offsets in struct xdp_md.
const (
	mdData    = 0
	mdDataEnd = 4
)

// FrameLen is the size of every generated frame: Ethernet (14), IPv4
// (20), UDP (8) and 18 bytes of payload, the 60-byte minimum Ethernet
// frame without its FCS.
const FrameLen = 60

const (
	offIPv4    = 14
	offIPProto = 14 + 9
	offIPCsum  = 14 + 10
	offIPDst   = 14 + 16
	offUDP     = 34
	offUDPCsum = 34 + 6
)

// nat16 is the value a 16-bit load of the big-endian bytes of v yields on
// this host: packet fields compare without a byte swap.
func nat16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// nat32 is nat16 for 4 bytes.
func nat32(b []byte) int32 { return int32(binary.NativeEndian.Uint32(b)) }

// storeBytes emits stores of b to ptr+off, 4 bytes at a time.
func storeBytes(ptr asm.Register, off int16, b []byte) asm.Instructions {
	var out asm.Instructions
	i := 0
	for ; i+4 <= len(b); i += 4 {
		out = append(out, asm.StoreImm(ptr, off+int16(i), int64(nat32(b[i:])), asm.Word))
	}
	if i+2 <= len(b) {
		out = append(out, asm.StoreImm(ptr, off+int16(i), int64(int16(binary.NativeEndian.Uint16(b[i:]))), asm.Half))
		i += 2
	}
	if i < len(b) {
		out = append(out, asm.StoreImm(ptr, off+int16(i), int64(b[i]), asm.Byte))
	}
	return out
}

// sum16 is the ones'-complement sum (not folded) of b as big-endian
// 16-bit words.
func sum16(b []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// GenFrame describes the frames a generator writes.
type GenFrame struct {
	SrcMAC, DstMAC net.HardwareAddr
	Src, Dst       netip.Addr // IPv4
	DstPort        uint16
	// Flows is the number of distinct source ports, BasePort the first.
	Flows    int
	BasePort uint16
}

// template returns the frame with source port 0 and its UDP checksum
// left out: the generator adds the port to both.
func (g GenFrame) template() ([]byte, uint32) {
	f := make([]byte, FrameLen)
	copy(f[0:6], g.DstMAC)
	copy(f[6:12], g.SrcMAC)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[offIPv4:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], FrameLen-14)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	src, dst := g.Src.As4(), g.Dst.As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip[:20])))
	udp := f[offUDP:]
	binary.BigEndian.PutUint16(udp[2:], g.DstPort)
	binary.BigEndian.PutUint16(udp[4:], FrameLen-offUDP)
	for i := 8; i < len(udp); i++ {
		udp[i] = byte('a' + i%26) // payload
	}
	// Pseudo-header plus the UDP header (port and checksum 0) and payload.
	s := sum16(src[:]) + sum16(dst[:]) + 17 + uint32(FrameLen-offUDP) + sum16(udp)
	return f, s
}

// Frame returns the frame the generator writes for flow i (0 <= i <
// Flows), for tests.
func (g GenFrame) Frame(i int) []byte {
	f, s := g.template()
	port := g.BasePort + uint16(i)
	binary.BigEndian.PutUint16(f[offUDP:], port)
	c := ^fold(s + uint32(port))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(f[offUDPCsum:], c)
	return f
}

// generatorProgram writes a complete frame (all 60 bytes: Ethernet, IPv4
// and UDP headers with valid checksums, payload) into every live frame it
// is run on — the kernel recycles their pages, so nothing of the previous
// contents may be trusted — with the source port of the next of g.Flows
// flows, and redirects it to ifindex. State (per CPU, 16 bytes): frames
// sent, and the start time when paced. With periodPs > 0 it sends one
// frame every periodPs picoseconds on average and drops (without
// counting) the runs that come early.
func generatorProgram(state *ebpf.Map, g GenFrame, ifindex int, periodPs uint64) asm.Instructions {
	tmpl, sum := g.template()
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R7, asm.R6, mdData, asm.Word),
		asm.LoadMem(asm.R8, asm.R6, mdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, FrameLen),
		asm.JGT.Reg(asm.R2, asm.R8, "drop"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.LoadMapPtr(asm.R1, state.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.Mov.Reg(asm.R9, asm.R0),
	}
	if periodPs > 0 {
		insns = append(insns,
			asm.FnKtimeGetNs.Call(),
			asm.LoadMem(asm.R2, asm.R9, 8, asm.DWord),
			asm.JNE.Imm(asm.R2, 0, "have_t0"),
			asm.StoreMem(asm.R9, 8, asm.R0, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.R0),
			asm.Sub.Reg(asm.R0, asm.R2).WithSymbol("have_t0"),
			asm.Mul.Imm(asm.R0, 1000), // elapsed ps
			asm.LoadMem(asm.R1, asm.R9, 0, asm.DWord),
			asm.LoadImm(asm.R3, int64(periodPs), asm.DWord),
			asm.Mul.Reg(asm.R3, asm.R1), // when the next frame is due
			asm.JGT.Reg(asm.R3, asm.R0, "drop"),
		)
	}
	insns = append(insns,
		asm.LoadMem(asm.R1, asm.R9, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R9, 0, asm.R1, asm.DWord),
		asm.Mod.Imm(asm.R1, int32(g.Flows)),
		asm.Add.Imm(asm.R1, int32(g.BasePort)), // R1 = source port
	)
	insns = append(insns, storeBytes(asm.R7, 0, tmpl)...)
	insns = append(insns,
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.StoreMem(asm.R7, offUDP, asm.R2, asm.Half),
		// UDP checksum: the template's sum plus the port, folded.
		asm.Mov.Reg(asm.R3, asm.R1),
		asm.Add.Imm(asm.R3, int32(sum)),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.RSh.Imm(asm.R4, 16),
		asm.And.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R4),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.RSh.Imm(asm.R4, 16),
		asm.And.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R4),
		asm.Xor.Imm(asm.R3, 0xffff),
		asm.JNE.Imm(asm.R3, 0, "csum_ok"),
		asm.Mov.Imm(asm.R3, 0xffff),
		asm.HostTo(asm.BE, asm.R3, asm.Half).WithSymbol("csum_ok"),
		asm.StoreMem(asm.R7, offUDPCsum, asm.R3, asm.Half),
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
	)
	return insns
}

// Sink counter indices.
const (
	sinkCounted = iota // IPv4 UDP and IP-in-IP frames: counted and dropped
	sinkPassed         // everything else (ARP, TCP, ICMP): passed to the kernel
	sinkCounters
)

// sinkProgram counts and drops IPv4 UDP and IP-in-IP (tunnel mode)
// frames and passes everything else.
func sinkProgram(counters *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R7, asm.R1, mdData, asm.Word),
		asm.LoadMem(asm.R8, asm.R1, mdDataEnd, asm.Word),
		asm.Mov.Imm(asm.R6, sinkPassed),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, offIPv4+20),
		asm.JGT.Reg(asm.R2, asm.R8, "count"),
		asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JNE.Imm(asm.R2, nat16(0x0800), "count"),
		asm.LoadMem(asm.R2, asm.R7, offIPProto, asm.Byte),
		asm.JEq.Imm(asm.R2, 17, "udp"),
		asm.JNE.Imm(asm.R2, 4, "count"),
		asm.Mov.Imm(asm.R6, sinkCounted).WithSymbol("udp"),
		asm.StoreMem(asm.RFP, -4, asm.R6, asm.Word).WithSymbol("count"),
		asm.LoadMapPtr(asm.R1, counters.FD()),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("out"),
		asm.JNE.Imm(asm.R6, sinkCounted, "exit"),
		asm.Mov.Imm(asm.R0, xdpDrop),
		asm.Return().WithSymbol("exit"),
	}
}

// ForwarderConfig is what the in-kernel XDP forwarder rewrites.
type ForwarderConfig struct {
	VIP      netip.Addr
	Port     uint16
	Backends [2]netip.Addr
	SrcMAC   net.HardwareAddr // the egress interface's
	DstMAC   net.HardwareAddr // the backends' next hop
	Ifindex  int              // egress interface
}

// csumDelta is what adding to a ones'-complement checksum replaces the
// 32-bit field old with new (RFC 1624, eqn. 3), in the byte order of
// native 16-bit loads (the sum is byte-order independent).
func csumDelta(old, new [4]byte) uint32 {
	var s uint32
	for i := 0; i < 4; i += 2 {
		s += uint32(^binary.NativeEndian.Uint16(old[i:]))
		s += uint32(binary.NativeEndian.Uint16(new[i:]))
	}
	return uint32(fold(s))
}

// forwarderProgram is a minimal in-kernel load balancer: IPv4 UDP to
// VIP:Port (no IP options) gets its destination address replaced by one
// of two backends (chosen by a bit of the source port), both checksums
// updated incrementally, new MAC addresses, and is redirected out of the
// egress interface. Everything else is passed.
func forwarderProgram(c ForwarderConfig) asm.Instructions {
	vip := c.VIP.As4()
	insns := asm.Instructions{
		asm.LoadMem(asm.R7, asm.R1, mdData, asm.Word),
		asm.LoadMem(asm.R8, asm.R1, mdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Add.Imm(asm.R2, offUDP+8),
		asm.JGT.Reg(asm.R2, asm.R8, "pass"),
		asm.LoadMem(asm.R2, asm.R7, 12, asm.Half),
		asm.JNE.Imm(asm.R2, nat16(0x0800), "pass"),
		asm.LoadMem(asm.R2, asm.R7, offIPv4, asm.Byte),
		asm.JNE.Imm(asm.R2, 0x45, "pass"),
		asm.LoadMem(asm.R2, asm.R7, offIPProto, asm.Byte),
		asm.JNE.Imm(asm.R2, 17, "pass"),
		asm.LoadMem(asm.R2, asm.R7, offIPDst, asm.Word),
		asm.JNE.Imm(asm.R2, nat32(vip[:]), "pass"),
		asm.LoadMem(asm.R2, asm.R7, offUDP+2, asm.Half),
		asm.JNE.Imm(asm.R2, nat16(c.Port), "pass"),
		// Backend: the low bit of the source port.
		asm.LoadMem(asm.R2, asm.R7, offUDP, asm.Half),
		asm.HostTo(asm.BE, asm.R2, asm.Half),
		asm.And.Imm(asm.R2, 1),
		asm.JNE.Imm(asm.R2, 0, "b1"),
	}
	for i, b := range c.Backends {
		a := b.As4()
		st := asm.StoreImm(asm.R7, offIPDst, int64(nat32(a[:])), asm.Word)
		if i == 1 {
			st = st.WithSymbol("b1")
		}
		insns = append(insns, st, asm.Mov.Imm(asm.R5, int32(csumDelta(vip, a))), asm.Ja.Label("csum"))
	}
	insns = append(insns,
		// IP checksum: ~(~csum + delta), folded.
		asm.LoadMem(asm.R3, asm.R7, offIPCsum, asm.Half).WithSymbol("csum"),
		asm.Xor.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R5),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.RSh.Imm(asm.R4, 16),
		asm.And.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R4),
		asm.Xor.Imm(asm.R3, 0xffff),
		asm.StoreMem(asm.R7, offIPCsum, asm.R3, asm.Half),
		// UDP checksum, unless the sender left it out (0).
		asm.LoadMem(asm.R3, asm.R7, offUDPCsum, asm.Half),
		asm.JEq.Imm(asm.R3, 0, "macs"),
		asm.Xor.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R5),
		asm.Mov.Reg(asm.R4, asm.R3),
		asm.RSh.Imm(asm.R4, 16),
		asm.And.Imm(asm.R3, 0xffff),
		asm.Add.Reg(asm.R3, asm.R4),
		asm.Xor.Imm(asm.R3, 0xffff),
		asm.JNE.Imm(asm.R3, 0, "udp_ok"),
		asm.Mov.Imm(asm.R3, 0xffff),
		asm.StoreMem(asm.R7, offUDPCsum, asm.R3, asm.Half).WithSymbol("udp_ok"),
	)
	macs := make([]byte, 12)
	copy(macs, c.DstMAC)
	copy(macs[6:], c.SrcMAC)
	st := storeBytes(asm.R7, 0, macs)
	st[0] = st[0].WithSymbol("macs")
	insns = append(insns, st...)
	insns = append(insns,
		asm.Mov.Imm(asm.R1, int32(c.Ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	)
	return insns
}

func passProgram() asm.Instructions {
	return asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()}
}

func loadXDP(name string, insns asm.Instructions) (*ebpf.Program, error) {
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, License: "Dual MIT/GPL", Instructions: insns})
	if err != nil {
		return nil, fmt.Errorf("e2e: load %s: %w", name, err)
	}
	return p, nil
}

// attachNative attaches prog to ifindex in native (driver) mode; the
// interface index is resolved in the calling thread's namespace.
func attachNative(prog *ebpf.Program, ifindex int) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		return nil, fmt.Errorf("e2e: attach %s to ifindex %d: %w", prog, ifindex, err)
	}
	return l, nil
}

// sumPerCPU reads key of a per-CPU array of u64 and adds the CPUs up.
func sumPerCPU(m *ebpf.Map, key uint32) (uint64, error) {
	var vals []uint64
	if err := m.Lookup(key, &vals); err != nil {
		return 0, err
	}
	var s uint64
	for _, v := range vals {
		s += v
	}
	return s, nil
}

// ErrNoLiveFrames says the kernel cannot run XDP programs in live-frame
// mode (BPF_F_TEST_XDP_LIVE_FRAMES, Linux 5.18).
var ErrNoLiveFrames = errors.New("e2e: the kernel lacks BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18+)")
