package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"
)

// bucketSessions holds the session table under key prefixes, as the ACL
// bucket does:
//
//	s/<session id>          -> Session (EncodeSession)
//	l/<session id>/<key>    -> empty: a key the session holds
//
// The second table is an index of the first session of every entry, so
// invalidating a session visits the keys it holds, not the whole key
// space. Every write that changes an entry's Session keeps it (see
// writer.trackHolder).
var bucketSessions = []byte("sessions")

var (
	sessionPrefix     = []byte("s/")
	sessionHeldPrefix = []byte("l/")
	metaSessionIndex  = []byte("session_index")
)

// Session behaviours: what invalidating a session does to the keys it
// holds.
const (
	// SessionRelease unlocks them; they keep their values.
	SessionRelease = "release"
	// SessionDelete deletes them (Consul's "ephemeral" or TTL keys).
	SessionDelete = "delete"
)

// CheckSerfHealth is the one node check Troupe knows: the session lives
// only as long as the leader's failure detector does not hold its node
// dead.
const CheckSerfHealth = "serfHealth"

// MaxLockDelay caps the lock-delay a session's invalidation imposes, as
// Consul caps it, whatever the session asked for.
const MaxLockDelay = 60 * time.Second

// MaxSessionIDSize bounds a session id; the API makes 36-byte UUIDs.
const MaxSessionIDSize = 128

// Session is one entry of the session table. Everything in it is decided
// by the node that created it and travels in the create command: the
// state machine stores it as given, adding only the indexes.
type Session struct {
	ID        string
	Name      string
	Node      string        // the node it was created through (or named)
	LockDelay time.Duration // how long its keys stay unacquirable after it is invalidated
	Behavior  string        // SessionRelease or SessionDelete
	// TTL is kept exactly as the client wrote it ("10s"), as Consul
	// echoes it; "" means no TTL.
	TTL        string
	NodeChecks []string // CheckSerfHealth, or nothing
	// CreateIndex and ModifyIndex are both the index of the create: a
	// session never changes, it is only created and destroyed.
	CreateIndex uint64
	ModifyIndex uint64
}

// TTLDuration is the session's TTL, 0 for none.
func (s Session) TTLDuration() time.Duration {
	if s.TTL == "" {
		return 0
	}
	d, err := time.ParseDuration(s.TTL)
	if err != nil || d < 0 {
		return 0
	}
	return d
}

// HasSerfHealth reports whether the session dies with its node.
func (s Session) HasSerfHealth() bool { return slices.Contains(s.NodeChecks, CheckSerfHealth) }

// sessionRecordVersion is the first byte of a stored session. The body is
// JSON, as for ACL records: sessions are small, and fields can be added
// without a new layout.
const sessionRecordVersion = 1

// EncodeSession is the Value of an OpSessionCreate command.
func EncodeSession(s Session) []byte {
	b, _ := json.Marshal(s) // strings, integers and a list of strings always encode
	return append([]byte{sessionRecordVersion}, b...)
}

func decodeSession(data []byte) (Session, error) {
	var s Session
	if len(data) == 0 || data[0] != sessionRecordVersion {
		return s, fmt.Errorf("storage: session record has an unknown format")
	}
	if err := json.Unmarshal(data[1:], &s); err != nil {
		return s, fmt.Errorf("storage: session record: %v", err)
	}
	return s, nil
}

func sessionKey(id string) []byte { return append(append([]byte(nil), sessionPrefix...), id...) }

func heldPrefix(id string) []byte {
	b := append(append([]byte(nil), sessionHeldPrefix...), id...)
	return append(b, '/')
}

func heldKey(id string, key []byte) []byte { return append(heldPrefix(id), key...) }

// trackHolder keeps the held-keys index when key's holder changes from
// old to new ("" for none).
func (w writer) trackHolder(key []byte, old, new string) error {
	if old == new {
		return nil
	}
	if old != "" {
		if err := w.sess.Delete(heldKey(old, key)); err != nil {
			return err
		}
	}
	if new != "" {
		return w.sess.Put(heldKey(new, key), nil)
	}
	return nil
}

// sessionExists reports whether id names a live session, which a lock
// needs.
func (w writer) sessionExists(id string) bool {
	return id != "" && len(id) <= MaxSessionIDSize && w.sess.Get(sessionKey(id)) != nil
}

// sessionCreate stores the session in c.Value under id c.Key. It refuses
// (false), identically on every node, a record that does not decode, is
// not for c.Key, has an unknown behaviour, or whose id is taken.
func (w writer) sessionCreate(idx uint64, c *Command) (bool, error) {
	s, err := decodeSession(c.Value)
	if err != nil || s.ID == "" || s.ID != c.Key || len(s.ID) > MaxSessionIDSize || bytes.IndexByte([]byte(s.ID), '/') >= 0 ||
		s.Behavior != SessionRelease && s.Behavior != SessionDelete {
		return false, nil
	}
	key := sessionKey(s.ID)
	if w.sess.Get(key) != nil {
		return false, nil
	}
	s.CreateIndex, s.ModifyIndex = idx, idx
	if err := w.sess.Put(key, EncodeSession(s)); err != nil {
		return false, err
	}
	w.fx.created = append(w.fx.created, s)
	return true, putUint(w.meta, metaSessionIndex, idx)
}

// sessionDestroy invalidates session id: every key it holds is released
// (keeping its value, with a new ModifyIndex) or deleted, as its behaviour
// says, and the session is gone. A session that does not exist is no
// change, so destroying twice, or expiring a destroyed session, is
// harmless.
func (w writer) sessionDestroy(idx uint64, id string) (bool, error) {
	key := sessionKey(id)
	cur := w.sess.Get(key)
	if cur == nil {
		return true, nil
	}
	s, err := decodeSession(cur)
	if err != nil {
		// verifyState refuses such a file; a record that passed its
		// seal and still fails is released, the safe default.
		s = Session{ID: id, Behavior: SessionRelease}
	}
	prefix := heldPrefix(id)
	for _, hk := range keysWithPrefix(w.sess, prefix) {
		if err := w.sess.Delete(hk); err != nil {
			return false, err
		}
		k := hk[len(prefix):]
		v := w.kv.Get(k)
		if v == nil {
			continue
		}
		e, err := decodeEntry(k, v)
		if err != nil {
			return false, err
		}
		if e.Session != id {
			continue
		}
		if s.Behavior == SessionDelete {
			err = w.delete(idx, k)
		} else {
			e.Session, e.ModifyIndex = "", idx
			err = w.putEntry(idx, k, &e)
		}
		if err != nil {
			return false, err
		}
		if s.LockDelay > 0 {
			w.fx.lockDelays = append(w.fx.lockDelays, lockDelayed{key: string(k), delay: min(s.LockDelay, MaxLockDelay)})
		}
	}
	if err := w.sess.Delete(key); err != nil {
		return false, err
	}
	w.fx.destroyed = append(w.fx.destroyed, id)
	return true, putUint(w.meta, metaSessionIndex, idx)
}

// entrySession reads only the Session of a stored entry.
func entrySession(data []byte) string {
	if len(data) == 0 || data[0] != entryVersion {
		return ""
	}
	d := decoder{b: data[1:]}
	for range 4 {
		d.uvarint()
	}
	return string(d.bytes())
}

// applyEffects is what a batch's commands did besides the state file:
// the soft state and notifications the store handles once the batch has
// committed.
type applyEffects struct {
	lockDelays []lockDelayed
	created    []Session
	destroyed  []string
}

type lockDelayed struct {
	key   string
	delay time.Duration
}

// Lock-delays are Consul's: when an invalidated session held a key, no
// session may acquire that key for the session's LockDelay, so a holder
// that lost its session (and perhaps does not know it yet) has time to
// notice before another takes over. They are soft state, as in Consul:
// kept in memory on every node, timed with the local monotonic clock from
// the moment this node applied the invalidation, and outside the state
// file and its hash. The state machine never reads them: the leader checks
// them before it proposes an acquisition (CheckLockDelays), and the
// command carries what the leader had seen, so every node decides the
// acquisition alike. A node that restarts replays the invalidations in its
// log and times them from the replay, which makes them longer, never
// shorter; a snapshot restore forgets them.
type lockDelays struct {
	mu    sync.Mutex
	until map[string]time.Time
	now   func() time.Time
}

func (l *lockDelays) add(batch []lockDelayed) {
	if len(batch) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.until == nil {
		l.until = map[string]time.Time{}
	}
	if len(l.until) > 1024 {
		for k, t := range l.until {
			if !now.Before(t) {
				delete(l.until, k)
			}
		}
	}
	for _, d := range batch {
		if t := now.Add(d.delay); t.After(l.until[d.key]) {
			l.until[d.key] = t
		}
	}
}

// remaining is how long key stays unacquirable, 0 if it is free.
func (l *lockDelays) remaining(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.until[key]
	if !ok {
		return 0
	}
	left := t.Sub(l.now())
	if left <= 0 {
		delete(l.until, key)
		return 0
	}
	return left
}

// LockDelay is how much longer key's lock-delay runs on this node, 0 if it
// has none.
func (s *Store) LockDelay(key string) time.Duration { return s.delays.remaining(key) }

// errLockDelayFmt is the error of an acquisition refused for its key's
// lock-delay, Consul's wording.
const errLockDelayFmt = "failed to lock key %q due to lock delay"

// CheckLockDelays is the leader's step before it proposes data: a
// transaction that acquires a key whose lock-delay runs on this node is
// refused without a proposal (refused holds one error per such key, as
// Consul's pre-check reports them), and any other transaction that
// acquires is stamped with this node's applied index, so the state machine
// can refuse an acquisition of a key that an invalidation this check did
// not see released after it (see applyTxn). Every other command comes back
// as it is, without being decoded.
func (s *Store) CheckLockDelays(data []byte) (out []byte, refused *TxnResult, err error) {
	if len(data) < 2 || Op(data[1]) != OpTxn {
		return data, nil, nil
	}
	cmd, err := DecodeCommand(data)
	if err != nil {
		return nil, nil, err
	}
	locks := false
	for _, op := range cmd.Txn {
		locks = locks || op.Verb == TxnLock
	}
	if !locks {
		return data, nil, nil
	}
	// The applied index first, then the delays: the delays of every
	// invalidation up to it are recorded by then (applyRun records them
	// before it publishes the index).
	seen := max(s.applied.Load(), 1)
	for i, op := range cmd.Txn {
		if op.Verb == TxnLock && s.delays.remaining(op.Key) > 0 {
			if refused == nil {
				refused = &TxnResult{}
			}
			refused.Errors = append(refused.Errors, TxnError{OpIndex: i, What: fmt.Sprintf(errLockDelayFmt, op.Key)})
		}
	}
	if refused != nil {
		return nil, refused, nil
	}
	cmd.Index = seen
	return cmd.Encode(), nil, nil
}

// SessionChange tells the owner of the session timers what a commit did
// to the session table: the leader arms a TTL timer for each session
// created and drops those destroyed. Reset means the whole table was
// replaced (a snapshot was restored): read it again.
type SessionChange struct {
	Index     uint64
	Created   []Session
	Destroyed []string
	Reset     bool
}

// OnSessionChange sets the function told of every change to the session
// table, after its commit. It runs on the apply path, so it must return at
// once and must not call the Store (hand the change to a goroutine or an
// actor).
func (s *Store) OnSessionChange(fn func(SessionChange)) {
	s.sessionHook.Store(&fn)
}

func (s *Store) sessionChanged(c SessionChange) {
	if fn := s.sessionHook.Load(); fn != nil && *fn != nil {
		(*fn)(c)
	}
}

// Session returns the session with id and the sessions-wide index.
func (s *Store) Session(id string) (sess Session, found bool, index uint64, err error) {
	err = s.view(func(r reader) error {
		index = getUint(r.table(bucketMeta), metaSessionIndex)
		v := r.table(bucketSessions).Get(sessionKey(id))
		if v == nil || id == "" {
			return nil
		}
		found = true
		sess, err = decodeSession(v)
		return err
	})
	return sess, found, index, err
}

// Sessions returns every session (on node, when node is not empty;
// matched without regard to case, as Consul does), ordered by ID, and the
// sessions-wide index.
func (s *Store) Sessions(node string) (out []Session, index uint64, err error) {
	err = s.view(func(r reader) error {
		index = getUint(r.table(bucketMeta), metaSessionIndex)
		return forEachPrefix(r.table(bucketSessions), sessionPrefix, func(v []byte) error {
			sess, err := decodeSession(v)
			if err != nil {
				return err
			}
			if node == "" || equalFold(sess.Node, node) {
				out = append(out, sess)
			}
			return nil
		})
	})
	return out, index, err
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

// SessionIndex is the index of the last session create or destroy.
func (s *Store) SessionIndex() (uint64, error) {
	var idx uint64
	err := s.view(func(r reader) error {
		idx = getUint(r.table(bucketMeta), metaSessionIndex)
		return nil
	})
	return idx, err
}

// checkSessionValue checks the shape of a value of the sessions bucket.
func checkSessionValue(key, v []byte) error {
	switch {
	case bytes.HasPrefix(key, sessionPrefix):
		s, err := decodeSession(v)
		if err != nil {
			return err
		}
		if s.ID != string(key[len(sessionPrefix):]) {
			return fmt.Errorf("a session record for %q", s.ID)
		}
	case bytes.HasPrefix(key, sessionHeldPrefix):
		if len(v) != 0 {
			return fmt.Errorf("a held-key mark of %d bytes", len(v))
		}
	default:
		return fmt.Errorf("a key of no session table")
	}
	return nil
}
