package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// Every Raft log entry carries a checksum of its own. raft-wal checks a
// CRC over each commit batch only while recovering the tail segment at
// open; reading an entry back verifies nothing, so a byte flipped on disk
// in a sealed segment came back as data, and after the state file was
// rebuilt from the log it was applied and served. checkedLog sits between
// Raft (and its LogCache) and the WAL: it appends a trailer to each entry
// it stores and verifies and strips it on every read.
//
// The trailer goes in the entry's Extensions, not its Data: an older
// kvnode started on this log (a downgrade) hands Extensions to nobody,
// while storage.DecodeCommand takes everything after a command's key as
// its value, so a trailer in Data would be served as part of values.
//
// Trailer, 8 bytes after the entry's own extensions:
//
//	magic "trc" | version 1 | CRC32C (little endian)
//
// The CRC covers the index, term and type, the time the leader appended
// the entry, the length and bytes of the data, and the length and bytes
// of the original extensions: a frame read from the wrong place (a flipped
// offset in a segment's index block) has another index and fails, and
// bytes cannot move between data and extensions unnoticed.
const (
	trailerMagic   = "trc"
	trailerVersion = 1
	trailerLen     = len(trailerMagic) + 1 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checksumsFromKey is the stable-store key that records the first index
// whose entry carries a trailer. Entries below it were written before
// this format existed (a data directory from an older build) and are read
// unverified. A per-entry marker could not make that distinction safely:
// one flipped byte in the marker would make a checksummed entry pass as an
// old one, unverified. The value is the index and a CRC32C of it, so a
// damaged value is refused rather than trusted.
var checksumsFromKey = []byte("troupe_log_checksums_from")

// LogCorruptError reports a Raft log entry that failed its check: its
// trailer does not match its contents, it is not the entry that was asked
// for, it cannot be decoded, or it is missing from within the log. The node
// refuses to start on such a log, and stops if it meets one while
// running: a voter must never drop entries from its own log to get past
// one (it may be one of the majority that holds a committed entry), so
// the way out is to replace the node's data from its peers.
type LogCorruptError struct {
	// File is the segment file that holds the entry (or the WAL directory
	// when the file cannot be told).
	File string
	// Index is the log index of the entry.
	Index uint64
	// Node is this node's id, for the advice; empty when unknown.
	Node string
	// Err is what is wrong with it.
	Err error
}

// Error is one line: what, where, and what to do.
func (e *LogCorruptError) Error() string {
	return fmt.Sprintf("raft log: entry %d in %s is corrupt (%v): this node's log cannot be trusted, and must not be cut short to get past it; %s",
		e.Index, e.File, e.Err, replaceAdvice(e.Node))
}

// Unwrap returns the cause.
func (e *LogCorruptError) Unwrap() error { return e.Err }

// replaceAdvice is what to do with a node whose Raft log or snapshots
// cannot be trusted: rebuild it from its peers as a new member.
func replaceAdvice(node string) string {
	remove := "kvctl remove <this node's id>"
	if node != "" {
		remove = "kvctl remove " + node
	}
	return "remove the node from the cluster (" + remove + "), empty its data directory and start it again with --join (docs/operations.md#a-corrupt-raft-log-or-snapshot)"
}

// Causes a LogCorruptError carries.
var (
	errChecksum     = errors.New("checksum mismatch")
	errNoTrailer    = errors.New("checksum trailer missing")
	errMissingEntry = errors.New("missing from the log")
)

// writtenThroughKey is the stable-store key recording an index up to
// which the log was written (StoreLogs returned) and not since cut short
// by Raft. raft-wal, opening its tail segment, takes a batch that fails
// its CRC, or frames it cannot follow, for a write torn by a crash and
// silently drops them and everything after them in that segment: a flipped
// byte there made a node forget entries it had acknowledged, which a voter
// must never do. A log that opens shorter than this mark is refused.
//
// Writing the mark costs a metadata commit (an fsync), so StoreLogs
// writes it at most once per markEvery; Close writes the exact last index.
// After a crash, a loss within the last markEvery of writes goes unseen
// here; Open still refuses a log that ends below what the state file has
// applied.
var writtenThroughKey = []byte("troupe_log_written_through")

// markEvery bounds how often StoreLogs records writtenThroughKey.
const markEvery = time.Second

// checkedLog is the checksumming layer over the WAL; see the comment at
// the top of this file.
type checkedLog struct {
	*walStore
	// from is the first index whose entry carries a trailer (see
	// checksumsFromKey).
	from atomic.Uint64
	// node names this node in errors; set before Raft starts.
	node string
	// onCorrupt hears of the first corrupt entry a read meets while the
	// node runs; set before Raft starts.
	onCorrupt func(*LogCorruptError)
	reported  atomic.Bool

	// markMu guards the written-through mark: Raft writes and cuts the
	// log from one goroutine, Close from another.
	markMu   sync.Mutex
	mark     uint64
	markedAt time.Time

	pool sync.Pool // *storeBuf
}

// storeBuf holds the copies StoreLogs hands to the WAL, reused across
// calls: raft-wal encodes the entries before StoreLogs returns and keeps
// no reference to them.
type storeBuf struct {
	logs []raft.Log
	ptrs []*raft.Log
	ext  []byte
	hdr  sumHeader
}

// newCheckedLog wraps w. It settles where checksummed entries start (a
// log opened for the first time with this build records its next index),
// and refuses a log shorter than its written-through mark.
func newCheckedLog(w *walStore) (*checkedLog, error) {
	c := &checkedLog{walStore: w}
	c.pool.New = func() any { return new(storeBuf) }
	last, err := w.LastIndex()
	if err != nil {
		return nil, err
	}
	from, found, err := c.getIndex(checksumsFromKey)
	switch {
	case err != nil:
		return nil, err
	case found:
		c.from.Store(from)
	default:
		if err := c.setFrom(last + 1); err != nil {
			return nil, err
		}
	}
	mark, _, err := c.getIndex(writtenThroughKey)
	if err != nil {
		return nil, err
	}
	if last < mark {
		return nil, &LogCorruptError{File: w.segmentFile(last + 1), Index: last + 1,
			Err: fmt.Errorf("the log ends at entry %d, but entries up to %d were written to it: raft-wal dropped the rest as a torn write", last, mark)}
	}
	c.mark = mark
	return c, nil
}

// getIndex reads an index recorded under key with putIndex.
func (c *checkedLog) getIndex(key []byte) (index uint64, found bool, err error) {
	raw, err := c.walStore.Get(key)
	if err != nil {
		return 0, false, fmt.Errorf("raft log: reading %s: %w", key, err)
	}
	if raw == nil {
		return 0, false, nil
	}
	if len(raw) != 12 || binary.LittleEndian.Uint32(raw[8:]) != crc32.Checksum(raw[:8], castagnoli) {
		return 0, false, &LogCorruptError{File: c.metaFile(), Err: fmt.Errorf("the record %q is damaged", key)}
	}
	return binary.LittleEndian.Uint64(raw[:8]), true, nil
}

// putIndex records index under key, with a CRC32C of it.
func (c *checkedLog) putIndex(key []byte, index uint64) error {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], index)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if err := c.walStore.Set(key, b[:]); err != nil {
		return fmt.Errorf("raft log: recording %s: %w", key, err)
	}
	return nil
}

func (c *checkedLog) setFrom(index uint64) error {
	if err := c.putIndex(checksumsFromKey, index); err != nil {
		return err
	}
	c.from.Store(index)
	return nil
}

// markWritten records that the log holds everything up to last, if
// markEvery has passed since the last record (or force).
func (c *checkedLog) markWritten(last uint64, force bool) error {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	if last <= c.mark || !force && time.Since(c.markedAt) < markEvery {
		return nil
	}
	if err := c.putIndex(writtenThroughKey, last); err != nil {
		return err
	}
	c.mark, c.markedAt = last, time.Now()
	return nil
}

// DeleteRange lowers the written-through mark before Raft cuts the log's
// tail (entries that conflict with a new leader's), or empties it (after
// a snapshot is installed, or by kvnode recover), so that the cut is not
// taken for a loss. Cutting the head (compaction) leaves the mark alone.
func (c *checkedLog) DeleteRange(lo, hi uint64) error {
	first, last, err := logBounds(c.walStore)
	if err != nil {
		return err
	}
	if lo <= last && hi >= last {
		to := lo - 1
		if lo <= first {
			to = 0 // raft-wal's log is empty afterwards: LastIndex is 0
		}
		if err := c.lowerMark(to); err != nil {
			return err
		}
	}
	return c.walStore.DeleteRange(lo, hi)
}

// lowerMark records to as the written-through mark if it is below the
// current one.
func (c *checkedLog) lowerMark(to uint64) error {
	c.markMu.Lock()
	defer c.markMu.Unlock()
	if to >= c.mark {
		return nil
	}
	if err := c.putIndex(writtenThroughKey, to); err != nil {
		return err
	}
	c.mark = to
	return nil
}

// Close records the exact last index, so that the next open notices the
// loss of any entry, then closes the WAL.
func (c *checkedLog) Close() error {
	var err error
	if last, lerr := c.walStore.LastIndex(); lerr == nil {
		err = c.markWritten(last, true)
	}
	if cerr := c.walStore.Close(); err == nil {
		err = cerr
	}
	return err
}

// StoreLog stores one entry with its trailer.
func (c *checkedLog) StoreLog(l *raft.Log) error { return c.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores copies of logs with trailers. Raft's own structs are
// never changed: it keeps them (in its LogCache, in flight to followers).
func (c *checkedLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	// The WAL only appends after its last entry, so every entry already
	// stored is below logs[0]. An append below from (after the log was
	// emptied, or its tail dropped, during an upgrade) moves from down to
	// it first, so that everything at or above from carries a trailer.
	first := logs[0].Index
	if first < c.from.Load() {
		if err := c.setFrom(first); err != nil {
			return err
		}
	}
	// Likewise the written-through mark may not stay above entries that
	// are gone (DeleteRange lowers it; this covers any other way).
	if err := c.lowerMark(first - 1); err != nil {
		return err
	}
	b := c.pool.Get().(*storeBuf)
	defer c.pool.Put(b)
	size := 0
	for _, l := range logs {
		size += len(l.Extensions) + trailerLen
	}
	b.ext = grow(b.ext, size)
	b.logs = growLogs(b.logs, len(logs))
	b.ptrs = b.ptrs[:0]
	off := 0
	for i, l := range logs {
		ext := b.ext[off : off : off+len(l.Extensions)+trailerLen]
		ext = append(ext, l.Extensions...)
		ext = appendTrailer(ext, l, &b.hdr)
		off += len(ext)
		b.logs[i] = raft.Log{Index: l.Index, Term: l.Term, Type: l.Type, Data: l.Data, Extensions: ext, AppendedAt: l.AppendedAt}
		b.ptrs = append(b.ptrs, &b.logs[i])
	}
	err := c.walStore.StoreLogs(b.ptrs)
	clear(b.logs) // drop references to raft's data before pooling
	if err != nil {
		return err
	}
	return c.markWritten(logs[len(logs)-1].Index, false)
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func growLogs(l []raft.Log, n int) []raft.Log {
	if cap(l) < n {
		return make([]raft.Log, n)
	}
	return l[:n]
}

// appendTrailer appends l's trailer to ext, which holds l's extensions.
func appendTrailer(ext []byte, l *raft.Log, h *sumHeader) []byte {
	sum := entrySum(l, ext, h)
	ext = append(ext, trailerMagic...)
	ext = append(ext, trailerVersion)
	return binary.LittleEndian.AppendUint32(ext, sum)
}

// sumHeader is entrySum's scratch space for the fixed-size fields:
// crc32.Update makes any slice it is given escape, so a local array would
// cost an allocation per entry.
type sumHeader [45]byte

var sumHeaders = sync.Pool{New: func() any { return new(sumHeader) }}

func entrySum(l *raft.Log, ext []byte, h *sumHeader) uint32 {
	binary.LittleEndian.PutUint64(h[0:], l.Index)
	binary.LittleEndian.PutUint64(h[8:], l.Term)
	h[16] = byte(l.Type)
	binary.LittleEndian.PutUint64(h[17:], uint64(len(l.Data)))
	binary.LittleEndian.PutUint64(h[25:], uint64(len(ext)))
	binary.LittleEndian.PutUint64(h[33:], uint64(l.AppendedAt.Unix()))
	binary.LittleEndian.PutUint32(h[41:], uint32(l.AppendedAt.Nanosecond()))
	data := l.Data
	sum := crc32.Update(0, castagnoli, h[:])
	sum = crc32.Update(sum, castagnoli, data)
	return crc32.Update(sum, castagnoli, ext)
}

// GetLog reads entry index and verifies it. A corrupt entry is a
// *LogCorruptError (also reported through onCorrupt), never data; an
// index outside the log is raft.ErrLogNotFound as before, which Raft
// answers by sending a snapshot instead.
func (c *checkedLog) GetLog(index uint64, l *raft.Log) error {
	err := c.read(index, l)
	if err == nil || err == raft.ErrLogNotFound || errors.Is(err, wal.ErrClosed) {
		return err
	}
	e := c.corrupt(index, err)
	if c.onCorrupt != nil && c.reported.CompareAndSwap(false, true) {
		c.onCorrupt(e)
	}
	return e
}

// read is GetLog without the reporting: the cause of a failure, for
// GetLog and for verify to wrap.
func (c *checkedLog) read(index uint64, l *raft.Log) (err error) {
	defer func() {
		// raft-wal's decoder slices with the length a varint gave it,
		// and an overflowing varint (a damaged frame) makes that index
		// negative: a panic from reading damaged bytes is corruption too.
		if r := recover(); r != nil {
			err = fmt.Errorf("the entry cannot be decoded: %v", r)
		}
	}()
	if err := c.walStore.GetLog(index, l); err != nil {
		return err
	}
	if l.Index != index {
		// A damaged offset in a segment's index block points at another
		// entry, whose own checksum is fine.
		return fmt.Errorf("the segment returned entry %d for it", l.Index)
	}
	if index < c.from.Load() {
		return nil // written before checksums existed
	}
	n := len(l.Extensions) - trailerLen
	if n < 0 || string(l.Extensions[n:n+len(trailerMagic)]) != trailerMagic || l.Extensions[n+len(trailerMagic)] != trailerVersion {
		return errNoTrailer
	}
	ext := l.Extensions[:n]
	h := sumHeaders.Get().(*sumHeader)
	sum := entrySum(l, ext, h)
	sumHeaders.Put(h)
	if binary.LittleEndian.Uint32(l.Extensions[n+len(trailerMagic)+1:]) != sum {
		return errChecksum
	}
	if n == 0 {
		ext = nil // as raft stored it: raft-wal reads an empty slice back as nil
	}
	l.Extensions = ext
	return nil
}

func (c *checkedLog) corrupt(index uint64, err error) *LogCorruptError {
	return &LogCorruptError{File: c.segmentFile(index), Index: index, Node: c.node, Err: err}
}

// verify reads every entry of the log and checks it: a node refuses to
// start on a log it could not replay or serve to a follower in full.
// Raft, at start, reads only the entries since the newest snapshot, and
// anything older only when a follower needs it.
func (c *checkedLog) verify() error {
	first, err := c.FirstIndex()
	if err != nil {
		return err
	}
	last, err := c.LastIndex()
	if err != nil {
		return err
	}
	if last == 0 {
		return nil
	}
	var l raft.Log
	for i := first; i <= last; i++ {
		err := c.read(i, &l)
		if err == raft.ErrLogNotFound {
			err = errMissingEntry
		}
		if err != nil {
			return c.corrupt(i, err)
		}
	}
	return nil
}

// IsMonotonic passes on raft-wal's answer (see watchedLogStore's).
func (c *checkedLog) IsMonotonic() bool { return c.walStore.IsMonotonic() }
