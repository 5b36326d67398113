package health

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

const manyTargets = 10000

func manyTargetList(typ string, addr netip.AddrPort, interval time.Duration) []Target {
	ts := make([]Target, manyTargets)
	for i := range ts {
		ts[i] = Target{
			Key:  fmt.Sprintf("svc%d/10.%d.%d.%d:80", i/100, i>>16&255, i>>8&255, i&255),
			Addr: addr,
			Spec: Spec{Type: typ, Interval: interval, Timeout: 100 * time.Millisecond, Rise: 2, Fall: 3},
		}
	}
	return ts
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestManyTargets sets 10 000 targets: type none, then fast-failing tcp
// checks (a closed port on 127.0.0.1, 2s interval, so ~5000 checks a second)
// and reports the time Set takes, the heap per target and the goroutines.
func TestManyTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping 10 000 targets")
	}
	dead := closedPort(t, "tcp")
	for _, typ := range []string{TypeNone, TypeTCP} {
		t.Run(typ, func(t *testing.T) {
			ts := manyTargetList(typ, dead, 2*time.Second)
			goBefore := runtime.NumGoroutine()
			heapBefore := heapInUse()

			m := NewManager(Options{})
			defer m.Close()
			start := time.Now()
			m.Set(ts)
			first := time.Since(start)
			heapAfter := heapInUse()
			best := first
			for range 2 { // the machine is shared: judge the best of three
				m2 := NewManager(Options{})
				start := time.Now()
				m2.Set(ts)
				best = min(best, time.Since(start))
				m2.Close()
			}

			// Again with nothing changed (the lead re-Sets on every config change).
			start = time.Now()
			m.Set(ts)
			again := time.Since(start)

			peakG := 0
			if typ == TypeTCP {
				// Run for one interval: every target checks about once.
				end := time.Now().Add(2200 * time.Millisecond)
				for time.Now().Before(end) {
					peakG = max(peakG, runtime.NumGoroutine()-goBefore)
					time.Sleep(5 * time.Millisecond)
				}
			}
			heapRunning := heapInUse()
			c := m.Counters()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			t.Logf("%d %s targets: Set %v (again, unchanged: %v); heap %.1f MiB after Set (%d B/target), %.1f MiB running; "+
				"peak goroutines %d; %d checks, %d failed; race=%v",
				manyTargets, typ, first.Round(time.Microsecond), again.Round(time.Microsecond),
				float64(heapAfter-heapBefore)/(1<<20), (heapAfter-heapBefore)/manyTargets,
				float64(heapRunning-heapBefore)/(1<<20), peakG, c.Checks, c.Failures, raceEnabled)

			if c.Targets != manyTargets {
				t.Errorf("%d targets tracked", c.Targets)
			}
			if typ == TypeTCP && (c.Checks < manyTargets/2 || c.Failures != c.Checks) {
				t.Errorf("%d checks, %d failures in one interval", c.Checks, c.Failures)
			}
			if !raceEnabled && best > 50*time.Millisecond {
				t.Errorf("Set of %d targets took %v at best, want < 50ms", manyTargets, best)
			}
			if per := (heapAfter - heapBefore) / manyTargets; !raceEnabled && per > 2048 { // the race detector doubles the heap
				t.Errorf("%d bytes per target", per)
			}

			start = time.Now()
			m.Close()
			t.Logf("Close %v", time.Since(start).Round(time.Microsecond))
			waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= goBefore })
		})
	}
}

func BenchmarkSet10k(b *testing.B) {
	ts := manyTargetList(TypeTCP, netip.MustParseAddrPort("192.0.2.1:80"), time.Hour) // never fires
	b.ReportAllocs()
	for b.Loop() {
		m := NewManager(Options{})
		m.Set(ts)
		m.Close()
	}
}

func BenchmarkSet10kUnchanged(b *testing.B) {
	ts := manyTargetList(TypeTCP, netip.MustParseAddrPort("192.0.2.1:80"), time.Hour)
	m := NewManager(Options{})
	defer m.Close()
	m.Set(ts)
	b.ReportAllocs()
	for b.Loop() {
		m.Set(ts)
	}
}
