package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/storage"
)

// Backups schedules snapshots of the whole state to a directory. Every
// node that has one configured writes its own files, named after itself,
// so several nodes may share a directory and a backup survives the loss
// of any one machine that has one.
type Backups struct {
	// Dir receives the files; empty turns scheduled backups off.
	Dir string
	// Interval between backups; zero turns them off.
	Interval time.Duration
	// Retain is how many of this node's files are kept; older ones are
	// deleted after each new one.
	Retain int
}

// backupSuffix ends every finished backup file; a file still being
// written ends in backupSuffix+".tmp".
const backupSuffix = ".snap"

// runBackups takes a backup every interval until stop closes. A backup
// is taken after a read barrier, like GET /v1/snapshot: a node without a
// quorum skips its turn (logged) rather than write a stale file.
func runBackups(b Backups, c *actors.Client, node string, timeout time.Duration, logger *slog.Logger, stop <-chan struct{}) {
	t := time.NewTicker(b.Interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		path, info, err := writeBackup(ctx, b.Dir, node, c)
		cancel()
		if err != nil {
			logger.Warn("scheduled backup failed", "dir", b.Dir, "err", err)
			continue
		}
		logger.Info("scheduled backup written", "file", path, "index", info.Index, "keys", info.Keys, "bytes", info.Size)
		if err := pruneBackups(b.Dir, node, b.Retain); err != nil {
			logger.Warn("deleting old backups failed", "dir", b.Dir, "err", err)
		}
	}
}

// writeBackup writes one backup file atomically: a temporary file,
// fsynced, renamed into place, and the directory fsynced.
func writeBackup(ctx context.Context, dir, node string, c *actors.Client) (string, storage.BackupInfo, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", storage.BackupInfo{}, err
	}
	src, info, err := c.SaveSnapshot(ctx, false)
	if err != nil {
		return "", info, err
	}
	defer src.Close()
	// The UTC time sorts the files; the index says what each holds.
	name := fmt.Sprintf("troupe-%s-%s-%d%s", node, time.Now().UTC().Format("20060102T150405.000Z"), info.Index, backupSuffix)
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", info, err
	}
	_, err = io.Copy(f, src)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return "", info, err
	}
	storage.SyncDir(dir)
	return path, info, nil
}

// pruneBackups deletes this node's oldest backup files beyond retain, and
// temporary files an interrupted backup of this node left behind.
func pruneBackups(dir, node string, retain int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	prefix := "troupe-" + node + "-"
	var done []string
	for _, e := range entries {
		name := e.Name()
		switch {
		case !strings.HasPrefix(name, prefix):
		case strings.HasSuffix(name, backupSuffix):
			done = append(done, name)
		case strings.HasSuffix(name, backupSuffix+".tmp"):
			// Only this node writes its files, one at a time, and this
			// runs after its latest finished.
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return err
			}
		}
	}
	sort.Strings(done)
	for len(done) > max(retain, 1) {
		if err := os.Remove(filepath.Join(dir, done[0])); err != nil {
			return err
		}
		done = done[1:]
	}
	storage.SyncDir(dir)
	return nil
}
