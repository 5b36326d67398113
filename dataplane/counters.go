package dataplane

import (
	"sync/atomic"

	"github.com/xlb/xlb/internal/packet"
)

// Reason says why a frame was dropped or passed to the kernel.
type Reason uint8

// Reasons. The decode reasons mirror packet.Reason.
const (
	ReasonNone Reason = iota
	DropTruncated
	DropBadIPv4
	DropBadIPv6
	DropBadL4
	DropUnsupported   // QinQ, routing headers, too many extension headers
	DropFragment      // IP fragment for a service that does not hash fragments
	DropNoBackend     // the service has no schedulable backend
	DropTooBig        // the rewrite would exceed the egress MTU
	DropNoHeadroom    // no room to prepend a tunnel header
	DropCannotRewrite // the mode cannot carry this packet
	DropSNATExhausted // fullnat: no free SNAT port
	DropConntrackFull // nat/fullnat need state and the table refused it
	DropICMPNoFlow    // an ICMP error about a flow we do not know
	DropBadChecksum   // the first packet of a new flow has a bad TCP/UDP checksum (interfaces[].checksum: verify)
	PassNotIP         // ARP, LLDP, ...
	PassNoService     // IP, but not to a service and not a known reply
	PassICMP          // ICMP to a VIP that is neither echo nor a known flow's error
	NumReasons
)

var reasonNames = [NumReasons]string{
	"none", "truncated", "bad_ipv4", "bad_ipv6", "bad_l4", "unsupported", "fragment", "no_backend",
	"too_big", "no_headroom", "cannot_rewrite", "snat_exhausted", "conntrack_full", "icmp_no_flow",
	"bad_checksum", "not_ip", "no_service", "icmp",
}

// String returns a stable snake_case label.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

func decodeReason(r packet.Reason) Reason {
	switch r {
	case packet.ReasonTruncated:
		return DropTruncated
	case packet.ReasonBadIPv4:
		return DropBadIPv4
	case packet.ReasonBadIPv6:
		return DropBadIPv6
	case packet.ReasonBadL4:
		return DropBadL4
	case packet.ReasonNotIP:
		return PassNotIP
	}
	return DropUnsupported
}

// Counters are one worker's totals since it started.
type Counters struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	Passed             uint64
	Dropped            uint64
	NewFlows           uint64 // flows scheduled (inserted or stateless)
	Stateless          uint64 // new flows served by hash because conntrack was full
	Rescheduled        uint64 // flows whose conntrack backend was gone or down
	EchoReplies        uint64
	ICMPForwarded      uint64 // ICMP errors sent to the backend of their flow
	Replies            uint64 // nat/fullnat replies translated back to clients
	StatelessReplies   uint64 // nat replies translated without a conntrack entry (part of Replies)
	TooBigSent         uint64 // ICMP fragmentation-needed / packet-too-big sent for packets over the egress MTU
	Reasons            [NumReasons]uint64
	// BadChecksum counts DropBadChecksum by ingress interface.
	BadChecksum [MaxIfaces]uint64
}

// MaxIfaces is the most interfaces a snapshot may have.
const MaxIfaces = 8

// ObjCounters count one service's or backend's traffic.
type ObjCounters struct {
	Packets, Bytes, NewFlows uint64
}

// Add accumulates o into c.
func (c *Counters) Add(o *Counters) {
	c.RxPackets += o.RxPackets
	c.RxBytes += o.RxBytes
	c.TxPackets += o.TxPackets
	c.TxBytes += o.TxBytes
	c.Passed += o.Passed
	c.Dropped += o.Dropped
	c.NewFlows += o.NewFlows
	c.Stateless += o.Stateless
	c.Rescheduled += o.Rescheduled
	c.EchoReplies += o.EchoReplies
	c.ICMPForwarded += o.ICMPForwarded
	c.Replies += o.Replies
	c.StatelessReplies += o.StatelessReplies
	c.TooBigSent += o.TooBigSent
	for i := range c.Reasons {
		c.Reasons[i] += o.Reasons[i]
	}
	for i := range c.BadChecksum {
		c.BadChecksum[i] += o.BadChecksum[i]
	}
}

// published holds a worker's counters for readers. The worker counts in
// plain fields during a batch and copies them here with atomic stores once
// per batch, so the per-packet path has no shared atomics and readers (the
// API) never race with it.
type published struct {
	total [countersWords]atomic.Uint64
	svc   []atomic.Uint64 // 3 words per service ID
	be    []atomic.Uint64 // 3 words per backend ID
}

const countersWords = 13 + int(NumReasons) + MaxIfaces + 1 // + StatelessReplies, last

func (c *Counters) words() [countersWords]uint64 {
	var w [countersWords]uint64
	copy(w[:], []uint64{c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes, c.Passed, c.Dropped, c.NewFlows,
		c.Stateless, c.Rescheduled, c.EchoReplies, c.ICMPForwarded, c.Replies, c.TooBigSent})
	copy(w[13:], c.Reasons[:])
	copy(w[13+int(NumReasons):], c.BadChecksum[:])
	w[countersWords-1] = c.StatelessReplies
	return w
}

func (c *Counters) fromWords(w *[countersWords]uint64) {
	c.RxPackets, c.RxBytes, c.TxPackets, c.TxBytes, c.Passed, c.Dropped, c.NewFlows = w[0], w[1], w[2], w[3], w[4], w[5], w[6]
	c.Stateless, c.Rescheduled, c.EchoReplies, c.ICMPForwarded, c.Replies, c.TooBigSent = w[7], w[8], w[9], w[10], w[11], w[12]
	copy(c.Reasons[:], w[13:13+int(NumReasons)])
	copy(c.BadChecksum[:], w[13+int(NumReasons):countersWords-1])
	c.StatelessReplies = w[countersWords-1]
}
