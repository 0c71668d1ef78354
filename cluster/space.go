package cluster

import (
	"fmt"
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
	if s.DataDirFreeBytes, err = freeBytes(dataDir); err != nil {
		s.Error = fmt.Sprintf("free space of %s: %v", dataDir, err)
	}
	return s
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
