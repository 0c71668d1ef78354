package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

// Every value in the state file is sealed: it is stored followed by a
// CRC-32C of its bucket's name, its key and itself. bbolt checksums only
// its metadata pages; a flipped bit in a data page would otherwise be
// served as data. The key is part of the sum so a damaged key, or a value
// that lands under another key, fails too. Every read verifies the seal
// (reads, applies, snapshot builds and restores, the integrity scan), and
// a value that fails never reaches a caller: the read fails with a
// CorruptError instead.

// ErrCorrupt is what every CorruptError matches with errors.Is.
var ErrCorrupt = errors.New("storage: the state file is corrupt")

// CorruptError names a value in the state file that fails its checksum,
// or a state file whose structure is damaged.
type CorruptError struct {
	Path   string
	Bucket string
	Key    string
	Reason string
}

// Error names the file, the bucket and the key.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("state file %s is corrupt: %s", e.Path, e.detail())
}

// detail is the error without the file's name.
func (e *CorruptError) detail() string {
	if e.Bucket == "" {
		return e.Reason
	}
	return fmt.Sprintf("bucket %q, key %q: %s", e.Bucket, e.Key, e.Reason)
}

// Unwrap lets errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// sealLen is the length of the trailer every stored value carries.
const sealLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealSum is the checksum of value stored under key in bucket. The key's
// length goes in first, so moving the boundary between key and value
// changes the sum.
func sealSum(bucket, key, value []byte) uint32 {
	h := crc32.Update(0, castagnoli, bucket)
	// The key's length as a uvarint, a byte at a time from a static
	// table: a buffer on the stack would escape into crc32 and cost an
	// allocation on every read.
	x := uint64(len(key))
	for ; x >= 0x80; x >>= 7 {
		h = crc32.Update(h, castagnoli, oneByte[byte(x)|0x80:][:1])
	}
	h = crc32.Update(h, castagnoli, oneByte[byte(x):][:1])
	h = crc32.Update(h, castagnoli, key)
	return crc32.Update(h, castagnoli, value)
}

// oneByte[i:][:1] is the one-byte slice {i}.
var oneByte = func() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// seal returns value with its trailer, in a new slice (bbolt keeps the
// slice it is given until the transaction commits).
func seal(bucket, key, value []byte) []byte {
	out := make([]byte, len(value)+sealLen)
	copy(out, value)
	binary.BigEndian.PutUint32(out[len(value):], sealSum(bucket, key, value))
	return out
}

// unseal checks a stored value's trailer and returns the value without it.
func unseal(bucket, key, stored []byte) ([]byte, bool) {
	if len(stored) < sealLen {
		return nil, false
	}
	n := len(stored) - sealLen
	if binary.BigEndian.Uint32(stored[n:]) != sealSum(bucket, key, stored[:n]) {
		return nil, false
	}
	return stored[:n:n], true
}

// txCheck collects the first corruption one transaction meets. Reads of
// a table return nil (as for an absent key) for a value that fails its
// seal and record it here; whoever runs the transaction turns a recorded
// fault into the transaction's error, so a write transaction that met one
// is rolled back and a read returns the error instead of its result.
type txCheck struct {
	path  string
	fault *CorruptError
}

func newTxCheck(path string) *txCheck { return &txCheck{path: path} }

// err is the recorded corruption, or nil. It returns the error interface
// so a nil fault is a nil error.
func (c *txCheck) err() error {
	if c.fault == nil {
		return nil
	}
	return c.fault
}

func (c *txCheck) record(bucket, key []byte, reason string) {
	if c.fault == nil {
		c.fault = &CorruptError{Path: c.path, Bucket: string(bucket), Key: string(key), Reason: reason}
	}
}

// table opens bucket name of tx for sealed reads and writes. A missing
// bucket is a damaged file (Open creates them all).
func (c *txCheck) table(tx *bolt.Tx, name []byte) table {
	b := tx.Bucket(name)
	if b == nil {
		c.record(name, nil, "the bucket is missing")
	}
	return table{b: b, name: name, check: c}
}

// table is a bbolt bucket whose values are sealed. Its methods mirror
// bbolt's, so the code that reads and writes state reads as it would over
// a plain bucket.
type table struct {
	b     *bolt.Bucket
	name  []byte
	check *txCheck
}

// Get returns key's value without its seal, or nil if the key is absent
// or its value fails the seal (recorded in the transaction's check).
func (t table) Get(key []byte) []byte {
	if t.b == nil {
		return nil
	}
	return t.open(key, t.b.Get(key))
}

func (t table) open(key, stored []byte) []byte {
	if stored == nil {
		return nil
	}
	v, ok := unseal(t.name, key, stored)
	if !ok {
		t.check.record(t.name, key, "the value fails its checksum")
		return nil
	}
	return v
}

// Put stores value, sealed, under key.
func (t table) Put(key, value []byte) error {
	if t.b == nil {
		return t.check.err()
	}
	return t.b.Put(key, seal(t.name, key, value))
}

// Delete removes key.
func (t table) Delete(key []byte) error {
	if t.b == nil {
		return t.check.err()
	}
	return t.b.Delete(key)
}

// Cursor iterates over the table in key order, unsealing as it goes.
func (t table) Cursor() cursor {
	if t.b == nil {
		return cursor{t: t}
	}
	return cursor{c: t.b.Cursor(), t: t}
}

// cursor is a bbolt cursor over a table. At a value that fails its seal
// it stops (returns a nil key) after recording the fault, so a scan ends
// and its transaction reports the corruption.
type cursor struct {
	c *bolt.Cursor
	t table
}

// First moves to the first key.
func (c cursor) First() ([]byte, []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.step(c.c.First())
}

// Seek moves to the first key at or after key.
func (c cursor) Seek(key []byte) ([]byte, []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.step(c.c.Seek(key))
}

// Next moves to the next key.
func (c cursor) Next() ([]byte, []byte) {
	if c.c == nil {
		return nil, nil
	}
	return c.step(c.c.Next())
}

func (c cursor) step(k, stored []byte) ([]byte, []byte) {
	if k == nil {
		return nil, nil
	}
	if stored == nil {
		// A nested bucket: the state file has none.
		c.t.check.record(c.t.name, k, "an unexpected nested bucket")
		return nil, nil
	}
	v := c.t.open(k, stored)
	if v == nil {
		return nil, nil
	}
	return k, v
}

// ForEach calls fn for every key in order, stopping at the first error or
// at a value that fails its seal.
func (t table) ForEach(fn func(k, v []byte) error) error {
	c := t.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return t.check.err()
}

// reader is one transaction's view of the sealed tables.
type reader struct {
	tx    *bolt.Tx
	check *txCheck
}

func newReader(tx *bolt.Tx, path string) reader { return reader{tx: tx, check: newTxCheck(path)} }

func (r reader) table(name []byte) table { return r.check.table(r.tx, name) }

// run calls fn and lets a corruption it met win over its own result.
func (r reader) run(fn func(r reader) error) error {
	err := fn(r)
	if cerr := r.check.err(); cerr != nil {
		return cerr
	}
	return err
}
