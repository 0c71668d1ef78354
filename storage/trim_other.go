//go:build !linux

package storage

// dropMapping is a no-op where madvise is not wired up.
func dropMapping(addr, size uintptr) {}
