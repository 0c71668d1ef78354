package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// openStore opens a fresh store in a temporary directory, closed at cleanup.
func openStore(t testing.TB) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "state.db"))
}

func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func set(key, value string, flags uint64) *Command {
	return &Command{Op: OpSet, Key: key, Value: []byte(value), Flags: flags}
}

// mustApplyBatch applies batch and fails the test if the commit fails.
func mustApplyBatch(t testing.TB, s *Store, batch []Applied) []Result {
	t.Helper()
	res, err := s.ApplyBatch(batch)
	if err != nil {
		t.Fatalf("ApplyBatch: %v", err)
	}
	return res
}

// mustApply applies one command and fails the test if the commit fails.
func mustApply(t testing.TB, s *Store, idx uint64, cmd *Command) Result {
	t.Helper()
	return mustApplyBatch(t, s, []Applied{{Index: idx, Cmd: cmd}})[0]
}

// apply applies cmd at idx and checks the result names that index.
func apply(t testing.TB, s *Store, idx uint64, cmd *Command) bool {
	t.Helper()
	r := mustApply(t, s, idx, cmd)
	if r.Index != idx {
		t.Fatalf("Apply(%d) returned index %d", idx, r.Index)
	}
	return r.OK
}

func mustGet(t testing.TB, s *Store, key string) (Entry, bool, uint64) {
	t.Helper()
	e, found, idx, err := s.Get(key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return e, found, idx
}

func mustKVIndex(t testing.TB, s *Store) uint64 {
	t.Helper()
	idx, err := s.KVIndex()
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func listIndex(t testing.TB, s *Store, prefix string) uint64 {
	t.Helper()
	_, idx, err := s.List(prefix)
	if err != nil {
		t.Fatalf("List(%q): %v", prefix, err)
	}
	return idx
}

func mustKeys(t testing.TB, s *Store, prefix, sep string) ([]string, uint64) {
	t.Helper()
	keys, idx, err := s.Keys(prefix, sep)
	if err != nil {
		t.Fatalf("Keys(%q, %q): %v", prefix, sep, err)
	}
	return keys, idx
}

// rawState is every bucket of the state file, byte for byte.
type rawState map[string]map[string]string

func dumpRaw(t testing.TB, s *Store) rawState {
	t.Helper()
	st := rawState{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string]string{}
			st[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = string(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func requireSameState(t testing.TB, got, want rawState) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	for b := range mergeKeys(got, want) {
		for k := range mergeKeys(got[b], want[b]) {
			g, gok := got[b][k]
			w, wok := want[b][k]
			if g != w || gok != wok {
				t.Errorf("bucket %s key %q: got %q (present %v), want %q (present %v)", b, k, g, gok, w, wok)
			}
		}
	}
	t.FailNow()
}

func mergeKeys[V any](a, b map[string]V) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// putRawEntry stores e as it is, for states no command produces yet
// (sessions and lock indexes).
func putRawEntry(t testing.TB, s *Store, e Entry) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		return newReader(tx, s.path).table(bucketKV).Put([]byte(e.Key), encodeEntry(&e))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStore_Set_CreateThenOverwrite(t *testing.T) {
	s := openStore(t)
	if !apply(t, s, 5, set("a", "one", 7)) {
		t.Fatal("set answered false")
	}
	e, found, idx := mustGet(t, s, "a")
	want := Entry{Key: "a", Value: []byte("one"), Flags: 7, CreateIndex: 5, ModifyIndex: 5}
	if !found || !reflect.DeepEqual(e, want) || idx != 5 {
		t.Fatalf("after create: %+v found=%v idx=%d", e, found, idx)
	}
	apply(t, s, 9, set("a", "two", 0))
	e, _, idx = mustGet(t, s, "a")
	want = Entry{Key: "a", Value: []byte("two"), Flags: 0, CreateIndex: 5, ModifyIndex: 9}
	if !reflect.DeepEqual(e, want) || idx != 9 {
		t.Fatalf("after overwrite: %+v idx=%d, want %+v idx=9", e, idx, want)
	}
	if kv := mustKVIndex(t, s); kv != 9 {
		t.Fatalf("KVIndex = %d, want 9", kv)
	}
}

func TestStore_Set_KeepsSessionAndLockIndex(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, &Command{Op: OpNoop})
	putRawEntry(t, s, Entry{Key: "lock", Value: []byte("holder"), CreateIndex: 1, ModifyIndex: 1, LockIndex: 3, Session: "sess-1"})
	apply(t, s, 2, set("lock", "new", 9))
	e, _, _ := mustGet(t, s, "lock")
	want := Entry{Key: "lock", Value: []byte("new"), Flags: 9, CreateIndex: 1, ModifyIndex: 2, LockIndex: 3, Session: "sess-1"}
	if !reflect.DeepEqual(e, want) {
		t.Fatalf("got %+v, want %+v", e, want)
	}
	// The same holds for a successful CAS.
	apply(t, s, 3, &Command{Op: OpCAS, Key: "lock", Value: []byte("cas"), Index: 2})
	e, _, _ = mustGet(t, s, "lock")
	if e.Session != "sess-1" || e.LockIndex != 3 || e.CreateIndex != 1 || e.ModifyIndex != 3 {
		t.Fatalf("after CAS: %+v", e)
	}
}

func TestStore_Set_NoopKeepsIndexes(t *testing.T) {
	s := openStore(t)
	apply(t, s, 3, set("a", "v", semaphoreFlags))
	apply(t, s, 4, set("other", "x", 0))
	before := mustKVIndex(t, s)
	ch := s.Changed()
	if !apply(t, s, 8, set("a", "v", semaphoreFlags)) {
		t.Fatal("no-op set answered false")
	}
	e, _, idx := mustGet(t, s, "a")
	if e.ModifyIndex != 3 || idx != 3 {
		t.Fatalf("no-op set moved ModifyIndex to %d (index %d)", e.ModifyIndex, idx)
	}
	if kv := mustKVIndex(t, s); kv != before {
		t.Fatalf("no-op set moved KVIndex from %d to %d", before, kv)
	}
	if got := listIndex(t, s, "a"); got != 3 {
		t.Fatalf("no-op set moved the prefix index to %d", got)
	}
	if s.AppliedIndex() != 8 || !isClosed(ch) {
		t.Fatal("a no-op set must still advance the applied index and signal it")
	}
	// An empty value equals a missing one.
	apply(t, s, 9, set("empty", "", 0))
	apply(t, s, 10, &Command{Op: OpSet, Key: "empty", Value: nil})
	if e, _, _ := mustGet(t, s, "empty"); e.ModifyIndex != 9 {
		t.Fatalf("nil after empty value moved ModifyIndex to %d", e.ModifyIndex)
	}
	// A change of flags alone is a change.
	apply(t, s, 11, set("a", "v", 1))
	if e, _, _ := mustGet(t, s, "a"); e.ModifyIndex != 11 || e.Flags != 1 {
		t.Fatalf("flag change not applied: %+v", e)
	}
}

func TestStore_Flags_FullUint64(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openAt(t, path)
	apply(t, s, 1, set("sem", "", semaphoreFlags))
	apply(t, s, 2, set("max", "", ^uint64(0)))
	s.Close()
	s = openAt(t, path)
	entries, _, err := s.List("")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Flags != ^uint64(0) || entries[1].Flags != semaphoreFlags {
		t.Fatalf("flags after reopen: %+v", entries)
	}
}

func TestStore_CAS(t *testing.T) {
	s := openStore(t)
	cas := func(idx uint64, key, val string, want uint64) bool {
		return apply(t, s, idx, &Command{Op: OpCAS, Key: key, Value: []byte(val), Index: want})
	}
	if cas(1, "k", "created", 5) {
		t.Fatal("cas N>0 on a missing key succeeded")
	}
	if _, found, _ := mustGet(t, s, "k"); found {
		t.Fatal("failed cas created the key")
	}
	if !cas(2, "k", "created", 0) {
		t.Fatal("cas 0 on a missing key failed")
	}
	if cas(3, "k", "again", 0) {
		t.Fatal("cas 0 on an existing key succeeded")
	}
	if cas(4, "k", "stale", 1) {
		t.Fatal("cas with a stale index succeeded")
	}
	e, _, _ := mustGet(t, s, "k")
	if string(e.Value) != "created" || e.ModifyIndex != 2 {
		t.Fatalf("failed cas changed the entry: %+v", e)
	}
	if kv := mustKVIndex(t, s); kv != 2 {
		t.Fatalf("failed cas moved KVIndex to %d", kv)
	}
	if !cas(5, "k", "updated", 2) {
		t.Fatal("cas with the current ModifyIndex failed")
	}
	e, _, _ = mustGet(t, s, "k")
	if string(e.Value) != "updated" || e.CreateIndex != 2 || e.ModifyIndex != 5 {
		t.Fatalf("after cas: %+v", e)
	}
	// A delete then a cas 0 recreates the key: a new incarnation.
	apply(t, s, 6, &Command{Op: OpDelete, Key: "k"})
	if !cas(7, "k", "reborn", 0) {
		t.Fatal("cas 0 after delete failed")
	}
	if e, _, _ := mustGet(t, s, "k"); e.CreateIndex != 7 {
		t.Fatalf("recreated key kept CreateIndex %d", e.CreateIndex)
	}
}

func TestStore_Delete(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a", "1", 0))
	apply(t, s, 2, set("b", "2", 0))
	if !apply(t, s, 3, &Command{Op: OpDelete, Key: "a"}) {
		t.Fatal("delete answered false")
	}
	_, found, idx := mustGet(t, s, "a")
	if found || idx != 3 {
		t.Fatalf("deleted key: found=%v index=%d, want false 3", found, idx)
	}
	if !apply(t, s, 4, &Command{Op: OpDelete, Key: "missing"}) {
		t.Fatal("delete of a missing key answered false")
	}
	if kv := mustKVIndex(t, s); kv != 3 {
		t.Fatalf("delete of a missing key moved KVIndex to %d", kv)
	}
	if _, found, _ := mustGet(t, s, "b"); !found {
		t.Fatal("delete removed another key")
	}
}

func TestStore_DeleteCAS(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("k", "v", 0))
	if !apply(t, s, 2, &Command{Op: OpDeleteCAS, Key: "missing", Index: 99}) {
		t.Fatal("delete-cas of a missing key must answer true")
	}
	if apply(t, s, 3, &Command{Op: OpDeleteCAS, Key: "k", Index: 7}) {
		t.Fatal("delete-cas with a wrong index succeeded")
	}
	if apply(t, s, 4, &Command{Op: OpDeleteCAS, Key: "k", Index: 0}) {
		t.Fatal("delete-cas 0 deleted an existing key")
	}
	if _, found, _ := mustGet(t, s, "k"); !found {
		t.Fatal("failed delete-cas removed the key")
	}
	if kv := mustKVIndex(t, s); kv != 1 {
		t.Fatalf("failed delete-cas moved KVIndex to %d", kv)
	}
	if !apply(t, s, 5, &Command{Op: OpDeleteCAS, Key: "k", Index: 1}) {
		t.Fatal("delete-cas with the right index failed")
	}
	if _, found, idx := mustGet(t, s, "k"); found || idx != 5 {
		t.Fatalf("after delete-cas: found=%v index=%d", found, idx)
	}
}

func TestStore_DeleteTree(t *testing.T) {
	s := openStore(t)
	for i, k := range []string{"we", "web", "web/a", "web/b/c", "website", "wez", "x"} {
		apply(t, s, uint64(i+1), set(k, k, 0))
	}
	if !apply(t, s, 10, &Command{Op: OpDeleteTree, Key: "web"}) {
		t.Fatal("delete-tree answered false")
	}
	keys, _ := mustKeys(t, s, "", "")
	if want := []string{"we", "wez", "x"}; !slices.Equal(keys, want) {
		t.Fatalf("after delete-tree web: %q, want %q", keys, want)
	}
	if kv := mustKVIndex(t, s); kv != 10 {
		t.Fatalf("KVIndex = %d, want 10", kv)
	}
	// Nothing matches: nothing changes.
	before := dumpRaw(t, s)
	apply(t, s, 11, &Command{Op: OpDeleteTree, Key: "nothing/"})
	after := dumpRaw(t, s)
	delete(before, string(bucketMeta))
	delete(after, string(bucketMeta))
	requireSameState(t, after, before)
	if kv := mustKVIndex(t, s); kv != 10 {
		t.Fatalf("empty delete-tree moved KVIndex to %d", kv)
	}
	// The empty prefix deletes everything.
	apply(t, s, 12, &Command{Op: OpDeleteTree, Key: ""})
	if keys, idx := mustKeys(t, s, "", ""); len(keys) != 0 || idx != 12 {
		t.Fatalf("after delete-tree \"\": %q index %d", keys, idx)
	}
}

func TestStore_Nodes(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, &Command{Op: OpRegisterNode, Key: "n1", Value: []byte("10.0.0.1:8500")})
	apply(t, s, 2, &Command{Op: OpRegisterNode, Key: "n2", Value: []byte("10.0.0.2:8500")})
	apply(t, s, 3, &Command{Op: OpRegisterNode, Key: "n1", Value: []byte("10.0.0.9:8500")})
	if got := s.NodeAddr("n1"); got != "10.0.0.9:8500" {
		t.Fatalf("NodeAddr(n1) = %q", got)
	}
	if !apply(t, s, 4, &Command{Op: OpDeregisterNode, Key: "n2"}) || !apply(t, s, 5, &Command{Op: OpDeregisterNode, Key: "never"}) {
		t.Fatal("deregister answered false")
	}
	addrs, err := s.NodeAddrs()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"n1": "10.0.0.9:8500"}; !reflect.DeepEqual(addrs, want) {
		t.Fatalf("NodeAddrs = %v, want %v", addrs, want)
	}
	if s.NodeAddr("n2") != "" {
		t.Fatal("deregistered node still has an address")
	}
	// The node registry is not KV data.
	if kv := mustKVIndex(t, s); kv != 0 {
		t.Fatalf("node registration moved KVIndex to %d", kv)
	}
	if keys, _ := mustKeys(t, s, "", ""); len(keys) != 0 {
		t.Fatalf("nodes leaked into the KV: %q", keys)
	}
}

func TestStore_Noop(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a", "v", 0))
	before := dumpRaw(t, s)
	if !apply(t, s, 2, &Command{Op: OpNoop, Key: "a", Value: []byte("ignored")}) {
		t.Fatal("noop answered false")
	}
	if s.AppliedIndex() != 2 {
		t.Fatalf("AppliedIndex = %d, want 2", s.AppliedIndex())
	}
	after := dumpRaw(t, s)
	if v, ok := unseal(bucketMeta, metaApplied, []byte(after["meta"]["applied"])); !ok || decodeUint(v) != 2 {
		t.Fatal("applied index not stored")
	}
	delete(before["meta"], "applied")
	delete(after["meta"], "applied")
	requireSameState(t, after, before)
}

// An invalid key must be refused, not fail the commit: a failed commit
// panics, and every replica would panic on the same entry at every replay.
func TestStore_InvalidKeysAreRefused(t *testing.T) {
	s := openStore(t)
	long := strings.Repeat("k", MaxKeySize+1)
	cmds := []*Command{
		set("", "v", 0),
		set(long, "v", 0),
		{Op: OpCAS, Key: "", Index: 0},
		{Op: OpCAS, Key: long, Index: 0},
		{Op: OpRegisterNode, Key: "", Value: []byte("addr")},
		{Op: OpRegisterNode, Key: long, Value: []byte("addr")},
	}
	for i, c := range cmds {
		if apply(t, s, uint64(i+1), c) {
			t.Errorf("%v with a %d-byte key answered true", c.Op, len(c.Key))
		}
	}
	// Deletes of such keys have nothing to delete and succeed.
	for i, c := range []*Command{
		{Op: OpDelete, Key: ""}, {Op: OpDelete, Key: long},
		{Op: OpDeleteCAS, Key: long, Index: 3}, {Op: OpDeleteTree, Key: long},
		{Op: OpDeregisterNode, Key: ""},
	} {
		if !apply(t, s, uint64(100+i), c) {
			t.Errorf("%v with a %d-byte key answered false", c.Op, len(c.Key))
		}
	}
	if s.AppliedIndex() != 104 {
		t.Fatalf("AppliedIndex = %d, want 104", s.AppliedIndex())
	}
	if keys, _ := mustKeys(t, s, "", ""); len(keys) != 0 {
		t.Fatalf("refused writes stored keys: %d", len(keys))
	}
	// The longest valid key works.
	max := strings.Repeat("m", MaxKeySize)
	if !apply(t, s, 200, set(max, "v", 0)) {
		t.Fatal("a MaxKeySize key was refused")
	}
	if _, found, _ := mustGet(t, s, max); !found {
		t.Fatal("a MaxKeySize key was not stored")
	}
}

func TestStore_UnknownOpFailsTheWholeBatch(t *testing.T) {
	s := openStore(t)
	_, err := s.ApplyBatch([]Applied{{Index: 1, Cmd: set("a", "v", 0)}, {Index: 2, Cmd: &Command{Op: 0, Key: "a"}}})
	if !errors.Is(err, ErrBadCommand) {
		t.Fatalf("applying an unknown op: %v, want ErrBadCommand", err)
	}
	if s.AppliedIndex() != 0 {
		t.Fatal("the failed batch advanced the applied index")
	}
	if _, found, _ := mustGet(t, s, "a"); found {
		t.Fatal("the failed batch was partly committed")
	}
}

// history is a log of non-idempotent commands: re-applying any prefix of it
// on top of the final state would visibly change that state.
func history() []Applied {
	return []Applied{
		{1, set("a", "1", 0)},
		{2, set("b", "1", 0)},
		{3, &Command{Op: OpCAS, Key: "c", Value: []byte("created"), Index: 0}},
		{4, set("a", "2", 0)},
		{5, &Command{Op: OpDelete, Key: "b"}},
		{6, &Command{Op: OpRegisterNode, Key: "n1", Value: []byte("addr1")}},
		{7, nil}, // a configuration change
		{8, &Command{Op: OpDeleteCAS, Key: "c", Index: 3}},
		{9, set("dir/x", "1", semaphoreFlags)},
		{10, &Command{Op: OpDeleteTree, Key: "dir/"}},
		{11, &Command{Op: OpDeregisterNode, Key: "n1"}},
		{12, &Command{Op: OpNoop}},
	}
}

func TestStore_Replay_IsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openAt(t, path)
	res := mustApplyBatch(t, s, history())
	for i, r := range res {
		if r.Index != uint64(i+1) {
			t.Fatalf("result %d has index %d", i, r.Index)
		}
	}
	if !res[2].OK || !res[7].OK {
		t.Fatal("conditional writes of the history failed")
	}
	want := dumpRaw(t, s)
	if s.AppliedIndex() != 12 {
		t.Fatalf("AppliedIndex = %d", s.AppliedIndex())
	}

	replay := func(s *Store) {
		t.Helper()
		ch := s.Changed()
		h := history()
		for _, batch := range [][]Applied{h, h[:1], h[:4], h[3:9], h[11:]} {
			res := mustApplyBatch(t, s, batch)
			for i, r := range res {
				if r.Index != batch[i].Index {
					t.Fatalf("replayed result %d has index %d", i, r.Index)
				}
			}
			requireSameState(t, dumpRaw(t, s), want)
		}
		if s.AppliedIndex() != 12 {
			t.Fatalf("replay changed AppliedIndex to %d", s.AppliedIndex())
		}
		if isClosed(ch) {
			t.Fatal("a fully skipped batch signalled a change")
		}
	}
	replay(s)

	// After a restart the file, not memory, knows what was applied.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if s.AppliedIndex() != 12 {
		t.Fatalf("AppliedIndex after reopen = %d, want 12", s.AppliedIndex())
	}
	requireSameState(t, dumpRaw(t, s), want)
	replay(s)

	// A batch straddling the applied index applies only its new part.
	res = mustApplyBatch(t, s, []Applied{{11, set("a", "replayed", 0)}, {12, set("a", "replayed", 0)}, {13, set("z", "new", 0)}})
	if !res[2].OK {
		t.Fatal("new entry after skipped ones failed")
	}
	if e, _, _ := mustGet(t, s, "a"); string(e.Value) != "2" {
		t.Fatalf("a skipped entry was applied: a=%q", e.Value)
	}
	if e, found, _ := mustGet(t, s, "z"); !found || e.ModifyIndex != 13 {
		t.Fatalf("z = %+v found=%v", e, found)
	}
}

func TestStore_ApplyBatch_NilCmdAdvancesAppliedIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openAt(t, path)
	apply(t, s, 1, set("a", "v", 0))
	ch := s.Changed()
	res := mustApplyBatch(t, s, []Applied{{Index: 5}})
	if res[0].Index != 5 || s.AppliedIndex() != 5 || !isClosed(ch) {
		t.Fatalf("nil Cmd: result %+v, AppliedIndex %d, signalled %v", res[0], s.AppliedIndex(), isClosed(ch))
	}
	if kv := mustKVIndex(t, s); kv != 1 {
		t.Fatalf("nil Cmd moved KVIndex to %d", kv)
	}
	s.Close()
	if s = openAt(t, path); s.AppliedIndex() != 5 {
		t.Fatalf("AppliedIndex after reopen = %d, want 5", s.AppliedIndex())
	}
}

func TestStore_ApplyBatch_OutOfOrderEntriesAreSkipped(t *testing.T) {
	s := openStore(t)
	res := mustApplyBatch(t, s, []Applied{
		{5, set("k", "five", 0)},
		{5, set("k", "dup", 0)},
		{4, set("k", "older", 0)},
		{6, &Command{Op: OpCAS, Key: "k", Value: []byte("six"), Index: 5}},
	})
	if !res[0].OK || res[1].OK || res[2].OK || !res[3].OK {
		t.Fatalf("results %+v", res)
	}
	if e, _, _ := mustGet(t, s, "k"); string(e.Value) != "six" || e.CreateIndex != 5 {
		t.Fatalf("k = %+v", e)
	}
}

func TestStore_Index_GetMissingKey(t *testing.T) {
	s := openStore(t)
	if _, found, idx := mustGet(t, s, "nope"); found || idx != 0 {
		t.Fatalf("fresh store: found=%v index=%d", found, idx)
	}
	apply(t, s, 3, set("a", "v", 0))
	apply(t, s, 4, &Command{Op: OpNoop})
	if _, _, idx := mustGet(t, s, "nope"); idx != 3 {
		t.Fatalf("missing key index = %d, want the KV-wide 3", idx)
	}
	apply(t, s, 6, &Command{Op: OpDelete, Key: "a"})
	if _, found, idx := mustGet(t, s, "a"); found || idx != 6 {
		t.Fatalf("deleted key: found=%v index=%d, want 6", found, idx)
	}
	if _, _, idx := mustGet(t, s, "nope"); idx != 6 {
		t.Fatalf("missing key index = %d, want 6", idx)
	}
}

func TestStore_Index_Prefixes(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("web/a", "1", 0))
	apply(t, s, 2, set("web/b", "1", 0))
	apply(t, s, 3, set("db/x", "1", 0))
	check := func(prefix string, want uint64) {
		t.Helper()
		if got := listIndex(t, s, prefix); got != want {
			t.Errorf("List(%q) index = %d, want %d", prefix, got, want)
		}
		if _, got := mustKeys(t, s, prefix, ""); got != want {
			t.Errorf("Keys(%q) index = %d, want %d", prefix, got, want)
		}
		if _, got := mustKeys(t, s, prefix, "/"); got != want {
			t.Errorf("Keys(%q, /) index = %d, want %d", prefix, got, want)
		}
	}
	check("web/", 2)
	check("db/", 3)
	check("", 3)
	check("zzz", 3) // nothing under it: the KV-wide index

	// Deleting web/a, not the newest key under web/, must still raise the
	// prefix index, or a blocked List("web/") would never wake.
	apply(t, s, 4, &Command{Op: OpDelete, Key: "web/a"})
	check("web/", 4)
	check("web/a", 4)
	check("db/", 3) // unrelated prefix untouched
	check("", 4)

	// The empty prefix reports the KV-wide index even above every live key.
	apply(t, s, 5, &Command{Op: OpDelete, Key: "db/x"})
	check("", 5)
	check("db/", 5)

	// delete-tree raises the prefix it deleted and every prefix covering it.
	apply(t, s, 6, set("web/c/1", "1", 0))
	apply(t, s, 7, set("app/x", "1", 0))
	apply(t, s, 8, &Command{Op: OpDeleteTree, Key: "web/"})
	check("web/", 8)
	check("we", 8)
	check("app/", 7)

	// A live key's own tombstone is dropped, but the prefix still reports
	// the newer write.
	apply(t, s, 9, set("web/a", "back", 0))
	check("web/", 9)
	check("web/a", 9)
}

// Regression: before the fix, tombstones under a prefix survived a
// delete-tree of a shorter prefix, and the index of the narrower prefix
// fell back to its old tombstone: it went backwards (3 -> 2 here) and a
// blocked List("web/x") never saw its keys deleted.
func TestStore_Index_DeleteTreeRaisesNarrowerPrefix(t *testing.T) {
	for _, tree := range []string{"web/", "w", ""} {
		t.Run(fmt.Sprintf("delete-tree %q", tree), func(t *testing.T) {
			s := openStore(t)
			apply(t, s, 1, set("web/x0", "v", 0))
			apply(t, s, 2, &Command{Op: OpDelete, Key: "web/x0"})
			apply(t, s, 3, set("web/x1", "v", 0))
			apply(t, s, 4, set("other", "v", 0))
			if got := listIndex(t, s, "web/x"); got != 3 {
				t.Fatalf("before: List(web/x) index = %d, want 3", got)
			}
			apply(t, s, 5, &Command{Op: OpDeleteTree, Key: tree})
			for _, p := range []string{"web/x", "web/x0", "web/x1"} {
				if got := listIndex(t, s, p); got < 5 {
					t.Errorf("after delete-tree %q: List(%q) index = %d, want >= 5", tree, p, got)
				}
			}
		})
	}
}

func TestStore_Keys_SeparatorFolding(t *testing.T) {
	s := openStore(t)
	for i, k := range []string{"web/a", "web/sub/x", "web/sub/y", "web/sub/", "web2", "a"} {
		apply(t, s, uint64(i+1), set(k, "", 0))
	}
	keys, idx := mustKeys(t, s, "web/", "/")
	if want := []string{"web/a", "web/sub/"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(web/, /) = %q, want %q", keys, want)
	}
	if idx != 4 {
		t.Fatalf("folded index = %d, want 4 (the newest key inside the folded directory)", idx)
	}
	keys, _ = mustKeys(t, s, "web/", "")
	if want := []string{"web/a", "web/sub/", "web/sub/x", "web/sub/y"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(web/) = %q, want %q", keys, want)
	}
	keys, _ = mustKeys(t, s, "", "/")
	if want := []string{"a", "web/", "web2"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(\"\", /) = %q, want %q", keys, want)
	}
	keys, _ = mustKeys(t, s, "web/sub/", "/")
	if want := []string{"web/sub/", "web/sub/x", "web/sub/y"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(web/sub/, /) = %q, want %q", keys, want)
	}
	// A multi-byte separator folds at its first occurrence.
	apply(t, s, 10, set("ns::a::b", "", 0))
	apply(t, s, 11, set("ns::a::c", "", 0))
	apply(t, s, 12, set("ns::b", "", 0))
	keys, _ = mustKeys(t, s, "ns::", "::")
	if want := []string{"ns::a::", "ns::b"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(ns::, ::) = %q, want %q", keys, want)
	}
	// No match: no keys, the KV-wide index.
	if keys, idx := mustKeys(t, s, "nothing", "/"); keys != nil || idx != 12 {
		t.Fatalf("Keys(nothing) = %q index %d", keys, idx)
	}
}

func TestStore_Keys_ByteOrder(t *testing.T) {
	s := openStore(t)
	in := []string{"b", "a/", "\xff", "ä", "B", "a", "\x00", "a\xff", "aa", "ab\x00"}
	for i, k := range in {
		apply(t, s, uint64(i+1), set(k, k, 0))
	}
	want := slices.Clone(in)
	slices.Sort(want) // Go string order is byte order
	keys, _ := mustKeys(t, s, "", "")
	if !slices.Equal(keys, want) {
		t.Fatalf("Keys = %q, want %q", keys, want)
	}
	entries, _, err := s.List("")
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range entries {
		if e.Key != want[i] || string(e.Value) != want[i] {
			t.Fatalf("List[%d] = %q=%q, want %q", i, e.Key, e.Value, want[i])
		}
	}
	// A plain string prefix, not a path: "a" covers "aa" and "a/".
	keys, _ = mustKeys(t, s, "a", "")
	if want := []string{"a", "a/", "aa", "ab\x00", "a\xff"}; !slices.Equal(keys, want) {
		t.Fatalf("Keys(a) = %q, want %q", keys, want)
	}
}

func TestStore_Keys_0xffEdges(t *testing.T) {
	s := openStore(t)
	for i, k := range []string{"p\xff/a", "p\xff/b", "p\xff\xff", "q/x", "\xff\xffa", "\xff\xffb"} {
		apply(t, s, uint64(i+1), set(k, "", 0))
	}
	cases := []struct {
		prefix, sep string
		want        []string
	}{
		{"p", "/", []string{"p\xff/", "p\xff\xff"}},
		{"p\xff", "\xff", []string{"p\xff/a", "p\xff/b", "p\xff\xff"}},
		{"", "\xff", []string{"p\xff", "q/x", "\xff"}},
		{"\xff", "", []string{"\xff\xffa", "\xff\xffb"}},
		{"\xff\xff", "", []string{"\xff\xffa", "\xff\xffb"}},
		{"\xff", "\xff", []string{"\xff\xff"}},
		{"\xff\xff\xff", "", nil},
	}
	for _, tc := range cases {
		keys, idx := mustKeys(t, s, tc.prefix, tc.sep)
		if !slices.Equal(keys, tc.want) {
			t.Errorf("Keys(%q, %q) = %q, want %q", tc.prefix, tc.sep, keys, tc.want)
		}
		if li := listIndex(t, s, tc.prefix); li != idx {
			t.Errorf("Keys(%q, %q) index %d != List index %d", tc.prefix, tc.sep, idx, li)
		}
	}
	// The folded "\xff" directory's newest key is \xff\xffb (6).
	if _, idx := mustKeys(t, s, "\xff", "\xff"); idx != 6 {
		t.Errorf("Keys(\\xff, \\xff) index = %d, want 6", idx)
	}
}

func TestPrefixEnd(t *testing.T) {
	cases := []struct{ in, want string }{
		{"a", "b"},
		{"a/", "a0"},
		{"a\xff", "b"},
		{"a\xfe", "a\xff"},
		{"a\xff\xff", "b"},
		{"\x00", "\x01"},
	}
	for _, tc := range cases {
		in := []byte(tc.in)
		got := prefixEnd(in)
		if string(got) != tc.want {
			t.Errorf("prefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if string(in) != tc.in {
			t.Errorf("prefixEnd modified its input to %q", in)
		}
	}
	for _, in := range []string{"", "\xff", "\xff\xff\xff"} {
		if got := prefixEnd([]byte(in)); got != nil {
			t.Errorf("prefixEnd(%q) = %q, want nil", in, got)
		}
	}
}

func TestStore_ClosedStore(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a", "v", 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, _, err := s.Get("a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get: %v", err)
	}
	if _, _, err := s.List(""); !errors.Is(err, ErrClosed) {
		t.Errorf("List: %v", err)
	}
	if _, _, err := s.Keys("", "/"); !errors.Is(err, ErrClosed) {
		t.Errorf("Keys: %v", err)
	}
	if _, err := s.KVIndex(); !errors.Is(err, ErrClosed) {
		t.Errorf("KVIndex: %v", err)
	}
	if _, err := s.NodeAddrs(); !errors.Is(err, ErrClosed) {
		t.Errorf("NodeAddrs: %v", err)
	}
	if _, err := s.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Errorf("Snapshot: %v", err)
	}
	if err := s.Restore(bytes.NewReader(snapshotBytes(t, openStore(t)))); !errors.Is(err, ErrClosed) {
		t.Errorf("Restore on a closed store: %v, want ErrClosed", err)
	}
	if _, err := s.Apply(2, set("a", "w", 0)); !errors.Is(err, ErrClosed) {
		t.Errorf("Apply on a closed store: %v, want ErrClosed", err)
	}
}

func TestOpen_SecondOpenerFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openAt(t, path)
	s2, err := Open(path)
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a locked file succeeded")
	}
}

func TestStore_WaitApplied(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	if err := s.WaitApplied(ctx, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.WaitApplied(ctx, 3) }()
	apply(t, s, 1, set("a", "1", 0))
	apply(t, s, 2, set("a", "2", 0))
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(3) returned at applied index 2: %v", err)
	default:
	}
	mustApplyBatch(t, s, []Applied{{Index: 3}}) // a nil Cmd counts
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied(3): %v", err)
	}
	if err := s.WaitApplied(ctx, 2); err != nil {
		t.Fatalf("WaitApplied below the applied index: %v", err)
	}

	cctx, cancel := context.WithCancel(ctx)
	go func() { done <- s.WaitApplied(cctx, 100) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied after cancel: %v", err)
	}
	dctx, cancel2 := context.WithTimeout(ctx, 1)
	defer cancel2()
	if err := s.WaitApplied(dctx, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied past its deadline: %v", err)
	}
}

func TestStore_Changed(t *testing.T) {
	s := openStore(t)
	ch := s.Changed()
	if isClosed(ch) {
		t.Fatal("Changed is closed before any commit")
	}
	if s.Changed() != ch {
		t.Fatal("Changed returned a new channel without a commit")
	}
	apply(t, s, 1, set("a", "v", 0))
	if !isClosed(ch) {
		t.Fatal("commit did not close the Changed channel")
	}
	next := s.Changed()
	if next == ch || isClosed(next) {
		t.Fatal("Changed after a commit must be a new, open channel")
	}
	apply(t, s, 1, set("a", "other", 0)) // replayed: skipped
	if isClosed(next) {
		t.Fatal("a skipped entry closed the Changed channel")
	}
	apply(t, s, 2, &Command{Op: OpCAS, Key: "a", Index: 99}) // failed, but applied
	if !isClosed(next) {
		t.Fatal("applying a failed CAS did not close the Changed channel")
	}
}

// BenchmarkApplyBatch applies committed writes in batches of several sizes:
// each batch is one bbolt transaction and one fsync, so ns/cmd shows what
// applying Raft's committed entries together (raft.BatchingFSM) saves over
// one transaction per entry (batch=1).
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) { benchmarkApplyBatch(b, size) })
	}
}

func benchmarkApplyBatch(b *testing.B, batchSize int) {
	const keys = 10000
	s := openStore(b)
	idx := uint64(0)
	value := bytes.Repeat([]byte("v"), 100)
	batch := make([]Applied, 0, keys)
	for i := range keys {
		idx++
		batch = append(batch, Applied{Index: idx, Cmd: &Command{Op: OpSet, Key: fmt.Sprintf("bench/key-%05d", i), Value: value}})
	}
	mustApplyBatch(b, s, batch)
	cmds := make([]Command, batchSize)
	batch = make([]Applied, batchSize)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for j := range batch {
			v := make([]byte, 100)
			copy(v, value)
			v[0], v[1] = byte(n), byte(n>>8) // a real change, never a no-op
			cmds[j] = Command{Op: OpSet, Key: fmt.Sprintf("bench/key-%05d", (n*7919)%keys), Value: v}
			idx++
			n++
			batch[j] = Applied{Index: idx, Cmd: &cmds[j]}
		}
		mustApplyBatch(b, s, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/cmd")
}

// benchStore holds 10k keys in 100 directories of 100 keys.
func benchStore(b *testing.B) *Store {
	s := openStore(b)
	value := bytes.Repeat([]byte("v"), 100)
	batch := make([]Applied, 0, 10000)
	for i := range 10000 {
		batch = append(batch, Applied{Index: uint64(i + 1), Cmd: &Command{Op: OpSet, Key: fmt.Sprintf("dir-%02d/key-%05d", i%100, i), Value: value}})
	}
	mustApplyBatch(b, s, batch)
	return s
}

func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	keys := make([]string, 1024)
	for i := range keys {
		j := (i * 7919) % 10000
		keys[i] = fmt.Sprintf("dir-%02d/key-%05d", j%100, j)
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, found, _, err := s.Get(keys[i%len(keys)]); err != nil || !found {
			b.Fatal(found, err)
		}
		i++
	}
}

func BenchmarkList(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		entries, _, err := s.List(fmt.Sprintf("dir-%02d/", i%100))
		if err != nil || len(entries) != 100 {
			b.Fatal(len(entries), err)
		}
		i++
	}
}

// TestUnsyncedFileSurvivesCrashButNotReboot: a state file whose marker
// names this boot holds commits that are in the page cache, so it is kept;
// one whose marker names another boot may be torn, so Open discards it and
// reports that; a cleanly closed file has no marker and is kept either way.
func TestUnsyncedFileSurvivesCrashButNotReboot(t *testing.T) {
	if len(currentBootID()) == 0 {
		t.Skip("no boot id on this system: commits are fsynced")
	}
	path := filepath.Join(t.TempDir(), "kv.db")
	marker := path + unsyncedSuffix

	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("open did not mark the file unsynced: %v", err)
	}
	s.Apply(1, &Command{Op: OpSet, Key: "a", Value: []byte("1")})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("clean close left the marker: %v", err)
	}

	// Cleanly closed, then a reboot: kept.
	s = mustOpen(t, path)
	if s.Discarded() || s.AppliedIndex() != 1 {
		t.Fatalf("clean file: discarded %v, applied %d", s.Discarded(), s.AppliedIndex())
	}
	s.Apply(2, &Command{Op: OpSet, Key: "b", Value: []byte("2")})
	s.Close()

	// The process died (marker of this boot left behind): kept.
	if err := os.WriteFile(marker, append(currentBootID(), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	if s.Discarded() || s.AppliedIndex() != 2 {
		t.Fatalf("after a process crash: discarded %v, applied %d", s.Discarded(), s.AppliedIndex())
	}
	s.Close()

	// The machine rebooted before the file was flushed: discarded.
	if err := os.WriteFile(marker, []byte("another-boot\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, path)
	defer s.Close()
	if !s.Discarded() || s.AppliedIndex() != 0 {
		t.Fatalf("after a reboot: discarded %v, applied %d", s.Discarded(), s.AppliedIndex())
	}
	if _, found, _, _ := s.Get("a"); found {
		t.Fatal("the discarded file's keys are still there")
	}
	if got, _ := os.ReadFile(marker); !bytes.Equal(bytes.TrimSpace(got), currentBootID()) {
		t.Fatalf("marker after reopen holds %q, want this boot's id", got)
	}
}

func mustOpen(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestClusterIDIsSetOnce: the first id recorded stays; another is refused
// without changing anything; the id survives reopening.
func TestClusterIDIsSetOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if id := s.ClusterID(); id != "" {
		t.Fatalf("new store has cluster id %q", id)
	}
	apply := func(idx uint64, id string) bool {
		t.Helper()
		res, err := s.ApplyBatch([]Applied{{Index: idx, Cmd: &Command{Op: OpSetClusterID, Key: id}}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].OK
	}
	if apply(1, "") {
		t.Fatal("an empty id was accepted")
	}
	if !apply(2, "c1") || s.ClusterID() != "c1" {
		t.Fatalf("first id: %q", s.ClusterID())
	}
	if apply(3, "c2") || s.ClusterID() != "c1" {
		t.Fatalf("a second id was accepted: %q", s.ClusterID())
	}
	if !apply(4, "c1") {
		t.Fatal("setting the same id again is refused")
	}
	s.Close()
	if s, err = Open(path); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ClusterID() != "c1" {
		t.Fatalf("after reopening: %q", s.ClusterID())
	}
}
