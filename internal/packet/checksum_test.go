package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// refSum is the plain RFC 1071 reference: 16-bit big-endian words, a
// trailing odd byte padded with zero, carries folded at the end.
func refSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func TestSumMatchesReferenceEveryLength(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 9000+8)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	ones := make([]byte, 9000)
	for i := range ones {
		ones[i] = 0xff
	}
	for n := 0; n <= 9000; n++ {
		for _, off := range []int{0, 1, 3} { // unaligned starts too
			b := buf[off : off+n]
			if got, want := Sum(b), refSum(b); got != want {
				t.Fatalf("len %d off %d: Sum %#04x, reference %#04x", n, off, got, want)
			}
		}
		if got, want := Sum(ones[:n]), refSum(ones[:n]); got != want {
			t.Fatalf("all-ones len %d: Sum %#04x, reference %#04x", n, got, want)
		}
	}
}

func TestChecksumRFC1071Example(t *testing.T) {
	// RFC 1071 section 3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Sum(b); got != 0xddf2 {
		t.Fatalf("Sum = %#04x, want 0xddf2", got)
	}
	if got := Checksum(b, 0); got != ^uint16(0xddf2) {
		t.Fatalf("Checksum = %#04x", got)
	}
}

func TestDeltaMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	same := func(a, b uint16) bool { return a == b || (a|b == 0xffff && (a == 0 || b == 0)) }
	for i := 0; i < 20000; i++ {
		n := 40 + 2*rng.IntN(100)
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		ck := Checksum(b, 0)
		var d Delta
		// A 16-bit word, a 4-byte field and a 16-byte field change.
		w := 2 * rng.IntN(2)
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(rng.Uint32())
		binary.BigEndian.PutUint16(b[w:], nw)
		d.Add16(old, nw)
		for _, f := range [][]byte{b[4:8], b[8:24]} {
			o := append([]byte(nil), f...)
			for j := range f {
				f[j] = byte(rng.Uint32())
			}
			for j := 0; j < len(f); j += 4 {
				d.Add32(binary.BigEndian.Uint32(o[j:]), binary.BigEndian.Uint32(f[j:]))
			}
		}
		if got, want := d.Apply(ck), ^refSum(b); !same(got, want) {
			t.Fatalf("Delta.Apply: %#04x, recomputed %#04x", got, want)
		}
	}
}

func TestDeltaUDPKeepsZero(t *testing.T) {
	var d Delta
	d.Add16(0x1234, 0x4321)
	if got := d.ApplyUDP(0); got != 0 {
		t.Fatalf("zero UDP checksum became %#04x", got)
	}
	// A computed zero is sent as all ones: ~(~0xfffe + ~1 + 0) = ~0xffff = 0.
	var z Delta
	z.Add16(1, 0)
	if got := z.ApplyUDP(0xfffe); got != 0xffff {
		t.Fatalf("got %#04x, want 0xffff", got)
	}
}

func TestPseudoSums(t *testing.T) {
	src, dst := []byte{192, 0, 2, 1}, []byte{198, 51, 100, 10}
	ph := []byte{192, 0, 2, 1, 198, 51, 100, 10, 0, 6, 0x01, 0x00}
	if got, want := PseudoSum4(src, dst, 6, 256), refSum(ph); got != want {
		t.Fatalf("PseudoSum4 %#04x want %#04x", got, want)
	}
	s6, d6 := make([]byte, 16), make([]byte, 16)
	for i := range s6 {
		s6[i], d6[i] = byte(i*7), byte(255-i)
	}
	ph6 := append(append(append([]byte{}, s6...), d6...), 0, 1, 0, 2, 0, 0, 0, 17)
	if got, want := PseudoSum6(s6, d6, 17, 0x10002), refSum(ph6); got != want {
		t.Fatalf("PseudoSum6 %#04x want %#04x", got, want)
	}
}

func BenchmarkSum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(1500)
	for b.Loop() {
		Sum(buf)
	}
}

func BenchmarkSum20(b *testing.B) {
	buf := make([]byte, 20)
	b.ReportAllocs()
	for b.Loop() {
		Sum(buf)
	}
}
