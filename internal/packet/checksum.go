package packet

import (
	"encoding/binary"
	"math/bits"
)

// Sum returns the 16-bit one's complement sum (RFC 1071) of b, not yet
// complemented, in network byte order. It sums eight bytes at a time in
// little-endian words and swaps the folded result: the one's complement sum
// is byte-order independent (RFC 1071 section 2(B)).
func Sum(b []byte) uint16 {
	var acc, carry uint64
	for len(b) >= 32 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), 0)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[8:16]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[16:24]), carry)
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[24:32]), carry)
		acc, carry = bits.Add64(acc, 0, carry)
		acc += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, carry = bits.Add64(acc, binary.LittleEndian.Uint64(b[0:8]), 0)
		acc += carry
		b = b[8:]
	}
	if len(b) >= 4 {
		acc, carry = bits.Add64(acc, uint64(binary.LittleEndian.Uint32(b[0:4])), 0)
		acc += carry
		b = b[4:]
	}
	if len(b) >= 2 {
		acc, carry = bits.Add64(acc, uint64(binary.LittleEndian.Uint16(b[0:2])), 0)
		acc += carry
		b = b[2:]
	}
	if len(b) == 1 {
		acc, carry = bits.Add64(acc, uint64(b[0]), 0)
		acc += carry
	}
	return bits.ReverseBytes16(fold64(acc))
}

// fold64 folds a 64-bit one's complement accumulator to 16 bits.
func fold64(acc uint64) uint16 {
	s := (acc >> 32) + (acc & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// Combine adds two 16-bit one's complement sums.
func Combine(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s + s>>16)
}

// Checksum returns the Internet checksum of b with initial folded into the
// sum (for example a pseudo-header sum): ^(initial + Sum(b)).
func Checksum(b []byte, initial uint16) uint16 {
	return ^Combine(initial, Sum(b))
}

// PseudoSum4 is the one's complement sum of the IPv4 pseudo-header used by
// TCP and UDP (RFC 793, RFC 768): source, destination, protocol and the
// transport length.
func PseudoSum4(src, dst []byte, proto uint8, length uint16) uint16 {
	s := uint32(binary.BigEndian.Uint16(src[0:2])) + uint32(binary.BigEndian.Uint16(src[2:4])) +
		uint32(binary.BigEndian.Uint16(dst[0:2])) + uint32(binary.BigEndian.Uint16(dst[2:4])) +
		uint32(proto) + uint32(length)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return uint16(s)
}

// PseudoSum6 is the one's complement sum of the IPv6 pseudo-header
// (RFC 8200 section 8.1): source, destination, upper-layer length and next
// header.
func PseudoSum6(src, dst []byte, proto uint8, length uint32) uint16 {
	s := Combine(Sum(src[:16]), Sum(dst[:16]))
	s = Combine(s, uint16(length>>16))
	s = Combine(s, uint16(length))
	return Combine(s, uint16(proto))
}

// Delta accumulates the change of several fields of a checksummed region
// so that one RFC 1624 update (equation 3, HC' = ~(~HC + ~m + m'), summed
// over every changed word m → m') fixes the checksum at the end. Rewrites
// that change addresses and ports build one Delta and apply it to both the
// IPv4 header checksum (address words only) and the transport checksum
// (pseudo-header addresses and ports). Fields may be added as 16- or 32-bit
// words: modulo 0xffff a 32-bit word equals the sum of its halves, so the
// accumulator is a plain uint64 folded once in Apply. The zero value is "no
// change".
type Delta uint64

// Add16 records a 16-bit word changing from old to new.
func (d *Delta) Add16(old, new uint16) {
	*d += Delta(^old) + Delta(new)
}

// Add32 records a 32-bit field changing from old to new.
func (d *Delta) Add32(old, new uint32) {
	*d += Delta(^old) + Delta(new)
}

// Apply returns cksum updated by the recorded changes.
func (d Delta) Apply(cksum uint16) uint16 {
	// One fold of the whole ~HC + delta sum; a Delta stays far below 2^63.
	s := uint64(d) + uint64(^cksum)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	return ^uint16(s)
}

// ApplyUDP is Apply for a UDP checksum: zero (no checksum, IPv4 only) stays
// zero and a computed zero is sent as 0xffff (RFC 768).
func (d Delta) ApplyUDP(cksum uint16) uint16 {
	if cksum == 0 {
		return 0
	}
	if c := d.Apply(cksum); c != 0 {
		return c
	}
	return 0xffff
}
