//go:build race

package conntrack

import "unsafe"

// Under the race detector the lock-free readers' loads, which race with
// the writers by design, must not be instrumented (the writers' stores
// are, and are ordered by the shard's mutex). go:norace does that for
// plain loads, but the compiler instruments the comparison of two structs
// (a key) whatever the pragma, so view copies the slot to buf with
// uninstrumented word loads and read compares the copy. (Plain loads on a
// CPU that reorders them could let a torn read escape the seq check: in a
// race build, a test build, that is worth less than the detector's reports
// that atomic loads against the writers' plain stores would cause.)

func view[K, E comparable](sl, buf *slot[K, E]) *slot[K, E] {
	copyWords(unsafe.Pointer(buf), unsafe.Pointer(sl), unsafe.Sizeof(*sl))
	return buf
}

//go:norace
func copyWords(dst, src unsafe.Pointer, n uintptr) {
	for i := uintptr(0); i+8 <= n; i += 8 {
		*(*uint64)(unsafe.Add(dst, i)) = *(*uint64)(unsafe.Add(src, i))
	}
}

//go:norace
func ld32(p *uint32) uint32 { return *p }
