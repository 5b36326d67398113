package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// CPUTimes are the busy and total times of each CPU from /proc/stat.
type CPUTimes struct {
	Busy, Total []time.Duration // by CPU number
}

// ReadCPUTimes reads /proc/stat. Busy is everything but idle and iowait
// (user, nice, system, irq, softirq, steal).
func ReadCPUTimes() (CPUTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPUTimes{}, err
	}
	var t CPUTimes
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		n, err := strconv.Atoi(f[0][3:])
		if err != nil {
			continue
		}
		var total, idle uint64
		for i, s := range f[1:9] { // user nice system idle iowait irq softirq steal
			v, _ := strconv.ParseUint(s, 10, 64)
			total += v
			if i == 3 || i == 4 {
				idle += v
			}
		}
		for len(t.Busy) <= n {
			t.Busy = append(t.Busy, 0)
			t.Total = append(t.Total, 0)
		}
		t.Busy[n] = ticks(total - idle)
		t.Total[n] = ticks(total)
	}
	return t, nil
}

func ticks(n uint64) time.Duration { return time.Duration(n) * time.Second / userHZ }

// Sub returns the busy time of each CPU between o and t.
func (t CPUTimes) Sub(o CPUTimes) CPUTimes {
	d := CPUTimes{Busy: make([]time.Duration, len(t.Busy)), Total: make([]time.Duration, len(t.Total))}
	for i := range t.Busy {
		if i < len(o.Busy) {
			d.Busy[i] = t.Busy[i] - o.Busy[i]
			d.Total[i] = t.Total[i] - o.Total[i]
		}
	}
	return d
}

// On returns the busy time of the CPUs cpus.
func (t CPUTimes) On(cpus []int) time.Duration {
	var d time.Duration
	for _, c := range cpus {
		if c < len(t.Busy) {
			d += t.Busy[c]
		}
	}
	return d
}

// statCPU parses utime+stime out of a /proc/.../stat line.
func statCPU(b []byte) (time.Duration, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 > len(s) {
		return 0, fmt.Errorf("e2e: bad stat line %q", s)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("e2e: bad stat line %q", s)
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ticks(u + st), nil
}

// processCPU is the CPU time of a process (all its threads).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return statCPU(b)
}

// taskCPU is the CPU time of one thread.
func taskCPU(pid, tid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, err
	}
	return statCPU(b)
}

// loadAverage is the 1-minute load average (0 if unknown).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
