// Package cpu pins the calling OS thread to a CPU, for dataplane workers.
package cpu

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Pin restricts the calling thread (lock it first with
// runtime.LockOSThread) to cpu.
func Pin(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("cpu: pin thread to cpu %d: %w", cpu, err)
	}
	return nil
}

// Count returns the number of CPUs this process may run on.
func Count() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 1
	}
	return set.Count()
}
