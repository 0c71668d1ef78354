package storage

import (
	"encoding/binary"
	"fmt"
)

// Entry is one key as the state machine holds it, with the Consul-style
// bookkeeping that clients use for CAS and locking.
type Entry struct {
	Key         string
	Value       []byte
	Flags       uint64
	CreateIndex uint64 // index of the write that created this incarnation of the key
	ModifyIndex uint64 // index of the last write that changed the entry
	LockIndex   uint64 // number of times the key was newly acquired by a lock
	Session     string // session holding the lock, if any
}

// entryVersion is the first byte of every stored entry, so the value format
// can change without a migration of existing files.
const entryVersion = 1

// encodeEntry lays an entry out as
//
//	version(1) create modify lock flags (uvarints) len(session) session value(rest)
//
// The key is the bbolt key and is not repeated.
func encodeEntry(e *Entry) []byte {
	b := make([]byte, 0, 1+5*binary.MaxVarintLen64+len(e.Session)+len(e.Value))
	b = append(b, entryVersion)
	b = binary.AppendUvarint(b, e.CreateIndex)
	b = binary.AppendUvarint(b, e.ModifyIndex)
	b = binary.AppendUvarint(b, e.LockIndex)
	b = binary.AppendUvarint(b, e.Flags)
	b = binary.AppendUvarint(b, uint64(len(e.Session)))
	b = append(b, e.Session...)
	return append(b, e.Value...)
}

// decodeEntry parses a stored entry. The value is copied because bbolt's
// memory is only valid inside its transaction.
func decodeEntry(key, data []byte) (Entry, error) {
	if len(data) == 0 || data[0] != entryVersion {
		return Entry{}, fmt.Errorf("storage: entry %q has an unknown format", key)
	}
	d := decoder{b: data[1:]}
	e := Entry{Key: string(key)}
	e.CreateIndex = d.uvarint()
	e.ModifyIndex = d.uvarint()
	e.LockIndex = d.uvarint()
	e.Flags = d.uvarint()
	e.Session = string(d.bytes())
	if d.err != nil {
		return Entry{}, fmt.Errorf("storage: entry %q: %w", key, d.err)
	}
	if len(d.b) > 0 {
		e.Value = append([]byte(nil), d.b...)
	}
	return e, nil
}

// entryModifyIndex reads only the ModifyIndex of a stored entry, for index
// computations that do not need the value.
func entryModifyIndex(data []byte) uint64 {
	if len(data) == 0 || data[0] != entryVersion {
		return 0
	}
	d := decoder{b: data[1:]}
	d.uvarint()
	return d.uvarint()
}
