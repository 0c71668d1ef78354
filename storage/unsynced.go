package storage

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The state file is written without an fsync per commit: the Raft log is
// the durable record of every acknowledged write, and an fsync here would
// put a second disk flush on every write's path. Commits still reach the
// page cache in bbolt's crash-safe order, so a process that dies (kill -9,
// panic, OOM) leaves a consistent file behind. Only the loss of the page
// cache itself (power loss, kernel crash, a reboot without a clean stop)
// can tear it, so the file carries a marker naming the kernel boot that
// wrote it unsynced, and a file written unsynced under another boot is
// thrown away on open. The node then rebuilds its state from the newest
// snapshot and the Raft log, both of which are fsynced.

// unsyncedSuffix names the marker beside the state file. It exists while
// the file may hold commits that were never flushed to disk, and holds the
// boot id of the kernel that has them in its page cache.
const unsyncedSuffix = ".unsynced"

// bootIDFile holds a random id that Linux draws at every boot.
var bootIDFile = "/proc/sys/kernel/random/boot_id"

// currentBootID returns this boot's id, or nil where the kernel offers none;
// without one, commits are fsynced as bbolt does by default.
func currentBootID() []byte {
	id, err := os.ReadFile(bootIDFile)
	if err != nil {
		return nil
	}
	return bytes.TrimSpace(id)
}

// prepareUnsynced decides whether the state file at path survived the last
// run, removes it if it may be torn, and then marks it as written unsynced
// by this boot. It reports whether commits may skip fsync (noSync) and
// whether an old file was discarded.
func prepareUnsynced(path string) (noSync, discarded bool, err error) {
	boot := currentBootID()
	marker := path + unsyncedSuffix
	prev, err := os.ReadFile(marker)
	switch {
	case err == nil:
		if len(boot) == 0 || !bytes.Equal(bytes.TrimSpace(prev), boot) {
			// Unflushed commits of an earlier boot: parts of them may
			// never have reached the disk.
			if err := os.Remove(path); err == nil {
				discarded = true
			} else if !errors.Is(err, fs.ErrNotExist) {
				return false, false, fmt.Errorf("storage: discard %s: %w", path, err)
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return false, false, fmt.Errorf("storage: %w", err)
	}
	if len(boot) == 0 {
		if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, discarded, fmt.Errorf("storage: %w", err)
		}
		return false, discarded, nil
	}
	// The marker must be on disk before the first unsynced commit, or a
	// power loss could leave a torn file that looks clean.
	if err := writeFileSync(marker, bytes.NewReader(append(boot, '\n'))); err != nil {
		return false, discarded, fmt.Errorf("storage: %w", err)
	}
	SyncDir(filepath.Dir(path))
	return true, discarded, nil
}

// markSynced records that the state file is fully on disk, after a final
// fsync, so the next open trusts it even after a reboot.
func markSynced(path string) error {
	if err := os.Remove(path + unsyncedSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	SyncDir(filepath.Dir(path))
	return nil
}
