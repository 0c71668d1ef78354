package storage

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// dropMapping tells the kernel the process no longer needs the mapped
// pages at [addr, addr+size); they stay in the page cache.
func dropMapping(addr, size uintptr) {
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, addr, size, unix.MADV_DONTNEED)
}
