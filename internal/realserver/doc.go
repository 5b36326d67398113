// Package realserver prepares a backend ("real server") for the
// balancer's direct-return modes and undoes it again: `xlb realserver`.
//
// For every mode (dsr, tunnel, l3dsr) it puts the VIPs on lo (/32, /128;
// IPv6 with nodad), sets arp_ignore=1 and arp_announce=2 on all/ and the
// interface where they are weaker (IPv4 VIPs only: IPv6 has no ARP, and a
// /128 on lo is not answered by neighbour discovery on another interface),
// and turns a strict rp_filter (1) into loose (2), because the client's
// packets arrive with the client's source. In tunnel and l3dsr modes it
// also attaches the realserver XDP program (package dataplane/bpf) to the
// interface: it decapsulates tunnelled packets whose inner destination is
// a VIP, or maps an l3dsr DSCP code back to its VIP, for packets addressed
// to one of this host's addresses.
//
// # Undo
//
// Every change is recorded in a state file (default
// /run/xlb/realserver-IF.json) before it is made: the original value of
// each sysctl, the addresses added (VIPs already on lo are left alone),
// the program's ID. Stop undoes them; a start that finds a state file
// (the previous run crashed or was killed) undoes it first. Undo restores
// a sysctl only while it still holds the value we set, and removes only
// addresses we added, so later changes by an operator survive. The XDP
// program is attached through a bpf_link, which the kernel detaches when
// the process dies. One realserver runs per state file: an flock on
// PATH.lock, released by the kernel, guards it.
//
// # Namespaces
//
// Everything works in the network namespace of the calling OS thread;
// a process started with `ip netns exec` or in a container configures that
// namespace, and its default state file names the namespace.
package realserver
