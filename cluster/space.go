package cluster

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// Space is a node's disk use as its quota watcher last measured it, and
// the limits it is measured against (see the NOSPACE alarm,
// storage.AlarmNoSpace).
type Space struct {
	// StateFileBytes is kv.db's size on disk; StateUsedBytes what its
	// live pages take, which the quota compares (deleting keys lowers
	// it, while the file never shrinks: bbolt reuses its free pages).
	StateFileBytes int64 `json:"state_file_bytes"`
	StateUsedBytes int64 `json:"state_used_bytes"`
	// QuotaBytes is quota_bytes; 0: no quota.
	QuotaBytes int64 `json:"quota_bytes"`
	// DataDirFreeBytes is what the file system holding the data
	// directory has free for this process; MinFreeBytes is
	// min_free_bytes (0: not checked).
	DataDirFreeBytes int64 `json:"data_dir_free_bytes"`
	MinFreeBytes     int64 `json:"min_free_bytes"`
	// DataDirSizeBytes is that file system's size, so that free space
	// can be judged as a share of it.
	DataDirSizeBytes int64 `json:"data_dir_size_bytes"`
	// WALBytes and SnapshotBytes are what the Raft log (wal/) and the
	// retained snapshots (snapshots/) take: the rest of the data
	// directory besides kv.db.
	WALBytes      int64 `json:"wal_bytes"`
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// Error is why a measurement failed; the alarm is left as it is.
	Error      string    `json:"error,omitempty"`
	MeasuredAt time.Time `json:"measured_at"`
}

// MeasureSpace measures the state file and the file system holding
// dataDir against quota and minFree (0 turns either check off).
func MeasureSpace(store *storage.Store, dataDir string, quota, minFree int64) Space {
	s := Space{QuotaBytes: quota, MinFreeBytes: minFree, MeasuredAt: time.Now()}
	u, err := store.Usage()
	if err != nil {
		s.Error = err.Error()
		return s
	}
	s.StateFileBytes, s.StateUsedBytes = u.FileBytes, u.UsedBytes
	if s.DataDirFreeBytes, s.DataDirSizeBytes, err = diskSpace(dataDir); err != nil {
		s.Error = fmt.Sprintf("free space of %s: %v", dataDir, err)
		return s
	}
	// A file removed while the walk runs (a compacted segment, a
	// replaced snapshot) is skipped, not an error: the next measurement
	// a second later has the new figure.
	s.WALBytes = dirBytes(filepath.Join(dataDir, walDirName))
	s.SnapshotBytes = dirBytes(filepath.Join(dataDir, "snapshots"))
	return s
}

// dirBytes is the total size of the regular files under dir (0 when it
// does not exist yet).
func dirBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			total += info.Size()
		}
		return nil
	})
	return total
}

// Over says why the node should raise the NOSPACE alarm, or "" when it
// is within its limits (or could not measure).
func (s Space) Over() string {
	switch {
	case s.QuotaBytes > 0 && s.StateUsedBytes > s.QuotaBytes:
		return fmt.Sprintf("the state file holds %s of live data, over quota_bytes (%s)", Bytes(s.StateUsedBytes), Bytes(s.QuotaBytes))
	case s.Error == "" && s.MinFreeBytes > 0 && s.DataDirFreeBytes < s.MinFreeBytes:
		return fmt.Sprintf("the data directory's file system has %s free, below min_free_bytes (%s)", Bytes(s.DataDirFreeBytes), Bytes(s.MinFreeBytes))
	}
	return ""
}

// Bytes writes a byte count for people: 2.0 GiB, 512.0 KiB, 100 B.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
