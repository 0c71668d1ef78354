package cluster

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// TrimLogMemory asks the kernel to reclaim the pages of dataDir's Raft log
// file (raft.db) that are mapped into this process. raft-boltdb reads the
// log through a memory map and, when it compacts the log after a snapshot,
// walks every old entry, so without this the node's resident memory grows
// with the log's high-water mark rather than with what it uses.
//
// raft-boltdb keeps its bbolt handle to itself, so the mapping is found in
// /proc/self/maps by the file's device and inode. bbolt may replace the
// mapping (it remaps as the file grows) between that read and the madvise
// call, so the advice is MADV_PAGEOUT, a reclaim hint that never changes
// what memory holds, and not MADV_DONTNEED, which would zero whatever
// anonymous memory had taken the old range's place.
func TrimLogMemory(dataDir string) {
	pageOutFile(filepath.Join(dataDir, logFileName))
}

func pageOutFile(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(maps), "\n") {
		// start-end perms offset major:minor inode path
		f := strings.Fields(line)
		if len(f) < 6 || f[4] != strconv.FormatUint(st.Ino, 10) || !sameDevice(f[3], uint64(st.Dev)) {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), unix.MADV_PAGEOUT)
	}
}

// sameDevice compares a maps "major:minor" field (hex) with a stat device.
func sameDevice(field string, dev uint64) bool {
	maj, min, ok := strings.Cut(field, ":")
	if !ok {
		return false
	}
	a, err1 := strconv.ParseUint(maj, 16, 32)
	b, err2 := strconv.ParseUint(min, 16, 32)
	return err1 == nil && err2 == nil && uint32(a) == unix.Major(dev) && uint32(b) == unix.Minor(dev)
}
