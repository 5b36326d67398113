// Package netns builds the network-namespace topologies that xlb's
// integration tests run in, and tears them down again. It needs root and
// iproute2's `ip netns`; [New] skips the test when either is missing and
// fails it on any other error. It also needs ethtool (scripts/deps.sh).
//
// Every address lives on an interface inside a namespace the package
// created: nothing is configured in the root namespace and the veth pairs
// are created directly inside their namespaces, so interface names only
// have to be unique per namespace. Namespace names are
// "xlb-<8 random hex digits>-<role>" ([Topology.Prefix] + role).
//
// # Layout
//
//	OneArm:
//	  client c0 ── r0 router br0 ──┬── eth0 lb          (client and backend side)
//	                               ├── eth0 b1
//	                               └── eth0 b2 ...
//	TwoArm:
//	  client c0 ── r0 router ra ────── eth0 lb eth1 ──┐ (eth1 is a br0 port)
//	                     br0 ──┬─────────────────────┘
//	                           ├── eth0 b1
//	                           └── eth0 b2 ...
//
// The router's bridge br0 is the backend L2 segment; its ports are rlb (to
// the lb's backend-side interface) and rb<i> (to backend i). In TwoArm the
// router's ra is linked to the lb's client-side eth0.
//
// # Addressing (IPv4)
//
//	client   c0    10.10.0.2/24           default via 10.10.0.1
//	router   r0    10.10.0.1/24           ip_forward=1
//	         br0   10.30.0.1/24           (backend segment)
//	         ra    10.20.0.1/24           (TwoArm only)
//	                                      VIP/32 via the lb: 10.30.0.2 (OneArm),
//	                                      10.20.0.2 (TwoArm)
//	lb       eth0  10.30.0.2/24           OneArm: default via 10.30.0.1
//	         eth0  10.20.0.2/24           TwoArm: client side, default via 10.20.0.1
//	         eth1  10.30.0.2/24           TwoArm: backend side
//	                                      fullnat: SNAT/32 on the backend-side
//	                                      interface (default 10.30.0.200)
//	b<i>     eth0  10.30.0.(10+i)/24      default via 10.30.0.2 (nat) or
//	                                      10.30.0.1 (every other mode)
//	                                      dsr, tunnel, l3dsr: VIP/32 on lo
//
// With Options.RoutedBackends the backends sit on their own subnet, one
// routed hop from the lb, on the router's second bridge br1 (the seeds'
// "one-arm behind a router"):
//
//	router   br1   10.40.0.1/24           (backend subnet; ports rb<i>)
//	b<i>     eth0  10.40.0.(10+i)/24      default via 10.40.0.1
//	lb                                    TwoArm: 10.40.0.0/24 via 10.30.0.1
//
// and with IPv6 fd00:40::/64 (router fd00:40::1, b1 fd00:40::11). With
// Options.BareBackends the backends get neither the VIP on lo nor the ARP
// sysctls, whatever the mode: the test configures them (xlb realserver).
//
// The VIP (default 198.51.100.10) is never configured on the lb: the load
// balancer answers for it in user space, and the router routes it to the
// lb's address, so nobody ARPs for it.
//
// # Addressing (IPv6, with Options.IPv6)
//
// The same shape with fd00:10::/64 (client link), fd00:20::/64 (TwoArm
// router–lb link) and fd00:30::/64 (backend segment); host parts are the
// IPv4 last octet written as hex digits: client fd00:10::2, router
// fd00:10::1 and fd00:30::1 (ra fd00:20::1), lb fd00:30::2 (TwoArm eth0
// fd00:20::2), backend i fd00:30::<10+i> (b1 = fd00:30::11), VIP6
// 2001:db8:100::10, SNAT6 fd00:30::200. Addresses are added with nodad and
// accept_dad=0, so they are usable at once. Without Options.IPv6, IPv6 is
// disabled in every namespace (disable_ipv6=1), so the links carry only what
// the test sends plus ARP: no router solicitations, MLD or DAD probes. With
// IPv6 the kernels do send some of those (and neighbour discovery), which
// a packet-counting test has to ignore.
//
// # Sysctls
//
// New namespaces inherit IPv4 sysctls from the root namespace, so every
// value the topology relies on is set explicitly in every namespace:
// ip_forward (1 on the router only, so the lb's kernel never forwards VIP
// traffic itself), rp_filter=0 (all, default and every interface),
// accept_redirects=0 and send_redirects=0 (all and default); with IPv6,
// forwarding=1 on the router only and accept_ra=0. Backends in the dsr,
// tunnel and l3dsr modes get arp_ignore=1 and arp_announce=2 (all and eth0)
// so they never answer ARP for the VIP on lo; rp_filter=0 lets them accept
// packets whose source is the client.
//
// # Offloads
//
// Every veth (and br0) has tx/rx checksum offload, GRO, TSO and GSO turned
// off and MTU 1500. A frame a local socket sends through a veth with tx
// checksum offload on carries an unfinished TCP/UDP checksum
// (CHECKSUM_PARTIAL: only the pseudo-header sum); the kernel would finish
// it, but a user-space forwarder (AF_XDP) copies the bytes as they are and
// the receiver drops them. With tx offload off the sender's kernel
// computes full checksums, and the receivers verify them in software, so a
// forwarder that breaks a checksum makes a test fail instead of passing
// unnoticed (the package's tests check both). With GSO/TSO/GRO off an
// AF_XDP socket only sees MTU-sized frames.
//
// Note for XDP programs that use XDP_TX or XDP_REDIRECT into a veth: the
// veth driver hands such frames to the peer's NAPI queue, which exists
// only while the peer has an XDP program attached or GRO on; otherwise
// they are dropped. Since GRO is off here, attach a program (XDP_PASS
// will do) on the router-side peer or turn GRO on there. AF_XDP in copy
// mode transmits through the regular skb path and is not affected.
//
// # Cleanup
//
// Close (registered with t.Cleanup by New) deletes the namespaces, which
// destroys their interfaces. A test binary that panics or is killed runs
// no cleanup, so each live topology also holds an flock on
// /run/xlb-netns/<prefix>lock, which the kernel releases when the process
// dies; the next Build deletes the namespaces of every prefix whose lock
// is free.
//
// # Running code inside a namespace
//
// [Host.Run] runs a command with `ip netns exec`. [Host.Do] runs a Go
// function on an OS thread switched into the namespace; sockets it creates
// (listeners, dialers, AF_XDP, netlink) stay in that namespace for their
// whole life, whichever goroutine uses them later. Goroutines started by
// the function do not inherit the namespace.
package netns
