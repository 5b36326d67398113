// Package maglev builds weighted Maglev lookup tables: a pure function from a
// set of backends and a Config to an immutable table mapping flow hashes to
// backend IDs.
//
// # Algorithm
//
// The construction is the one of Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer" (NSDI 2016), section 3.4, with
// Katran-style weights. For a table of prime size M:
//
//  1. The backends are sorted by Key (byte-wise), so the table is a function
//     of the set and never of the order of the caller's slice. Backends with
//     Weight 0 are then dropped: they take no turns and own no slots.
//  2. Each backend i gets a preference list, a permutation of 0..M-1:
//     offset = h1(Key) mod M, skip = h2(Key) mod (M-1) + 1, and
//     permutation[j] = (offset + j*skip) mod M. Because M is prime and
//     0 < skip < M, the list visits every slot exactly once. h1 and h2 are
//     [Hash64] (XXH64) of the key under two seeds derived from Config.Seed
//     with SplitMix64. The list is walked lazily (next = (prev+skip) mod M),
//     never materialised.
//  3. Backends take turns; on its turn a backend claims the first slot of its
//     preference list that is still empty. The turn order is weighted fair
//     queueing on virtual time: backend i's k-th turn (k = 1, 2, ...) happens
//     at time k/Weight_i, ties going to the backend that sorts first by Key.
//     With equal weights this is exactly the paper's round robin; in general
//     it is Katran's "a backend with weight w gets w turns for every
//     max-weight turns" with the turns spread evenly. Times are compared as
//     exact integer cross products, never as floats.
//  4. Turns continue until all M slots are full.
//
// After step 4 backend i owns c_i slots with
// -1 < c_i - M*Weight_i/ΣWeight < N*Weight_i/ΣWeight: with equal weights the
// shares differ by at most one slot, and in general they follow the weights
// to within a few slots (tested in maglev_test.go). A backend whose
// weight is tiny relative to the others may legitimately end up with no slot;
// [Table.Len] counts the backends that own at least one.
//
// Removing one of N equally weighted backends moves its own 1/N of the
// slots plus some collateral churn that grows with N/M (measured in
// maglev_test.go at M=65537: 1.02x the ideal 1/N for N=10, 1.6x for N=100,
// 6.9x for N=1000, i.e. 0.7% of all slots). Most established flows therefore
// stay on their backend across a backend-set change even without connection
// tracking; for large backend sets use a larger M.
//
// # Determinism
//
// Build uses no map iteration, no per-process random seed (hash/maphash and
// the Go map hash are deliberately avoided), no floating point and no
// goroutines. Every xlb instance — any process, architecture or Go version —
// that is given the same set of backends (same Keys, IDs and Weights, in any
// order) and the same Config builds a byte-identical table, so the members of
// an ECMP fleet agree on every flow. [Table.Fingerprint] summarises a table
// in one number so instances can compare tables cheaply. The construction
// above is therefore a compatibility contract: changing it (hash, seed
// derivation, turn order, tie-break, or the reduction in [Table.Lookup])
// makes old and new instances disagree during a rolling upgrade, and
// TestGoldenFingerprint fails.
//
// # Lookup
//
// [Table.Lookup] maps a 64-bit flow hash to a slot with a multiply-shift
// reduction instead of a division: the hash is folded to 32 bits
// (h ^ h>>32) and the slot is (h32 * M) >> 32. This is Lemire's "fast
// alternative to the modulo reduction"; it is as uniform as h mod M to within
// M/2^32 and costs one multiplication. It relies on the high bits of the
// folded hash being well mixed, so the caller's flow hash must be a good
// 64-bit (or 32-bit) hash, not, say, a raw port number.
//
// # Empty sets
//
// A set with no backends, or only zero-weight ones, is not an error: a
// service whose backends are all down or draining still needs a table. Build
// returns an empty table whose Lookup reports ok=false.
//
// # Table size
//
// M must be a prime with len(backends) <= M <= [MaxSize]. Maglev's
// disruption and balance improve with M/N; the paper recommends M > 100*N.
// The default, 65537, is good for up to several hundred backends; memory is
// 4*M bytes per table.
package maglev
