package storage

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// createSession applies the create of s at idx (behaviour release unless
// set) and fails the test if it is refused.
func createSession(t testing.TB, st *Store, idx uint64, s Session) {
	t.Helper()
	if s.Behavior == "" {
		s.Behavior = SessionRelease
	}
	if !apply(t, st, idx, &Command{Op: OpSessionCreate, Key: s.ID, Value: EncodeSession(s)}) {
		t.Fatalf("create of session %+v refused", s)
	}
}

func lock(key, session, value string) TxnOp {
	return TxnOp{Verb: TxnLock, Key: key, Session: session, Value: []byte(value)}
}

// heldKeys reads the held-keys index: session -> keys.
func heldKeys(t testing.TB, s *Store) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for k := range dumpRaw(t, s)[string(bucketSessions)] {
		if rest, ok := strings.CutPrefix(k, string(sessionHeldPrefix)); ok {
			id, key, _ := strings.Cut(rest, "/")
			out[id] = append(out[id], key)
		}
	}
	for _, keys := range out {
		slices.Sort(keys)
	}
	return out
}

// fakeClock is a settable clock for lock-delays.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSession_CreateAndRead(t *testing.T) {
	s := openStore(t)
	want := Session{ID: "a1", Name: "n", Node: "n1", LockDelay: 15 * time.Second, Behavior: SessionDelete, TTL: "10s", NodeChecks: []string{CheckSerfHealth}}
	createSession(t, s, 4, want)
	want.CreateIndex, want.ModifyIndex = 4, 4
	got, found, idx, err := s.Session("a1")
	if err != nil || !found || idx != 4 || !reflect.DeepEqual(got, want) {
		t.Fatalf("Session: %+v %v %d %v", got, found, idx, err)
	}
	if got.TTLDuration() != 10*time.Second || !got.HasSerfHealth() {
		t.Fatalf("TTL %v, serfHealth %v", got.TTLDuration(), got.HasSerfHealth())
	}
	createSession(t, s, 5, Session{ID: "b2", Node: "N2", NodeChecks: []string{}})
	all, idx, err := s.Sessions("")
	if err != nil || idx != 5 || len(all) != 2 || all[0].ID != "a1" || all[1].ID != "b2" || all[1].NodeChecks == nil {
		t.Fatalf("Sessions: %+v %d %v", all, idx, err)
	}
	// Node names match without regard to case, as in Consul.
	if of, _, _ := s.Sessions("n2"); len(of) != 1 || of[0].ID != "b2" {
		t.Fatalf("Sessions(n2): %+v", of)
	}
	if _, found, idx, _ := s.Session("nope"); found || idx != 5 {
		t.Fatalf("unknown session: found %v, index %d", found, idx)
	}

	// Refused alike on every node: a taken id, a record for another id,
	// an unknown behaviour, garbage, an id with a slash.
	before := withoutApplied(dumpRaw(t, s))
	for i, c := range []*Command{
		{Op: OpSessionCreate, Key: "a1", Value: EncodeSession(Session{ID: "a1", Behavior: SessionRelease})},
		{Op: OpSessionCreate, Key: "c3", Value: EncodeSession(Session{ID: "c4", Behavior: SessionRelease})},
		{Op: OpSessionCreate, Key: "c3", Value: EncodeSession(Session{ID: "c3", Behavior: "explode"})},
		{Op: OpSessionCreate, Key: "c3", Value: []byte("{")},
		{Op: OpSessionCreate, Key: "c/3", Value: EncodeSession(Session{ID: "c/3", Behavior: SessionRelease})},
		{Op: OpSessionCreate, Key: "", Value: EncodeSession(Session{Behavior: SessionRelease})},
	} {
		if apply(t, s, uint64(10+i), c) {
			t.Errorf("create %d accepted", i)
		}
	}
	requireSameState(t, withoutApplied(dumpRaw(t, s)), before)
	if _, err := s.Verify(); err != nil {
		t.Fatal(err)
	}
}

// Invalidation with behaviour release: the keys the session holds keep
// their values and lock index, lose their holder, and move to the
// invalidation's index; the lock-delay starts; keys of other sessions are
// left alone.
func TestSession_DestroyReleases(t *testing.T) {
	s := openStore(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s.delays.now = clock.now
	createSession(t, s, 1, Session{ID: "s1", LockDelay: 5 * time.Second})
	createSession(t, s, 2, Session{ID: "s2", LockDelay: time.Hour})
	applyTxn(t, s, 3, lock("a", "s1", "va"), lock("b", "s1", "vb"), lock("c", "s2", "vc"))
	apply(t, s, 4, set("a", "va2", 9)) // a plain set keeps the holder
	if got := heldKeys(t, s); !reflect.DeepEqual(got, map[string][]string{"s1": {"a", "b"}, "s2": {"c"}}) {
		t.Fatalf("held keys %v", got)
	}
	var changes []SessionChange
	s.OnSessionChange(func(c SessionChange) { changes = append(changes, c) })

	if !apply(t, s, 5, &Command{Op: OpSessionDestroy, Key: "s1"}) {
		t.Fatal("destroy refused")
	}
	a, _, _ := mustGet(t, s, "a")
	b, _, _ := mustGet(t, s, "b")
	c, _, _ := mustGet(t, s, "c")
	if a.Session != "" || string(a.Value) != "va2" || a.Flags != 9 || a.LockIndex != 1 || a.ModifyIndex != 5 || a.CreateIndex != 3 {
		t.Fatalf("a after release: %+v", a)
	}
	if b.Session != "" || b.ModifyIndex != 5 || c.Session != "s2" || c.ModifyIndex != 3 {
		t.Fatalf("b %+v, c %+v", b, c)
	}
	if _, found, idx, _ := s.Session("s1"); found || idx != 5 {
		t.Fatalf("s1 after destroy: found %v, index %d", found, idx)
	}
	if kv := mustKVIndex(t, s); kv != 5 {
		t.Fatalf("KV index %d", kv)
	}
	if got := heldKeys(t, s); !reflect.DeepEqual(got, map[string][]string{"s2": {"c"}}) {
		t.Fatalf("held keys %v", got)
	}
	if len(changes) != 1 || !slices.Equal(changes[0].Destroyed, []string{"s1"}) || changes[0].Index != 5 {
		t.Fatalf("changes %+v", changes)
	}
	if d := s.LockDelay("a"); d != 5*time.Second || s.LockDelay("c") != 0 {
		t.Fatalf("lock-delay of a %v, of c %v", d, s.LockDelay("c"))
	}
	clock.add(5 * time.Second)
	if d := s.LockDelay("a"); d != 0 {
		t.Fatalf("lock-delay of a after 5s: %v", d)
	}

	// Destroying again, or a session never seen, changes nothing.
	before := withoutApplied(dumpRaw(t, s))
	if !apply(t, s, 6, &Command{Op: OpSessionDestroy, Key: "s1"}) || !apply(t, s, 7, &Command{Op: OpSessionDestroy, Key: "zz"}) {
		t.Fatal("a destroy of a missing session answered false")
	}
	requireSameState(t, withoutApplied(dumpRaw(t, s)), before)

	// Consul caps lock-delays at a minute.
	apply(t, s, 8, &Command{Op: OpSessionDestroy, Key: "s2"})
	if d := s.LockDelay("c"); d != MaxLockDelay {
		t.Fatalf("lock-delay of c %v, want the cap", d)
	}
	if _, err := s.Verify(); err != nil {
		t.Fatal(err)
	}
}

// Behaviour delete: the session's keys go, with tombstones, so a blocked
// lister of their prefix wakes (api.Semaphore depends on it).
func TestSession_DestroyDeletes(t *testing.T) {
	s := openStore(t)
	createSession(t, s, 1, Session{ID: "s1", Behavior: SessionDelete})
	applyTxn(t, s, 2, lock("sem/s1", "s1", "x"))
	apply(t, s, 3, set("sem/other", "y", 0))
	apply(t, s, 4, &Command{Op: OpSessionDestroy, Key: "s1"})
	if _, found, _ := mustGet(t, s, "sem/s1"); found {
		t.Fatal("the key of a delete session survived it")
	}
	if idx := listIndex(t, s, "sem/"); idx != 4 {
		t.Fatalf("prefix index %d, want 4", idx)
	}
	if len(heldKeys(t, s)) != 0 {
		t.Fatalf("held keys %v", heldKeys(t, s))
	}
}

// The held-keys index follows every write that changes or removes a
// holder, so an invalidation never touches a key its session lost.
func TestSession_HeldKeysFollowWrites(t *testing.T) {
	s := openStore(t)
	createSession(t, s, 1, Session{ID: "s1"})
	createSession(t, s, 2, Session{ID: "s2"})
	applyTxn(t, s, 3, lock("k/a", "s1", ""), lock("k/b", "s1", ""), lock("k/c", "s1", ""), lock("d", "s1", ""))
	apply(t, s, 4, &Command{Op: OpDelete, Key: "d"})
	apply(t, s, 5, &Command{Op: OpDeleteTree, Key: "k/b"})
	applyTxn(t, s, 6, TxnOp{Verb: TxnUnlock, Key: "k/c", Session: "s1"})
	applyTxn(t, s, 7, lock("k/c", "s2", "mine"))
	if got := heldKeys(t, s); !reflect.DeepEqual(got, map[string][]string{"s1": {"k/a"}, "s2": {"k/c"}}) {
		t.Fatalf("held keys %v", got)
	}
	apply(t, s, 8, &Command{Op: OpSessionDestroy, Key: "s1"})
	if e, _, _ := mustGet(t, s, "k/c"); e.Session != "s2" || e.ModifyIndex != 7 {
		t.Fatalf("k/c, held by s2, was touched: %+v", e)
	}
	apply(t, s, 9, &Command{Op: OpDeleteTree, Key: ""})
	if got := heldKeys(t, s); len(got) != 0 {
		t.Fatalf("held keys after deleting everything: %v", got)
	}
}

// The leader's check before it proposes: an acquisition during a
// lock-delay is refused without a proposal; others are stamped with the
// applied index; any other command passes untouched.
func TestCheckLockDelays(t *testing.T) {
	s := openStore(t)
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s.delays.now = clock.now
	createSession(t, s, 1, Session{ID: "s1", LockDelay: 10 * time.Second})
	createSession(t, s, 2, Session{ID: "s2"})
	applyTxn(t, s, 3, lock("l", "s1", ""))
	apply(t, s, 4, &Command{Op: OpSessionDestroy, Key: "s1"})

	plain := set("l", "v", 0).Encode()
	if out, refused, err := s.CheckLockDelays(plain); err != nil || refused != nil || &out[0] != &plain[0] {
		t.Fatal("a plain write was not passed through as it is")
	}
	acquire := txn(TxnOp{Verb: TxnSet, Key: "x"}, lock("l", "s2", "")).Encode()
	out, refused, err := s.CheckLockDelays(acquire)
	if err != nil || out != nil || refused == nil || len(refused.Errors) != 1 || refused.Errors[0].OpIndex != 1 ||
		refused.Errors[0].What != `failed to lock key "l" due to lock delay` {
		t.Fatalf("during the delay: %v %+v %v", out, refused, err)
	}
	clock.add(10 * time.Second)
	out, refused, err = s.CheckLockDelays(acquire)
	if err != nil || refused != nil {
		t.Fatalf("after the delay: %+v %v", refused, err)
	}
	c, err := DecodeCommand(out)
	if err != nil || c.Index != 4 || len(c.Txn) != 2 {
		t.Fatalf("stamped command %+v %v, want index 4", c, err)
	}
	if r := mustApply(t, s, 5, c); !r.OK {
		t.Fatalf("stamped acquisition: %+v", r.Txn)
	}
	if _, _, err := s.CheckLockDelays([]byte{1, byte(OpTxn), 0xff}); err == nil {
		t.Fatal("a malformed transaction passed the check")
	}
}

// An invalidation the leader had not applied when it checked: the state
// machine refuses the acquisition on every node alike.
func TestTxn_LockAfterUnseenInvalidation(t *testing.T) {
	s := openStore(t)
	createSession(t, s, 1, Session{ID: "s1", Behavior: SessionRelease})
	createSession(t, s, 2, Session{ID: "s2", Behavior: SessionDelete})
	createSession(t, s, 3, Session{ID: "s3"})
	applyTxn(t, s, 4, lock("rel", "s1", ""), lock("del", "s2", ""))
	apply(t, s, 5, &Command{Op: OpSessionDestroy, Key: "s1"})
	apply(t, s, 6, &Command{Op: OpSessionDestroy, Key: "s2"})

	stamped := func(seen uint64, ops ...TxnOp) *Command { c := txn(ops...); c.Index = seen; return c }
	for _, key := range []string{"rel", "del"} {
		r := mustApply(t, s, s.AppliedIndex()+1, stamped(4, lock(key, "s3", "")))
		if r.OK || len(r.Txn.Errors) != 1 || !strings.Contains(r.Txn.Errors[0].What, "due to lock delay") {
			t.Fatalf("%s, checked before its invalidation: %+v", key, r.Txn)
		}
	}
	// Checked after it (or not checked at all, as before the check
	// existed): taken.
	if r := mustApply(t, s, s.AppliedIndex()+1, stamped(6, lock("rel", "s3", ""))); !r.OK {
		t.Fatalf("rel, checked after: %+v", r.Txn)
	}
	if r := mustApply(t, s, s.AppliedIndex()+1, stamped(0, lock("del", "s3", ""))); !r.OK {
		t.Fatalf("del, unchecked: %+v", r.Txn)
	}
	// The holder's own write since does not count against it.
	if r := mustApply(t, s, s.AppliedIndex()+1, stamped(1, lock("rel", "s3", "again"))); !r.OK {
		t.Fatalf("re-acquire by the holder: %+v", r.Txn)
	}
}

func TestSession_BadSessionErrors(t *testing.T) {
	for what, want := range map[string]bool{
		"missing session":                              true,
		`invalid session "x"`:                          true,
		`failed to lock key "k" due to lock delay`:     false,
		`failed to lock key "k", lock is already held`: false,
	} {
		if got := (TxnError{What: what}).BadSession(); got != want {
			t.Errorf("BadSession(%q) = %v", what, got)
		}
	}
}

// Sessions travel in snapshots and pass the integrity checks; a state
// without sessions hashes as it did before the sessions bucket existed.
func TestSession_SnapshotAndHash(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("k", "v", 0))
	h1, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketSessions) })
	if err != nil {
		t.Fatal(err)
	}
	h0, err := s.Verify()
	if err != nil || h0.Hash != h1.Hash {
		t.Fatalf("hash without the bucket %d (%v), with it empty %d", h0.Hash, err, h1.Hash)
	}
	s.Close()
	s = openAt(t, s.Path()) // the bucket comes back

	createSession(t, s, 2, Session{ID: "s1", TTL: "15s"})
	applyTxn(t, s, 3, lock("k", "s1", "held"))
	h2, err := s.Verify()
	if err != nil || h2.Hash == h1.Hash {
		t.Fatalf("hash with a session %d (%v)", h2.Hash, err)
	}
	dst := openStore(t)
	var got []SessionChange
	dst.OnSessionChange(func(c SessionChange) { got = append(got, c) })
	if err := dst.Restore(bytes.NewReader(snapshotBytes(t, s))); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, dumpRaw(t, dst), dumpRaw(t, s))
	if len(got) != 1 || !got[0].Reset {
		t.Fatalf("restore told %+v", got)
	}

	// A damaged session record fails the scan.
	err = s.db.Update(func(tx *bolt.Tx) error {
		return newReader(tx, s.path).table(bucketSessions).Put(sessionKey("s9"), []byte{1, '{'})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Verify(); err == nil || !strings.Contains(err.Error(), "session") {
		t.Fatalf("Verify of a bad session record: %v", err)
	}
}

// Session info blocks like a single key: once seen missing, only its
// creation ends the wait, not other sessions' changes. The read barrier
// hook makes one commit ahead of each pass, so the test knows what each
// pass saw, and a commit wakes the wait of the pass before it.
func TestSession_BlockingInfo(t *testing.T) {
	s := openStore(t)
	createSession(t, s, 1, Session{ID: "a"})
	createSession(t, s, 2, Session{ID: "b"})
	pass := 0
	before := func(context.Context) error {
		pass++
		switch pass {
		case 1: // seen missing at 3: waits past 3
			apply(t, s, 3, &Command{Op: OpSessionDestroy, Key: "a"})
		case 2: // missing again at 4: must wait on, not answer
			apply(t, s, 4, &Command{Op: OpSessionDestroy, Key: "b"})
		case 3:
			createSession(t, s, 5, Session{ID: "late"})
		}
		return nil
	}
	r, err := s.BlockingQuery(context.Background(), Query{Kind: QuerySession, Key: "late"}, Block{MinIndex: 3, Wait: time.Minute}, before)
	if err != nil || pass != 3 || !r.Found || r.Index != 5 || len(r.Sessions) != 1 {
		t.Fatalf("after %d passes: %+v %v", pass, r, err)
	}
}
