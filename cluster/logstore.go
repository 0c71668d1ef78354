package cluster

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// The Raft log and stable store live in a write-ahead log of segment files
// (hashicorp/raft-wal) under DataDir/wal. Appending a batch is one write
// and one fsync of the tail segment, where a B+tree store such as
// raft-boltdb copies and rewrites pages and encodes every entry with
// msgpack: on a two-core machine that CPU, not the disk, bounded write
// throughput. Segments are read with pread rather than a memory map, so
// the log's size does not show up in resident memory.
const walDirName = "wal"

// logStore is what Raft needs of its log: the entries and the small
// durable state (term, vote).
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// openLogStore opens the node's Raft log under dataDir.
func openLogStore(dataDir string, segmentSize int, logger hclog.Logger) (logStore, error) {
	dir := filepath.Join(dataDir, walDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
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
