package testutil

import "runtime"

// Mallocs calls f once to warm it up, then runs times, and returns the
// number of heap allocations those runs made in total. Unlike
// testing.AllocsPerRun, which divides by runs and rounds down, it reports
// an allocation that happens on only some of the calls (every other call,
// once in 50): a per-packet path must make none at all.
func Mallocs(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return after.Mallocs - before.Mallocs
}
