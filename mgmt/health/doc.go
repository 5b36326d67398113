// Package health checks the health of backends for the management plane.
//
// A [Manager] owns one checker per [Target] (identified by its Key) and
// reconciles them with [Manager.Set]. Checks run in management goroutines,
// never on a packet worker, and use nothing but the standard library's
// sockets: every probe is an ordinary connection from the kernel's own
// network stack, so its source is the balancer's own address (whatever the
// kernel's routing picks, or [Options.Source]). The XDP steering program
// passes replies addressed to the balancer's local addresses to the kernel,
// so the replies to these probes never reach a packet worker. Do not use a
// fullnat SNAT address as the source: a port-0 steering rule for it would
// take the replies away from the kernel.
//
// # Check types
//
//   - tcp: connect within Timeout, then close with a reset (SO_LINGER 0, as
//     HAProxy does), so thousands of checks leave no TIME_WAIT sockets behind.
//   - http and https: a fresh connection per check (no keep-alive, so a dead
//     server is noticed), "GET Path HTTP/1.1" with the Host header and
//     "Connection: close"; the status must equal Expect and the body is
//     ignored (at most 4 KiB of it is read). https does not verify the
//     certificate: backends are addressed by IP, and the check asks "is it
//     serving", not "is it who it claims to be". SNI carries Host when Host is
//     a name.
//   - udp: send Send on a connected socket and wait up to Timeout for a reply
//     containing Receive (empty Receive: any reply counts). An ICMP port
//     unreachable (ECONNREFUSED on the connected socket) is a failure, and so
//     is silence: a udp check only suits services that answer the payload.
//   - none: the target is tracked as Up and never probed.
//   - datapath ([TypeDatapath], never written in a configuration): for a
//     backend of a tunnel or l3dsr service, a TCP SYN to VIP:port sent the
//     way the balancer forwards a client's packets, which passes only when
//     the SYN-ACK comes back from VIP:port. See below.
//
// # Datapath probes
//
// In tunnel and l3dsr modes the ordinary check, addressed to the
// backend's own address, says nothing about the path client traffic
// takes: a backend whose decapsulation (or DSCP-to-VIP mapping) is missing
// answers it and black-holes every client. A datapath probe takes the
// client's path. For tunnel it is an IPv4 or IPv6 packet from the
// balancer's tunnel source to the backend (IPIP, IP6IP6, 4in6 or 6in4,
// exactly as the dataplane encapsulates) carrying a SYN from the balancer's
// own address to VIP:port; for l3dsr a SYN from that address to
// backend:port with the service's DSCP. A backend that undoes the mode
// answers from VIP:port to the balancer's address (directly: that is the
// point of these modes), and the steering program passes the answer to the
// kernel like any packet to a local address, where a packet socket sees it
// before the IP layer (which may drop it: a VIP that is also a local
// address makes it a martian, and in two-arm a strict rp_filter rejects a
// VIP arriving on the backend side). A RST from VIP:port fails the probe (the packet arrived, nothing
// listens on the VIP); an answer from the backend's own address fails it
// with that diagnosis (l3dsr without the mapping); silence fails it at the
// timeout.
//
// The probe is half a handshake, as Katran's and IPVS's TCP checks are;
// Katran gets full checks through its tunnel by marking the checker's
// sockets and encapsulating them in a tc program, which xlb avoids: it
// needs no BPF on the balancer's egress. [RawProber] writes whole packets
// on IPPROTO_RAW sockets and reads answers from an AF_PACKET socket per
// family (a classic BPF filter keeps TCP segments with SYN or RST), which
// needs CAP_NET_RAW (xlb runs as root); without it every
// datapath probe reports that it could not run and decides nothing
// ([ErrUnavailable]). The probe's source port is reserved with a bound TCP
// socket, so its answer never belongs to a real connection. The kernel,
// which has no connection for the SYN-ACK, answers it with a RST towards
// the VIP (it crosses the balancer's dataplane like a client's packet and
// is ignored by whichever backend it reaches); the prober itself sends the
// probed backend a RST the way the SYN went, so the backend's half-open
// connection ends at once instead of retransmitting SYN-ACKs.
//
// Datapath targets rise, fall and are dampened like any other, with the
// service's health timing (or the defaults).
//
// # Rise and fall
//
// A target starts [Unknown]. Rise consecutive successes make it [Up], Fall
// consecutive failures make it [Down]; the first decision is made the same
// way, so a dead backend is Down about Fall×Interval after it was added.
// Any failure resets the run of successes and vice versa. Whether an Unknown
// backend should get traffic is the caller's choice: treating it as up keeps
// a new service from dropping traffic for Rise×Interval, treating it as down
// keeps traffic off a new backend that is dead. Each target's first
// check is delayed by a random fraction of its Interval so that many targets
// added at once do not fire together; afterwards checks start every Interval.
//
// # Dampening
//
// Flap damping after GLB: the manager remembers when a target changed
// between Up and Down (the first decision out of Unknown is not a flap).
// When a change would make more than FlapLimit changes within FlapWindow, the
// target is held Down until now+Hold: Status.HeldUntil is set, the hold is
// counted and logged ("dampened"). If the change was Up→Down it still
// happens; if it was Down→Up it does not. During the hold, checks still run
// and their results show in LastResult, but successes do not count towards
// Rise; once the hold has passed, Rise successes bring the target Up as
// usual. Starting a hold clears the flap history, so the hold is the whole
// penalty. FlapLimit < 0 turns dampening off.
//
// # Scheduling
//
// A checker is a [time.AfterFunc] timer, not a goroutine: between checks a
// target costs a few hundred bytes, and a goroutine exists only while its
// check runs. Ten thousand targets are cheap to hold and to Set.
//
// # Notifications
//
// Options.OnChange is called on every state transition from a single
// manager goroutine, in the order the transitions happened, never while a
// lock of the manager is held; a slow callback delays later notifications
// but not the checks. [Manager.Set] itself does not call it: the caller that
// reconciled knows what it set and can read [Manager.All].
package health
