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
// The per-packet path does no syscalls, takes no locks other than the
// conntrack shard lock, uses no maps, and allocates nothing.
package dataplane
