package conntrack

import (
	"encoding/binary"
	"math/bits"
)

// The flow hash is two or three rounds of the 64x64->128 bit multiply-fold
// used by wyhash: cheap (one MUL each), well mixed in every output bit, and
// keyed by Config.Seed (pre-mixed with k1 by New, see hashSeed). The low
// bits pick the bucket inside a shard, bits 32-47 the shard and bits 48-63
// the tag kept in the index words, so the three are independent.

const (
	k1 = 0xa0761d6478bd642f
	k2 = 0xe7037ed1a0b428db
	k3 = 0x8ebc6af09c88c6e3
	k4 = 0x589965cc75374cc3
	k5 = 0x1d8e4e27c47d124f
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func hash4(k *key4, seed uint64) uint64 {
	a := uint64(binary.LittleEndian.Uint32(k.SrcIP[:])) | uint64(binary.LittleEndian.Uint32(k.DstIP[:]))<<32
	b := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
	return mix(mix(a^seed, b^k2), k3)
}

func hash6(k *key6, seed uint64) uint64 {
	return hashV6(&k.SrcIP, &k.DstIP, k.SrcPort, k.DstPort, k.Proto, seed)
}

func hashV6(src, dst *[16]byte, sport, dport uint16, proto uint8, seed uint64) uint64 {
	h1 := mix(binary.LittleEndian.Uint64(src[:8])^seed, binary.LittleEndian.Uint64(src[8:])^k2)
	h2 := mix(binary.LittleEndian.Uint64(dst[:8])^seed^k3, binary.LittleEndian.Uint64(dst[8:])^k4)
	p := uint64(sport) | uint64(dport)<<16 | uint64(proto)<<32
	return mix(h1^p^k5, h2^k2)
}

// Hash returns the flow hash of k: what Lookup, Peek and Prefetch take, so
// that a packet's key is hashed once. It is a keyed hash (Config.Seed) of
// good quality in every bit, so callers may use it for their own decisions
// about the flow too (xlb's Maglev lookup and SNAT address choice).
func (t *Table) Hash(k *Key) uint64 {
	if !k.V6 {
		// hash4 of the key's stored form (TestHash checks that they agree).
		a := uint64(binary.LittleEndian.Uint32(k.SrcIP[:4])) | uint64(binary.LittleEndian.Uint32(k.DstIP[:4]))<<32
		b := uint64(k.SrcPort) | uint64(k.DstPort)<<16 | uint64(k.Proto)<<32
		return mix(mix(a^t.seed, b^k2), k3)
	}
	return hashV6(&k.SrcIP, &k.DstIP, k.SrcPort, k.DstPort, k.Proto, t.seed)
}

// hashSeed turns Config.Seed into the seed argument of hash4 and hash6.
func hashSeed(seed uint64) uint64 { return seed ^ k1 }
