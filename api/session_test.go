package api

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// createSession creates a session through the API and returns its id.
func createSession(t testing.TB, s *Server, body string, hdr ...string) string {
	t.Helper()
	w := call(t, s, "PUT", "/v1/session/create", []byte(body), hdr...)
	wantStatus(t, w, 200)
	var out struct{ ID string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || len(out.ID) != 36 || strings.ToLower(out.ID) != out.ID {
		t.Fatalf("create answered %q (%v)", w.Body.String(), err)
	}
	return out.ID
}

// sessionInfo reads one session through the API (nil when it is gone).
func sessionInfo(t testing.TB, s *Server, id string) map[string]any {
	t.Helper()
	w := call(t, s, "GET", "/v1/session/info/"+id, nil)
	wantStatus(t, w, 200)
	if headerIndex(t, w) < 1 {
		t.Fatal("X-Consul-Index below 1")
	}
	var out []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out == nil {
		t.Fatalf("info answered %q (%v): want a list", w.Body.String(), err)
	}
	if len(out) == 0 {
		return nil
	}
	return out[0]
}

// The Go client's create(nil) sends no body: every default applies, in
// Consul's JSON shape (LockDelay in nanoseconds, no Checks field,
// ServiceChecks null).
func TestSession_CreateDefaults(t *testing.T) {
	s, _ := newAPI(t)
	id := createSession(t, s, "")
	got := sessionInfo(t, s, id)
	want := map[string]any{
		"ID": id, "Name": "", "Node": "n1", "LockDelay": 15e9, "Behavior": "release", "TTL": "",
		"NodeChecks": []any{"serfHealth"}, "ServiceChecks": nil,
	}
	for k, v := range want {
		if !jsonEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if _, ok := got["Checks"]; ok {
		t.Error("a Checks field, which the Go client's tests expect absent")
	}
	if got["CreateIndex"] != got["ModifyIndex"] || got["CreateIndex"].(float64) < 1 {
		t.Errorf("indexes %v %v", got["CreateIndex"], got["ModifyIndex"])
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// The bodies the Go client sends, and Consul's other spellings.
func TestSession_CreateBodies(t *testing.T) {
	s, _ := newAPI(t)
	for _, c := range []struct {
		body  string
		check map[string]any
	}{
		{`{"Behavior":"delete","LockDelay":"2000ms","Name":"n","TTL":"10s"}`, map[string]any{"Behavior": "delete", "LockDelay": 2e9, "Name": "n", "TTL": "10s"}},
		{`{"Name":"Consul API Lock","TTL":"15s"}`, map[string]any{"TTL": "15s", "LockDelay": 15e9, "NodeChecks": []any{"serfHealth"}}},
		{`{"NodeChecks":[]}`, map[string]any{"NodeChecks": []any{}}},
		{`{"Checks":["serfHealth"],"NodeChecks":["serfHealth"]}`, map[string]any{"NodeChecks": []any{"serfHealth"}}},
		{`{"LockDelay":15}`, map[string]any{"LockDelay": 15e9}},
		{`{"LockDelay":2000000000}`, map[string]any{"LockDelay": 2e9}},
		{`{"LockDelay":"0s","TTL":"0s"}`, map[string]any{"LockDelay": 0, "TTL": "0s"}},
		{`{"Node":"N2","unknown":{"ignored":true}}`, map[string]any{"Node": "n2"}},
		{`{"node":"n1","behavior":"delete"}`, map[string]any{"Node": "n1", "Behavior": "delete"}},
		{`null`, map[string]any{"Behavior": "release"}},
	} {
		got := sessionInfo(t, s, createSession(t, s, c.body))
		for k, v := range c.check {
			if !jsonEqual(got[k], v) {
				t.Errorf("%s: %s = %#v, want %#v", c.body, k, got[k], v)
			}
		}
	}
}

// Every malformed create answers 4xx with a reason and stores nothing.
func TestSession_CreateRejects(t *testing.T) {
	s, b := newAPI(t)
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{`, 400, "Request decode failed"},
		{`[]`, 400, "Request decode failed"},
		{`{"Name":5}`, 400, "Request decode failed"},
		{`{} {}`, 400, "after the session object"},
		{`{"Behavior":"explode"}`, 400, "Invalid Behavior setting 'explode'"},
		{`{"TTL":"5s"}`, 400, "Invalid Session TTL '5s'"},
		{`{"TTL":"25h"}`, 400, "Invalid Session TTL"},
		{`{"TTL":"-10s"}`, 400, "Invalid Session TTL"},
		{`{"TTL":"soon"}`, 400, "Session TTL 'soon' invalid"},
		{`{"NodeChecks":["web-check"]}`, 400, "Missing check 'web-check' registration"},
		{`{"Checks":["serfHealth","x"]}`, 400, "Missing check 'x' registration"},
		{`{"ServiceChecks":[{"ID":"svc"}]}`, 400, "Missing check 'svc' registration"},
		{`{"LockDelay":"later"}`, 400, "LockDelay"},
		{`{"LockDelay":"-1s"}`, 400, "negative"},
		{`{"LockDelay":-5}`, 400, "negative"},
		{`{"LockDelay":1.5}`, 400, "whole number"},
		{`{"LockDelay":1e300}`, 400, "whole number"},
		{`{"LockDelay":true}`, 400, "LockDelay"},
		{`{"Node":"nowhere"}`, 400, "Missing node registration"},
		{`{"Name":"` + strings.Repeat("x", 1025) + `"}`, 400, "limit is 1024"},
		{`{"Name":"` + strings.Repeat("x", maxSessionBody) + `"}`, 413, "too large"},
	} {
		b.unchanged(t, c.body, func() {
			wantPlainError(t, call(t, s, "PUT", "/v1/session/create", []byte(c.body)), c.status, c.want)
		})
	}
	if sessions, _, _ := b.store.Sessions(""); len(sessions) != 0 {
		t.Fatalf("refused creates stored %+v", sessions)
	}
	wantStatus(t, call(t, s, "GET", "/v1/session/create", nil), 405)
	wantPlainError(t, call(t, s, "PUT", "/v1/session/create?dc=far", nil), 500, "No path to datacenter")
}

func TestSession_RenewDestroyInfoList(t *testing.T) {
	s, b := newAPI(t)
	a := createSession(t, s, `{"TTL":"10s","Name":"a"}`)
	other := createSession(t, s, `{"Node":"n2"}`)

	// Renew answers the session in a list, TTL as submitted; ids match
	// without regard to case.
	w := call(t, s, "PUT", "/v1/session/renew/"+strings.ToUpper(a), nil)
	wantStatus(t, w, 200)
	var renewed []SessionEntry
	if err := json.Unmarshal(w.Body.Bytes(), &renewed); err != nil || len(renewed) != 1 || renewed[0].ID != a || renewed[0].TTL != "10s" {
		t.Fatalf("renew: %q %v", w.Body.String(), err)
	}
	wantPlainError(t, call(t, s, "PUT", "/v1/session/renew/0a2b4c6d-1111-2222-3333-444455556666", nil), 404, "Session id '0a2b4c6d-1111-2222-3333-444455556666' not found")
	wantPlainError(t, call(t, s, "PUT", "/v1/session/renew/", nil), 400, "Missing session")
	wantPlainError(t, call(t, s, "PUT", "/v1/session/renew/a/b", nil), 400, "Invalid session id")

	// list and node, with the sessions-wide index.
	w = call(t, s, "GET", "/v1/session/list", nil)
	var all []SessionEntry
	if err := json.Unmarshal(w.Body.Bytes(), &all); err != nil || len(all) != 2 {
		t.Fatalf("list: %q", w.Body.String())
	}
	listIdx := headerIndex(t, w)
	w = call(t, s, "GET", "/v1/session/node/N2", nil)
	var onN2 []SessionEntry
	if err := json.Unmarshal(w.Body.Bytes(), &onN2); err != nil || len(onN2) != 1 || onN2[0].ID != other {
		t.Fatalf("node/N2: %q", w.Body.String())
	}
	wantStatus(t, call(t, s, "GET", "/v1/session/node/nobody", nil), 200, "[]")
	wantPlainError(t, call(t, s, "GET", "/v1/session/node/", nil), 400, "Missing node name")
	wantPlainError(t, call(t, s, "GET", "/v1/session/list?stale&consistent", nil), 400, "conflicting")

	// Destroy: true, also for a session that does not exist; info of a
	// destroyed session is [] (never 404: the client would see an error).
	wantStatus(t, call(t, s, "PUT", "/v1/session/destroy/"+a, nil), 200, "true")
	if sessionInfo(t, s, a) != nil {
		t.Fatal("the destroyed session is still there")
	}
	wantStatus(t, call(t, s, "PUT", "/v1/session/destroy/"+a, nil), 200, "true")
	wantPlainError(t, call(t, s, "PUT", "/v1/session/destroy/", nil), 400, "Missing session")
	if idx := headerIndex(t, call(t, s, "GET", "/v1/session/list", nil)); idx <= listIdx {
		t.Fatalf("sessions index %d after a destroy, was %d", idx, listIdx)
	}
	wantPlainError(t, call(t, s, "PUT", "/v1/session/renew/"+a, nil), 404, "not found")
	if n := b.renewCalls.Load(); n != 3 {
		t.Fatalf("%d renewals reached the backend, want 3", n)
	}
}

// Session info blocks until the session appears, on the sessions-wide
// index, and wakes for its creation.
func TestSession_BlockingInfo(t *testing.T) {
	s, _ := newAPI(t)
	createSession(t, s, "")
	w := call(t, s, "GET", "/v1/session/info/nope", nil)
	idx := headerIndex(t, w)
	ch := startGet(t, s, "/v1/session/info/nope?index="+u(idx)+"&wait=200ms")
	r := await(t, ch, 10*time.Second)
	if r.w.Code != 200 || strings.TrimSpace(r.w.Body.String()) != "[]" {
		t.Fatalf("timed out blocking read: %d %q", r.w.Code, r.w.Body.String())
	}
	ch = startGet(t, s, "/v1/session/list?index="+u(idx)+"&wait=30s")
	id := createSession(t, s, "")
	r = await(t, ch, 10*time.Second)
	if !strings.Contains(r.w.Body.String(), id) || headerIndex(t, r.w) <= idx {
		t.Fatalf("woken list: %q", r.w.Body.String())
	}
}

// ?acquire and ?release with Consul's rules, through the API.
func TestKV_AcquireRelease(t *testing.T) {
	s, b := newAPI(t)
	s1 := createSession(t, s, `{"LockDelay":"1h"}`)
	s2 := createSession(t, s, "")
	get := func() KVPair {
		t.Helper()
		pairs := decodePairs(t, call(t, s, "GET", "/v1/kv/lk", nil))
		return pairs[0]
	}
	wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?acquire="+s1+"&flags=3304740253564472344", []byte("v1")), 200, "true")
	if p := get(); p.Session != s1 || p.LockIndex != 1 || string(p.Value) != "v1" || p.Flags != 3304740253564472344 {
		t.Fatalf("acquired: %+v", p)
	}
	// Held by another: false, nothing changes.
	b.unchangedKV(t, "acquire by another", func() {
		wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?acquire="+s2, []byte("x")), 200, "false")
		wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?release="+s2, []byte("x")), 200, "false")
	})
	// The holder again (its id in upper case): the value changes, the
	// lock term does not.
	wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?acquire="+strings.ToUpper(s1), []byte("v2")), 200, "true")
	if p := get(); p.LockIndex != 1 || string(p.Value) != "v2" || p.Flags != 0 {
		t.Fatalf("re-acquired: %+v", p)
	}
	// A plain PUT by anyone keeps the holder (the Go client's lock
	// monitor relies on it).
	put(t, s, "lk", "plain")
	if p := get(); p.Session != s1 {
		t.Fatalf("a plain PUT dropped the holder: %+v", p)
	}
	wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?release="+s1, []byte("released")), 200, "true")
	if p := get(); p.Session != "" || p.LockIndex != 1 || string(p.Value) != "released" {
		t.Fatalf("released: %+v", p)
	}
	// A release sets no lock-delay: the next acquisition is at once, and
	// starts the next lock term.
	wantStatus(t, call(t, s, "PUT", "/v1/kv/lk?acquire="+s2, nil), 200, "true")
	if p := get(); p.Session != s2 || p.LockIndex != 2 {
		t.Fatalf("second term: %+v", p)
	}
	// An unknown session: Consul's 500, and no log entry.
	b.unchanged(t, "acquire with an unknown session", func() {
		wantPlainError(t, call(t, s, "PUT", "/v1/kv/other?acquire=0a2b4c6d-1111-2222-3333-444455556666", nil), 500, `invalid session "0a2b4c6d-1111-2222-3333-444455556666"`)
	})
}

// Invalidation: behaviour release unlocks and starts the lock-delay
// (acquisitions answer false until it passes); behaviour delete deletes
// the key (Consul's ephemeral keys).
func TestKV_InvalidationAndLockDelay(t *testing.T) {
	s, _ := newAPI(t)
	holder := createSession(t, s, `{"LockDelay":"1h"}`)
	eph := createSession(t, s, `{"Behavior":"delete"}`)
	next := createSession(t, s, "")
	wantStatus(t, call(t, s, "PUT", "/v1/kv/guarded?acquire="+holder, []byte("g")), 200, "true")
	wantStatus(t, call(t, s, "PUT", "/v1/kv/ephemeral?acquire="+eph, []byte("e")), 200, "true")
	wantStatus(t, call(t, s, "PUT", "/v1/session/destroy/"+holder, nil), 200, "true")
	wantStatus(t, call(t, s, "PUT", "/v1/session/destroy/"+eph, nil), 200, "true")

	if p := decodePairs(t, call(t, s, "GET", "/v1/kv/guarded", nil))[0]; p.Session != "" || string(p.Value) != "g" {
		t.Fatalf("released by invalidation: %+v", p)
	}
	wantStatus(t, call(t, s, "GET", "/v1/kv/ephemeral", nil), 404)
	w := call(t, s, "PUT", "/v1/kv/guarded?acquire="+next, nil)
	wantStatus(t, w, 200, "false")
	if w.Header().Get("X-Consul-Index") != "" {
		t.Errorf("a refusal before Raft carries X-Consul-Index %q", w.Header().Get("X-Consul-Index"))
	}
	// In a transaction, the same refusal is a failed operation.
	w = call(t, s, "PUT", "/v1/txn", []byte(`[{"KV":{"Verb":"lock","Key":"guarded","Session":"`+next+`"}}]`))
	wantStatus(t, w, 409, "due to lock delay")
}

// The ACL rules for sessions: session:write on the session's node to
// create, renew or destroy; reads show only the sessions whose node the
// token may read.
func TestSession_ACL(t *testing.T) {
	f := newACLFixture(t)
	mkPolicy(t, f.s, f.mgmt, "lock-n1", `session "n1" { policy = "write" } key_prefix "locks/" { policy = "write" }`)
	mkPolicy(t, f.s, f.mgmt, "see-n2", `session_prefix "n2" { policy = "read" }`)
	locker := mkToken(t, f.s, f.mgmt, "lock-n1")
	viewer := mkToken(t, f.s, f.mgmt, "see-n2")

	id := createSession(t, f.s, "", "X-Consul-Token", locker)
	f.b.unchanged(t, "create on another node", func() {
		wantPlainError(t, call(t, f.s, "PUT", "/v1/session/create", []byte(`{"Node":"n2"}`), "X-Consul-Token", locker), 403, "session:write")
	})
	onN2 := createSession(t, f.s, `{"Node":"n2"}`, "X-Consul-Token", f.mgmt)
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/locks/a?acquire="+id, nil, "X-Consul-Token", locker), 200, "true")
	wantStatus(t, call(t, f.s, "PUT", "/v1/session/renew/"+id, nil, "X-Consul-Token", locker), 200)
	f.b.unchanged(t, "renew and destroy of another node's session", func() {
		wantPlainError(t, call(t, f.s, "PUT", "/v1/session/renew/"+onN2, nil, "X-Consul-Token", locker), 403, "session:write")
		wantPlainError(t, call(t, f.s, "PUT", "/v1/session/destroy/"+onN2, nil, "X-Consul-Token", locker), 403, "session:write")
		wantPlainError(t, call(t, f.s, "PUT", "/v1/session/destroy/"+id, nil, "X-Consul-Token", viewer), 403, "session:write")
		wantPlainError(t, call(t, f.s, "PUT", "/v1/session/create", nil, "X-Consul-Token", f.read), 403, "session:write")
	})
	w := call(t, f.s, "GET", "/v1/session/list", nil, "X-Consul-Token", viewer)
	var seen []SessionEntry
	if err := json.Unmarshal(w.Body.Bytes(), &seen); err != nil || len(seen) != 1 || seen[0].ID != onN2 || w.Header().Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Fatalf("filtered list: %q %v", w.Body.String(), err)
	}
	wantStatus(t, call(t, f.s, "GET", "/v1/session/list", nil), 401)
	wantStatus(t, call(t, f.s, "PUT", "/v1/session/destroy/"+id, nil, "X-Consul-Token", locker), 200, "true")
	if e, _, _, _ := f.b.store.Get("locks/a"); e.Session != "" {
		t.Fatalf("destroy left the lock held: %+v", e)
	}
}
