package storage

import (
	"bytes"
	"os"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func setPolicy(id, name, rules string, index uint64) *Command {
	return &Command{Op: OpACLSetPolicy, Key: id, Index: index, Value: EncodeACLPolicy(ACLPolicy{ID: id, Name: name, Rules: rules})}
}

func newToken(accessor, secret string, policies ...string) ACLToken {
	return ACLToken{AccessorID: accessor, SecretHash: HashSecret(secret), Policies: policies, CreateTime: time.Unix(1700000000, 0).UTC()}
}

func setToken(t ACLToken, index uint64) *Command {
	return &Command{Op: OpACLSetToken, Key: t.AccessorID, Index: index, Value: EncodeACLToken(t)}
}

func TestACL_Policies(t *testing.T) {
	s := openStore(t)
	if !apply(t, s, 1, setPolicy("p1", "readers", `key_prefix "" { policy = "read" }`, 0)) {
		t.Fatal("create refused")
	}
	if apply(t, s, 2, setPolicy("p1", "other", "", 0)) {
		t.Fatal("a second create of the same ID was taken")
	}
	if apply(t, s, 3, setPolicy("p2", "readers", "", 0)) {
		t.Fatal("a second policy with a taken name was created")
	}
	if apply(t, s, 4, setPolicy("p1", "renamed", "", 99)) {
		t.Fatal("an update with a stale ModifyIndex was taken")
	}
	if !apply(t, s, 5, setPolicy("p1", "renamed", `key "a" { policy = "write" }`, 1)) {
		t.Fatal("an update with the right ModifyIndex was refused")
	}
	p, found, err := s.ACLPolicy("p1")
	if err != nil || !found {
		t.Fatalf("ACLPolicy: %v %v", found, err)
	}
	if p.Name != "renamed" || p.CreateIndex != 1 || p.ModifyIndex != 5 || p.Rules != `key "a" { policy = "write" }` {
		t.Fatalf("policy after update: %+v", p)
	}
	// The old name is free again.
	if !apply(t, s, 6, setPolicy("p2", "readers", "", 0)) {
		t.Fatal("the freed name could not be reused")
	}
	all, err := s.ACLPolicies()
	if err != nil || len(all) != 2 || all[0].ID != "p1" || all[1].ID != "p2" {
		t.Fatalf("ACLPolicies = %+v, %v", all, err)
	}
	if !apply(t, s, 7, &Command{Op: OpACLDeletePolicy, Key: "p1"}) {
		t.Fatal("delete refused")
	}
	if _, found, _ := s.ACLPolicy("p1"); found {
		t.Fatal("deleted policy still found")
	}
	// ACL writes are not KV writes: blocked KV readers must not wake.
	if kv := mustKVIndex(t, s); kv != 0 {
		t.Fatalf("KV index moved to %d by ACL writes", kv)
	}
}

func TestACL_Tokens(t *testing.T) {
	s := openStore(t)
	tok := newToken("acc-1", "secret-1", "p1")
	tok.Description = "first"
	if !apply(t, s, 1, setToken(tok, 0)) {
		t.Fatal("create refused")
	}
	// The same secret under another accessor would make lookups ambiguous.
	if apply(t, s, 2, setToken(newToken("acc-2", "secret-1"), 0)) {
		t.Fatal("a token reusing a secret was created")
	}
	if apply(t, s, 3, setToken(ACLToken{AccessorID: "acc-3", SecretHash: []byte("short")}, 0)) {
		t.Fatal("a token with a malformed secret hash was created")
	}
	got, found, err := s.ACLTokenBySecret(HashSecret("secret-1"))
	if err != nil || !found || got.AccessorID != "acc-1" || got.Description != "first" || got.CreateIndex != 1 {
		t.Fatalf("by secret: %+v %v %v", got, found, err)
	}
	if _, found, _ := s.ACLTokenBySecret(HashSecret("secret-2")); found {
		t.Fatal("an unknown secret resolved")
	}
	// An update cannot change the secret, whatever it carries.
	upd := newToken("acc-1", "attacker-chosen", "p2")
	upd.Description = "second"
	if !apply(t, s, 4, setToken(upd, 1)) {
		t.Fatal("update refused")
	}
	if _, found, _ := s.ACLTokenBySecret(HashSecret("attacker-chosen")); found {
		t.Fatal("an update replaced the secret")
	}
	got, _, _ = s.ACLToken("acc-1")
	if got.Description != "second" || len(got.Policies) != 1 || got.Policies[0] != "p2" || !bytes.Equal(got.SecretHash, HashSecret("secret-1")) || got.CreateIndex != 1 || got.ModifyIndex != 4 {
		t.Fatalf("after update: %+v", got)
	}
	if apply(t, s, 5, setToken(newToken("missing", "x"), 3)) {
		t.Fatal("an update of a missing token created it")
	}
	if !apply(t, s, 6, &Command{Op: OpACLDeleteToken, Key: "acc-1"}) {
		t.Fatal("delete refused")
	}
	if _, found, _ := s.ACLTokenBySecret(HashSecret("secret-1")); found {
		t.Fatal("a deleted token's secret still resolves")
	}
	if all, _ := s.ACLTokens(); len(all) != 0 {
		t.Fatalf("tokens left: %+v", all)
	}
}

func TestACL_BootstrapOnce(t *testing.T) {
	s := openStore(t)
	if done, _, _ := s.ACLBootstrapped(); done {
		t.Fatal("a fresh store claims to be bootstrapped")
	}
	a := newToken("boot-a", "sa", "00000000-0000-0000-0000-000000000001")
	b := newToken("boot-b", "sb", "00000000-0000-0000-0000-000000000001")
	// Two bootstraps that race commit one after the other in the log; in
	// the same batch or not, the second must lose.
	res := mustApplyBatch(t, s, []Applied{
		{Index: 1, Cmd: &Command{Op: OpACLBootstrap, Key: a.AccessorID, Value: EncodeACLToken(a)}},
		{Index: 2, Cmd: &Command{Op: OpACLBootstrap, Key: b.AccessorID, Value: EncodeACLToken(b)}},
	})
	if !res[0].OK || res[1].OK {
		t.Fatalf("bootstrap results %+v, want exactly the first to win", res)
	}
	if _, found, _ := s.ACLTokenBySecret(HashSecret("sb")); found {
		t.Fatal("the losing bootstrap created its token")
	}
	if done, idx, _ := s.ACLBootstrapped(); !done || idx != 1 {
		t.Fatalf("ACLBootstrapped = %v, %d", done, idx)
	}
	// Deleting the bootstrap token does not reopen the bootstrap.
	apply(t, s, 3, &Command{Op: OpACLDeleteToken, Key: a.AccessorID})
	if apply(t, s, 4, &Command{Op: OpACLBootstrap, Key: b.AccessorID, Value: EncodeACLToken(b)}) {
		t.Fatal("a bootstrap after the token was deleted succeeded")
	}
}

// Many goroutines racing to bootstrap, each through its own apply as
// separate log entries would be: exactly one wins.
func TestACL_ConcurrentBootstrap(t *testing.T) {
	s := openStore(t)
	var mu sync.Mutex
	idx := uint64(0)
	wins := 0
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			tok := newToken("acc-"+string(rune('a'+i)), "secret-"+string(rune('a'+i)))
			mu.Lock()
			defer mu.Unlock()
			idx++
			if apply(t, s, idx, &Command{Op: OpACLBootstrap, Key: tok.AccessorID, Value: EncodeACLToken(tok)}) {
				wins++
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d bootstraps won, want 1", wins)
	}
	if all, _ := s.ACLTokens(); len(all) != 1 {
		t.Fatalf("%d tokens stored, want 1", len(all))
	}
}

// The secret must not be recoverable from the state file (nor, since
// snapshots are copies of it, from a snapshot).
func TestACL_SecretNotStored(t *testing.T) {
	s := openStore(t)
	secret := "7f1c2a9e-5b3d-4e6f-8a1b-0c9d8e7f6a5b"
	apply(t, s, 1, &Command{Op: OpACLBootstrap, Key: "acc", Value: EncodeACLToken(newToken("acc", secret))})
	apply(t, s, 2, setToken(newToken("acc2", secret+"-2"), 0))
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range []string{secret, secret + "-2", "7f1c2a9e"} {
		if bytes.Contains(data, []byte(needle)) {
			t.Fatalf("the state file contains %q", needle)
		}
	}
	if !bytes.Contains(data, HashSecret(secret)) {
		t.Fatal("the state file lacks the secret's hash: the scan looked at the wrong file")
	}
}

func TestACL_SnapshotRestore(t *testing.T) {
	src := openStore(t)
	apply(t, src, 1, setPolicy("p1", "readers", "", 0))
	apply(t, src, 2, &Command{Op: OpACLBootstrap, Key: "acc", Value: EncodeACLToken(newToken("acc", "s"))})
	var buf bytes.Buffer
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	dst := openStore(t)
	if err := dst.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := dst.ACLTokenBySecret(HashSecret("s")); !found {
		t.Fatal("token lost in the snapshot")
	}
	if done, _, _ := dst.ACLBootstrapped(); !done {
		t.Fatal("bootstrap marker lost in the snapshot")
	}
	if _, found, _ := dst.ACLPolicy("p1"); !found {
		t.Fatal("policy lost in the snapshot")
	}
}

// A snapshot from before ACLs (no acl bucket) restores, with empty ACL
// tables; a snapshot with a corrupt ACL record is refused.
func TestACL_RestoreOldAndCorrupt(t *testing.T) {
	snapshotOf := func(edit func(tx *bolt.Tx) error) []byte {
		src := openStore(t)
		apply(t, src, 1, set("k", "v", 0))
		src.mu.RLock()
		if err := src.db.Update(edit); err != nil {
			t.Fatal(err)
		}
		src.mu.RUnlock()
		// Straight from bbolt: Snapshot.WriteTo would refuse the bad one.
		return rawSnapshotBytes(t, src)
	}
	old := snapshotOf(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketACL) })
	dst := openStore(t)
	if err := dst.Restore(bytes.NewReader(old)); err != nil {
		t.Fatalf("restoring a pre-ACL snapshot: %v", err)
	}
	if toks, err := dst.ACLTokens(); err != nil || len(toks) != 0 {
		t.Fatalf("ACLTokens after a pre-ACL restore: %v %v", toks, err)
	}
	bad := snapshotOf(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketACL).Put(aclKey(aclTokenPrefix, "x"), []byte{1, '{'})
	})
	if err := dst.Restore(bytes.NewReader(bad)); err == nil {
		t.Fatal("a snapshot with a corrupt token record was restored")
	}
	if e, found, _ := mustGet(t, dst, "k"); !found || string(e.Value) != "v" {
		t.Fatal("the refused restore changed the state")
	}
}
