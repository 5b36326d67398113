package maglev

import "testing"

// sanityBuffer is the test input of xxHash's own sanity check
// (cli/xsum_sanity_check.c): a byte generator seeded with PRIME32_1 and
// multiplied by PRIME64_1.
func sanityBuffer(n int) []byte {
	const (
		genPrime32 = 2654435761
		genPrime64 = 11400714785074694797
	)
	b := make([]byte, n)
	gen := uint64(genPrime32)
	for i := range b {
		b[i] = byte(gen >> 56)
		gen *= genPrime64
	}
	return b
}

// TestHash64Vectors pins Hash64 to the reference XXH64: the xxHash sanity
// vectors (which cover every length branch: empty, tail bytes, 4- and 8-byte
// tails, and the 32-byte stripe loop, at seed 0 and a non-zero seed) plus the
// well-known string digests.
func TestHash64Vectors(t *testing.T) {
	const prime = 2654435761
	buf := sanityBuffer(222)
	for _, v := range []struct {
		n    int
		seed uint64
		want uint64
	}{
		{0, 0, 0xEF46DB3751D8E999},
		{0, prime, 0xAC75FDA2929B17EF},
		{1, 0, 0xE934A84ADB052768},
		{1, prime, 0x5014607643A9B4C3},
		{4, 0, 0x9136A0DCA57457EE},
		{14, 0, 0x8282DCC4994E35C8},
		{14, prime, 0xC3BD6BF63DEB6DF0},
		{222, 0, 0xB641AE8CB691C174},
		{222, prime, 0x20CB8AB7AE10C14A},
	} {
		if got := Hash64(v.seed, buf[:v.n]); got != v.want {
			t.Errorf("Hash64(seed=%d, sanity[:%d]) = %#016x, want %#016x", v.seed, v.n, got, v.want)
		}
	}
	for _, v := range []struct {
		in   string
		want uint64
	}{
		{"a", 0xD24EC4F1A98C6E5B},
		{"abc", 0x44BC2CF5AD770999},
	} {
		if got := Hash64(0, []byte(v.in)); got != v.want {
			t.Errorf("Hash64(0, %q) = %#016x, want %#016x", v.in, got, v.want)
		}
	}
}

func TestHash64Allocs(t *testing.T) {
	buf := sanityBuffer(100)
	var sink uint64
	if n := testing.AllocsPerRun(100, func() { sink += Hash64(1, buf) }); n != 0 {
		t.Fatalf("Hash64 allocates %v times per call, want 0", n)
	}
	_ = sink
}

func BenchmarkHash64(b *testing.B) {
	key := []byte("192.0.2.11:80")
	b.ReportAllocs()
	b.SetBytes(int64(len(key)))
	var sink uint64
	for b.Loop() {
		sink += Hash64(7, key)
	}
	_ = sink
}
