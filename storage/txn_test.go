package storage

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func txn(ops ...TxnOp) *Command { return &Command{Op: OpTxn, Txn: ops} }

// applyTxn applies ops at idx through the log encoding and returns the
// result.
func applyTxn(t *testing.T, s *Store, idx uint64, ops ...TxnOp) Result {
	t.Helper()
	c, err := DecodeCommand(txn(ops...).Encode())
	if err != nil {
		t.Fatal(err)
	}
	r := mustApply(t, s, idx, c)
	if r.Txn == nil {
		t.Fatalf("txn at %d: no TxnResult", idx)
	}
	if r.OK != (len(r.Txn.Errors) == 0) {
		t.Fatalf("txn at %d: OK %v with errors %v", idx, r.OK, r.Txn.Errors)
	}
	return r
}

// wantTxnErrors checks the failed operations and that each message names
// what went wrong.
func wantTxnErrors(t *testing.T, r Result, want ...TxnError) {
	t.Helper()
	if r.OK || len(r.Txn.Entries) != 0 {
		t.Fatalf("OK %v, entries %+v; want a rollback", r.OK, r.Txn.Entries)
	}
	if len(r.Txn.Errors) != len(want) {
		t.Fatalf("errors %+v, want %d", r.Txn.Errors, len(want))
	}
	for i, w := range want {
		g := r.Txn.Errors[i]
		if g.OpIndex != w.OpIndex || !strings.Contains(g.What, w.What) {
			t.Errorf("error %d = %+v, want op %d containing %q", i, g, w.OpIndex, w.What)
		}
	}
}

// withoutApplied drops the applied index, which every entry moves,
// rolled back or not.
func withoutApplied(st rawState) rawState {
	delete(st["meta"], string(metaApplied))
	return st
}

func TestTxn_WritesShareOneIndex(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("old", "o", 0))
	apply(t, s, 2, set("gone", "g", 0))
	r := applyTxn(t, s, 3,
		TxnOp{Verb: TxnSet, Key: "a", Value: []byte("1"), Flags: 7},
		TxnOp{Verb: TxnCAS, Key: "old", Value: []byte("o2"), Index: 1},
		TxnOp{Verb: TxnCAS, Key: "new", Value: []byte("n"), Index: 0},
		TxnOp{Verb: TxnDelete, Key: "gone"},
		TxnOp{Verb: TxnGet, Key: "a"},
	)
	if !r.OK || r.Index != 3 {
		t.Fatalf("result %+v", r)
	}
	want := []Entry{
		{Key: "a", Flags: 7, CreateIndex: 3, ModifyIndex: 3},
		{Key: "old", CreateIndex: 1, ModifyIndex: 3},
		{Key: "new", CreateIndex: 3, ModifyIndex: 3},
		{Key: "a", Value: []byte("1"), Flags: 7, CreateIndex: 3, ModifyIndex: 3}, // a later op sees an earlier one
	}
	if !reflect.DeepEqual(r.Txn.Entries, want) {
		t.Fatalf("entries\n%+v\nwant\n%+v", r.Txn.Entries, want)
	}
	for _, k := range []string{"a", "old", "new"} {
		if e, _, _ := mustGet(t, s, k); e.ModifyIndex != 3 {
			t.Errorf("%s ModifyIndex %d, want the txn's 3", k, e.ModifyIndex)
		}
	}
	if _, found, idx := mustGet(t, s, "gone"); found || idx != 3 {
		t.Errorf("gone: found %v, index %d; want deleted at 3", found, idx)
	}
	if kv := mustKVIndex(t, s); kv != 3 {
		t.Errorf("KV index %d, want 3", kv)
	}
}

func TestTxn_RollbackLeavesTheFileUnchanged(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a", "1", 0))
	apply(t, s, 2, set("tree/x", "x", 0))
	apply(t, s, 3, &Command{Op: OpDelete, Key: "dead"})
	before := withoutApplied(dumpRaw(t, s))
	changed := s.Changed()
	r := applyTxn(t, s, 4,
		TxnOp{Verb: TxnSet, Key: "a", Value: []byte("2")},
		TxnOp{Verb: TxnDeleteTree, Key: "tree/"},
		TxnOp{Verb: TxnSet, Key: "fresh", Value: []byte("f")},
		TxnOp{Verb: TxnCAS, Key: "a", Value: []byte("3"), Index: 1}, // stale: op 0 moved it to 4
	)
	wantTxnErrors(t, r, TxnError{3, `failed to set key "a", index is stale`})
	requireSameState(t, withoutApplied(dumpRaw(t, s)), before)
	if s.AppliedIndex() != 4 {
		t.Fatalf("applied index %d: a rolled-back txn is still an applied entry", s.AppliedIndex())
	}
	if !isClosed(changed) {
		t.Fatal("watchers not woken for the applied index")
	}
}

// A failed transaction in a batch must not take the batch's other
// commands with it, nor leave any of its own writes.
func TestTxn_RollbackInsideABatch(t *testing.T) {
	s := openStore(t)
	res := mustApplyBatch(t, s, []Applied{
		{Index: 1, Cmd: set("before", "b", 0)},
		{Index: 2, Cmd: txn(TxnOp{Verb: TxnSet, Key: "t", Value: []byte("t")}, TxnOp{Verb: TxnGet, Key: "missing"})},
		{Index: 3, Cmd: set("after", "a", 0)},
		{Index: 4, Cmd: txn(TxnOp{Verb: TxnSet, Key: "u", Value: []byte("u")})},
	})
	if !res[0].OK || res[1].OK || !res[2].OK || !res[3].OK {
		t.Fatalf("results %+v", res)
	}
	for k, want := range map[string]bool{"before": true, "t": false, "after": true, "u": true} {
		if _, found, _ := mustGet(t, s, k); found != want {
			t.Errorf("%s found %v, want %v", k, found, want)
		}
	}
	if res[0].Txn != nil || res[2].Txn != nil {
		t.Error("a plain command carries a TxnResult")
	}
}

// Consul reports every failing operation, and the ones after a failure
// still run: the client's own test expects both errors here.
func TestTxn_EveryFailureIsReported(t *testing.T) {
	s := openStore(t)
	r := applyTxn(t, s, 1,
		TxnOp{Verb: TxnLock, Key: "k", Value: []byte("v")},
		TxnOp{Verb: TxnGet, Key: "k"},
	)
	wantTxnErrors(t, r, TxnError{0, "missing session"}, TxnError{1, `key "k" doesn't exist`})
}

func TestTxn_Checks(t *testing.T) {
	s := openStore(t)
	apply(t, s, 5, set("k", "v", 0))
	putRawEntry(t, s, Entry{Key: "held", Value: []byte("h"), CreateIndex: 2, ModifyIndex: 3, LockIndex: 1, Session: "s1"})
	pass := []TxnOp{
		{Verb: TxnCheckIndex, Key: "k", Index: 5},
		{Verb: TxnCheckSession, Key: "k"}, // "" matches an unheld key
		{Verb: TxnCheckSession, Key: "held", Session: "s1"},
		{Verb: TxnCheckNotExists, Key: "nope"},
	}
	r := applyTxn(t, s, 6, pass...)
	if !r.OK || len(r.Txn.Entries) != 3 {
		t.Fatalf("passing checks: %+v", r.Txn)
	}
	for _, e := range r.Txn.Entries {
		if e.Value != nil {
			t.Errorf("check result %q carries its value", e.Key)
		}
	}
	cases := []struct {
		op   TxnOp
		what string
	}{
		{TxnOp{Verb: TxnCheckIndex, Key: "k", Index: 4}, `failed index check for key "k", current modify index 5 != 4`},
		{TxnOp{Verb: TxnCheckIndex, Key: "nope", Index: 4}, `failed to check index, key "nope" doesn't exist`},
		{TxnOp{Verb: TxnCheckSession, Key: "held"}, `failed session check for key "held", current session "s1" != ""`},
		{TxnOp{Verb: TxnCheckSession, Key: "nope"}, `failed to check session, key "nope" doesn't exist`},
		{TxnOp{Verb: TxnCheckNotExists, Key: "k"}, `key "k" exists`},
		{TxnOp{Verb: TxnGet, Key: "nope"}, `key "nope" doesn't exist`},
		{TxnOp{Verb: TxnGet}, "Must provide key"},
		{TxnOp{Verb: TxnGetTree}, "Must provide key"},
		{TxnOp{Verb: TxnSet, Value: []byte("v")}, "Must provide key"},
		{TxnOp{Verb: TxnSet, Key: strings.Repeat("k", MaxKeySize+1)}, "limit"},
		{TxnOp{Verb: TxnCAS, Key: "k", Index: 0}, `failed to set key "k", index is stale`},
		{TxnOp{Verb: TxnCAS, Key: "nope", Index: 3}, `failed to set key "nope", index is stale`},
		{TxnOp{Verb: TxnDeleteCAS, Key: "k", Index: 4}, `failed to delete key "k", index is stale`},
		{TxnOp{Verb: TxnOp{}.Verb, Key: "k"}, "unknown KV operation"},
	}
	idx := uint64(7)
	for _, c := range cases {
		before := withoutApplied(dumpRaw(t, s))
		r := applyTxnRaw(t, s, idx, c.op)
		idx++
		wantTxnErrors(t, r, TxnError{0, c.what})
		requireSameState(t, withoutApplied(dumpRaw(t, s)), before)
	}
}

// applyTxnRaw applies ops as built, without the log encoding, for verbs
// DecodeCommand would refuse.
func applyTxnRaw(t *testing.T, s *Store, idx uint64, ops ...TxnOp) Result {
	t.Helper()
	return mustApply(t, s, idx, txn(ops...))
}

func TestTxn_Reads(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("t/a", "a", 1))
	apply(t, s, 2, set("t/b", "b", 2))
	apply(t, s, 3, set("u", "u", 0))
	r := applyTxn(t, s, 4,
		TxnOp{Verb: TxnSet, Key: "t/c", Value: []byte("c")},
		TxnOp{Verb: TxnDelete, Key: "t/a"},
		TxnOp{Verb: TxnGetTree, Key: "t/"},
		TxnOp{Verb: TxnGetOrEmpty, Key: "none", Flags: 9, Session: "x"},
		TxnOp{Verb: TxnGetOrEmpty, Key: "u"},
	)
	var keys []string
	for _, e := range r.Txn.Entries {
		keys = append(keys, e.Key+"="+string(e.Value))
	}
	// set reports t/c without its value; get-tree sees the set and the delete.
	want := []string{"t/c=", "t/b=b", "t/c=c", "none=", "u=u"}
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("entries %q, want %q", keys, want)
	}
	if e := r.Txn.Entries[3]; e.Flags != 9 || e.Session != "x" || e.ModifyIndex != 0 {
		t.Errorf("get-or-empty of a missing key: %+v", e)
	}

	// The same reads as a query see the committed state, without Raft.
	q, err := s.Query(Query{Kind: QueryTxn, Txn: []TxnOp{{Verb: TxnGetTree, Key: "t/"}, {Verb: TxnCheckNotExists, Key: "t/a"}}})
	if err != nil || q.Txn == nil || len(q.Txn.Errors) != 0 || len(q.Txn.Entries) != 2 || !q.Found {
		t.Fatalf("read-only query: %+v %v", q, err)
	}
	q, err = s.Query(Query{Kind: QueryTxn, Txn: []TxnOp{{Verb: TxnGet, Key: "t/a"}}})
	if err != nil || len(q.Txn.Errors) != 1 {
		t.Fatalf("read-only query of a missing key: %+v %v", q.Txn, err)
	}
	before := dumpRaw(t, s)
	if _, err := s.Query(Query{Kind: QueryTxn, Txn: []TxnOp{{Verb: TxnSet, Key: "w"}}}); !errors.Is(err, ErrBadCommand) {
		t.Fatalf("a query with a write: %v, want ErrBadCommand", err)
	}
	requireSameState(t, dumpRaw(t, s), before)
}

func TestTxn_DeleteTreeAndTombstones(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("p/a", "a", 0))
	apply(t, s, 2, set("p/b", "b", 0))
	r := applyTxn(t, s, 3,
		TxnOp{Verb: TxnDeleteTree, Key: "p/"},
		TxnOp{Verb: TxnSet, Key: "p/c", Value: []byte("c")},
		TxnOp{Verb: TxnDeleteCAS, Key: "p/missing", Index: 99}, // a missing key counts as deleted
	)
	if !r.OK {
		t.Fatalf("%+v", r.Txn)
	}
	entries, idx, err := s.List("p/")
	if err != nil || len(entries) != 1 || entries[0].Key != "p/c" || idx != 3 {
		t.Fatalf("List(p/) = %+v, %d, %v", entries, idx, err)
	}
	if got := listIndex(t, s, "p/a"); got != 3 {
		t.Errorf("index of the deleted p/a is %d, want 3", got)
	}
	// An empty prefix deletes everything.
	r = applyTxn(t, s, 4, TxnOp{Verb: TxnDeleteTree})
	if entries, _, _ := s.List(""); !r.OK || len(entries) != 0 {
		t.Fatalf("delete-tree of everything left %+v", entries)
	}
}

// The lock rules of the Consul brief, §2.5.
func TestTxn_LockAndUnlock(t *testing.T) {
	s := openStore(t)
	createSession(t, s, 1, Session{ID: "s1"})
	createSession(t, s, 2, Session{ID: "s2"})
	r := applyTxn(t, s, 3, TxnOp{Verb: TxnLock, Key: "l", Value: []byte("v1"), Flags: 3, Session: "s1"})
	if e := r.Txn.Entries[0]; !r.OK || e.LockIndex != 1 || e.Session != "s1" || e.CreateIndex != 3 || e.ModifyIndex != 3 || e.Value != nil {
		t.Fatalf("acquire of a new key: %+v", r.Txn)
	}
	// The holder writes again: value changes, lock term does not.
	r = applyTxn(t, s, 4, TxnOp{Verb: TxnLock, Key: "l", Value: []byte("v2"), Session: "s1"})
	if e, _, _ := mustGet(t, s, "l"); !r.OK || e.LockIndex != 1 || string(e.Value) != "v2" || e.ModifyIndex != 4 {
		t.Fatalf("re-acquire: %+v", e)
	}
	before := withoutApplied(dumpRaw(t, s))
	wantTxnErrors(t, applyTxn(t, s, 5, TxnOp{Verb: TxnLock, Key: "l", Session: "s2"}), TxnError{0, `failed to lock key "l", lock is already held`})
	wantTxnErrors(t, applyTxn(t, s, 6, TxnOp{Verb: TxnUnlock, Key: "l", Session: "s2"}), TxnError{0, "lock isn't held, or is held by another session"})
	wantTxnErrors(t, applyTxn(t, s, 7, TxnOp{Verb: TxnUnlock, Key: "l"}), TxnError{0, "missing session"})
	wantTxnErrors(t, applyTxn(t, s, 8, TxnOp{Verb: TxnLock, Key: "l", Session: "nobody"}), TxnError{0, `invalid session "nobody"`})
	requireSameState(t, withoutApplied(dumpRaw(t, s)), before)

	r = applyTxn(t, s, 9, TxnOp{Verb: TxnUnlock, Key: "l", Value: []byte("released"), Session: "s1"})
	if e, _, _ := mustGet(t, s, "l"); !r.OK || e.Session != "" || e.LockIndex != 1 || string(e.Value) != "released" || e.Flags != 0 || e.ModifyIndex != 9 {
		t.Fatalf("release: %+v", e)
	}
	// A fresh acquisition of an unheld key starts the next term.
	r = applyTxn(t, s, 10, TxnOp{Verb: TxnLock, Key: "l", Session: "s2"}, TxnOp{Verb: TxnCheckSession, Key: "l", Session: "s2"})
	if e, _, _ := mustGet(t, s, "l"); !r.OK || e.LockIndex != 2 || e.Session != "s2" || e.CreateIndex != 3 {
		t.Fatalf("second acquisition: %+v", e)
	}
	if got := heldKeys(t, s); !reflect.DeepEqual(got, map[string][]string{"s2": {"l"}}) {
		t.Fatalf("held keys %v", got)
	}
}

// A lock with a session that does not exist fails as Consul fails it, and
// nothing is written.
func TestTxn_LockWithoutSessions(t *testing.T) {
	s := openStore(t)
	before := withoutApplied(dumpRaw(t, s))
	r := applyTxn(t, s, 1,
		TxnOp{Verb: TxnLock, Key: "l", Session: "0a2b4c6d-1111-2222-3333-444455556666"},
		TxnOp{Verb: TxnSet, Key: "other", Value: []byte("x")},
	)
	wantTxnErrors(t, r, TxnError{0, `invalid session "0a2b4c6d-1111-2222-3333-444455556666"`})
	requireSameState(t, withoutApplied(dumpRaw(t, s)), before)
}

func TestTxn_NoopSetKeepsIndexes(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("k", "v", 4))
	r := applyTxn(t, s, 2, TxnOp{Verb: TxnSet, Key: "k", Value: []byte("v"), Flags: 4})
	if e := r.Txn.Entries[0]; !r.OK || e.ModifyIndex != 1 {
		t.Fatalf("no-op set reported %+v", e)
	}
	if kv := mustKVIndex(t, s); kv != 1 {
		t.Fatalf("KV index moved to %d on a no-op", kv)
	}
}

func TestTxn_ReplayIsSkipped(t *testing.T) {
	s := openStore(t)
	applyTxn(t, s, 1, TxnOp{Verb: TxnSet, Key: "k", Value: []byte("v")})
	before := dumpRaw(t, s)
	r := mustApply(t, s, 1, txn(TxnOp{Verb: TxnSet, Key: "k", Value: []byte("other")}))
	if r.Txn != nil {
		t.Fatal("a replayed entry was evaluated")
	}
	requireSameState(t, dumpRaw(t, s), before)
}

func TestDecodeTxn_Rejects(t *testing.T) {
	valid := txn(TxnOp{Verb: TxnSet, Key: "k", Value: []byte("v"), Session: "s"}).Encode()
	hdr := len(valid) - len(appendTxn(nil, []TxnOp{{Verb: TxnSet, Key: "k", Value: []byte("v"), Session: "s"}}))
	body := func(b ...byte) []byte { return append(append([]byte(nil), valid[:hdr]...), b...) }
	cases := map[string][]byte{
		"no txn":           valid[:hdr],
		"txn version 2":    body(2, 0),
		"count overflows":  body(1, 200, 1, 1, 0, 0, 0, 0, 0),
		"verb 0":           body(1, 1, 0, 0, 0, 0, 0, 0),
		"verb 14":          body(1, 1, 14, 0, 0, 0, 0, 0),
		"value overruns":   body(1, 1, 1, 0, 0, 0, 0, 5, 'x'),
		"trailing bytes":   append(bytes.Clone(valid), 0),
		"cut short":        valid[:len(valid)-1],
		"missing count":    body(1),
		"fewer ops than n": body(1, 2, 1, 0, 0, 0, 0, 0),
	}
	for name, data := range cases {
		if c, err := DecodeCommand(data); !errors.Is(err, ErrBadCommand) || c != nil {
			t.Errorf("%s: %+v, %v; want ErrBadCommand", name, c, err)
		}
	}
}

func TestTxnVerb_Names(t *testing.T) {
	for v := TxnSet; v <= txnVerbLast; v++ {
		got, ok := ParseTxnVerb(v.String())
		if !ok || got != v {
			t.Errorf("%v does not parse back (%v %v)", v, got, ok)
		}
	}
	for _, bad := range []string{"", "SET", "Get", "get-tree ", "verb(5)"} {
		if _, ok := ParseTxnVerb(bad); ok {
			t.Errorf("ParseTxnVerb(%q) accepted", bad)
		}
	}
	writes := map[TxnVerb]bool{TxnSet: true, TxnCAS: true, TxnLock: true, TxnUnlock: true, TxnDelete: true, TxnDeleteTree: true, TxnDeleteCAS: true}
	for v := TxnSet; v <= txnVerbLast; v++ {
		if v.IsWrite() != writes[v] {
			t.Errorf("%v.IsWrite() = %v", v, v.IsWrite())
		}
	}
}

// FuzzApplyTxn applies arbitrary transactions to one store (four bytes an
// operation: verb, key, index, value). Applying must never fail or panic,
// and a transaction is all or nothing: a rolled-back one leaves the file
// byte for byte as it was (but for the applied index), and an applied one
// changes only keys its writes name, each to the transaction's index.
func FuzzApplyTxn(f *testing.F) {
	f.Add([]byte{1, 1, 0, 'x', 5, 1, 0, 0})
	f.Add([]byte{1, 2, 0, 'x', 2, 2, 1, 'y', 7, 2, 0, 0})
	f.Add([]byte{11, 0, 0, 0, 1, 3, 0, 'z', 6, 1, 0, 0})
	f.Add([]byte{3, 4, 0, 'l', 4, 4, 0, 0, 8, 4, 0, 0})
	keys := []string{"", "a", "a/b", "a/c", "b", "ab"}
	s := openStore(f)
	createSession(f, s, 1, Session{ID: "s1"})
	idx := uint64(1)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ops []TxnOp
		for i := 0; i+3 < len(data) && len(ops) < 32; i += 4 {
			op := TxnOp{Verb: TxnVerb(data[i]%uint8(txnVerbLast) + 1), Key: keys[int(data[i+1])%len(keys)], Index: idx - min(idx, uint64(data[i+2]%4))}
			if data[i+3] != 0 {
				op.Value = []byte{data[i+3]}
			}
			if data[i+1]&0x80 != 0 {
				op.Session = "s1"
			}
			ops = append(ops, op)
		}
		before := dumpRaw(t, s)
		idx++
		r := applyTxn(t, s, idx, ops...)
		after := dumpRaw(t, s)
		if !r.OK {
			requireSameState(t, withoutApplied(after), withoutApplied(before))
			return
		}
		for k := range mergeKeys(before["kv"], after["kv"]) {
			b, a := before["kv"][k], after["kv"][k]
			if a == b {
				continue
			}
			named := false
			for _, op := range ops {
				named = named || op.Verb.IsWrite() && (op.Key == k || op.Verb == TxnDeleteTree && strings.HasPrefix(k, op.Key))
			}
			if !named {
				t.Fatalf("key %q changed, but no write of %+v names it", k, ops)
			}
			if a != "" && entryModifyIndex([]byte(a)) != idx {
				t.Fatalf("key %q changed with ModifyIndex %d, want the txn's %d", k, entryModifyIndex([]byte(a)), idx)
			}
		}
		if !reflect.DeepEqual(before["kv"], after["kv"]) && mustKVIndex(t, s) != idx {
			t.Fatalf("keys changed but the KV index is %d, not %d", mustKVIndex(t, s), idx)
		}
	})
}
