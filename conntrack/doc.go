// Package conntrack is xlb's flow table: a fixed-capacity, preallocated,
// sharded map from IPv4 and IPv6 5-tuples to the backend (and NAT state) a
// flow was given, used by the dataplane workers on the per-packet path.
// Lookup, Insert, Delete and AllocSNAT allocate nothing, use no maps and no
// interface calls.
//
// # API
//
// One set of methods serves both families: a [Key] and an [Entry] carry
// 16-byte addresses (IPv4 in the first four bytes) and Key.V6 says which
// family's table an operation goes to. Results are written into the
// caller's variables (Lookup, Peek, PairKey, Range), so nothing is
// returned by value or allocated. The table stores each family in its own
// compact form (a generic family[K, E, F] over its key and entry types),
// and converts at the edge. [Table.Hash] hashes a key once for a packet's
// Prefetch and Lookup, and callers may use that hash for their own
// decisions (xlb's Maglev lookup, SNAT address and tunnel flow label).
//
// # Layout
//
// Each address family has its own table of Config.Shards shards. A shard
// owns a power-of-two range of one slot array (Capacity is rounded up so
// that every shard gets 2^k slots). A slot holds the key, the entry, a
// 32-bit timestamp, the live TCP state and the two int32 links of the
// shard's LRU list. The index is chained hashing with one bucket per slot,
// kept outside the slots in two uint32 arrays: the bucket heads and, per
// slot, the link to the next slot of its chain (or of the shard's free
// list). Each link word carries the slot's position in the shard and a
// 16-bit tag of its hash, so a chain walk reads a slot only when the tag
// matches: a hit reads one slot, a miss usually none. IPv4 costs 64 bytes
// per entry (56-byte slot + 4-byte bucket + 4-byte link), IPv6 112
// ([Table.BytesPerEntry4], [Table.BytesPerEntry6]). The 64-bit flow hash,
// keyed by Config.Seed, picks the shard, the bucket and the tag from
// disjoint bits. Free slots come from the free list, so an insert never
// scans.
//
// In a table much larger than the CPU caches a lookup costs two dependent
// cache misses (bucket, slot), most of it TLB and DRAM latency. A worker
// that calls [Table.Prefetch] for its rx batch first makes those misses
// overlap across the batch.
//
// # Locking
//
// Every shard has its own lock, which is also its sequence count, and
// counters, padded to 128 bytes so that shards never share a cache line.
// Writers (Insert, Delete, expiry, state changes) take the lock by moving
// the count from even to odd (one compare-and-swap) and release it by
// moving it on to even (one add): two locked instructions per section,
// where a mutex and a separate count took four.
//
// Lookups of established flows take no lock: a lookup is a seqlock read.
// It loads the shard's count, walks the chain and copies the entry, and
// keeps the copy only if the count was even and has not moved; otherwise
// (a writer was busy) it takes the lock. A hit whose only effect would be
// a new timestamp stays lock-free and writes nothing shared: the timestamp
// is stored with a compare-and-swap, and only once per tick (10 ms) per
// flow. Hits that change the entry (a TCP state change, an expired entry,
// a move in the LRU list, once per 640 ms granule) are done under the
// lock. So workers reading the same shard never write its cache lines,
// and a Range or Stats holding a lock never stalls them. Peek reads the
// same way. The sequence counts live in the table's memory with the rest
// of the shard headers; Attach resets them (a crash may leave one odd).
//
// The one shared structure written on the packet path is the per-backend
// flow counter read by [Table.BackendFlows] (least-connection
// scheduling): an atomic add when a flow entry is stored or removed, never
// on a lookup. An operation locks exactly one shard at a time and never
// nests locks: work on a second shard (the other half of a NAT pair)
// happens after the first lock is released. Stats, Len and Range take the
// shard locks one after the other and are not for the per-packet path.
//
// # Time and expiry
//
// Time is a parameter: now is the caller's monotonic clock in nanoseconds.
// Entries store the time of their last packet as a uint32 count of Ticks
// (10 ms) since the table was made (on the boot clock for Attach). Each
// entry's timeout follows its state (StateSynSent:
// TCPSyn, StateEstablished: TCPEstablished, StateClosing and StateClosed:
// TCPClosing, StateUDP: UDP, StateOther: Other), and Lookup advances the
// TCP state from the packet's flags. An entry is expired once it has been
// idle for longer than its timeout (never earlier, at most two ticks
// later). Expired entries are removed lazily by Lookup and Insert when
// they meet them, and incrementally by Expire, which the workers call once
// per batch with a small budget: it examines at most that many slots,
// continuing from a shared cursor, so there is never a stop-the-world
// sweep; a stretch of slots in which nothing looks expired is passed over
// without taking the lock.
//
// # Eviction and the full table
//
// Each shard keeps its entries in intrusive LRU lists (int32 links in the
// slots): one for the half-open entries (StateSynSent), one for the
// others. To keep the per-packet path to the slot's own cache line, a
// lookup moves an entry to the head only when its previous packet was in
// an earlier 640 ms granule, so a busy flow is moved at most once per
// granule and the tail is the least recently used entry to within 640 ms.
//
// Eviction is O(1) and takes half-open entries first, oldest first.
// Half-open entries have a budget, Config.SynBudget percent of each shard:
// a half-open insert into a shard at its budget evicts the shard's oldest
// half-open entry whatever its age, so a SYN flood cycles through the
// budget (each spoofed entry lives budget/rate; a real handshake needs one
// round trip) and never reaches the established flows. When an insert
// finds its shard without a free slot it evicts the oldest half-open
// entry, or, when there is none, the LRU tail if it has been idle for at
// least Config.EvictMinIdle or is expired, closing or closed. Otherwise
// the insert fails with ErrFull and Stats.Full counts it: the dataplane
// then serves the new flow by consistent hash without state (dsr, tunnel,
// l3dsr, nat), so a full table never stops service and never pushes out
// flows that are in use. Stats.EvictedHalfOpen, and per service ID
// [Table.ServiceStats] (evictions by state, refusals), say what a flood
// cost.
//
// # Memory and persistence
//
// Everything the entries need lives in one block of memory that holds no
// Go pointers: a header, then per family the shard headers (with their
// mutexes), the slots, the bucket and the link words. [New] takes it from
// the Go heap (one pointer-free allocation the garbage collector never
// scans); [Attach] lays the table over memory the caller provides, a
// MAP_SHARED mapping of a file in package conntrack/shm, so that the table
// outlives the process. The header names the format version, a checksum
// of the layout (sizes and field offsets of every stored type, the stored
// constants, the hash function), the geometry and the hash seed; Attach
// reuses memory only when all match, and then rebuilds the chains, free
// lists, LRU lists and locks from the slots, drops torn or unpaired
// entries, and recounts the SNAT ports and per-backend flows, which are
// derived from the entries. A shard's slots are used from the bottom up
// (a high-water mark), so a new table touches only what it uses.
// Timestamps count ticks on the boot clock (Persist), so a new process
// sees every entry exactly as old as it is.
//
// # NAT pairs and SNAT
//
// nat and fullnat flows have a forward entry (client to VIP) and a reverse
// entry (backend replies), stored under two keys that name each other (see
// [Entry]; [Table.InsertNAT] stores both). The two halves are one
// connection and live and die together. Each half is refreshed by the
// packets of its own direction; when one idles past its timeout it stays
// as long as the pair is alive, judged on the later timestamp of the two
// and on StateClosing/StateClosed if either half saw a FIN/RST, so a
// one-way stream keeps its pair and a reset on either side ends it after
// TCPClosing. Removing either half for any reason (Delete, expiry,
// eviction, being overwritten) removes the other, and removing a fullnat
// forward entry returns its SNAT port to the allocator. The SNAT allocator
// keeps, per SNAT address, a FIFO ring of free ports and a bitmap of
// allocated ones: O(1) alloc and free, double frees detected, nothing
// allocated after New.
package conntrack
