//go:build !amd64 && !race

package conntrack

import (
	"sync/atomic"
	"unsafe"
)

// On CPUs that may reorder loads, the seqlock readers load every word
// with an atomic (acquire) load, so that none of them can be satisfied
// after the load of seq that validates the copy. A slot is a whole number
// of 8-byte words, at an 8-byte aligned address (the slot arrays start on
// a cache line).

var _ [0]struct{} = [unsafe.Sizeof(slot[key4, Entry4]{}) % 8]struct{}{}
var _ [0]struct{} = [unsafe.Sizeof(slot[key6, entry6]{}) % 8]struct{}{}

// view copies the slot to buf, word by word, and returns buf.
func view[K, E comparable](sl, buf *slot[K, E]) *slot[K, E] {
	n := unsafe.Sizeof(*sl) / 8
	d := unsafe.Slice((*uint64)(unsafe.Pointer(buf)), n)
	s := unsafe.Slice((*uint64)(unsafe.Pointer(sl)), n)
	for j := range d {
		d[j] = atomic.LoadUint64(&s[j])
	}
	return buf
}

func ld32(p *uint32) uint32 { return atomic.LoadUint32(p) }
