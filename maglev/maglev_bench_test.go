package maglev

import (
	"fmt"
	"testing"
)

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		bs := makeBackends(n, 1)
		for i := range bs {
			bs[i].Weight = uint32(1 + i%4)
		}
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(bs, Config{Size: DefaultSize}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	tab := mustBuild(b, makeBackends(100, 1), Config{})
	b.ReportAllocs()
	var sink uint32
	h := uint64(1)
	for b.Loop() {
		h = h*6364136223846793005 + 1442695040888963407 // LCG: distinct hashes, no dead-code elimination
		id, _ := tab.Lookup(h)
		sink += id
	}
	_ = sink
}
