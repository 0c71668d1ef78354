package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/cluster"
)

// kvOp is one operation as Consul's Go client serialises it: every KV
// field, and the catalog members as null.
func kvOp(verb, key, value string, index uint64, session string) string {
	v := "null"
	if value != "" {
		v = `"` + base64.StdEncoding.EncodeToString([]byte(value)) + `"`
	}
	return fmt.Sprintf(`{"KV":{"Verb":%q,"Key":%q,"Value":%s,"Flags":0,"Index":%d,"Session":%q},"Node":null,"Service":null,"Check":null}`, verb, key, v, index, session)
}

// keysUnchanged runs fn and fails if any key or the KV index changed; the
// applied index may move (a rolled-back transaction is an applied entry).
func (f *fakeBackend) keysUnchanged(t testing.TB, what string, fn func()) {
	t.Helper()
	before := snapshotStore(t, f.store)
	fn()
	after := snapshotStore(t, f.store)
	before.applied, after.applied = 0, 0
	if !reflect.DeepEqual(before, after) {
		t.Errorf("%s changed the keys:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

func txnBody(ops ...string) []byte { return []byte("[" + strings.Join(ops, ",") + "]\n") }

func decodeTxn(t *testing.T, body []byte) TxnResponse {
	t.Helper()
	var r TxnResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decoding %q: %v", body, err)
	}
	return r
}

func TestTxn_WriteThenRead(t *testing.T) {
	s, b := newAPI(t)
	idx := put(t, s, "cfg/old", "o")
	w := call(t, s, "PUT", "/v1/txn", txnBody(
		kvOp("set", "cfg/a", "x", 0, ""),
		kvOp("cas", "cfg/old", "o2", idx, ""),
		kvOp("get", "cfg/a", "", 0, ""),
		kvOp("delete", "cfg/none", "", 0, ""),
		kvOp("get-tree", "cfg/", "", 0, ""),
	))
	wantStatus(t, w, 200)
	txnIdx := headerIndex(t, w)
	if txnIdx <= idx {
		t.Fatalf("X-Consul-Index %d, want the txn's index above %d", txnIdx, idx)
	}
	// The raw body: Errors is null, as the client's KV().Txn expects.
	if !strings.Contains(w.Body.String(), `"Errors":null`) {
		t.Errorf("body %s: want \"Errors\":null", w.Body.String())
	}
	r := decodeTxn(t, w.Body.Bytes())
	var got []string
	for _, res := range r.Results {
		got = append(got, fmt.Sprintf("%s=%s@%d", res.KV.Key, res.KV.Value, res.KV.ModifyIndex))
	}
	// set and cas report no value; the delete reports nothing; get and
	// get-tree see the writes before them.
	want := []string{
		fmt.Sprintf("cfg/a=@%d", txnIdx), fmt.Sprintf("cfg/old=@%d", txnIdx),
		fmt.Sprintf("cfg/a=x@%d", txnIdx),
		fmt.Sprintf("cfg/a=x@%d", txnIdx), fmt.Sprintf("cfg/old=o2@%d", txnIdx),
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("results %q\nwant     %q", got, want)
	}
	if n := b.applyCalls.Load(); n != 2 {
		t.Errorf("%d applies, want 2 (the put and the txn as one command)", n)
	}
}

func TestTxn_RollbackIs409AndStoresNothing(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "k", "v")
	before := snapshotStore(t, b.store)
	w := call(t, s, "PUT", "/v1/txn", txnBody(
		kvOp("set", "new", "n", 0, ""),
		kvOp("check-index", "k", "", 999, ""), // stale
		kvOp("get", "missing", "", 0, ""),
	))
	wantStatus(t, w, 409)
	if w.Header().Get(OutcomeHeader) != OutcomeNotApplied {
		t.Errorf("a rollback says outcome %q", w.Header().Get(OutcomeHeader))
	}
	if !strings.Contains(w.Body.String(), `"Results":null`) {
		t.Errorf("body %s: want \"Results\":null", w.Body.String())
	}
	r := decodeTxn(t, w.Body.Bytes())
	if len(r.Errors) != 2 || r.Errors[0].OpIndex != 1 || r.Errors[1].OpIndex != 2 ||
		!strings.Contains(r.Errors[0].What, "current modify index") || !strings.Contains(r.Errors[1].What, `"missing" doesn't exist`) {
		t.Fatalf("errors %+v", r.Errors)
	}
	after := snapshotStore(t, b.store)
	if after.kvIndex != before.kvIndex || len(after.entries) != len(before.entries) {
		t.Fatalf("rolled-back txn changed the keys: %+v -> %+v", before, after)
	}
	if _, found, _, _ := b.store.Get("new"); found {
		t.Fatal("the set of a rolled-back txn was stored")
	}
}

// Without sessions every lock fails as Consul fails a lock by an unknown
// session; the client's own test: a lock without a session, then a get of
// the key it would have created, gives two errors.
func TestTxn_SessionVerbs(t *testing.T) {
	s, b := newAPI(t)
	// The session is looked up where the lock is applied, in the state
	// machine: the entry is applied (a rolled-back one), the keys are not
	// touched.
	b.keysUnchanged(t, "lock without session", func() {
		w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("lock", "k", "v", 0, ""), kvOp("get", "k", "", 0, "")))
		wantStatus(t, w, 409)
		r := decodeTxn(t, w.Body.Bytes())
		if len(r.Errors) != 2 || r.Errors[0].What != "missing session" || r.Errors[1].OpIndex != 1 {
			t.Fatalf("errors %+v", r.Errors)
		}
	})
	b.keysUnchanged(t, "lock with unknown session", func() {
		w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("lock", "k", "v", 0, "adf4238a-882b-9ddc-4a9d-5b6758e4159e")))
		wantStatus(t, w, 409, `invalid session \"adf4238a-882b-9ddc-4a9d-5b6758e4159e\"`)
	})
	put(t, s, "k", "v")
	b.keysUnchanged(t, "unlock", func() {
		w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("unlock", "k", "v", 0, "some-session")))
		wantStatus(t, w, 409, "lock isn't held")
	})
	// check-session with no session matches an unheld key: a read.
	calls := b.applyCalls.Load()
	w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("check-session", "k", "", 0, "")))
	wantStatus(t, w, 200)
	if b.applyCalls.Load() != calls {
		t.Error("a read-only txn went through Apply")
	}
}

func TestTxn_ReadOnlyIsARead(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "a", "1")
	calls, barriers := b.applyCalls.Load(), b.barrierCalls.Load()
	w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("get", "a", "", 0, ""), kvOp("check-not-exists", "b", "", 0, "")))
	wantStatus(t, w, 200)
	r := decodeTxn(t, w.Body.Bytes())
	if len(r.Results) != 1 || string(r.Results[0].KV.Value) != "1" {
		t.Fatalf("results %+v", r.Results)
	}
	if b.applyCalls.Load() != calls {
		t.Error("a read-only txn went through Raft")
	}
	if b.barrierCalls.Load() != barriers+1 {
		t.Errorf("%d read barriers, want 1: the default is linearizable", b.barrierCalls.Load()-barriers)
	}
	if w.Header().Get("X-Consul-Index") != "" || w.Header().Get("X-Consul-KnownLeader") != "true" || w.Header().Get("X-Consul-LastContact") != "0" {
		t.Errorf("headers %v: want Consul's read-only txn headers (no index)", w.Header())
	}

	// ?stale answers from local state without a barrier, even when the
	// barrier cannot be had (no quorum).
	b.set(func(f *fakeBackend) { f.barrierErr = cluster.ErrNoLeader })
	wantStatus(t, call(t, s, "PUT", "/v1/txn", txnBody(kvOp("get", "a", "", 0, ""))), 503)
	barriers = b.barrierCalls.Load()
	wantStatus(t, call(t, s, "PUT", "/v1/txn?stale", txnBody(kvOp("get", "a", "", 0, ""))), 200, `"Value":"MQ=="`)
	if b.barrierCalls.Load() != barriers {
		t.Error("?stale took a read barrier")
	}
	// An empty transaction is a read with nothing in it.
	w = call(t, s, "PUT", "/v1/txn?stale", []byte("[]"))
	wantStatus(t, w, 200, `"Results":[]`)
	if b.applyCalls.Load() != calls {
		t.Error("a read-only txn went through Raft")
	}
}

func TestTxn_WriteErrors(t *testing.T) {
	s, b := newAPI(t)
	b.set(func(f *fakeBackend) { f.applyErr = cluster.ErrNoLeader })
	w := call(t, s, "PUT", "/v1/txn", txnBody(kvOp("set", "a", "1", 0, "")))
	wantPlainError(t, w, 503)
	if w.Header().Get(OutcomeHeader) != OutcomeNotApplied {
		t.Errorf("outcome %q", w.Header().Get(OutcomeHeader))
	}
	b.set(func(f *fakeBackend) { f.applyErr = fmt.Errorf("%w: lost", cluster.ErrUnknownOutcome) })
	wantPlainError(t, call(t, s, "PUT", "/v1/txn", txnBody(kvOp("set", "a", "1", 0, ""))), 503)
}

func TestTxn_BadRequests(t *testing.T) {
	s, b := newAPI(t, withMaxValue(256), func(c *apiConfig) { c.opts.TxnMaxOps = 3 })
	put(t, s, "k", "v")
	set := kvOp("set", "a", "x", 0, "")
	get := `{"KV":{"Verb":"get","Key":"k"}}`
	cases := []struct {
		name   string
		target string
		body   string
		status int
		want   string
	}{
		{"not JSON", "/v1/txn", "{", 400, "Failed to parse body"},
		{"empty body", "/v1/txn", "", 400, "Failed to parse body"},
		{"an object", "/v1/txn", `{"KV":{}}`, 400, "Failed to parse body"},
		{"null", "/v1/txn", `null`, 400, "list of operations"},
		{"trailing data", "/v1/txn", "[" + set + "] []", 400, "after the list"},
		{"unknown field", "/v1/txn", `[{"KV":{"Verb":"set","Key":"a","Valeu":"eA=="}}]`, 400, "Valeu"},
		{"unknown verb", "/v1/txn", `[{"KV":{"Verb":"put","Key":"a"}}]`, 400, `unknown KV operation "put"`},
		{"verb in capitals", "/v1/txn", `[{"KV":{"Verb":"SET","Key":"a"}}]`, 400, "unknown KV operation"},
		{"bad base64", "/v1/txn", `[{"KV":{"Verb":"set","Key":"a","Value":"%%%"}}]`, 400, "Failed to parse body"},
		{"negative flags", "/v1/txn", `[{"KV":{"Verb":"set","Key":"a","Flags":-1}}]`, 400, "Failed to parse body"},
		{"bad key", "/v1/txn", `[{"KV":{"Verb":"set","Key":"a//b"}}]`, 400, "operation 0"},
		{"leading slash", "/v1/txn", "[" + set + `,{"KV":{"Verb":"get","Key":"/a"}}]`, 400, "operation 1"},
		{"no member", "/v1/txn", `[{}]`, 400, "none of KV"},
		{"two members", "/v1/txn", `[{"KV":{"Verb":"get","Key":"a"},"Node":{"Verb":"get"}}]`, 400, "exactly one"},
		{"namespace", "/v1/txn", `[{"KV":{"Verb":"get","Key":"a","Namespace":"team"}}]`, 400, "Namespace"},
		{"stale and consistent", "/v1/txn?stale&consistent", "[" + set + "]", 400, "conflicting"},
		{"too many ops", "/v1/txn", string(txnBody(get, get, get, set)), 413, "Transaction contains too many operations (4 > 3)"},
		{"value too large", "/v1/txn", `[{"KV":{"Verb":"set","Key":"big","Value":"` + base64.StdEncoding.EncodeToString(make([]byte, 257)) + `"}}]`, 413, `Value for key "big" is too large (257 > 256 bytes)`},
		{"body too large", "/v1/txn", "[" + set + "]" + strings.Repeat(" ", 512), 413, "too large"},
		{"other datacenter", "/v1/txn?dc=dc9", "[" + set + "]", 500, "No path to datacenter"},
		{"partition", "/v1/txn?partition=p", "[" + set + "]", 400, "partition"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b.unchanged(t, c.name, func() {
				w := call(t, s, "PUT", c.target, []byte(c.body))
				wantPlainError(t, w, c.status, c.want)
			})
		})
	}
	// A value of the largest size fits: the body may be larger than it.
	big := `[{"KV":{"Verb":"set","Key":"big","Value":"` + base64.StdEncoding.EncodeToString(make([]byte, 256)) + `"}}]`
	wantStatus(t, call(t, s, "PUT", "/v1/txn", []byte(big)), 200)
	// Only PUT: other methods are 405 with the allowed one named.
	w := call(t, s, "GET", "/v1/txn", nil)
	if w.Code != 405 || !strings.Contains(w.Header().Get("Allow"), "PUT") {
		t.Fatalf("GET /v1/txn: %d, Allow %q", w.Code, w.Header().Get("Allow"))
	}
}

// Well-formed operations Troupe cannot run fail the transaction as a
// failed operation does, in the pre-check, before Raft.
func TestTxn_PreCheckFailures(t *testing.T) {
	s, b := newAPI(t)
	b.unchanged(t, "catalog op and missing key", func() {
		w := call(t, s, "PUT", "/v1/txn", []byte(`[{"KV":{"Verb":"set","Key":"a","Value":"eA=="}},{"Node":{"Verb":"set","Node":{"Node":"n"}}},{"KV":{"Verb":"get","Key":""}}]`))
		wantStatus(t, w, 409)
		r := decodeTxn(t, w.Body.Bytes())
		if len(r.Errors) != 2 || r.Errors[0].OpIndex != 1 || !strings.Contains(r.Errors[0].What, "Node operations are not supported") ||
			r.Errors[1].OpIndex != 2 || r.Errors[1].What != "Must provide key" {
			t.Fatalf("errors %+v", r.Errors)
		}
	})
	// delete-tree may name the empty prefix: everything.
	put(t, s, "x", "1")
	wantStatus(t, call(t, s, "PUT", "/v1/txn", txnBody(kvOp("delete-tree", "", "", 0, ""))), 200, `"Results":[]`)
	if e, _, _ := b.store.List(""); len(e) != 0 {
		t.Fatalf("delete-tree of everything left %+v", e)
	}
}

// With ACLs on, each operation needs what the KV endpoint needs for it; a
// refused one fails the whole transaction in the pre-check, as in Consul
// (409, "Permission denied" in Errors), and nothing is applied.
func TestTxn_ACL(t *testing.T) {
	f := newACLFixture(t)
	tok := func(secret string) []string { return []string{"X-Consul-Token", secret} }
	f.b.unchanged(t, "write with a read token", func() {
		w := call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("get", "app/a", "", 0, ""), kvOp("set", "app/a", "x", 0, ""), kvOp("set", "secret/s", "x", 0, "")), tok(f.read)...)
		wantStatus(t, w, 409)
		r := decodeTxn(t, w.Body.Bytes())
		if len(r.Errors) != 2 || r.Errors[0].OpIndex != 1 || r.Errors[1].OpIndex != 2 || !strings.Contains(r.Errors[1].What, "Permission denied") || !strings.Contains(r.Errors[1].What, "secret/s") {
			t.Fatalf("errors %+v", r.Errors)
		}
		if strings.Contains(w.Body.String(), "v-app") {
			t.Fatal("a refused txn leaked a value")
		}
	})
	// An operation that fails for itself is not also reported as denied.
	f.b.unchanged(t, "catalog op and missing key with a read token", func() {
		w := call(t, f.s, "PUT", "/v1/txn", []byte(`[{"Node":{"Verb":"get"}},{"KV":{"Verb":"set","Key":""}},{"KV":{"Verb":"get","Key":"secret/s"}}]`), tok(f.read)...)
		r := decodeTxn(t, w.Body.Bytes())
		if w.Code != 409 || len(r.Errors) != 3 || r.Errors[0].OpIndex != 0 || r.Errors[1].OpIndex != 1 || r.Errors[2].OpIndex != 2 || !strings.Contains(r.Errors[2].What, "Permission denied") {
			t.Fatalf("%d %+v", w.Code, r.Errors)
		}
	})
	// A get-tree shows only what the token may read.
	mkPolicy(t, f.s, f.mgmt, "a-only", `key "app/a" { policy = "read" }`)
	narrow := mkToken(t, f.s, f.mgmt, "a-only")
	w := call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("get-tree", "app/a", "", 0, "")), tok(narrow)...)
	wantStatus(t, w, 200)
	w = call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("get", "app/a", "", 0, "")), tok(f.read)...)
	wantStatus(t, w, 200, `"Key":"app/a"`)
	mkPolicy(t, f.s, f.mgmt, "prefix-read", `key_prefix "" { policy = "read" } key "secret/s" { policy = "deny" }`)
	most := mkToken(t, f.s, f.mgmt, "prefix-read")
	w = call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("get-tree", "", "", 0, "")), tok(most)...)
	wantStatus(t, w, 409, "Must provide key")
	w = call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("get-tree", "s", "", 0, "")), tok(most)...)
	wantStatus(t, w, 200)
	if strings.Contains(w.Body.String(), "secret/s") || w.Header().Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("get-tree showed a denied key: %s %v", w.Body.String(), w.Header())
	}
	// delete-tree needs write on the whole prefix, as DELETE ?recurse.
	f.b.unchanged(t, "delete-tree beyond the token's prefix", func() {
		wantStatus(t, call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("delete-tree", "o", "", 0, "")), tok(f.otherWrite)...), 409, "key:write")
	})
	wantStatus(t, call(t, f.s, "PUT", "/v1/txn", txnBody(kvOp("delete-tree", "other/", "", 0, ""), kvOp("set", "other/y", "y", 0, "")), tok(f.otherWrite)...), 200)
	if _, found, _, _ := f.b.store.Get("other/x"); found {
		t.Fatal("delete-tree under the token's prefix did not delete")
	}
}

// The Consul client's KV().Txn wrapper dereferences every result: no
// null elements, whatever the verbs.
func TestTxn_NoNullResults(t *testing.T) {
	s, _ := newAPI(t)
	w := call(t, s, "PUT", "/v1/txn", txnBody(
		kvOp("set", "a", "1", 0, ""), kvOp("check-not-exists", "b", "", 0, ""), kvOp("delete", "c", "", 0, ""),
		kvOp("get-or-empty", "d", "", 0, ""), kvOp("get-tree", "zzz", "", 0, ""),
	))
	wantStatus(t, w, 200)
	var raw struct{ Results []json.RawMessage }
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw.Results {
		if string(r) == "null" || !bytes.HasPrefix(r, []byte(`{"KV":{`)) {
			t.Fatalf("result element %s in %s", r, w.Body.String())
		}
	}
	if r := decodeTxn(t, w.Body.Bytes()); len(r.Results) != 2 || r.Results[1].KV.Key != "d" || r.Results[1].KV.ModifyIndex != 0 {
		t.Fatalf("results %+v", r.Results)
	}
}

// A transaction whose encoding would not fit through a peer's door is
// refused before Raft, not after the leader refuses it.
func TestTxn_CommandLimit(t *testing.T) {
	s, b := newAPI(t)
	// Invalid UTF-8 in a JSON string decodes to U+FFFD: 3 bytes from 1.
	session := strings.Repeat("\xff", 100<<10)
	body := txnBody(fmt.Sprintf(`{"KV":{"Verb":"set","Key":"k","Session":"%s"}}`, session), fmt.Sprintf(`{"KV":{"Verb":"set","Key":"l","Session":"%s"}}`, session), fmt.Sprintf(`{"KV":{"Verb":"set","Key":"m","Session":"%s"}}`, session))
	b.unchanged(t, "oversized encoding", func() {
		wantPlainError(t, call(t, s, "PUT", "/v1/txn", body), 413, "replicated command")
	})
	if CommandLimit(0) != CommandLimit(DefaultMaxValueSize) || CommandLimit(100) <= 100 {
		t.Fatal("CommandLimit does not default or leave room for the key")
	}
}

func TestTxnRequestErrorIsAnError(t *testing.T) {
	var err error = &txnRequestError{400, "x"}
	var re *txnRequestError
	if !errors.As(err, &re) || err.Error() != "x" {
		t.Fatal("txnRequestError")
	}
}
