package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"sync/atomic"

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
// The CRC covers the index, term and type, the length and bytes of the
// data, and the length and bytes of the original extensions: a frame read
// from the wrong place (a flipped offset in a segment's index block) has
// another index and fails, and bytes cannot move between data and
// extensions unnoticed.
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

	pool sync.Pool // *storeBuf
}

// storeBuf holds the copies StoreLogs hands to the WAL, reused across
// calls: raft-wal encodes the entries before StoreLogs returns and keeps
// no reference to them.
type storeBuf struct {
	logs []raft.Log
	ptrs []*raft.Log
	ext  []byte
}

// newCheckedLog wraps w and settles where checksummed entries start: a log
// opened for the first time with this build records its next index.
func newCheckedLog(w *walStore) (*checkedLog, error) {
	c := &checkedLog{walStore: w}
	c.pool.New = func() any { return new(storeBuf) }
	raw, err := w.Get(checksumsFromKey)
	if err != nil {
		return nil, fmt.Errorf("raft log: reading %s: %w", checksumsFromKey, err)
	}
	if raw != nil {
		from, ok := decodeFrom(raw)
		if !ok {
			return nil, &LogCorruptError{File: w.metaFile(), Err: fmt.Errorf("the record %q is damaged", checksumsFromKey)}
		}
		c.from.Store(from)
		return c, nil
	}
	last, err := w.LastIndex()
	if err != nil {
		return nil, err
	}
	if err := c.setFrom(last + 1); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *checkedLog) setFrom(index uint64) error {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], index)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if err := c.walStore.Set(checksumsFromKey, b[:]); err != nil {
		return fmt.Errorf("raft log: recording %s: %w", checksumsFromKey, err)
	}
	c.from.Store(index)
	return nil
}

func decodeFrom(b []byte) (uint64, bool) {
	if len(b) != 12 || binary.LittleEndian.Uint32(b[8:]) != crc32.Checksum(b[:8], castagnoli) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[:8]), true
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
	if first := logs[0].Index; first < c.from.Load() {
		if err := c.setFrom(first); err != nil {
			return err
		}
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
		ext = appendTrailer(ext, l)
		off += len(ext)
		b.logs[i] = raft.Log{Index: l.Index, Term: l.Term, Type: l.Type, Data: l.Data, Extensions: ext, AppendedAt: l.AppendedAt}
		b.ptrs = append(b.ptrs, &b.logs[i])
	}
	err := c.walStore.StoreLogs(b.ptrs)
	clear(b.logs) // drop references to raft's data before pooling
	return err
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
func appendTrailer(ext []byte, l *raft.Log) []byte {
	sum := entrySum(l.Index, l.Term, l.Type, l.Data, ext)
	ext = append(ext, trailerMagic...)
	ext = append(ext, trailerVersion)
	return binary.LittleEndian.AppendUint32(ext, sum)
}

func entrySum(index, term uint64, typ raft.LogType, data, ext []byte) uint32 {
	var h [33]byte
	binary.LittleEndian.PutUint64(h[0:], index)
	binary.LittleEndian.PutUint64(h[8:], term)
	h[16] = byte(typ)
	binary.LittleEndian.PutUint64(h[17:], uint64(len(data)))
	binary.LittleEndian.PutUint64(h[25:], uint64(len(ext)))
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
	if binary.LittleEndian.Uint32(l.Extensions[n+len(trailerMagic)+1:]) != entrySum(l.Index, l.Term, l.Type, l.Data, ext) {
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
