// Package preflight is `xlb check`: it checks a host against a
// configuration before xlb runs there, and reports one [Result] per check
// with what to do about it. `xlb run` makes the blocking checks
// ([Options].Blocking) before it starts and logs the others as warnings.
//
// The checks never change the host. Whether a driver runs XDP natively
// comes from the netdev netlink family's xdp-features (Linux 6.3+), not
// from attaching a program: attaching resets the rings of some drivers.
// Offloads are read with the ETHTOOL_GFEATURES ioctl, as `ethtool -k`
// does, so no ethtool binary is needed. Interrupt and NAPI placement come
// from the netdev family's NAPI list (Linux 6.9+; /proc/interrupts lines
// named after the interface before that), /proc/irq/N/*affinity_list and
// the threaded-NAPI kthreads' Cpus_allowed_list. Next hops are resolved
// with package neigh, as the daemon does: that sends an ARP request or
// neighbour solicitation when the kernel does not know the neighbour yet,
// as any ping would. BPF JIT: net.core.bpf_jit_enable is visible only in
// the initial network namespace; elsewhere a two-instruction socket filter
// is loaded (never attached), asked whether it was JIT-compiled, and
// unloaded.
//
// Only the checks whose failure stops xlb run from working fail (✘): the
// configuration, privileges, AF_XDP sockets, missing or non-Ethernet
// interfaces, an MTU too big for the AF_XDP frame, xdp: native on a driver
// without native XDP, lb.workers beyond the rx queues, an SNAT address
// xlb may not add (lb.manage_addresses: false), and an SNAT port range
// overlapping the kernel's ephemeral ports for a local SNAT address. The
// rest are fine (✔) or cost something (!).
//
// sysfs and procfs are read under [Options].SysRoot and ProcRoot, which
// tests point at fakes. /sys shows the network namespace of the process
// that mounted it: run `xlb check` the way xlb runs, under `ip netns exec`
// in a namespace (which mounts the namespace's own /sys).
package preflight
