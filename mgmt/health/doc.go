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
