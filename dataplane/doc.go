// Package dataplane is xlb's packet pipeline: parse → classify → conntrack
// → schedule → rewrite, as functions over a batch of frames, plus the
// immutable Snapshot the pipeline reads and the per-worker counters the API
// reads.
//
// A Snapshot is compiled off the hot path from a Spec (services, backends,
// next hops) by Build and published with an atomic.Pointer; a Worker loads
// it once per batch. Service and backend IDs are stable across Builds that
// are given the previous Snapshot, so conntrack entries (which store IDs)
// keep their backend when the configuration changes; IDs of removed objects
// are never reused by the same process.
//
// The next packet of an established flow (untagged IPv4 without options
// or IPv6 without extension headers; TCP without SYN, FIN or RST, or
// UDP; any mode but frag_hash; and nat/fullnat replies) takes a fast path (fast.go) that reads the flow key straight
// from the frame into registers, finds the entry with conntrack's
// lock-free LookupFast4 or LookupFast6 and rewrites in one pass; everything else, and
// anything the fast path is unsure of, goes through the stages above.
// TestFastPathMatchesPipeline and FuzzFastPathMatchesPipeline check that
// both give every frame the same verdict, bytes and counters.
//
// The per-packet path does no syscalls, takes no locks on established
// flows (new flows take conntrack shard locks), uses no maps, and
// allocates nothing.
package dataplane
