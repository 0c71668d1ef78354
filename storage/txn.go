package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// TxnVerb is what one operation of a transaction does, with Consul's KV
// verbs.
type TxnVerb uint8

// The verbs a transaction can carry. The numeric values are part of the
// on-disk log format: never renumber them, only append.
const (
	TxnSet            TxnVerb = 1  // write like OpSet
	TxnCAS            TxnVerb = 2  // write like OpCAS; a stale index fails the transaction
	TxnLock           TxnVerb = 3  // acquire Key for Session, writing Value and Flags
	TxnUnlock         TxnVerb = 4  // release Key held by Session, writing Value and Flags
	TxnGet            TxnVerb = 5  // read Key; a missing key fails the transaction
	TxnGetTree        TxnVerb = 6  // read every key under the prefix Key
	TxnCheckIndex     TxnVerb = 7  // fail unless Key's ModifyIndex is Index
	TxnCheckSession   TxnVerb = 8  // fail unless Key is held by Session ("" = unheld)
	TxnCheckNotExists TxnVerb = 9  // fail if Key exists
	TxnDelete         TxnVerb = 10 // remove Key if present
	TxnDeleteTree     TxnVerb = 11 // remove every key under the prefix Key
	TxnDeleteCAS      TxnVerb = 12 // remove Key if its ModifyIndex is Index; a stale index fails
	TxnGetOrEmpty     TxnVerb = 13 // read Key; a missing key reads as an empty entry

	txnVerbLast = TxnGetOrEmpty
)

var txnVerbNames = [...]string{
	TxnSet: "set", TxnCAS: "cas", TxnLock: "lock", TxnUnlock: "unlock",
	TxnGet: "get", TxnGetTree: "get-tree", TxnCheckIndex: "check-index",
	TxnCheckSession: "check-session", TxnCheckNotExists: "check-not-exists",
	TxnDelete: "delete", TxnDeleteTree: "delete-tree", TxnDeleteCAS: "delete-cas",
	TxnGetOrEmpty: "get-or-empty",
}

// String is the verb as Consul's JSON spells it.
func (v TxnVerb) String() string {
	if v >= TxnSet && v <= txnVerbLast {
		return txnVerbNames[v]
	}
	return fmt.Sprintf("verb(%d)", uint8(v))
}

// ParseTxnVerb maps Consul's verb name (an exact, lowercase match, as
// Consul requires) to its TxnVerb.
func ParseTxnVerb(name string) (TxnVerb, bool) {
	for v := TxnSet; v <= txnVerbLast; v++ {
		if txnVerbNames[v] == name {
			return v, true
		}
	}
	return 0, false
}

// IsWrite reports whether the verb changes state. A transaction without a
// write verb is read-only and is served like a read, without Raft.
func (v TxnVerb) IsWrite() bool {
	switch v {
	case TxnSet, TxnCAS, TxnLock, TxnUnlock, TxnDelete, TxnDeleteTree, TxnDeleteCAS:
		return true
	}
	return false
}

// TxnOp is one operation of a transaction (OpTxn).
type TxnOp struct {
	Verb    TxnVerb
	Key     string
	Value   []byte
	Flags   uint64
	Index   uint64
	Session string
}

// TxnResult is what a transaction produced. With Errors it was rolled back
// and Entries is empty; otherwise Entries holds, in operation order, the
// entries of the operations that report one (Consul's rule: deletes and
// check-not-exists report nothing, get-tree reports every entry it read).
// Only the read verbs' entries carry a Value.
type TxnResult struct {
	Entries []Entry    `json:"entries,omitempty"`
	Errors  []TxnError `json:"errors,omitempty"`
}

// TxnError says why operation OpIndex failed.
type TxnError struct {
	OpIndex int    `json:"op_index"`
	What    string `json:"what"`
}

// HasWrites reports whether any of ops changes state.
func HasWrites(ops []TxnOp) bool {
	for _, op := range ops {
		if op.Verb.IsWrite() {
			return true
		}
	}
	return false
}

// txnVersion is the first byte of a transaction's encoding inside its
// command, so the operation layout can change without a new command
// version.
const txnVersion = 1

// minTxnOpBytes is the size of the smallest encoded operation; it bounds
// the operation count a decoder believes before allocating.
const minTxnOpBytes = 6

// appendTxn lays the operations out as
//
//	version(1) count(uvarint) then per op:
//	verb(1) flags index (uvarints) len(key) key len(session) session len(value) value
func appendTxn(b []byte, ops []TxnOp) []byte {
	b = append(b, txnVersion)
	b = binary.AppendUvarint(b, uint64(len(ops)))
	for i := range ops {
		op := &ops[i]
		b = append(b, byte(op.Verb))
		b = binary.AppendUvarint(b, op.Flags)
		b = binary.AppendUvarint(b, op.Index)
		b = binary.AppendUvarint(b, uint64(len(op.Key)))
		b = append(b, op.Key...)
		b = binary.AppendUvarint(b, uint64(len(op.Session)))
		b = append(b, op.Session...)
		b = binary.AppendUvarint(b, uint64(len(op.Value)))
		b = append(b, op.Value...)
	}
	return b
}

func txnEncodedSize(ops []TxnOp) int {
	n := 1 + binary.MaxVarintLen64
	for i := range ops {
		n += 1 + 5*binary.MaxVarintLen64 + len(ops[i].Key) + len(ops[i].Session) + len(ops[i].Value)
	}
	return n
}

// decodeTxn parses appendTxn's output, which must fill data exactly.
// Values alias data.
func decodeTxn(data []byte) ([]TxnOp, error) {
	if len(data) == 0 || data[0] != txnVersion {
		return nil, fmt.Errorf("%w: unknown transaction encoding", ErrBadCommand)
	}
	d := decoder{b: data[1:]}
	n := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if n > uint64(len(d.b)/minTxnOpBytes) {
		return nil, fmt.Errorf("%w: %d transaction operations cannot fit in %d bytes", ErrBadCommand, n, len(d.b))
	}
	ops := make([]TxnOp, n)
	for i := range ops {
		if len(d.b) == 0 {
			return nil, fmt.Errorf("%w: transaction cut short", ErrBadCommand)
		}
		op := &ops[i]
		op.Verb = TxnVerb(d.b[0])
		if op.Verb < TxnSet || op.Verb > txnVerbLast {
			return nil, fmt.Errorf("%w: unknown transaction verb %d", ErrBadCommand, d.b[0])
		}
		d.b = d.b[1:]
		op.Flags = d.uvarint()
		op.Index = d.uvarint()
		op.Key = string(d.bytes())
		op.Session = string(d.bytes())
		if v := d.bytes(); len(v) > 0 {
			op.Value = v
		}
		if d.err != nil {
			return nil, d.err
		}
	}
	if len(d.b) > 0 {
		return nil, fmt.Errorf("%w: %d bytes after the transaction", ErrBadCommand, len(d.b))
	}
	return ops, nil
}

// txnState is the key space a transaction runs against: the state file
// itself, or a scratch layer over it that takes the writes in memory.
type txnState interface {
	get(key string) (Entry, bool, error)
	list(prefix string) ([]Entry, error)
	// put stores e; prev is the key's holder before (the lock verbs
	// change it).
	put(idx uint64, e *Entry, prev string) error
	del(idx uint64, key string) error
	delTree(idx uint64, prefix string) error
}

// fileState writes through to the state file, with the same index
// bookkeeping as the single-key commands.
type fileState struct{ w writer }

func (s fileState) get(key string) (Entry, bool, error) { return getEntry(s.w.kv, key) }
func (s fileState) list(prefix string) ([]Entry, error) { return listEntries(s.w.kv, prefix) }
func (s fileState) put(idx uint64, e *Entry, prev string) error {
	return s.w.putHeld(idx, []byte(e.Key), e, prev)
}
func (s fileState) del(idx uint64, key string) error { return s.w.delete(idx, []byte(key)) }
func (s fileState) delTree(idx uint64, prefix string) error {
	return s.w.deleteTree(idx, []byte(prefix))
}

// scratchState reads the state file through the writes made so far, which
// it keeps in memory: a dry run that can be thrown away. bbolt has no
// savepoints, and a transaction shares its bbolt transaction with the rest
// of its batch, so a transaction that fails must never have written.
type scratchState struct {
	kv      table
	pending map[string]*Entry // nil: deleted
}

func (s *scratchState) get(key string) (Entry, bool, error) {
	if e, ok := s.pending[key]; ok {
		if e == nil {
			return Entry{}, false, nil
		}
		return *e, true, nil
	}
	return getEntry(s.kv, key)
}

func (s *scratchState) list(prefix string) ([]Entry, error) {
	base, err := listEntries(s.kv, prefix)
	if err != nil {
		return nil, err
	}
	out := base[:0]
	for _, e := range base {
		if _, ok := s.pending[e.Key]; !ok {
			out = append(out, e)
		}
	}
	for k, e := range s.pending {
		if e != nil && strings.HasPrefix(k, prefix) {
			out = append(out, *e)
		}
	}
	// Go orders strings byte by byte, as bbolt orders keys.
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func (s *scratchState) put(idx uint64, e *Entry, _ string) error {
	c := *e
	s.pending[e.Key] = &c
	return nil
}

func (s *scratchState) del(idx uint64, key string) error {
	s.pending[key] = nil
	return nil
}

func (s *scratchState) delTree(idx uint64, prefix string) error {
	doomed, err := s.list(prefix)
	for _, e := range doomed {
		s.pending[e.Key] = nil
	}
	return err
}

func getEntry(kv table, key string) (Entry, bool, error) {
	v := kv.Get([]byte(key))
	if v == nil {
		return Entry{}, false, nil
	}
	e, err := decodeEntry([]byte(key), v)
	return e, err == nil, err
}

func listEntries(kv table, prefix string) ([]Entry, error) {
	var out []Entry
	p := []byte(prefix)
	c := kv.Cursor()
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		e, err := decodeEntry(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// applyTxn runs ops at idx: first against a scratch layer, and only if
// every operation passes, again against the file. Both runs see the same
// state and make the same decisions, so the second one cannot fail; if it
// ever did, the batch is refused rather than half a transaction stored.
//
// lockSeen is the applied index at which the leader checked the
// lock-delays of the keys the transaction acquires (CheckLockDelays; 0:
// not checked, as in a command from before the check existed). An
// unheld key that changed after it, or a missing key deleted after it,
// may have been released by an invalidation the check did not see, so
// acquiring it fails as a lock-delay would: every node decides this
// from the same state and the same command. A write to the key that
// raced with the acquisition makes it fail too; the client retries.
func (w writer) applyTxn(idx, lockSeen uint64, ops []TxnOp) (*TxnResult, error) {
	delayed := map[int]bool{}
	if lockSeen > 0 {
		for i, op := range ops {
			if op.Verb != TxnLock || op.Key == "" || len(op.Key) > MaxKeySize {
				continue
			}
			if v := w.kv.Get([]byte(op.Key)); v != nil {
				delayed[i] = entrySession(v) == "" && entryModifyIndex(v) > lockSeen
			} else {
				delayed[i] = getUint(w.tombs, []byte(op.Key)) > lockSeen
			}
		}
	}
	rules := txnRules{sessionExists: w.sessionExists, lockDelayed: func(i int) bool { return delayed[i] }}
	dry, err := runTxn(&scratchState{kv: w.kv, pending: map[string]*Entry{}}, idx, ops, rules)
	if err != nil || len(dry.Errors) > 0 || !HasWrites(ops) {
		return dry, err
	}
	res, err := runTxn(fileState{w}, idx, ops, rules)
	if err == nil && len(res.Errors) > 0 {
		return nil, fmt.Errorf("%w: transaction at index %d failed on the file after its dry run passed: %v", ErrBadCommand, idx, res.Errors)
	}
	return res, err
}

// errMissingKey is Consul's answer to an operation without a key.
const errMissingKey = "Must provide key"

// Consul's answers to a lock or unlock without a session, or with one
// that does not exist: the KV endpoint answers them with 500, where a
// lock it cannot take is a plain false.
const (
	errMissingSession    = "missing session"
	errInvalidSessionFmt = "invalid session %q"
)

// BadSession reports an error of a lock or unlock that named no session,
// or one that does not exist (rather than a lock held by another, or a
// lock-delay).
func (e TxnError) BadSession() bool {
	return e.What == errMissingSession || strings.HasPrefix(e.What, "invalid session ")
}

// txnRules are what a transaction's lock verbs consult besides the keys.
type txnRules struct {
	sessionExists func(id string) bool
	// lockDelayed reports that operation i, a lock, must fail for a
	// lock-delay (see applyTxn).
	lockDelayed func(i int) bool
}

// runTxn runs every operation in order, each seeing the effects of the
// ones before it. A failed operation changes nothing and the rest still
// run, so every failure is reported, as Consul does; the caller discards
// the writes when there was any. The error is the state file's.
func runTxn(st txnState, idx uint64, ops []TxnOp, rules txnRules) (*TxnResult, error) {
	res := &TxnResult{}
	fail := func(i int, format string, args ...any) {
		res.Errors = append(res.Errors, TxnError{OpIndex: i, What: fmt.Sprintf(format, args...)})
	}
	for i := range ops {
		op := &ops[i]
		if op.Key == "" && op.Verb != TxnDeleteTree {
			fail(i, errMissingKey)
			continue
		}
		if op.Verb.IsWrite() && len(op.Key) > MaxKeySize {
			fail(i, "key is %d bytes, over the %d-byte limit", len(op.Key), MaxKeySize)
			continue
		}
		if op.Verb == TxnGetTree {
			entries, err := st.list(op.Key)
			if err != nil {
				return nil, err
			}
			res.Entries = append(res.Entries, entries...)
			continue
		}
		if op.Verb == TxnDeleteTree {
			if err := st.delTree(idx, op.Key); err != nil {
				return nil, err
			}
			continue
		}
		cur, found, err := st.get(op.Key)
		if err != nil {
			return nil, err
		}
		var out *Entry // the entry the operation reports, if any
		switch op.Verb {
		case TxnSet, TxnCAS:
			if op.Verb == TxnCAS && (op.Index == 0 && found || op.Index != 0 && (!found || cur.ModifyIndex != op.Index)) {
				fail(i, "failed to set key %q, index is stale", op.Key)
				continue
			}
			e := Entry{Key: op.Key, Value: op.Value, Flags: op.Flags, CreateIndex: idx, ModifyIndex: idx}
			if found {
				if cur.Flags == op.Flags && bytes.Equal(cur.Value, op.Value) {
					out = &cur // a write that changes nothing moves no index
					break
				}
				e.CreateIndex, e.LockIndex, e.Session = cur.CreateIndex, cur.LockIndex, cur.Session
			}
			if err := st.put(idx, &e, cur.Session); err != nil {
				return nil, err
			}
			out = &e
		case TxnLock:
			switch {
			case op.Session == "":
				fail(i, errMissingSession)
				continue
			case !rules.sessionExists(op.Session):
				fail(i, errInvalidSessionFmt, op.Session)
				continue
			case found && cur.Session != "" && cur.Session != op.Session:
				fail(i, "failed to lock key %q, lock is already held", op.Key)
				continue
			case rules.lockDelayed(i):
				fail(i, errLockDelayFmt, op.Key)
				continue
			}
			e := Entry{Key: op.Key, Value: op.Value, Flags: op.Flags, CreateIndex: idx, ModifyIndex: idx, LockIndex: 1, Session: op.Session}
			if found {
				e.CreateIndex, e.LockIndex = cur.CreateIndex, cur.LockIndex
				if cur.Session != op.Session {
					e.LockIndex++ // a fresh acquisition starts a new lock term
				} else if cur.Flags == op.Flags && bytes.Equal(cur.Value, op.Value) {
					out = &cur
					break
				}
			}
			if err := st.put(idx, &e, cur.Session); err != nil {
				return nil, err
			}
			out = &e
		case TxnUnlock:
			if op.Session == "" {
				fail(i, errMissingSession)
				continue
			}
			if !found || cur.Session != op.Session {
				fail(i, "failed to unlock key %q, lock isn't held, or is held by another session", op.Key)
				continue
			}
			e := cur
			e.Value, e.Flags, e.Session, e.ModifyIndex = op.Value, op.Flags, "", idx
			if err := st.put(idx, &e, cur.Session); err != nil {
				return nil, err
			}
			out = &e
		case TxnGet:
			if !found {
				fail(i, "key %q doesn't exist", op.Key)
				continue
			}
			res.Entries = append(res.Entries, cur)
			continue
		case TxnGetOrEmpty:
			if !found {
				cur = Entry{Key: op.Key, Flags: op.Flags, Session: op.Session}
			}
			res.Entries = append(res.Entries, cur)
			continue
		case TxnCheckIndex:
			if !found {
				fail(i, "failed to check index, key %q doesn't exist", op.Key)
				continue
			}
			if cur.ModifyIndex != op.Index {
				fail(i, "failed index check for key %q, current modify index %d != %d", op.Key, cur.ModifyIndex, op.Index)
				continue
			}
			out = &cur
		case TxnCheckSession:
			if !found {
				fail(i, "failed to check session, key %q doesn't exist", op.Key)
				continue
			}
			if cur.Session != op.Session {
				fail(i, "failed session check for key %q, current session %q != %q", op.Key, cur.Session, op.Session)
				continue
			}
			out = &cur
		case TxnCheckNotExists:
			if found {
				fail(i, "key %q exists", op.Key)
			}
			continue
		case TxnDelete:
			if found {
				if err := st.del(idx, op.Key); err != nil {
					return nil, err
				}
			}
			continue
		case TxnDeleteCAS:
			if !found {
				continue // already gone counts as deleted, as in Consul
			}
			if cur.ModifyIndex != op.Index {
				fail(i, "failed to delete key %q, index is stale", op.Key)
				continue
			}
			if err := st.del(idx, op.Key); err != nil {
				return nil, err
			}
			continue
		default:
			// DecodeCommand admits no other verb; a caller building ops by
			// hand learns it here rather than by a silent no-op.
			fail(i, "unknown KV operation: %v", op.Verb)
			continue
		}
		// Only reads hand values back: a write's result is its metadata.
		reported := *out
		reported.Value = nil
		res.Entries = append(res.Entries, reported)
	}
	if len(res.Errors) > 0 {
		res.Entries = nil
	}
	return res, nil
}

// errWriteInReadTxn refuses a read-only query that carries a write.
var errWriteInReadTxn = errors.New("storage: a read-only transaction carries a write operation")

// readTxn runs a read-only transaction against the current state.
func (s *Store) readTxn(ops []TxnOp) (*TxnResult, error) {
	if HasWrites(ops) {
		return nil, fmt.Errorf("%w: %v", ErrBadCommand, errWriteInReadTxn)
	}
	var res *TxnResult
	err := s.view(func(r reader) error {
		var err error
		res, err = runTxn(&scratchState{kv: r.table(bucketKV), pending: map[string]*Entry{}}, 0, ops, txnRules{})
		return err
	})
	return res, err
}
