package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketKV    = []byte("kv")
	bucketTombs = []byte("tombstones")
	bucketMeta  = []byte("meta")
	bucketNodes = []byte("nodes")

	metaApplied   = []byte("applied")
	metaKVIndex   = []byte("kv_index")
	metaClusterID = []byte("cluster_id")
)

// ErrCommit is returned when a batch could not be committed to the state
// file (a full disk, an I/O error): nothing of the batch was stored.
var ErrCommit = errors.New("storage: commit of the state file failed")

// ErrClosed is returned by reads on a closed Store.
var ErrClosed = errors.New("storage: store is closed")

// MaxKeySize is the longest key the store can hold, in bytes (bbolt's limit).
// A set, CAS or node registration with an empty key or a longer one is refused
// with Result.OK false; callers should reject such keys before proposing them.
const MaxKeySize = bolt.MaxKeySize

// Result is what applying one Command produced.
type Result struct {
	Index uint64 // log index the command was applied at
	// OK is the outcome of a conditional write. It is true for unconditional
	// ones, except a write refused for its key (see MaxKeySize), and for an
	// OpTxn whether it was applied.
	OK bool
	// Txn is an OpTxn's outcome; nil for every other command, so a plain
	// write's result costs no allocation.
	Txn *TxnResult
	// NoSpace marks a command refused, changing nothing, because it would
	// grow the state while a NOSPACE alarm is raised (OK is false).
	NoSpace bool
}

// Applied is one committed log entry handed to ApplyBatch. A nil Cmd marks an
// entry that only advances the applied index (e.g. a membership change).
type Applied struct {
	Index uint64
	Cmd   *Command
}

// Store is the replicated state machine's durable state: a bbolt file holding
// the keys, tombstones of deleted keys, the node address registry and the
// index of the last applied log entry.
//
// Every batch of commands and the new applied index commit in one bbolt
// transaction, so after a crash of the process the file is exactly the
// state as of some applied index and replaying the log from there is
// idempotent. Commits are not fsynced one by one (see unsynced.go).
type Store struct {
	path string
	// noSync: commits skip fsync (see unsynced.go).
	noSync bool
	// discarded: Open threw away a state file that a reboot may have torn.
	discarded bool

	// mu guards db: reads and applies share it, Restore swaps the file under
	// the write lock so no reader ever sees a half-restored state.
	mu     sync.RWMutex
	db     *bolt.DB
	closed bool

	applied atomic.Uint64
	// nodes caches the node registry: every forwarded request looks up the
	// leader's address, and the registry changes only on membership
	// changes.
	nodes atomic.Pointer[map[string]string]
	// clusterID is the cluster's id as the state file records it, cached
	// for the peer port's handshake.
	clusterID atomic.Pointer[string]
	// alarms caches the raised alarms (see Alarms), which every write
	// that grows the state consults.
	alarms atomic.Pointer[[]Alarm]

	changeMu sync.Mutex
	changed  chan struct{} // closed and replaced after every commit

	// delays are the lock-delays running on this node (soft state, see
	// lockDelays); sessionHook is told of session table changes.
	delays      lockDelays
	sessionHook atomic.Pointer[func(SessionChange)]

	// checking is set while a checkpoint's state hash runs; checks holds
	// the recent results (see StateChecks).
	checking atomic.Bool
	checksMu sync.Mutex
	checks   []StateCheck
}

// Open opens or creates the state file at path.
//
// A state file left unsynced by an earlier boot of the machine is discarded
// (see Discarded): the caller rebuilds it from the snapshot and the log.
func Open(path string) (*Store, error) {
	noSync, discarded, err := prepareUnsynced(path)
	if err != nil {
		return nil, err
	}
	if err := checkWhole(path); err != nil {
		return nil, err
	}
	db, err := openGuarded(path, func() (*bolt.DB, error) { return openDB(path, noSync) })
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, noSync: noSync, discarded: discarded, db: db, changed: make(chan struct{})}
	s.delays.now = time.Now
	s.applied.Store(readApplied(db))
	s.loadNodes(db)
	s.loadAlarms(db)
	return s, nil
}

func openDB(path string, noSync bool) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		NoSync: noSync,
		// bbolt waits forever for the file lock by default; a second opener
		// must fail instead of hanging.
		Timeout:        time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// A large initial mapping keeps a long snapshot read from blocking
		// writers that would otherwise have to remap the growing file.
		InitialMmapSize: 1 << 30,
	})
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKV, bucketTombs, bucketMeta, bucketNodes, bucketACL, bucketSessions} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return migrate(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("storage: init %s: %w", path, err)
	}
	return db, nil
}

// readApplied reads the applied index of db, a file whose values Open has
// verified (a damaged one reads as 0, and the log replays it all).
func readApplied(db *bolt.DB) uint64 {
	var v uint64
	_ = db.View(func(tx *bolt.Tx) error {
		v = getUint(newReader(tx, db.Path()).table(bucketMeta), metaApplied)
		return nil
	})
	return v
}

// Close flushes the file to disk and closes it. Reads after Close return
// ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.noSync {
		if err := s.db.Sync(); err != nil {
			s.db.Close()
			return fmt.Errorf("storage: flush %s: %w", s.path, err)
		}
		if err := markSynced(s.path); err != nil {
			s.db.Close()
			return fmt.Errorf("storage: %w", err)
		}
	}
	return s.db.Close()
}

// Discarded reports whether Open found the state file written unsynced
// before the machine last rebooted, and started from an empty one instead.
func (s *Store) Discarded() bool { return s.discarded }

// Path is the file the store lives in.
func (s *Store) Path() string { return s.path }

// AppliedIndex is the index of the last log entry applied to the file. The
// effects survive a crash of the process; after a reboot without a clean
// Close the file is rebuilt from the snapshot and the log (see Open).
func (s *Store) AppliedIndex() uint64 { return s.applied.Load() }

// Changed returns a channel that is closed at the next commit. Blocking reads
// take it before reading and wait on it afterwards, so no commit is missed.
func (s *Store) Changed() <-chan struct{} {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.changed
}

func (s *Store) notify() {
	s.changeMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.changeMu.Unlock()
}

// WaitApplied blocks until the applied index reaches index or ctx ends.
func (s *Store) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := s.Changed()
		if s.applied.Load() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Apply applies one command at index. See ApplyBatch.
func (s *Store) Apply(index uint64, cmd *Command) (Result, error) {
	res, err := s.ApplyBatch([]Applied{{Index: index, Cmd: cmd}})
	if err != nil {
		return Result{}, err
	}
	return res[0], nil
}

// ApplyBatch applies committed entries in order, in one transaction, and
// returns one Result per entry. Entries at or below the applied index were
// applied before a restart and are skipped, which makes log replay
// idempotent.
//
// A failed batch leaves the file and the applied index as they were: the
// whole batch is not applied (ErrBadCommand for a command no node can
// apply, ErrCommit for a file that could not take the batch), and the caller must not apply later entries
// on top of it (see cluster's state machine, which stops applying and has
// the batch replayed from the log).
func (s *Store) ApplyBatch(batch []Applied) ([]Result, error) {
	results := make([]Result, len(batch))
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	// A checkpoint ends a commit: the state as of its index is pinned in
	// a read transaction and hashed in the background, while the rest of
	// the batch commits on top of it.
	for start := 0; start < len(batch); {
		end := start
		for end < len(batch)-1 && (batch[end].Cmd == nil || batch[end].Cmd.Op != OpCheckpoint) {
			end++
		}
		if err := s.applyRun(batch[start:end+1], results[start:end+1]); err != nil {
			return nil, err
		}
		if last := batch[end]; last.Cmd != nil && last.Cmd.Op == OpCheckpoint && last.Index == s.applied.Load() {
			s.startStateCheck()
		}
		start = end + 1
	}
	return results, nil
}

// applyRun applies entries in one bbolt transaction (see ApplyBatch).
func (s *Store) applyRun(batch []Applied, results []Result) error {
	applied := s.applied.Load()
	last := applied
	nodesChanged, alarmsChanged := false, false
	var fx applyEffects
	var noSpace bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		fx = applyEffects{} // a retried transaction starts over
		noSpace = s.NoSpace()
		r := newReader(tx, s.path)
		w := writer{
			kv:    r.table(bucketKV),
			tombs: r.table(bucketTombs),
			meta:  r.table(bucketMeta),
			nodes: r.table(bucketNodes),
			acl:   r.table(bucketACL),
			sess:  r.table(bucketSessions),
			fx:    &fx,

			noSpace: &noSpace,
		}
		for i, a := range batch {
			results[i].Index = a.Index
			if a.Index <= last {
				continue
			}
			last = a.Index
			if a.Cmd == nil {
				continue
			}
			if noSpace && a.Cmd.Grows() {
				results[i].NoSpace = true
				continue
			}
			alarmsChanged = alarmsChanged || a.Cmd.Op == OpAlarmRaise || a.Cmd.Op == OpAlarmClear
			if a.Cmd.Op == OpTxn {
				res, err := w.applyTxn(a.Index, a.Cmd.Index, a.Cmd.Txn)
				if err != nil {
					return err
				}
				results[i].OK, results[i].Txn = len(res.Errors) == 0, res
				continue
			}
			ok, err := w.apply(a.Index, a.Cmd)
			if err != nil {
				return err
			}
			results[i].OK = ok
			nodesChanged = nodesChanged || a.Cmd.Op == OpRegisterNode || a.Cmd.Op == OpDeregisterNode || a.Cmd.Op == OpSetClusterID
		}
		if err := r.check.err(); err != nil {
			return err
		}
		if last == applied {
			return nil
		}
		return putUint(w.meta, metaApplied, last)
	})
	if errors.Is(err, ErrBadCommand) || errors.Is(err, ErrCorrupt) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCommit, s.path, err)
	}
	if nodesChanged {
		s.loadNodes(s.db)
	}
	if alarmsChanged {
		s.loadAlarms(s.db)
	}
	// Before the applied index moves: CheckLockDelays relies on every
	// invalidation up to that index having its delays recorded.
	s.delays.add(fx.lockDelays)
	if last != applied {
		s.applied.Store(last)
		s.notify()
	}
	if len(fx.created) > 0 || len(fx.destroyed) > 0 {
		s.sessionChanged(SessionChange{Index: last, Created: fx.created, Destroyed: fx.destroyed})
	}
	return nil
}

// loadNodes refreshes the caches of the node registry and the cluster id
// from db.
func (s *Store) loadNodes(db *bolt.DB) {
	m := map[string]string{}
	var id string
	_ = db.View(func(tx *bolt.Tx) error {
		r := newReader(tx, db.Path())
		id = string(r.table(bucketMeta).Get(metaClusterID))
		return r.table(bucketNodes).ForEach(func(k, v []byte) error {
			m[string(k)] = string(v)
			return nil
		})
	})
	s.nodes.Store(&m)
	s.clusterID.Store(&id)
}

// ClusterID is the id of the cluster this state belongs to, "" until one
// is recorded (OpSetClusterID).
func (s *Store) ClusterID() string {
	if p := s.clusterID.Load(); p != nil {
		return *p
	}
	return ""
}

// writer applies commands inside one write transaction.
type writer struct {
	kv, tombs, meta, nodes, acl, sess table

	// fx collects what the commands did besides the file.
	fx *applyEffects
	// noSpace is whether a NOSPACE alarm is raised as of the command
	// being applied: alarm commands earlier in the batch change it.
	noSpace *bool
}

func (w writer) apply(idx uint64, c *Command) (bool, error) {
	key := []byte(c.Key)
	// bbolt cannot store an empty or oversized key. Letting its error fail the
	// commit would make every replica panic on this same log entry, on every
	// replay, so the write is refused instead, identically on every node.
	if (c.Op == OpSet || c.Op == OpCAS || c.Op == OpRegisterNode) && (len(key) == 0 || len(key) > MaxKeySize) {
		return false, nil
	}
	switch c.Op {
	case OpSet:
		return true, w.set(idx, key, c.Value, c.Flags)
	case OpCAS:
		cur := w.kv.Get(key)
		if c.Index == 0 && cur != nil || c.Index != 0 && (cur == nil || entryModifyIndex(cur) != c.Index) {
			return false, nil
		}
		return true, w.set(idx, key, c.Value, c.Flags)
	case OpDelete:
		return true, w.delete(idx, key)
	case OpDeleteCAS:
		cur := w.kv.Get(key)
		if cur == nil {
			return true, nil
		}
		if entryModifyIndex(cur) != c.Index {
			return false, nil
		}
		return true, w.delete(idx, key)
	case OpDeleteTree:
		return true, w.deleteTree(idx, key)
	case OpRegisterNode:
		return true, w.nodes.Put(key, c.Value)
	case OpDeregisterNode:
		return true, w.nodes.Delete(key)
	case OpNoop, OpCheckpoint:
		return true, nil
	case OpSetClusterID:
		if len(key) == 0 {
			return false, nil
		}
		if cur := w.meta.Get(metaClusterID); cur != nil {
			return string(cur) == string(key), nil
		}
		return true, w.meta.Put(metaClusterID, key)
	case OpACLSetPolicy:
		return w.aclSetPolicy(idx, c)
	case OpACLDeletePolicy:
		return w.aclDeletePolicy(c)
	case OpACLSetToken:
		return w.aclSetToken(idx, c)
	case OpACLDeleteToken:
		return w.aclDeleteToken(c)
	case OpACLBootstrap:
		return w.aclBootstrap(idx, c)
	case OpSessionCreate:
		return w.sessionCreate(idx, c)
	case OpSessionDestroy:
		return w.sessionDestroy(idx, c.Key)
	case OpReapTombstones:
		return w.reapTombstones(c.Index, c.Flags)
	case OpAlarmRaise:
		return w.alarmRaise(idx, c)
	case OpAlarmClear:
		return w.alarmClear(c)
	}
	return false, fmt.Errorf("%w: cannot apply %v", ErrBadCommand, c.Op)
}

// set follows Consul's rules: the creation index and any lock holder survive
// an overwrite, and a write that changes nothing does not move ModifyIndex
// (so blocked readers are not woken for nothing).
func (w writer) set(idx uint64, key, value []byte, flags uint64) error {
	e := Entry{CreateIndex: idx, ModifyIndex: idx, Value: value, Flags: flags}
	if cur := w.kv.Get(key); cur != nil {
		old, err := decodeEntry(key, cur)
		if err != nil {
			return err
		}
		if old.Flags == flags && bytes.Equal(old.Value, value) {
			return nil
		}
		e.CreateIndex, e.LockIndex, e.Session = old.CreateIndex, old.LockIndex, old.Session
	}
	return w.putEntry(idx, key, &e)
}

// putEntry stores e under key as written at idx, a change that keeps the
// key's holder (the lock commands, which change it, use putHeld).
func (w writer) putEntry(idx uint64, key []byte, e *Entry) error {
	if err := w.kv.Put(key, encodeEntry(e)); err != nil {
		return err
	}
	// A live key makes its own tombstone redundant for index computations.
	if err := w.tombs.Delete(key); err != nil {
		return err
	}
	return putUint(w.meta, metaKVIndex, idx)
}

// putHeld stores e under key, whose holder was prev, and keeps the index
// of held keys.
func (w writer) putHeld(idx uint64, key []byte, e *Entry, prev string) error {
	if err := w.trackHolder(key, prev, e.Session); err != nil {
		return err
	}
	return w.putEntry(idx, key, e)
}

// delete removes key and leaves a tombstone, so the index of every prefix
// that covered the key moves forward and blocked listers wake up.
func (w writer) delete(idx uint64, key []byte) error {
	cur := w.kv.Get(key)
	if cur == nil {
		return nil
	}
	if err := w.trackHolder(key, entrySession(cur), ""); err != nil {
		return err
	}
	if err := w.kv.Delete(key); err != nil {
		return err
	}
	if err := putUint(w.tombs, key, idx); err != nil {
		return err
	}
	return putUint(w.meta, metaKVIndex, idx)
}

func (w writer) deleteTree(idx uint64, prefix []byte) error {
	var doomed [][]byte
	var holders []string
	c := w.kv.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		doomed = append(doomed, append([]byte(nil), k...))
		holders = append(holders, entrySession(v))
	}
	if len(doomed) == 0 {
		return nil
	}
	for i, k := range doomed {
		if err := w.trackHolder(k, holders[i], ""); err != nil {
			return err
		}
		if err := w.kv.Delete(k); err != nil {
			return err
		}
	}
	// The older tombstones under the prefix are superseded: drop them. Left
	// in place, they would set the index of a narrower prefix whose keys this
	// delete removed (List("web/x") after DeleteTree("web/")) to the index of
	// some earlier delete, moving it backwards, and its blocked readers would
	// miss this delete. With them gone, such a prefix has neither keys nor
	// tombstones and reports the KV-wide index, which is idx.
	for _, k := range keysWithPrefix(w.tombs, prefix) {
		if err := w.tombs.Delete(k); err != nil {
			return err
		}
	}
	// One tombstone for the prefix covers every deleted key under it; the
	// empty prefix is covered by the KV-wide index.
	if len(prefix) > 0 {
		if err := putUint(w.tombs, prefix, idx); err != nil {
			return err
		}
	}
	return putUint(w.meta, metaKVIndex, idx)
}

// keysWithPrefix copies out the keys of b that start with prefix, so the
// caller can delete them (deleting under a live cursor skips keys).
func keysWithPrefix(b table, prefix []byte) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	return keys
}

// view runs fn in a read transaction, guarding against a concurrent Restore.
func (s *Store) view(fn func(r reader) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return s.db.View(func(tx *bolt.Tx) error { return newReader(tx, s.path).run(fn) })
}

// Get returns the entry for key and the index a reader should report: the
// key's ModifyIndex if it exists, otherwise the KV-wide index.
func (s *Store) Get(key string) (e Entry, found bool, index uint64, err error) {
	err = s.view(func(r reader) error {
		v := r.table(bucketKV).Get([]byte(key))
		if v == nil {
			index = getUint(r.table(bucketMeta), metaKVIndex)
			return nil
		}
		found = true
		e, err = decodeEntry([]byte(key), v)
		index = e.ModifyIndex
		return err
	})
	return e, found, index, err
}

// List returns every entry whose key starts with prefix, in byte order, and
// the prefix index (see PrefixIndex).
func (s *Store) List(prefix string) (entries []Entry, index uint64, err error) {
	err = s.view(func(r reader) error {
		p := []byte(prefix)
		c := r.table(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			e, err := decodeEntry(k, v)
			if err != nil {
				return err
			}
			entries = append(entries, e)
			index = max(index, e.ModifyIndex)
		}
		index = prefixIndex(r, p, index)
		return nil
	})
	return entries, index, err
}

// Keys lists the keys under prefix. With a non-empty separator, keys that
// continue past the next separator are folded into one "directory" entry
// ending in the separator, as Consul's ?keys&separator does.
func (s *Store) Keys(prefix, separator string) (keys []string, index uint64, err error) {
	err = s.view(func(r reader) error {
		p := []byte(prefix)
		sep := []byte(separator)
		c := r.table(bucketKV).Cursor()
		k, v := c.Seek(p)
		for k != nil && bytes.HasPrefix(k, p) {
			index = max(index, entryModifyIndex(v))
			rest := k[len(p):]
			if i := bytes.Index(rest, sep); len(sep) > 0 && i >= 0 {
				dir := k[:len(p)+i+len(sep)]
				keys = append(keys, string(dir))
				// Every key in the folded directory shares dir as a prefix,
				// so the scan can jump past all of them; their indexes still
				// count towards the prefix index.
				index = max(index, maxModifyIndex(r.table(bucketKV), dir))
				end := prefixEnd(dir)
				if end == nil {
					break
				}
				k, v = c.Seek(end)
				continue
			}
			keys = append(keys, string(k))
			k, v = c.Next()
		}
		index = prefixIndex(r, p, index)
		return nil
	})
	return keys, index, err
}

func maxModifyIndex(b table, prefix []byte) uint64 {
	var m uint64
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		m = max(m, entryModifyIndex(v))
	}
	return m
}

// prefixIndex folds the tombstones under prefix into live, the largest
// ModifyIndex of the live keys under it, and the floor left by reaped
// tombstones. An empty prefix, or one with neither keys nor tombstones,
// reports the KV-wide index.
func prefixIndex(r reader, prefix []byte, live uint64) uint64 {
	kvIndex := getUint(r.table(bucketMeta), metaKVIndex)
	if len(prefix) == 0 {
		return kvIndex
	}
	idx := live
	c := r.table(bucketTombs).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		idx = max(idx, decodeUint(v))
	}
	if idx == 0 {
		return kvIndex
	}
	// What reaped tombstones gave this prefix, the floor still gives
	// (tombstones.go): an index never goes backwards across a reap.
	return max(idx, getUint(r.table(bucketMeta), metaTombsReaped))
}

// prefixEnd returns the smallest key greater than every key starting with
// prefix, or nil if there is none.
func prefixEnd(prefix []byte) []byte {
	end := append([]byte(nil), prefix...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// KVIndex is the index of the last write that changed any key.
func (s *Store) KVIndex() (uint64, error) {
	var idx uint64
	err := s.view(func(r reader) error {
		idx = getUint(r.table(bucketMeta), metaKVIndex)
		return nil
	})
	return idx, err
}

// NodeAddr returns the HTTP address registered by node id, or "".
func (s *Store) NodeAddr(id string) string {
	return (*s.nodes.Load())[id]
}

// NodeAddrs returns every registered node's HTTP address by node id.
func (s *Store) NodeAddrs() (map[string]string, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	m := map[string]string{}
	for id, addr := range *s.nodes.Load() {
		m[id] = addr
	}
	return m, nil
}

// Snapshot is a point-in-time view of the store, taken cheaply and written
// out later (possibly while new commands are applied).
type Snapshot struct {
	s    *Store
	tx   *bolt.Tx
	once sync.Once
}

// Snapshot opens a read transaction that pins the current state. The caller
// must call Release.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, ErrClosed
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		s.mu.RUnlock()
		return nil, fmt.Errorf("storage: begin snapshot: %w", err)
	}
	return &Snapshot{s: s, tx: tx}, nil
}

// Index is the applied index the snapshot captured.
func (sn *Snapshot) Index() uint64 {
	return getUint(newReader(sn.tx, sn.s.path).table(bucketMeta), metaApplied)
}

// WriteTo checks every value of the pinned state (verifyState), then
// streams a consistent copy of the bbolt file to w. A snapshot replaces
// older ones and may be sent to other nodes: one taken of a damaged
// state must fail here rather than spread the damage.
func (sn *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if _, err := hashState(sn.tx, sn.s.path, sn.tx.Size()); err != nil {
		return 0, err
	}
	return sn.tx.WriteTo(w)
}

// Release ends the snapshot's read transaction.
func (sn *Snapshot) Release() {
	sn.once.Do(func() {
		_ = sn.tx.Rollback()
		sn.s.mu.RUnlock()
	})
}

// Restore replaces the whole state with a snapshot stream produced by
// Snapshot.WriteTo. The stream is written to a side file and fsynced, checked
// by opening it, and only then renamed over the live file, so a crash at any
// point leaves either the old or the new state, never a mix.
func (s *Store) Restore(r io.Reader) error {
	tmp := s.path + ".restore"
	if err := writeFileSync(tmp, r); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: %w", err)
	}
	if err := checkStateFile(tmp); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: snapshot is not a valid state file: %w", err)
	}
	check, err := openDB(tmp, false)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: snapshot is not a valid state file: %w", err)
	}
	applied := readApplied(check)
	if err := check.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("storage: restore: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		os.Remove(tmp)
		return ErrClosed
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("storage: restore: close current state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		// The old file is intact: reopen it so the node can go on.
		if db, oerr := openDB(s.path, s.noSync); oerr == nil {
			s.db = db
		} else {
			panic(fmt.Sprintf("storage: restore: rename failed (%v) and reopen failed (%v)", err, oerr))
		}
		return fmt.Errorf("storage: restore: %w", err)
	}
	SyncDir(filepath.Dir(s.path))
	db, err := openDB(s.path, s.noSync)
	if err != nil {
		panic(fmt.Sprintf("storage: restore: cannot reopen restored state: %v", err))
	}
	s.db = db
	s.applied.Store(applied)
	s.loadNodes(db)
	s.loadAlarms(db)
	s.notify()
	s.sessionChanged(SessionChange{Index: applied, Reset: true})
	return nil
}

// checkStateFile makes sure path holds a complete state file whose every
// value passes its seal before anything opens it for writing. bbolt trusts
// its file: it initialises an empty file as a new, empty database; on a
// truncated copy it faults on the pages past the end (SIGBUS, which no
// recover catches). So the file is opened read-only (which reads only the
// meta pages), its length is checked against the size its meta page
// claims, and only then is every page read (verifyState).
func checkStateFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return errors.New("snapshot is empty")
	}
	if err := checkPages(path); err != nil {
		return err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("snapshot is truncated: %d of %d bytes", fi.Size(), tx.Size())
		}
		_, err := verifyState(tx, path, fi.Size())
		return err
	})
}

func writeFileSync(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncDir fsyncs the directory dir, which makes a rename or a new file in
// it durable. It is best effort: a directory that cannot be opened or
// synced is left as it is.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// TrimMemory hands back the state file's pages mapped into this process.
// bbolt reads through a read-only memory map, and every page a read or a
// write's tree walk touches stays mapped, so a node's resident memory grows
// towards the size of its data. The pages are clean copies of the file:
// dropping them costs only a minor fault when one is read again. A read
// transaction holds bbolt's mapping steady (no remap) while this runs.
func (s *Store) TrimMemory() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	tx, err := s.db.Begin(false)
	if err != nil {
		return
	}
	defer tx.Rollback()
	dropMapping(s.db.Info().Data, uintptr(tx.Size()))
}

// FileSize is the size of the state file in bytes.
func (s *Store) FileSize() int64 {
	fi, err := os.Stat(s.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func putUint(b table, key []byte, v uint64) error {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	return b.Put(key, buf[:])
}

func getUint(b table, key []byte) uint64 { return decodeUint(b.Get(key)) }

func decodeUint(v []byte) uint64 {
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}
