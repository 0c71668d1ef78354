package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
	bolt "go.etcd.io/bbolt"

	"github.com/troupe-kv/troupe/storage"
)

// The Raft log and stable store live in a write-ahead log of segment files
// (hashicorp/raft-wal) under DataDir/wal. Appending a batch is one write
// and one fsync of the tail segment, where a B+tree store such as
// raft-boltdb copies and rewrites pages and encodes every entry with
// msgpack: on a two-core machine that CPU, not the disk, bounded write
// throughput. Segments are read with pread rather than a memory map, so
// the log's size does not show up in resident memory.
const (
	walDirName = "wal"
	// legacyLogFileName is the raft-boltdb log of data directories created
	// before the WAL; Open migrates it once and keeps it, renamed, as a
	// backup the operator may delete.
	legacyLogFileName = "raft.db"
	migratedSuffix    = ".migrated"
)

// logStore is what Raft needs of its log: the entries and the small
// durable state (term, vote).
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// openLogStore opens the node's Raft log under dataDir, first moving a
// raft-boltdb log from an earlier release into the WAL.
func openLogStore(dataDir string, segmentSize int, logger hclog.Logger) (logStore, error) {
	dir := filepath.Join(dataDir, walDirName)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		legacy := filepath.Join(dataDir, legacyLogFileName)
		if _, err := os.Stat(legacy); err == nil {
			if err := migrateBoltLog(legacy, dir, segmentSize, logger); err != nil {
				return nil, fmt.Errorf("migrate %s to %s: %w", legacy, dir, err)
			}
		} else if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	return openWAL(dir, segmentSize, logger)
}

// walStore is a WAL that closes its metadata file when it closes:
// raft-wal's Close leaves that bbolt file open and locked, and the raft
// actor reopens the log in the same process after a restart.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
}

func (s walStore) Close() error {
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	return err
}

func openWAL(dir string, segmentSize int, logger hclog.Logger) (walStore, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		meta.Close()
		return walStore{}, err
	}
	return walStore{WAL: w, meta: meta}, nil
}

// migrateBoltLog copies every entry and the term and vote from a
// raft-boltdb file into a new WAL at dir. The copy is built beside dir and
// renamed into place only when complete, so a crash part-way leaves the old
// log in charge and the next start copies again.
func migrateBoltLog(legacy, dir string, segmentSize int, logger hclog.Logger) error {
	start := time.Now()
	tmp := dir + ".migrating"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	src, err := raftboltdb.New(raftboltdb.Options{
		Path:        legacy,
		BoltOptions: &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openWAL(tmp, segmentSize, logger)
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := migrate.CopyLogs(ctx, dst, src, 4<<20, nil); err != nil {
		dst.Close()
		return err
	}
	if err := copyStable(dst, src); err != nil {
		dst.Close()
		return err
	}
	// Every append and stable write above was fsynced by the WAL.
	if err := dst.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	storage.SyncDir(filepath.Dir(dir))
	if err := os.Rename(legacy, legacy+migratedSuffix); err != nil {
		return err
	}
	storage.SyncDir(filepath.Dir(dir))
	if logger != nil {
		logger.Info("moved the raft log into the write-ahead log", "from", legacy, "to", dir, "took", time.Since(start).Round(time.Millisecond), "backup", legacy+migratedSuffix)
	}
	return nil
}

// copyStable copies the keys hashicorp/raft keeps in its stable store. A
// node that never voted has no vote keys, which migrate.CopyStable would
// treat as an error.
func copyStable(dst, src raft.StableStore) error {
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := src.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return err
		}
	}
	v, err := src.Get([]byte("LastVoteCand"))
	if errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read LastVoteCand: %w", err)
	}
	return dst.Set([]byte("LastVoteCand"), v)
}
