// Package bpf holds xlb's XDP steering program and loads it with
// github.com/cilium/ebpf.
//
// The steering program runs first on every frame an interface receives. It
// redirects to the interface queue's AF_XDP socket (an XSKMAP entry keyed by
// the rx queue index) only the frames the user-space dataplane must see:
//
//   - destination address, port and protocol match a destination rule (a
//     VIP; port 0 covers every port, which also serves ICMP to a VIP);
//   - the destination is a fullnat SNAT address, the protocol TCP or UDP and
//     the destination port inside the SNAT port range (fullnat return
//     traffic);
//   - source address, port and protocol match a backend-source rule (half-NAT
//     replies from backends to clients), unless the destination is one of
//     the balancer's own (local) addresses: a backend's replies to the
//     balancer's health checks must reach the kernel.
//
// The checks run in that order and the first that decides wins: a
// destination rule is looked up first, so a service on an SNAT address is
// steered whatever its port; a TCP or UDP frame to an SNAT address with its
// destination port outside the SNAT port range is passed to the kernel at
// once, even when the address is also local or the source matches a
// backend-source rule.
//
// Everything else (ARP, IPv6 neighbour discovery even when addressed to a
// VIP, SSH, BGP, health-check replies) goes to the kernel with XDP_PASS. A
// matching frame whose queue has no socket is held (XDP_DROP) until the
// hold deadline and passed after it; see below.
//
// An SNAT address is usually one of the balancer's own addresses too (the
// one-address appliance: it is the interface address), and the kernel opens
// connections from it: health checks, SSH and DNS lookups from the balancer.
// The program tells their replies from fullnat return traffic by destination
// port alone: fullnat allocates SNAT ports only from the SNAT port range, so
// a reply to a port outside it belongs to the kernel. The kernel's own
// connections from an SNAT address therefore work as long as their local
// ports lie outside the SNAT range; the daemon arranges that by keeping the
// SNAT range below net.ipv4.ip_local_port_range, where the kernel picks its
// ephemeral ports (a service the kernel listens on at an SNAT address, such
// as SSH on port 22, likewise needs a port outside the SNAT range).
// Non-first fragments carry no port, so TCP and UDP fragments to an SNAT
// address are passed (fullnat could not translate them anyway). ICMP to an
// SNAT address is handled as for any other address. A port-0 destination
// rule for an SNAT address, the old way of steering one, still steers every
// port.
//
// # Restarts: pinned links and the hold
//
// A bpf_link detaches its program when the last reference goes, which is
// when the process exits or dies, unless the link is pinned on a BPF
// filesystem (AttachPinned, PinDir: <bpffs>/xlb/<netns>/<interface>,
// <bpffs> being $XLB_BPFFS or /sys/fs/bpf). A pinned program stays
// attached while no xlb runs, and the next xlb replaces it in the same link
// with an atomic link update: from the first start on, no frame ever meets
// an interface without the steering program, neither across a crash nor
// across a restart or an upgrade.
//
// The sockets of a process close when it ends, and the kernel removes
// them from the XSKMAP, so the orphaned program finds no socket for the
// frames it matches. Passing them to the kernel would end the flows the
// connection table kept: the kernel answers TCP to an SNAT address it owns
// (the usual case: lb.manage_addresses puts it on the interface) and to a
// VIP it owns with resets, and with forwarding on it sends a backend's
// half-NAT reply on to the client untranslated, whose kernel resets the
// backend's connection. Dropping them instead makes the peers retransmit,
// and the retransmissions reach the next xlb. So the program drops them
// (counted Held) until the hold deadline in its hold map, a
// bpf_ktime_get_ns time that xlb renews while it runs (a quarter of the
// hold at a time) and sets one hold ahead when it stops; past the deadline
// it passes them (NoSocket), which is how the host behaved without xlb.
// Every kind of match is held alike: a VIP frame passed to a kernel that
// does not own the VIP would be harmless, but one that owns it (a one-arm
// VIP the balancer answers ARP for) resets the client, and a stateful mode
// loses nothing by a drop that the client retransmits. The deadline is read
// only once the redirect has failed, so steering costs nothing more while
// sockets are there. Frames the program leaves to the kernel (the Pass
// reasons) are passed whatever the hold.
//
// SweepPins removes pinned links nothing needs any more: those of
// interfaces that are gone, and those of interfaces no longer configured
// when the process recorded in the hold map (which set it last) has ended.
//
// # Why hand-written instructions
//
// The program is built with github.com/cilium/ebpf/asm rather than compiled
// from C. The build machines have no clang, and generating the object with
// bpf2go would put a binary blob and a C toolchain into the build; the
// program is small (under 300 instructions), so assembling it in Go keeps
// the binary static, the build pure Go, and lets its constants (key layout,
// counter indices) be shared with the loader instead of duplicated in a C
// header. The cost is readability, paid for with comments and with tests
// that run every branch through BPF_PROG_TEST_RUN.
//
// # Parsing
//
// Ethernet with at most one 802.1Q or 802.1ad tag; IPv4 (any IHL; the total
// length must fit the frame) and IPv6 (the payload length must fit; a
// fragment header is understood, other extension headers are passed);
// TCP, UDP, ICMP and ICMPv6 with their full fixed headers present. Non-first
// fragments carry no ports, so they match only port-0 rules for their
// protocol. Every packet access is bounds-checked; truncated or malformed
// frames are passed and counted.
//
// # Map key
//
// The rule maps (destinations, backend sources, local addresses, SNAT
// addresses) are hash maps with a 20-byte key (local and SNAT addresses use
// proto 0 and port 0):
//
//	offset 0  family  u8   4 or 6
//	offset 1  proto   u8   IPPROTO_*
//	offset 2  port    u16  network byte order, 0 = any port
//	offset 4  addr    [16] IPv4 in the first 4 bytes, rest zero
//
// Their values are a u32 1, except in the SNAT map, whose value is the SNAT
// port range, inclusive, in host byte order, so that the hit needs no second
// lookup:
//
//	offset 0  low     u16
//	offset 2  high    u16
//
// # Counters
//
// A per-CPU array counts, for every frame, exactly one reason (a match
// kind or a pass reason); matched frames also count one outcome,
// Redirected, Held or NoSocket. [Steering.Counters] sums them over CPUs.
package bpf
