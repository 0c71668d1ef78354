package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/cespare/xxhash/v2"
	bolt "go.etcd.io/bbolt"
)

// metaFormat records that every value in the file is sealed (seal.go).
// A file without it was written by a release before seals and is sealed
// once, when it is opened (see migrate).
var metaFormat = []byte("format")

// formatSealed is the value of metaFormat.
const formatSealed = 2

// allBuckets is every bucket a state file holds, in the order the state
// hash covers them.
var allBuckets = [][]byte{bucketACL, bucketKV, bucketMeta, bucketNodes, bucketSessions, bucketTombs}

// StateHash is a digest of a state file's whole content as of one applied
// index. Nodes that applied the same log hold byte-identical state, so
// their hashes at one index agree; a node whose hash differs holds data
// the cluster did not commit.
type StateHash struct {
	Index  uint64 // the applied index the hash is of
	Hash   uint64 // xxhash64 of every bucket, key and value seal
	Values int    // how many values it covers
}

// isLegacy reports whether tx is a file written before values were
// sealed: it has no format mark, and its applied index is a bare 8-byte
// integer (a sealed one is 12 bytes). A damaged mark in a sealed file
// therefore never passes it off as an old one.
func isLegacy(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return false
	}
	applied := meta.Get(metaApplied)
	return meta.Get(metaFormat) == nil && (applied == nil || len(applied) == 8)
}

// verifyState reads every value of tx, a file of size bytes, checks its
// seal and its format, and then bbolt's own structure, and returns the
// hash of the whole state. Memory faults (a page pointing past the
// mapping) become errors, and every page is visited here, in this
// goroutine, before bbolt's consistency check walks them in one of its
// own, where a panic could not be recovered.
func verifyState(tx *bolt.Tx, path string, size int64) (StateHash, error) {
	h, err := hashState(tx, path, size)
	if err != nil {
		return h, err
	}
	// Drained to the end: bbolt's checker blocks on an unread error.
	for cerr := range tx.Check() {
		if err == nil {
			err = &CorruptError{Path: path, Reason: cerr.Error()}
		}
	}
	return h, err
}

// hashState is verifyState without bbolt's structural check, which reads
// the freelist unguarded and so must not run while the file takes
// writes: the snapshot and checkpoint passes of a live store use it.
func hashState(tx *bolt.Tx, path string, size int64) (h StateHash, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Path: path, Reason: fmt.Sprintf("reading it failed: %v", r)}
		}
	}()
	legacy := isLegacy(tx)
	r := newReader(tx, path)
	d := xxhash.New()
	var n [binary.MaxVarintLen64]byte
	write := func(b []byte) {
		d.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		d.Write(b)
	}
	for _, name := range allBuckets {
		b := tx.Bucket(name)
		if bytes.Equal(name, bucketSessions) && (b == nil || isEmpty(b)) {
			// Leaves the hash of a state without sessions as a release
			// before sessions computed it, so nodes of both agree on it
			// during an upgrade; a snapshot from before sessions has no
			// such bucket, and restoring it creates it empty.
			continue
		}
		write(name)
		if b == nil && bytes.Equal(name, bucketACL) {
			// A snapshot taken before ACLs existed: restoring it creates
			// the bucket empty, which hashes the same.
			continue
		}
		if b == nil {
			return h, &CorruptError{Path: path, Bucket: string(name), Reason: "the bucket is missing"}
		}
		c := b.Cursor()
		for k, stored := c.First(); k != nil; k, stored = c.Next() {
			// A corrupt length would have a decoder copy gigabytes.
			if int64(len(k))+int64(len(stored)) > size {
				return h, &CorruptError{Path: path, Bucket: string(name), Key: string(k), Reason: fmt.Sprintf("a %d-byte value in a %d-byte file", len(k)+len(stored), size)}
			}
			if stored == nil {
				return h, &CorruptError{Path: path, Bucket: string(name), Key: string(k), Reason: "an unexpected nested bucket"}
			}
			v := stored
			if !legacy {
				var ok bool
				if v, ok = unseal(name, k, stored); !ok {
					return h, &CorruptError{Path: path, Bucket: string(name), Key: string(k), Reason: "the value fails its checksum"}
				}
			}
			if err := checkValue(name, k, v); err != nil {
				return h, &CorruptError{Path: path, Bucket: string(name), Key: string(k), Reason: err.Error()}
			}
			write(k)
			d.Write(stored[len(v):]) // the seal stands for the value
			h.Values++
		}
	}
	if legacy {
		h.Index = decodeUint(tx.Bucket(bucketMeta).Get(metaApplied))
	} else {
		h.Index = getUint(r.table(bucketMeta), metaApplied)
		if err := r.check.err(); err != nil {
			return h, err
		}
	}
	h.Hash = d.Sum64()
	return h, nil
}

// checkValue checks that a value that passed its seal also has the shape
// its bucket holds, so a value written wrong (not damaged later) is found
// before anything serves it.
func checkValue(bucket, key, v []byte) error {
	switch {
	case bytes.Equal(bucket, bucketKV):
		_, err := decodeEntry(key, v)
		return err
	case bytes.Equal(bucket, bucketTombs):
		if len(v) != 8 {
			return fmt.Errorf("a tombstone of %d bytes", len(v))
		}
	case bytes.Equal(bucket, bucketMeta) && bytes.HasPrefix(key, metaAlarmPrefix):
		_, err := decodeAlarm(key, v)
		return err
	case bytes.Equal(bucket, bucketSessions):
		return checkSessionValue(key, v)
	case bytes.Equal(bucket, bucketACL):
		if bytes.HasPrefix(key, aclPolicyPrefix) || bytes.HasPrefix(key, aclTokenPrefix) {
			var m map[string]any
			return decodeACL(v, &m)
		}
	}
	return nil
}

func isEmpty(b *bolt.Bucket) bool {
	k, _ := b.Cursor().First()
	return k == nil
}

// migrate seals every value of a file written before seals existed, in
// tx, and marks the file sealed. A new, empty file is only marked.
func migrate(tx *bolt.Tx) error {
	if !isLegacy(tx) {
		return nil
	}
	for _, name := range allBuckets {
		b := tx.Bucket(name)
		// Collected first: bbolt forbids writes under a live cursor.
		var keys, values [][]byte
		if err := b.ForEach(func(k, v []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			values = append(values, seal(name, k, v))
			return nil
		}); err != nil {
			return err
		}
		for i := range keys {
			if err := b.Put(keys[i], values[i]); err != nil {
				return err
			}
		}
	}
	return putUint(newReader(tx, "").table(bucketMeta), metaFormat, formatSealed)
}

// Verify reads the whole state file, checking every value's seal, and
// returns the hash of its state. A failure is a *CorruptError naming what
// is wrong.
func (s *Store) Verify() (StateHash, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return StateHash{}, ErrClosed
	}
	var h StateHash
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		h, err = hashState(tx, s.path, tx.Size())
		return err
	})
	return h, err
}

// StateCheck is the hash of the state as of one checkpoint (OpCheckpoint),
// or the corruption that stopped it.
type StateCheck struct {
	StateHash
	At   time.Time     // when the hash was done
	Took time.Duration // how long it took
	Err  error         // a *CorruptError, or nil
}

// keptStateChecks is how many recent checks a store remembers: enough
// that a peer that reports its hash a few checkpoints late still finds
// this node's hash of the same index.
const keptStateChecks = 8

// StateChecks returns the recent checkpoint hashes, oldest first.
func (s *Store) StateChecks() []StateCheck {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	return append([]StateCheck(nil), s.checks...)
}

// startStateCheck pins the state just committed (ApplyBatch calls it
// right after the commit that ends at a checkpoint) and hashes it in the
// background, so applies go on meanwhile. One check runs at a time; a
// checkpoint met while one is running is skipped. Close and Restore wait
// for a running check, as bbolt's Close waits for open reads.
func (s *Store) startStateCheck() {
	if !s.checking.CompareAndSwap(false, true) {
		return
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		s.checking.Store(false)
		return
	}
	go func() {
		defer s.checking.Store(false)
		start := time.Now()
		h, err := hashState(tx, s.path, tx.Size())
		_ = tx.Rollback()
		c := StateCheck{StateHash: h, At: time.Now(), Took: time.Since(start), Err: err}
		s.checksMu.Lock()
		s.checks = append(s.checks, c)
		if len(s.checks) > keptStateChecks {
			s.checks = s.checks[1:]
		}
		s.checksMu.Unlock()
	}()
}
