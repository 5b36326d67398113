package conntrack

import (
	"encoding/binary"
	"errors"
)

// Key is a flow key: the 5-tuple exactly as the packet was received, of
// either address family. Keys are directional: the reply direction of a
// flow is a different key. An IPv4 key (V6 false) keeps its addresses in
// the first four bytes of SrcIP and DstIP; the other twelve are ignored,
// and zero in the keys the table hands out.
type Key struct {
	SrcIP, DstIP     [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
	V6               bool
}

// Entry is the value stored for a flow, written into a caller-owned Entry
// by Lookup, Peek and Range. Its address fields belong to the family of
// its key (IPv4: the first four bytes). The table interprets State and
// Flags (and the NAT fields of entries flagged FlagNAT or FlagFullNAT, to
// find the partner entry of a NAT pair); every other field is opaque.
//
// NAT pairs. A forward entry (the client's direction, FlagReverse clear)
// and a reverse entry (the backend's replies, FlagReverse set) are stored
// under different keys and name each other through these fields:
//
//	forward key  client:cport  -> VIP:VPort
//	reverse key  backend:bport -> client:cport             (nat)
//	reverse key  backend:bport -> SNAT[SNATAddr]:SNATPort  (fullnat)
//
//	forward entry: PeerIP:PeerPort = backend:bport, VIP = key.DstIP,
//	               VPort = key.DstPort, SNATAddr/SNATPort (fullnat only)
//	reverse entry: PeerIP:PeerPort = client:cport, VIP:VPort = the VIP,
//	               SNATAddr/SNATPort (fullnat only, = key.DstIP/DstPort)
//
// PeerIP:PeerPort is therefore always the address the packet's destination
// is rewritten to, and [Table.PairKey] computes one key of a pair from the
// other.
type Entry struct {
	Backend  uint32   // backend ID chosen by the scheduler (opaque)
	Service  uint32   // service ID (opaque)
	PeerIP   [16]byte // NAT: forward entries the backend address, reverse entries the client address
	VIP      [16]byte // NAT: the service address the client connected to
	PeerPort uint16   // NAT: port belonging to PeerIP
	VPort    uint16   // original VIP port (needed to undo port translation)
	SNATPort uint16   // fullnat: the SNAT source port allocated with AllocSNAT
	SNATAddr uint8    // fullnat: index of the SNAT address, see [Table.SNATIP]
	State    uint8    // connection state, one of the State constants
	Flags    uint8    // FlagReverse, FlagNAT, FlagFullNAT
}

// key4, Entry4, key6 and entry6 are what the table stores: Key and Entry
// with the addresses of one family, so that an IPv4 entry takes 64 bytes
// of memory and an IPv6 one 112.
type key4 struct {
	SrcIP, DstIP     [4]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

type key6 struct {
	SrcIP, DstIP     [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// Entry4 is an IPv4 flow's Entry as the table stores it (the addresses
// are four bytes) and as LookupFast4 reports it.
type Entry4 struct {
	Backend  uint32
	Service  uint32
	PeerIP   [4]byte
	VIP      [4]byte
	PeerPort uint16
	VPort    uint16
	SNATPort uint16
	SNATAddr uint8
	State    uint8
	Flags    uint8
}

type entry6 struct {
	Backend  uint32
	Service  uint32
	PeerIP   [16]byte
	VIP      [16]byte
	PeerPort uint16
	VPort    uint16
	SNATPort uint16
	SNATAddr uint8
	State    uint8
	Flags    uint8
}

// The conversions between the caller's types and the stored ones. They
// assign field by field through pointers: a value returned and then
// copied would be written in narrow stores and read back in wide loads,
// which the CPU cannot forward from its store buffer (a stall of tens of
// cycles, several per packet before these were pointers).

func (n *key4) from(k *Key) {
	n.SrcIP, n.DstIP = [4]byte(k.SrcIP[:4]), [4]byte(k.DstIP[:4])
	n.SrcPort, n.DstPort, n.Proto = k.SrcPort, k.DstPort, k.Proto
}

func (n *key6) from(k *Key) {
	copy16(&n.SrcIP, &k.SrcIP)
	copy16(&n.DstIP, &k.DstIP)
	n.SrcPort, n.DstPort, n.Proto = k.SrcPort, k.DstPort, k.Proto
}

func (n *Entry4) from(e *Entry) {
	n.Backend, n.Service = e.Backend, e.Service
	n.PeerIP, n.VIP = [4]byte(e.PeerIP[:4]), [4]byte(e.VIP[:4])
	n.PeerPort, n.VPort, n.SNATPort = e.PeerPort, e.VPort, e.SNATPort
	n.SNATAddr, n.State, n.Flags = e.SNATAddr, e.State, e.Flags
}

func (n *entry6) from(e *Entry) {
	n.Backend, n.Service = e.Backend, e.Service
	copy16(&n.PeerIP, &e.PeerIP)
	copy16(&n.VIP, &e.VIP)
	n.PeerPort, n.VPort, n.SNATPort = e.PeerPort, e.VPort, e.SNATPort
	n.SNATAddr, n.State, n.Flags = e.SNATAddr, e.State, e.Flags
}

func narrowKey4(k *Key) (n key4)       { n.from(k); return n }
func narrowKey6(k *Key) (n key6)       { n.from(k); return n }
func narrowEntry4(e *Entry) (n Entry4) { n.from(e); return n }
func narrowEntry6(e *Entry) (n entry6) { n.from(e); return n }

func wideKey4(k *key4, out *Key) {
	put4(&out.SrcIP, k.SrcIP)
	put4(&out.DstIP, k.DstIP)
	out.SrcPort, out.DstPort, out.Proto, out.V6 = k.SrcPort, k.DstPort, k.Proto, false
}

func wideKey6(k *key6, out *Key) {
	out.SrcIP, out.DstIP = k.SrcIP, k.DstIP
	out.SrcPort, out.DstPort, out.Proto, out.V6 = k.SrcPort, k.DstPort, k.Proto, true
}

// wideEntry4 writes e, in state st, to out.
func wideEntry4(e *Entry4, st uint8, out *Entry) {
	out.Backend, out.Service = e.Backend, e.Service
	put4(&out.PeerIP, e.PeerIP)
	put4(&out.VIP, e.VIP)
	out.PeerPort, out.VPort, out.SNATPort = e.PeerPort, e.VPort, e.SNATPort
	out.SNATAddr, out.State, out.Flags = e.SNATAddr, st, e.Flags
}

// put4 writes an IPv4 address in the 16-byte form, and copy16 copies one,
// 8 bytes at a time: callers (and Decode) write and read addresses in
// 8-byte words, and a load spanning two recent stores of other sizes
// cannot be forwarded from the store buffer.
func put4(dst *[16]byte, ip [4]byte) {
	binary.LittleEndian.PutUint64(dst[0:8], uint64(binary.LittleEndian.Uint32(ip[:])))
	binary.LittleEndian.PutUint64(dst[8:16], 0)
}

func copy16(dst, src *[16]byte) {
	binary.LittleEndian.PutUint64(dst[0:8], binary.LittleEndian.Uint64(src[0:8]))
	binary.LittleEndian.PutUint64(dst[8:16], binary.LittleEndian.Uint64(src[8:16]))
}

func wideEntry6(e *entry6, st uint8, out *Entry) {
	out.Backend, out.Service = e.Backend, e.Service
	out.PeerIP, out.VIP = e.PeerIP, e.VIP
	out.PeerPort, out.VPort, out.SNATPort = e.PeerPort, e.VPort, e.SNATPort
	out.SNATAddr, out.State, out.Flags = e.SNATAddr, st, e.Flags
}

// Connection states. The state selects the idle timeout of an entry:
// StateSynSent uses Config.TCPSyn, StateEstablished Config.TCPEstablished,
// StateClosing and StateClosed Config.TCPClosing, StateUDP Config.UDP and
// StateOther Config.Other.
const (
	// StateNone asks Insert to pick the initial state from the protocol:
	// StateSynSent for TCP, StateUDP for UDP, StateOther otherwise.
	StateNone uint8 = iota
	// StateSynSent: a SYN was seen, the handshake is not complete.
	StateSynSent
	// StateEstablished: an ACK (or data) followed the SYN.
	StateEstablished
	// StateClosing: a FIN was seen.
	StateClosing
	// StateClosed: an RST was seen. The entry stays for Config.TCPClosing
	// so that retransmissions and late segments still reach the same
	// backend; a new SYN on the same tuple moves it back to StateSynSent.
	StateClosed
	// StateUDP: a UDP flow.
	StateUDP
	// StateOther: any other protocol.
	StateOther

	numStates
)

// Entry flags. An entry with FlagNAT or FlagFullNAT is one half of a NAT
// pair: removing it for any reason (Delete, expiry, eviction, overwrite)
// also removes its partner, and removing a fullnat forward entry returns
// its SNAT port to the allocator.
const (
	// FlagReverse marks the reply direction (backend to client) of a NAT pair.
	FlagReverse uint8 = 1 << 0
	// FlagNAT marks a nat (DNAT, client address kept) pair.
	FlagNAT uint8 = 1 << 1
	// FlagFullNAT marks a fullnat (DNAT + SNAT) pair.
	FlagFullNAT uint8 = 1 << 2
)

// TCP flag bits as they appear in byte 13 of the TCP header. Lookup takes
// the raw flag byte of the packet; other bits (PSH, URG, ECE, CWR) are
// ignored.
const (
	TCPFlagFIN uint8 = 0x01
	TCPFlagSYN uint8 = 0x02
	TCPFlagRST uint8 = 0x04
	TCPFlagACK uint8 = 0x10
)

const (
	protoTCP = 6
	protoUDP = 17
)

// Sentinel errors.
var (
	// ErrFull is returned by Insert when the key's shard is full and its
	// least recently used entry has been idle for less than
	// Config.EvictMinIdle. The caller serves the flow statelessly.
	ErrFull = errors.New("conntrack: table full")
	// ErrSNATExhausted names the condition AllocSNAT reports
	// with ok=false (no free port on any SNAT address), for callers that
	// need it as an error value.
	ErrSNATExhausted = errors.New("conntrack: snat ports exhausted")
	// ErrBadPair is returned by InsertNAT when the two entries do not name
	// each other (see [Entry]).
	ErrBadPair = errors.New("conntrack: inconsistent nat pair")
	// ErrNilKey is returned when a nil key is passed.
	ErrNilKey = errors.New("conntrack: nil key")
)

// InitialState is the state a new entry should start in, given the protocol
// and the TCP flags of the packet that created it: SYN gives StateSynSent,
// FIN StateClosing, RST StateClosed, a bare ACK (a flow picked up in the
// middle, e.g. after a failover) StateEstablished. UDP gives StateUDP and
// any other protocol StateOther.
func InitialState(proto, tcpFlags uint8) uint8 {
	switch proto {
	case protoTCP:
		switch {
		case tcpFlags&TCPFlagRST != 0:
			return StateClosed
		case tcpFlags&TCPFlagFIN != 0:
			return StateClosing
		case tcpFlags&TCPFlagSYN != 0:
			return StateSynSent
		case tcpFlags&TCPFlagACK != 0:
			return StateEstablished
		}
		return StateSynSent
	case protoUDP:
		return StateUDP
	}
	return StateOther
}

// normState replaces StateNone and unknown states by the protocol default.
func normState(st, proto uint8) uint8 {
	if st == StateNone || st >= numStates {
		return InitialState(proto, 0)
	}
	return st
}

// nextState advances the TCP state machine for a packet with the given flags.
// It ignores direction: both halves of a connection move an entry the same
// way.
func nextState(st, fl uint8) uint8 {
	if st > StateClosed {
		return st // a UDP/Other state on a TCP key: the caller chose it
	}
	switch {
	case fl&TCPFlagRST != 0:
		return StateClosed
	case fl&TCPFlagFIN != 0:
		if st == StateClosed {
			return st
		}
		return StateClosing
	case fl&TCPFlagSYN != 0:
		if st == StateClosing || st == StateClosed {
			// The client reuses the tuple for a new connection (SYN), or
			// the backend answers it (SYN-ACK, on a reverse entry).
			return StateSynSent
		}
		if st == StateNone {
			return StateSynSent
		}
		return st
	case fl&TCPFlagACK != 0:
		if st == StateSynSent || st == StateNone {
			return StateEstablished
		}
	}
	return st
}

func isPaired(flags uint8) bool { return flags&(FlagNAT|FlagFullNAT) != 0 }
