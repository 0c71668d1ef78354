package storage

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A backup (what GET /v1/snapshot serves and PUT /v1/snapshot takes) is a
// logical copy of the whole state, independent of bbolt's page layout:
//
//	magic "TROUPE-SNAPSHOT\n"
//	header    uvarint(len) JSON BackupHeader
//	records   'B' uvarint(len) bucket name       (each bucket once, in order)
//	          'K' uvarint(len) key uvarint(len) value   (keys ascending)
//	          'E'
//	footer    uvarint(len) JSON backupFooter (record counts per bucket)
//	checksum  SHA-256 of every byte before it
//
// Values are stored without their seals: the checksum over the whole
// stream stands for them, and a restore seals them again. A reader
// verifies everything it can while streaming (framing, limits, order,
// the shape of each value) and the checksum at the end, so a flipped
// byte, a cut file or trailing bytes are all refused; whatever a caller
// built from the records before the end must be thrown away when
// ReadBackup fails.

// backupMagic opens every backup.
const backupMagic = "TROUPE-SNAPSHOT\n"

// BackupFormat is the format version this release writes and reads.
const BackupFormat = 1

// Limits on what a backup may claim, so a damaged or hostile length
// cannot make a reader allocate gigabytes.
const (
	maxBackupJSON  = 64 << 10
	maxBackupValue = 64 << 20
)

// ErrBadBackup marks a backup that is damaged, truncated or not a backup:
// the caller's input is at fault (HTTP 400), and nothing was changed.
var ErrBadBackup = errors.New("not a valid snapshot")

// BackupHeader describes a backup; it comes first in the stream.
type BackupHeader struct {
	Format int `json:"format"`
	// Index is the applied log index the state is of.
	Index uint64 `json:"index"`
	// Term is the Raft term of the node that wrote it, when it knew it.
	Term      uint64    `json:"term,omitempty"`
	Node      string    `json:"node,omitempty"`
	ClusterID string    `json:"cluster_id,omitempty"`
	Version   string    `json:"version,omitempty"`
	Created   time.Time `json:"created"`
}

type backupFooter struct {
	Records map[string]int `json:"records"`
}

// BackupInfo is what a backup holds, as writing or reading it found.
type BackupInfo struct {
	BackupHeader
	// Keys is the number of live keys (the kv table).
	Keys int `json:"keys"`
	// Records counts the records of each table.
	Records map[string]int `json:"records"`
	// Size is the length of the stream in bytes.
	Size int64 `json:"size"`
	// SHA256 is the stream's checksum, in hex.
	SHA256 string `json:"sha256"`
	// RestoredAt is set by a restore: the log index the cluster's state
	// now stands at.
	RestoredAt uint64 `json:"restored_at,omitempty"`
}

// WriteBackup writes the whole state, as of one applied index, to w in the
// backup format. Every value is checked against its seal on the way: a
// damaged state is refused rather than backed up. The header's Index and
// ClusterID are the state's own; its other fields are the caller's.
func (s *Store) WriteBackup(w io.Writer, h BackupHeader) (BackupInfo, error) {
	var info BackupInfo
	err := s.view(func(r reader) error {
		h.Format = BackupFormat
		h.Index = getUint(r.table(bucketMeta), metaApplied)
		h.ClusterID = string(r.table(bucketMeta).Get(metaClusterID))
		if h.Created.IsZero() {
			h.Created = time.Now().UTC()
		}
		bw := &backupWriter{w: bufio.NewWriterSize(w, 256<<10), h: sha256.New()}
		bw.write([]byte(backupMagic))
		bw.json(h)
		counts := map[string]int{}
		for _, name := range allBuckets {
			bw.tag('B')
			bw.field(name)
			c := r.table(name).Cursor()
			n := 0
			for k, v := c.First(); k != nil; k, v = c.Next() {
				bw.tag('K')
				bw.field(k)
				bw.field(v)
				n++
			}
			if err := r.check.err(); err != nil {
				return err
			}
			counts[string(name)] = n
		}
		bw.tag('E')
		bw.json(backupFooter{Records: counts})
		sum := bw.h.Sum(nil)
		if bw.err == nil {
			_, bw.err = bw.w.Write(sum)
		}
		if bw.err == nil {
			bw.err = bw.w.Flush()
		}
		info = BackupInfo{BackupHeader: h, Keys: counts[string(bucketKV)], Records: counts, Size: bw.n + int64(len(sum)), SHA256: hex.EncodeToString(sum)}
		return bw.err
	})
	return info, err
}

// backupWriter frames records and hashes what it writes; the first error
// sticks.
type backupWriter struct {
	w   *bufio.Writer
	h   hash.Hash
	n   int64
	err error
	buf [binary.MaxVarintLen64]byte
}

func (b *backupWriter) write(p []byte) {
	if b.err != nil {
		return
	}
	b.h.Write(p)
	b.n += int64(len(p))
	_, b.err = b.w.Write(p)
}

func (b *backupWriter) tag(t byte) { b.write([]byte{t}) }

func (b *backupWriter) field(p []byte) {
	b.write(b.buf[:binary.PutUvarint(b.buf[:], uint64(len(p)))])
	b.write(p)
}

func (b *backupWriter) json(v any) {
	data, err := json.Marshal(v)
	if err != nil && b.err == nil {
		b.err = err
	}
	b.field(data)
}

// ReadBackup reads a backup from r, calling fn (if not nil) for every
// record in order, and returns what it holds once the checksum at the end
// matched and nothing followed it. fn sees each record before the
// checksum is known: anything it builds must be discarded when ReadBackup
// returns an error. The key and value passed to fn are valid only during
// the call. A damaged, cut or foreign stream is an error matching
// ErrBadBackup; an error of fn or of r is returned as it is.
func ReadBackup(r io.Reader, fn func(bucket string, key, value []byte) error) (BackupInfo, error) {
	br := &backupReader{r: bufio.NewReaderSize(r, 256<<10), h: sha256.New()}
	return br.read(fn)
}

type backupReader struct {
	r *bufio.Reader
	h hash.Hash
	n int64
	// ioErr is an error of the underlying reader, which is no fault of
	// the stream's content.
	ioErr error
}

func (b *backupReader) bad(format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrBadBackup, b.n, fmt.Sprintf(format, args...))
}

// full reads exactly len(p) bytes into p, hashed; a short stream is a cut
// file.
func (b *backupReader) full(p []byte) error {
	n, err := io.ReadFull(b.r, p)
	b.h.Write(p[:n])
	b.n += int64(n)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return b.bad("the snapshot ends early (truncated?)")
	}
	b.ioErr = err
	return err
}

func (b *backupReader) byte1() (byte, error) {
	var p [1]byte
	err := b.full(p[:])
	return p[0], err
}

func (b *backupReader) uvarint() (uint64, error) {
	var x uint64
	for i := 0; i < binary.MaxVarintLen64; i++ {
		c, err := b.byte1()
		if err != nil {
			return 0, err
		}
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<(7*i), nil
		}
		x |= uint64(c&0x7f) << (7 * i)
	}
	return 0, b.bad("a length overflows")
}

// field reads a length-prefixed field of at least lo and at most hi
// bytes into buf (reused when large enough).
func (b *backupReader) field(buf []byte, lo, hi int, what string) ([]byte, error) {
	n, err := b.uvarint()
	if err != nil {
		return nil, err
	}
	if n < uint64(lo) || n > uint64(hi) {
		return nil, b.bad("%s of %d bytes (allowed %d to %d)", what, n, lo, hi)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	return buf, b.full(buf)
}

func (b *backupReader) read(fn func(bucket string, key, value []byte) error) (BackupInfo, error) {
	var info BackupInfo
	magic := make([]byte, len(backupMagic))
	if err := b.full(magic); err != nil {
		if b.ioErr != nil {
			return info, err
		}
		return info, fmt.Errorf("%w: it is too short to be one", ErrBadBackup)
	}
	if string(magic) != backupMagic {
		return info, fmt.Errorf("%w: it does not start with %q (is it a Troupe snapshot?)", ErrBadBackup, backupMagic[:len(backupMagic)-1])
	}
	raw, err := b.field(nil, 2, maxBackupJSON, "the header")
	if err != nil {
		return info, err
	}
	if err := strictJSON(raw, &info.BackupHeader); err != nil {
		return info, b.bad("the header: %v", err)
	}
	if info.Format != BackupFormat {
		return info, b.bad("format %d; this release reads format %d", info.Format, BackupFormat)
	}
	counts := map[string]int{}
	var bucket, key, value, prevKey []byte
	next := 0 // index in allBuckets of the next bucket allowed
	for {
		t, err := b.byte1()
		if err != nil {
			return info, err
		}
		switch t {
		case 'B':
			name, err := b.field(nil, 1, 64, "a table name")
			if err != nil {
				return info, err
			}
			i := next
			for i < len(allBuckets) && !bytes.Equal(allBuckets[i], name) {
				i++
			}
			if i == len(allBuckets) {
				return info, b.bad("table %q is unknown or out of order", name)
			}
			bucket, next, prevKey = allBuckets[i], i+1, prevKey[:0]
			counts[string(bucket)] = 0
		case 'K':
			if bucket == nil {
				return info, b.bad("a record before any table")
			}
			if key, err = b.field(key, 1, MaxKeySize, "a key"); err != nil {
				return info, err
			}
			if len(prevKey) > 0 && bytes.Compare(key, prevKey) <= 0 {
				return info, b.bad("table %q: key %q is out of order", bucket, key)
			}
			prevKey = append(prevKey[:0], key...)
			if value, err = b.field(value, 0, maxBackupValue, "a value"); err != nil {
				return info, err
			}
			if err := checkValue(bucket, key, value); err != nil {
				return info, b.bad("table %q, key %q: %v", bucket, key, err)
			}
			counts[string(bucket)]++
			if fn != nil {
				if err := fn(string(bucket), key, value); err != nil {
					return info, err
				}
			}
		case 'E':
			raw, err := b.field(nil, 2, maxBackupJSON, "the footer")
			if err != nil {
				return info, err
			}
			var f backupFooter
			if err := strictJSON(raw, &f); err != nil {
				return info, b.bad("the footer: %v", err)
			}
			for name, n := range counts {
				if f.Records[name] != n {
					return info, b.bad("table %q holds %d records, its footer says %d", name, n, f.Records[name])
				}
			}
			if len(f.Records) != len(counts) {
				return info, b.bad("the footer counts %d tables, the snapshot holds %d", len(f.Records), len(counts))
			}
			want := b.h.Sum(nil)
			got := make([]byte, len(want))
			if _, err := io.ReadFull(b.r, got); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return info, b.bad("the snapshot ends before its checksum (truncated?)")
				}
				return info, err
			}
			if !bytes.Equal(got, want) {
				return info, fmt.Errorf("%w: its SHA-256 checksum does not match its content (the file is damaged)", ErrBadBackup)
			}
			if _, err := b.r.ReadByte(); err == nil {
				return info, fmt.Errorf("%w: bytes follow its checksum", ErrBadBackup)
			} else if !errors.Is(err, io.EOF) {
				return info, err
			}
			if err := checkMeta(counts); err != nil {
				return info, b.bad("%v", err)
			}
			info.Keys, info.Records = counts[string(bucketKV)], counts
			info.Size = b.n + int64(len(got))
			info.SHA256 = hex.EncodeToString(got)
			return info, nil
		default:
			return info, b.bad("unknown record type 0x%02x", t)
		}
	}
}

// checkMeta makes sure every table is there: a backup is of a whole state.
func checkMeta(counts map[string]int) error {
	for _, name := range allBuckets {
		if _, ok := counts[string(name)]; !ok {
			return fmt.Errorf("table %q is missing", name)
		}
	}
	return nil
}

// strictJSON decodes one JSON object, refusing unknown fields and
// anything after it.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

// BuildRestore turns a backup into a state file at dst, ready for Restore:
// the state of the backup, as it is to stand at log index at, an index
// above every index the cluster or the backup has handed out. So that no
// index a client saw goes backwards and no compare-and-set prepared
// against the old state can succeed by chance, every key's ModifyIndex,
// and the KV, session and tombstone indexes, become at; CreateIndex and
// LockIndex are kept. Tombstones are dropped (the new KV index covers
// them). What belongs to this cluster rather than to its data stays as
// this store holds it: the cluster id, the members' registered addresses
// and the raised alarms. ACLs and sessions come from the backup.
//
// The backup is read and checked whole; on any error dst is removed.
func (s *Store) BuildRestore(src io.Reader, dst string, at uint64) (BackupInfo, error) {
	carry, err := s.restoreCarry()
	if err != nil {
		return BackupInfo{}, err
	}
	_ = os.Remove(dst)
	db, err := openDB(dst, true)
	if err != nil {
		return BackupInfo{}, err
	}
	b := &restoreBuilder{db: db, at: at}
	info, err := ReadBackup(src, b.put)
	if err == nil && info.Index >= at {
		err = fmt.Errorf("storage: restore: the snapshot's index %d is not below the restore's %d", info.Index, at)
	}
	if err == nil {
		err = b.finish(carry)
	}
	if b.tx != nil {
		_ = b.tx.Rollback()
	}
	if err == nil {
		err = db.Sync()
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return info, err
	}
	return info, nil
}

// restoreCarry is what a restore keeps from the current state (see
// BuildRestore), as unsealed records of the meta and nodes tables.
func (s *Store) restoreCarry() (map[string][][2][]byte, error) {
	carry := map[string][][2][]byte{}
	err := s.view(func(r reader) error {
		keep := func(bucket []byte, k, v []byte) {
			carry[string(bucket)] = append(carry[string(bucket)], [2][]byte{append([]byte(nil), k...), append([]byte(nil), v...)})
		}
		if id := r.table(bucketMeta).Get(metaClusterID); id != nil {
			keep(bucketMeta, metaClusterID, id)
		}
		c := r.table(bucketMeta).Cursor()
		for k, v := c.Seek(metaAlarmPrefix); k != nil && bytes.HasPrefix(k, metaAlarmPrefix); k, v = c.Next() {
			keep(bucketMeta, k, v)
		}
		return r.table(bucketNodes).ForEach(func(k, v []byte) error {
			keep(bucketNodes, k, v)
			return nil
		})
	})
	return carry, err
}

// restoreBuilder writes a backup's records into a new state file, in
// transactions of restoreBatch records.
type restoreBuilder struct {
	db *bolt.DB
	tx *bolt.Tx
	n  int
	at uint64
}

const restoreBatch = 50_000

// stampedMeta are the meta keys a restore sets to its own index.
var stampedMeta = [][]byte{metaApplied, metaKVIndex, metaTombsReaped, metaSessionIndex}

func (b *restoreBuilder) put(bucket string, key, value []byte) error {
	switch bucket {
	case string(bucketTombs), string(bucketNodes):
		return nil
	case string(bucketMeta):
		if bytes.Equal(key, metaClusterID) || bytes.Equal(key, metaFormat) || bytes.HasPrefix(key, metaAlarmPrefix) {
			return nil
		}
		for _, k := range stampedMeta {
			if bytes.Equal(key, k) {
				return nil
			}
		}
	case string(bucketKV):
		e, err := decodeEntry(key, value)
		if err != nil {
			return err
		}
		e.ModifyIndex = b.at
		e.CreateIndex = min(e.CreateIndex, b.at)
		value = encodeEntry(&e)
	}
	return b.raw([]byte(bucket), key, value)
}

// raw stores one unsealed value, sealing it.
func (b *restoreBuilder) raw(bucket, key, value []byte) error {
	if b.tx == nil {
		tx, err := b.db.Begin(true)
		if err != nil {
			return err
		}
		b.tx = tx
	}
	bk := b.tx.Bucket(bucket)
	// Keys arrive in order: fuller pages make a smaller file, with
	// room left for the writes that follow a restore.
	bk.FillPercent = 0.9
	if err := bk.Put(append([]byte(nil), key...), seal(bucket, key, value)); err != nil {
		return err
	}
	b.n++
	if b.n%restoreBatch == 0 {
		err := b.tx.Commit()
		b.tx = nil
		return err
	}
	return nil
}

func (b *restoreBuilder) finish(carry map[string][][2][]byte) error {
	var idx [8]byte
	binary.BigEndian.PutUint64(idx[:], b.at)
	for _, k := range stampedMeta {
		if err := b.raw(bucketMeta, k, idx[:]); err != nil {
			return err
		}
	}
	for bucket, recs := range carry {
		for _, kv := range recs {
			if err := b.raw([]byte(bucket), kv[0], kv[1]); err != nil {
				return err
			}
		}
	}
	if b.tx == nil {
		return nil
	}
	err := b.tx.Commit()
	b.tx = nil
	return err
}
