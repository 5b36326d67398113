// Package conntrack is xlb's flow table: a fixed-capacity, preallocated,
// sharded map from IPv4 and IPv6 5-tuples to the backend (and NAT state) a
// flow was given, used by the dataplane workers on the per-packet path.
// Lookup, Insert, Delete and AllocSNAT allocate nothing, use no maps and no
// interface calls.
//
// # Layout
//
// Each address family has its own table of Config.Shards shards. A shard
// owns a power-of-two range of one slot array (Capacity is rounded up so
// that every shard gets 2^k slots) and the same range of a bucket array of
// int32 chain heads, one bucket per slot. A slot holds the key, the entry,
// a 32-bit timestamp, the live TCP state and three int32 links: the bucket
// chain (or the free list, when the slot is unused) and the two LRU links.
// IPv4 costs 64 bytes per entry (60-byte slot + 4-byte bucket), IPv6 112
// ([Table.BytesPerEntry4], [Table.BytesPerEntry6]). The 64-bit flow hash
// (keyed by Config.Seed) picks the shard with its high half and the bucket
// with its low half. Free slots come from the intrusive free list, so an
// insert never scans.
//
// # Locking
//
// Every shard has its own sync.Mutex and counters, padded to 128 bytes so
// that shards never share a cache line. An operation locks exactly one
// shard at a time and never nests locks: work on a second shard (the other
// half of a NAT pair) happens after the first lock is released. Stats, Len
// and Range take the shard locks one after the other and are not for the
// per-packet path.
//
// # Time and expiry
//
// Time is a parameter: now is the caller's monotonic clock in nanoseconds.
// Entries store the time of their last packet as a uint32 count of Ticks
// (10 ms) since New. Each entry's timeout follows its state (StateSynSent:
// TCPSyn, StateEstablished: TCPEstablished, StateClosing and StateClosed:
// TCPClosing, StateUDP: UDP, StateOther: Other), and Lookup advances the
// TCP state from the packet's flags. An entry is expired once it has been
// idle for longer than its timeout (never earlier, at most two ticks
// later). Expired entries are removed lazily by Lookup and Insert when
// they meet them, and incrementally by Expire, which the workers call once
// per batch with a small budget: it examines at most that many slots,
// continuing from a shared cursor, so there is never a stop-the-world
// sweep.
//
// # Eviction and the full table
//
// Each shard keeps its entries in an LRU list. Lookups only mark an entry
// as touched; an eviction relinks touched entries it finds at the tail
// (amortised O(1), bounded per call), after which the tail is exactly the
// least recently used entry. When an insert finds its shard without a free
// slot it evicts that entry if it has been idle for at least
// Config.EvictMinIdle or is expired, closing or closed. Otherwise the
// insert fails with ErrFull and Stats.Full counts it: the dataplane then
// serves the new flow by consistent hash without state, so a full table
// (a SYN flood, say) never stops service and never pushes out flows that
// are in use.
//
// # NAT pairs and SNAT
//
// nat and fullnat flows have a forward entry (client to VIP) and a reverse
// entry (backend replies), stored under two keys that name each other (see
// [Entry4]; [Table.InsertNAT4] stores both). The two halves live and die
// together: removing either one for any reason (Delete, expiry, eviction,
// being overwritten) removes the other, and removing a fullnat forward
// entry returns its SNAT port to the allocator. The SNAT allocator keeps,
// per SNAT address, a FIFO ring of free ports and a bitmap of allocated
// ones: O(1) alloc and free, double frees detected, nothing allocated
// after New.
package conntrack
