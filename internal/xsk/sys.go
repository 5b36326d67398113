package xsk

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// x/sys/unix has the AF_XDP structures but no typed get/setsockopt helpers
// for them, so these wrap the raw syscalls.

func getsockoptXDP(fd, name int, p unsafe.Pointer, size uintptr) (uintptr, error) {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(name),
		uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

func setsockoptXDP(fd, name int, p unsafe.Pointer, size uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(name),
		uintptr(p), size, 0)
	if e != 0 {
		return e
	}
	return nil
}

func setsockoptXDPUint32(fd, name int, v uint32) error {
	return setsockoptXDP(fd, name, unsafe.Pointer(&v), unsafe.Sizeof(v))
}

// kickTx is sendto(fd, NULL, 0, MSG_DONTWAIT, NULL, 0): it makes the kernel
// process the tx ring. It returns the raw errno so the hot path does not box
// an error.
func kickTx(fd int) unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// kickRx is recvfrom(fd, NULL, 0, MSG_DONTWAIT, NULL, NULL): it wakes the
// driver up to refill from the fill ring.
func kickRx(fd int) unix.Errno {
	_, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return e
}

// yield is sched_yield(2); it cannot fail.
func yield() { _, _, _ = unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0) }
