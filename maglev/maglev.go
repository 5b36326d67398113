package maglev

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// DefaultSize is the table size used when Config.Size is zero. It is prime
// (2^16 + 1) and gives good balance and low disruption up to several hundred
// backends.
const DefaultSize = 65537

// MaxSize is the largest table size Build accepts (2^24; the largest prime
// below it is 16777213). A table of that size takes 64 MiB, and building it
// takes on the order of a second, which is already past what a control plane
// should do on every backend change.
const MaxSize = 1 << 24

// Sentinel errors returned (wrapped) by Build; test with errors.Is.
var (
	// ErrSizeNotPrime reports a Config.Size that is not a prime number.
	ErrSizeNotPrime = errors.New("table size is not prime")
	// ErrSizeTooLarge reports a Config.Size above MaxSize.
	ErrSizeTooLarge = errors.New("table size too large")
	// ErrTooManyBackends reports more backends than table slots.
	ErrTooManyBackends = errors.New("more backends than table slots")
	// ErrDuplicateKey reports two backends with the same Key.
	ErrDuplicateKey = errors.New("duplicate backend key")
	// ErrDuplicateID reports two backends with the same ID.
	ErrDuplicateID = errors.New("duplicate backend id")
	// ErrEmptyKey reports a backend with an empty Key.
	ErrEmptyKey = errors.New("empty backend key")
)

// Backend is one member of the set a table is built from.
type Backend struct {
	// ID is what the table stores and Lookup returns: an opaque value chosen
	// by the caller, e.g. an index into its own backend slice. It must be
	// unique within a set.
	ID uint32
	// Key is the stable identity that is hashed to place the backend, e.g.
	// "192.0.2.11:80". It must be non-empty and unique within a set, and must
	// not change while the backend stays in the set: the backend's slots
	// follow the Key, not the ID.
	Key string
	// Weight is the backend's relative share of slots. 0 means no slots
	// (draining or disabled).
	Weight uint32
}

// Config parameterises Build. The zero value is valid.
type Config struct {
	// Size is the number of table slots, a prime no larger than MaxSize and
	// no smaller than the number of backends. Zero means DefaultSize.
	Size uint32
	// Seed perturbs the backend hashes. It comes from configuration and must
	// be the same on every instance that has to agree on the table.
	Seed uint64
}

// Table is a built Maglev lookup table. It is immutable after Build and safe
// for concurrent use by any number of readers.
type Table struct {
	slots []uint32 // backend IDs; nil when no backend has a slot
	size  uint32   // configured size M, also when slots is nil
	n     int      // backends owning at least one slot
}

// Lookup returns the ID of the backend owning the slot that hash maps to.
// ok is false if and only if the table has no backends. hash should be a
// well-mixed flow hash; it is reduced to a slot by multiply-shift (see the
// package documentation), not by a division. Lookup does not allocate.
func (t *Table) Lookup(hash uint64) (id uint32, ok bool) {
	s := t.slots
	if len(s) == 0 {
		return 0, false
	}
	h := uint64(uint32(hash ^ hash>>32))
	return s[h*uint64(len(s))>>32], true
}

// Size returns the number of slots M the table was built with, also for an
// empty table.
func (t *Table) Size() int { return int(t.size) }

// Len returns the number of backends that own at least one slot.
func (t *Table) Len() int { return t.n }

// Slots returns a copy of the table's slots (slot i holds the ID of the
// backend owning it), for tests and diagnostics. It allocates 4*Size bytes;
// it returns nil for an empty table.
func (t *Table) Slots() []uint32 { return slices.Clone(t.slots) }

// Fingerprint returns Hash64 (seed 0) of the table's size and slots, encoded
// as little-endian uint32s. Two instances with equal fingerprints have, for
// all practical purposes, identical tables; it is meant for logs and for
// comparing tables across a fleet. It allocates 4*(Size+1) bytes.
func (t *Table) Fingerprint() uint64 {
	b := make([]byte, 0, 4*(len(t.slots)+1))
	b = binary.LittleEndian.AppendUint32(b, t.size)
	for _, id := range t.slots {
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return Hash64(0, b)
}

// Build returns the Maglev table for the set of backends under cfg. It is a
// pure function: the result depends only on the set (not on the order of the
// slice, which Build does not modify) and on cfg. It fails if cfg.Size is
// invalid or if Keys or IDs are empty or repeated. A set with no backend of
// non-zero weight gives an empty table whose Lookup reports ok=false.
//
// Build runs in O(M log M + M log N) time for M slots and N backends
// (M log M for the probing, as in the paper) and allocates O(M + N).
func Build(backends []Backend, cfg Config) (*Table, error) {
	size, sorted, err := check(backends, cfg)
	if err != nil {
		return nil, err
	}

	// Per-backend state of the backends that take turns, in Key order.
	seedOffset := splitmix64(cfg.Seed)
	seedSkip := splitmix64(cfg.Seed + 0x9E3779B97F4A7C15)
	st := make([]turnState, 0, len(sorted))
	for _, b := range sorted {
		if b.Weight == 0 {
			continue
		}
		st = append(st, turnState{
			next:   uint32(Hash64(seedOffset, []byte(b.Key)) % uint64(size)),
			skip:   uint32(Hash64(seedSkip, []byte(b.Key))%uint64(size-1)) + 1,
			weight: uint64(b.Weight),
			id:     b.ID,
		})
	}
	t := &Table{size: size}
	if len(st) == 0 {
		return t, nil
	}

	// Turn order: a binary min-heap of indices into st keyed by the virtual
	// time of each backend's next turn, (claims+1)/weight.
	h := turnHeap{st: st, idx: make([]int32, len(st))}
	for i := range h.idx {
		h.idx[i] = int32(i)
	}
	for i := len(h.idx)/2 - 1; i >= 0; i-- {
		h.down(i)
	}

	slots := make([]uint32, size)
	taken := make([]uint64, (size+63)/64)
	for filled := uint32(0); filled < size; filled++ {
		b := &st[h.idx[0]]
		c := b.next
		for taken[c>>6]&(1<<(c&63)) != 0 {
			if c += b.skip; c >= size {
				c -= size
			}
		}
		taken[c>>6] |= 1 << (c & 63)
		slots[c] = b.id
		if c += b.skip; c >= size {
			c -= size
		}
		b.next = c
		if b.claims == 0 {
			t.n++
		}
		b.claims++
		h.down(0)
	}
	t.slots = slots
	return t, nil
}

// validate checks a Key-sorted set for empty and duplicate Keys and IDs.
func validate(sorted []Backend) error {
	for i, b := range sorted {
		if b.Key == "" {
			return fmt.Errorf("maglev: backend id %d: %w", b.ID, ErrEmptyKey)
		}
		if i > 0 && b.Key == sorted[i-1].Key {
			return fmt.Errorf("maglev: key %q: %w", b.Key, ErrDuplicateKey)
		}
	}
	ids := make([]uint32, len(sorted))
	for i, b := range sorted {
		ids[i] = b.ID
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return fmt.Errorf("maglev: id %d: %w", ids[i], ErrDuplicateID)
		}
	}
	return nil
}

// Check reports the error Build would return for backends and cfg,
// without building the table.
func Check(backends []Backend, cfg Config) error {
	_, _, err := check(backends, cfg)
	return err
}

func check(backends []Backend, cfg Config) (uint32, []Backend, error) {
	size := cfg.Size
	if size == 0 {
		size = DefaultSize
	}
	if size > MaxSize {
		return 0, nil, fmt.Errorf("maglev: size %d > %d: %w", size, MaxSize, ErrSizeTooLarge)
	}
	if !isPrime(size) {
		return 0, nil, fmt.Errorf("maglev: size %d: %w", size, ErrSizeNotPrime)
	}
	if uint64(len(backends)) > uint64(size) {
		return 0, nil, fmt.Errorf("maglev: %d backends, size %d: %w", len(backends), size, ErrTooManyBackends)
	}
	sorted := slices.Clone(backends)
	slices.SortFunc(sorted, func(a, b Backend) int { return strings.Compare(a.Key, b.Key) })
	if err := validate(sorted); err != nil {
		return 0, nil, err
	}
	return size, sorted, nil
}

// turnState is one weighted backend during Build.
type turnState struct {
	next   uint32 // next slot of its preference list to try
	skip   uint32
	weight uint64 // < 2^32
	claims uint64 // slots claimed so far, < 2^24
	id     uint32
}

// turnHeap orders backends by the virtual time of their next turn.
type turnHeap struct {
	st  []turnState
	idx []int32
}

// before reports whether backend a's next turn comes before backend b's:
// (claims_a+1)/weight_a < (claims_b+1)/weight_b, compared as exact integer
// cross products (both < 2^56), ties going to the lower index, i.e. to the
// smaller Key.
func (h *turnHeap) before(a, b int32) bool {
	x, y := &h.st[a], &h.st[b]
	l, r := (x.claims+1)*y.weight, (y.claims+1)*x.weight
	return l < r || (l == r && a < b)
}

// down restores the heap property below position i.
func (h *turnHeap) down(i int) {
	n := len(h.idx)
	for {
		m := i
		if l := 2*i + 1; l < n && h.before(h.idx[l], h.idx[m]) {
			m = l
		}
		if r := 2*i + 2; r < n && h.before(h.idx[r], h.idx[m]) {
			m = r
		}
		if m == i {
			return
		}
		h.idx[i], h.idx[m] = h.idx[m], h.idx[i]
		i = m
	}
}

// isPrime reports whether n is prime, by trial division (n <= MaxSize, so at
// most about 2000 divisions).
func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint32(3); d*d <= n; d += 2 {
		if n%d == 0 {
			return false
		}
	}
	return true
}
