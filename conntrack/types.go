package conntrack

import "errors"

// Key4 is an IPv4 flow key: the 5-tuple exactly as the packet was received.
// Keys are directional: the reply direction of a flow is a different key.
type Key4 struct {
	SrcIP, DstIP     [4]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// Key6 is an IPv6 flow key: the 5-tuple exactly as the packet was received.
// Keys are directional: the reply direction of a flow is a different key.
type Key6 struct {
	SrcIP, DstIP     [16]byte
	SrcPort, DstPort uint16
	Proto            uint8
}

// Entry4 is the value stored for an IPv4 flow. The table interprets State
// and Flags (and the NAT fields of entries flagged FlagNAT or FlagFullNAT,
// to find the partner entry of a NAT pair); every other field is opaque.
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
// is rewritten to, and [Table.PairKey4] computes one key of a pair from the
// other.
type Entry4 struct {
	Backend  uint32  // backend ID chosen by the scheduler (opaque)
	Service  uint32  // service ID (opaque)
	PeerIP   [4]byte // NAT: forward entries the backend address, reverse entries the client address
	VIP      [4]byte // NAT: the service address the client connected to
	PeerPort uint16  // NAT: port belonging to PeerIP
	VPort    uint16  // original VIP port (needed to undo port translation)
	SNATPort uint16  // fullnat: the SNAT source port allocated with AllocSNAT4
	SNATAddr uint8   // fullnat: index of the SNAT address, see [Table.SNATIP4]
	State    uint8   // connection state, one of the State constants
	Flags    uint8   // FlagReverse, FlagNAT, FlagFullNAT
}

// Entry6 is the value stored for an IPv6 flow; the fields mean what they
// mean in [Entry4].
type Entry6 struct {
	Backend  uint32   // backend ID chosen by the scheduler (opaque)
	Service  uint32   // service ID (opaque)
	PeerIP   [16]byte // NAT: forward entries the backend address, reverse entries the client address
	VIP      [16]byte // NAT: the service address the client connected to
	PeerPort uint16   // NAT: port belonging to PeerIP
	VPort    uint16   // original VIP port (needed to undo port translation)
	SNATPort uint16   // fullnat: the SNAT source port allocated with AllocSNAT6
	SNATAddr uint8    // fullnat: index of the SNAT address, see [Table.SNATIP6]
	State    uint8    // connection state, one of the State constants
	Flags    uint8    // FlagReverse, FlagNAT, FlagFullNAT
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
	// ErrSNATExhausted names the condition AllocSNAT4/AllocSNAT6 report
	// with ok=false (no free port on any SNAT address), for callers that
	// need it as an error value.
	ErrSNATExhausted = errors.New("conntrack: snat ports exhausted")
	// ErrBadPair is returned by InsertNAT when the two entries do not name
	// each other (see [Entry4]).
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
