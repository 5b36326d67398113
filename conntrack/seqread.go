//go:build amd64 && !race

package conntrack

// The lock-free readers (family.read, touchBatch, anyExpired) read slots
// and index words with plain loads. On amd64 that is enough for a seqlock:
// the CPU keeps loads in program order, and the compiler schedules them
// between the two atomic loads of the shard's seq that surround them.

// view returns the slot to read: on amd64 the slot itself, read in place
// (buf is not used).
func view[K, E comparable](sl, buf *slot[K, E]) *slot[K, E] { return sl }

func ld32(p *uint32) uint32 { return *p }
