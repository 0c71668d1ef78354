package cluster

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
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

// openLogStore opens the node's Raft log under dataDir, with a checksum
// on every entry (checkedLog), and verifies every entry in it: a corrupt
// one is a *LogCorruptError naming its segment file, and the log is not
// opened.
func openLogStore(dataDir string, segmentSize int, logger hclog.Logger) (*checkedLog, error) {
	dir := filepath.Join(dataDir, walDirName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	w, err := openWAL(dir, segmentSize, logger)
	if err != nil {
		return nil, err
	}
	c, err := newCheckedLog(w)
	if err == nil {
		err = c.verify()
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return c, nil
}

// walStore is a WAL that closes its metadata file when it closes:
// raft-wal's Close leaves that bbolt file open and locked, and the raft
// actor reopens the log in the same process after a restart.
type walStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	dir  string
}

func (s *walStore) Close() error {
	// A write that fills a segment seals it and leaves the rotation to a
	// goroutine, which Close does not wait for. An empty delete past the
	// end waits for a queued rotation, so a clean stop never leaves a
	// sealed tail behind (finishRotation repairs the crash case).
	s.WAL.DeleteRange(math.MaxUint64, math.MaxUint64)
	err := s.WAL.Close()
	if merr := s.meta.Close(); err == nil {
		err = merr
	}
	return err
}

func openWAL(dir string, segmentSize int, logger hclog.Logger) (*walStore, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := finishRotation(dir); err != nil {
		return nil, err
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithLogger(logger.Named("wal")), wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize))
	if err != nil {
		meta.Close()
		if errors.Is(err, wal.ErrCorrupt) {
			// raft-wal checks segment headers and the tail's last batch
			// here, and says what is wrong but not in which file.
			return nil, &LogCorruptError{File: damagedSegment(dir), Err: err}
		}
		return nil, err
	}
	return &walStore{WAL: w, meta: meta, dir: dir}, nil
}

// metaFile is raft-wal's metadata file: the list of segments, and the
// stable store (term, vote).
func (s *walStore) metaFile() string { return filepath.Join(s.dir, metadb.FileName) }

// segmentFile names the segment file that holds index, for errors: the
// one whose range holds it, else the one with the greatest base index at
// or below it; the WAL directory if the segment list cannot be read.
func (s *walStore) segmentFile(index uint64) string {
	st, err := s.meta.Load(s.dir)
	if err != nil {
		return s.dir
	}
	return segmentFor(s.dir, st.Segments, index)
}

func segmentFor(dir string, segs []types.SegmentInfo, index uint64) string {
	var best *types.SegmentInfo
	for i := range segs {
		si := &segs[i]
		if si.BaseIndex <= index && (best == nil || si.BaseIndex > best.BaseIndex) {
			best = si
		}
	}
	if best == nil {
		return dir
	}
	return filepath.Join(dir, segment.FileName(*best))
}

// damagedSegment names the first segment whose header raft-wal rejects,
// or the WAL directory when none is (the damage is elsewhere, such as in
// the tail's last batch, which raft-wal does not name either).
func damagedSegment(dir string) string {
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	st, err := meta.Load(dir)
	if err != nil {
		return filepath.Join(dir, metadb.FileName)
	}
	files := segment.NewFiler(dir, fs.New())
	for _, si := range st.Segments {
		r, err := files.Open(si)
		if err != nil {
			return filepath.Join(dir, segment.FileName(si))
		}
		r.Close()
	}
	return dir
}

// finishRotation completes a segment rotation that a crash cut short.
// raft-wal seals a full tail segment in the same fsync as the write that
// fills it, then records the seal and the next segment in its metadata
// from a goroutine. A crash (or a Close) between the two leaves metadata
// that calls the tail open while the file says sealed, and raft-wal
// v0.4.2 then reopens the log but refuses every append with "segment is
// sealed", for good: the node could never write again. This records the
// seal and a new, empty tail the way the rotation would have; wal.Open
// creates the file.
//
// If the crash tore the sealing batch itself, the tail recovers to the
// batch before (the torn one was never acknowledged) and the seal is
// recorded up to there. Either way openLogStore then reads every entry
// through the recorded seal and checks its checksum, so an index block
// the crash left wrong is refused, naming the file, never served.
func finishRotation(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, metadb.FileName)); err != nil {
		return nil // a new log: nothing to finish
	}
	meta := &metadb.BoltMetaDB{}
	defer meta.Close()
	st, err := meta.Load(dir)
	if err != nil || len(st.Segments) == 0 {
		return nil // wal.Open reports what is wrong with the metadata
	}
	tail := st.Segments[len(st.Segments)-1]
	if !tail.SealTime.IsZero() {
		return nil
	}
	files := segment.NewFiler(dir, fs.New())
	w, err := files.RecoverTail(tail)
	if err != nil {
		return nil // missing or damaged: wal.Open handles or reports it
	}
	sealed, indexStart, err := w.Sealed()
	last := w.LastIndex()
	if err != nil || !sealed || last < tail.MinIndex {
		w.Close()
		return nil
	}
	done := tail
	done.SealTime = time.Now()
	done.MaxIndex = last
	done.IndexStart = indexStart
	w.Close()
	st.Segments[len(st.Segments)-1] = done
	st.Segments = append(st.Segments, types.SegmentInfo{
		ID:         st.NextSegmentID,
		BaseIndex:  last + 1,
		MinIndex:   last + 1,
		SizeLimit:  tail.SizeLimit,
		Codec:      tail.Codec,
		CreateTime: done.SealTime,
	})
	st.NextSegmentID++
	if err := meta.CommitState(st); err != nil {
		return fmt.Errorf("raft log: recording the seal of %s: %w", segment.FileName(tail), err)
	}
	return nil
}
