package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/troupe-kv/troupe/storage"
)

var fuzzMethods = []string{"GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS", "PATCH"}

// FuzzKVPath sends arbitrary key paths and query strings through the
// handler with every method. The handler must never panic, never answer 5xx
// except Consul's documented 500s (another datacenter, acquire/release), and
// a 4xx must leave the store exactly as it was.
func FuzzKVPath(f *testing.F) {
	seeds := []struct {
		method uint8
		target string
		body   string
	}{
		{0, "web/config", ""},
		{2, "web/config", "value"},
		{2, "web/config?flags=16210313421097356768", "v"},
		{2, "web/config?cas=0", "v"},
		{2, "web/config?cas=1&acquire=s", "v"},
		{2, "web/config?acquire=abc", "v"},
		{2, "web/config?release=", "v"},
		{2, "?recurse", "v"},
		{2, "a//b", "v"},
		{2, "/a", "v"},
		{2, "a/./b", "v"},
		{2, "a/../b", "v"},
		{2, "a%00b", "v"},
		{2, "a%FFb", "v"},
		{2, "with%20space%3F%23%25", "v"},
		{2, "big", strings.Repeat("x", 65)},
		{0, "?keys", ""},
		{0, "?keys&separator=/", ""},
		{0, "web/?keys&seperator=/", ""},
		{0, "?recurse", ""},
		{0, "web?recurse&raw", ""},
		{0, "web/config?raw", ""},
		{0, "web/config?stale&consistent", ""},
		{0, "web/config?index=1&wait=10ms", ""},
		{0, "web/config?index=abc", ""},
		{0, "web/config?wait=10", ""},
		{0, "web/config?dc=other", ""},
		{0, "web/config?ns=team&partition=x", ""},
		{0, "web/config?datacenter=dc1&dc=x", ""},
		{1, "web/config?raw", ""},
		{3, "web/config", ""},
		{3, "web/config?cas=5", ""},
		{3, "?recurse", ""},
		{3, "web?recurse&cas=0", ""},
		{3, "", ""},
		{4, "web/config", "v"},
		{5, "web/config", ""},
		{6, "web/config", "v"},
		{2, "a;b?x=1;y=2", "v"},
		{2, "k?flags=%2B1", "v"},
		{0, "k?index=18446744073709551615&wait=1ms", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body))
	}
	const maxValue = 64
	b := newFakeBackend(f, f.TempDir())
	s := New(Backends{KV: b, Cluster: b}, Options{MaxValueSize: maxValue, RequestTimeout: time.Second})

	f.Fuzz(func(t *testing.T, m uint8, target string, body []byte) {
		req, ctx := fuzzKVRequest(t, m, target, body)
		method, u, uri := req.Method, req.URL, req.RequestURI

		before, calls := snapshotStore(t, b.store), b.applyCalls.Load()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		after := snapshotStore(t, b.store)
		changed := b.applyCalls.Load() != calls || before.applied != after.applied

		silent := ctx.Err() != nil && w.Header().Get("X-Consul-Index") == "" && w.Body.Len() == 0
		switch {
		case silent:
			// A blocking read the client gave up on: nothing is written.
			if changed {
				t.Fatalf("%s %s: an abandoned read changed the store", method, uri)
			}
			return
		case w.Code >= 500:
			msg := w.Body.String()
			documented := w.Code == 500 && (strings.Contains(msg, "No path to datacenter") || strings.Contains(msg, "session"))
			if !documented {
				t.Fatalf("%s %s: %d %q", method, uri, w.Code, msg)
			}
			if changed {
				t.Fatalf("%s %s: %d and the store changed", method, uri, w.Code)
			}
		case w.Code >= 400:
			if changed {
				t.Fatalf("%s %s: %d %q but the store changed:\n%+v\n%+v", method, uri, w.Code, w.Body.String(), before, after)
			}
			if w.Code == 405 && (method == "GET" || method == "HEAD" || method == "PUT" || method == "DELETE") {
				t.Fatalf("%s %s: 405 for a supported method", method, uri)
			}
			if w.Code == 413 && int64(len(body)) <= maxValue {
				t.Fatalf("%s %s: 413 for %d bytes", method, uri, len(body))
			}
		case w.Code == 200 || w.Code == 404:
		default:
			t.Fatalf("%s %s: unexpected status %d %q", method, uri, w.Code, w.Body.String())
		}

		key := strings.TrimPrefix(u.Path, "/v1/kv/")
		switch method {
		case "GET", "HEAD":
			if changed {
				t.Fatalf("%s %s: a read changed the store", method, uri)
			}
			if w.Code == 200 || w.Code == 404 {
				if idx, err := strconv.ParseUint(w.Header().Get("X-Consul-Index"), 10, 64); err != nil || idx < 1 {
					t.Fatalf("%s %s: X-Consul-Index %q", method, uri, w.Header().Get("X-Consul-Index"))
				}
			}
		case "PUT":
			if w.Code == 200 && len(body) > maxValue {
				t.Fatalf("PUT %s: stored %d bytes over the %d limit", uri, len(body), maxValue)
			}
			if w.Code == 200 && w.Body.String() == "true" {
				if err := validateKey(key, false); err != nil {
					t.Fatalf("PUT %s: stored an invalid key %q (%v)", uri, key, err)
				}
				e, found, _, err := b.store.Get(key)
				if err != nil || !found || !bytes.Equal(e.Value, body) {
					t.Fatalf("PUT %s answered true, but the store has %q (found %v, %v)", uri, e.Value, found, err)
				}
			}
		case "POST", "PATCH", "OPTIONS":
			if changed {
				t.Fatalf("%s %s changed the store", method, uri)
			}
		}
	})
}

func httpBody(b []byte) *bodyReader { return &bodyReader{bytes.NewReader(b)} }

type bodyReader struct{ *bytes.Reader }

func (bodyReader) Close() error { return nil }

// keyOK restates the key rules independently of validateKey.
func keyOK(k string) bool {
	if k == "" || len(k) > MaxKeySize || !utf8.ValidString(k) || k[0] == '/' || strings.Contains(k, "//") {
		return false
	}
	for _, r := range k {
		if unicode.IsControl(r) {
			return false
		}
	}
	for _, seg := range strings.Split(k, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// FuzzValidateKey checks validateKey against the rules, and that every key
// it accepts is addressable: the Consul client's URL encoding of it decodes
// back to the same key on the server.
func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"", "a", "a/b", "a/", "/a", "a//b", ".", "..", "a/./b", "a/../b", "...", "a\x00", "\xff",
		"with space", "q?x#y%z", "ключ", "a\x7f", "a\u0085", strings.Repeat("x", MaxKeySize), strings.Repeat("x", MaxKeySize+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := validateKey(key, false)
		errPrefix := validateKey(key, true)
		if (err == nil) != keyOK(key) {
			t.Fatalf("validateKey(%q) = %v, rules say ok=%v", key, err, keyOK(key))
		}
		if err != nil && err.Error() == "" {
			t.Fatalf("validateKey(%q): empty message", key)
		}
		if key == "" {
			if err == nil || errPrefix != nil {
				t.Fatalf("empty key: key err %v, prefix err %v", err, errPrefix)
			}
		} else if (err == nil) != (errPrefix == nil) {
			t.Fatalf("%q: as key %v, as prefix %v", key, err, errPrefix)
		}
		if err != nil {
			return
		}
		u := &url.URL{Path: "/v1/kv/" + key}
		back, perr := url.ParseRequestURI(u.RequestURI())
		if perr != nil {
			t.Fatalf("%q: the encoded path %q does not parse: %v", key, u.RequestURI(), perr)
		}
		if got := strings.TrimPrefix(back.Path, "/v1/kv/"); got != key {
			t.Fatalf("%q: sent as %q, arrives as %q", key, u.RequestURI(), got)
		}
	})
}

// fuzzKVRequest builds the request a KV fuzz target sends: fuzzMethods[m]
// on /v1/kv/<target> as the client wrote it (no path cleaning), bounded
// by a short deadline (ctx) so a blocking read cannot stall the fuzzer. A
// target that is no request URI skips the input.
func fuzzKVRequest(t *testing.T, m uint8, target string, body []byte) (*http.Request, context.Context) {
	method := fuzzMethods[int(m)%len(fuzzMethods)]
	uri := "/v1/kv/" + target
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		t.Skip()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	t.Cleanup(cancel)
	req := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	req.Method, req.URL, req.RequestURI = method, u, uri
	req.Body = http.NoBody
	req.ContentLength = 0
	if len(body) > 0 {
		req.Body = httpBody(body)
		req.ContentLength = int64(len(body))
	}
	return req, ctx
}

// FuzzTxnJSON sends arbitrary bodies to PUT /v1/txn. The handler must
// never panic and never answer 5xx (the fake backend never fails); a 400
// or 413 must leave the store exactly as it was and never reach Apply; a
// 409 must leave every key as it was (a rollback at apply time is an
// applied entry, so only the applied index may move); a 200 is a
// well-formed TxnResponse without null results.
func FuzzTxnJSON(f *testing.F) {
	op := func(verb, key, value string) string {
		return `{"KV":{"Verb":"` + verb + `","Key":"` + key + `","Value":` + value + `,"Flags":0,"Index":0,"Session":""},"Node":null,"Service":null,"Check":null}`
	}
	for _, s := range []string{
		"[" + op("set", "a", `"eA=="`) + "," + op("get", "a", "null") + "]",
		"[" + op("get-tree", "a", "null") + "]",
		"[" + op("delete-tree", "", "null") + "]",
		"[" + op("lock", "a", "null") + "," + op("get", "a", "null") + "]",
		"[" + op("check-not-exists", "b", "null") + "," + op("cas", "b", `"eQ=="`) + "]",
		`[{"KV":{"Verb":"delete-cas","Key":"a","Index":18446744073709551615}}]`,
		`[{"KV":{"Verb":"check-index","Key":"a","Index":1}},{"KV":{"Verb":"unlock","Key":"a","Session":"s"}}]`,
		`[{"Node":{"Verb":"set"}}]`, `[{}]`, `[]`, `null`, `{}`, `[`, `[1]`, `["x"]`,
		`[{"KV":{"Verb":"set","Key":"a//b"}}]`, `[{"KV":{"Verb":"set","Key":"a","Value":"!!"}}]`,
		`[{"KV":{"Verb":"set","Key":"a","Flags":1e3}}]`, `[{"kv":{"verb":"get","key":"a"}}]`,
		`[{"KV":{"Verb":"get","Key":"a"}}] x`, `[{"KV":{"Verb":"get","Key":"\u0000"}}]`,
	} {
		f.Add(uint8(0), []byte(s))
		f.Add(uint8(1), []byte(s))
	}
	const maxValue = 64
	b := newFakeBackend(f, f.TempDir())
	s := New(Backends{KV: b, Cluster: b}, Options{MaxValueSize: maxValue, TxnMaxOps: 8, RequestTimeout: time.Second})
	queries := []string{"", "?stale", "?consistent", "?stale&consistent"}
	f.Fuzz(func(t *testing.T, q uint8, body []byte) {
		target := "/v1/txn" + queries[int(q)%len(queries)]
		before, calls := snapshotStore(t, b.store), b.applyCalls.Load()
		w := httptest.NewRecorder()
		req := httptest.NewRequest("PUT", target, bytes.NewReader(body))
		s.ServeHTTP(w, req)
		after := snapshotStore(t, b.store)
		applied := b.applyCalls.Load() != calls
		switch {
		case w.Code == 400 || w.Code == 413:
			if applied || !reflect.DeepEqual(before, after) {
				t.Fatalf("%s %q: %d %q, but the store changed (applied %v)", target, body, w.Code, w.Body.String(), applied)
			}
			if w.Code == 413 && len(body) <= maxValue && !strings.Contains(w.Body.String(), "operations") {
				t.Fatalf("%q: 413 %q for a body within every size limit", body, w.Body.String())
			}
		case w.Code == 409:
			before.applied, after.applied = 0, 0
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("%q: 409 but the keys changed:\n%+v\n%+v", body, before, after)
			}
			var r TxnResponse
			if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil || len(r.Errors) == 0 || r.Results != nil {
				t.Fatalf("%q: 409 body %q (%v)", body, w.Body.String(), err)
			}
		case w.Code == 200:
			var r struct{ Results []*TxnResult }
			if err := json.Unmarshal(w.Body.Bytes(), &r); err != nil || r.Results == nil {
				t.Fatalf("%q: 200 body %q (%v)", body, w.Body.String(), err)
			}
			for _, res := range r.Results {
				if res == nil || res.KV == nil {
					t.Fatalf("%q: null result in %q", body, w.Body.String())
				}
			}
		default:
			t.Fatalf("%s %q: unexpected %d %q", target, body, w.Code, w.Body.String())
		}
	})
}

// FuzzSessionJSON sends arbitrary bodies to PUT /v1/session/create. The
// handler must never panic and never answer 5xx (the fake backend never
// fails); a 400 or 413 must leave the store exactly as it was and never
// reach Apply; a 200 must have stored exactly one new session that
// honours every rule of the create (a known behaviour, a TTL of none or
// within bounds, serfHealth as the only check, a lock-delay that is not
// negative, a member as its node), and read back through info in
// Consul's shape.
func FuzzSessionJSON(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `{"NodeChecks":[]}`, `{"Checks":["serfHealth"]}`,
		`{"Behavior":"delete","LockDelay":"2000ms","Name":"n","TTL":"10s"}`,
		`{"Name":"Consul API Lock","TTL":"15s"}`, `{"Name":"Consul API Semaphore","TTL":"15s","Behavior":"delete"}`,
		`{"LockDelay":15}`, `{"LockDelay":1e9}`, `{"LockDelay":-1}`, `{"LockDelay":"1h"}`, `{"LockDelay":1.5}`,
		`{"TTL":"9s"}`, `{"TTL":"24h0m1s"}`, `{"TTL":"0"}`, `{"TTL":"1e3s"}`, `{"Node":"N2"}`, `{"Node":"n3"}`,
		`{"ServiceChecks":[{"ID":"a","Namespace":"b"}]}`, `{"NodeChecks":null,"Checks":null}`, `{"Behavior":"Release"}`,
		`{"Name":"\u0000\ud800"}`, `{"ID":"chosen-by-client"}`, `[`, `{"Name":1}`, `{} x`,
	} {
		f.Add([]byte(s))
	}
	b := newFakeBackend(f, f.TempDir())
	s := New(Backends{KV: b, Cluster: b, Sessions: b}, Options{NodeID: "n1", RequestTimeout: time.Second})
	f.Fuzz(func(t *testing.T, body []byte) {
		before, calls := snapshotStore(t, b.store), b.applyCalls.Load()
		sessionsBefore, _, err := b.store.Sessions("")
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("PUT", "/v1/session/create", bytes.NewReader(body)))
		switch w.Code {
		case 400, 413:
			if b.applyCalls.Load() != calls || !reflect.DeepEqual(before, snapshotStore(t, b.store)) {
				t.Fatalf("%q: %d %q, but the store changed", body, w.Code, w.Body.String())
			}
			if strings.TrimSpace(w.Body.String()) == "" {
				t.Fatalf("%q: %d without a reason", body, w.Code)
			}
			return
		case 200:
		default:
			t.Fatalf("%q: unexpected %d %q", body, w.Code, w.Body.String())
		}
		var created struct{ ID string }
		if err := json.Unmarshal(w.Body.Bytes(), &created); err != nil || len(created.ID) != 36 {
			t.Fatalf("%q: 200 body %q (%v)", body, w.Body.String(), err)
		}
		sessions, _, err := b.store.Sessions("")
		if err != nil || len(sessions) != len(sessionsBefore)+1 {
			t.Fatalf("%q: %d sessions after a create, %d before (%v)", body, len(sessions), len(sessionsBefore), err)
		}
		sess, found, _, err := b.store.Session(created.ID)
		if err != nil || !found {
			t.Fatalf("%q: the created session is not stored (%v)", body, err)
		}
		ttl, terr := time.ParseDuration(sess.TTL)
		switch {
		case sess.Behavior != storage.SessionRelease && sess.Behavior != storage.SessionDelete:
			t.Fatalf("%q: behaviour %q", body, sess.Behavior)
		case sess.TTL != "" && (terr != nil || ttl != 0 && (ttl < DefaultSessionTTLMin || ttl > MaxSessionTTL)):
			t.Fatalf("%q: TTL %q", body, sess.TTL)
		case sess.LockDelay < 0:
			t.Fatalf("%q: lock-delay %v", body, sess.LockDelay)
		case sess.Node != "n1" && sess.Node != "n2":
			t.Fatalf("%q: node %q", body, sess.Node)
		case sess.NodeChecks == nil || len(sess.NodeChecks) > 1 || len(sess.NodeChecks) == 1 && sess.NodeChecks[0] != storage.CheckSerfHealth:
			t.Fatalf("%q: node checks %q", body, sess.NodeChecks)
		}
		info := httptest.NewRecorder()
		s.ServeHTTP(info, httptest.NewRequest("GET", "/v1/session/info/"+created.ID, nil))
		var entries []SessionEntry
		if err := json.Unmarshal(info.Body.Bytes(), &entries); err != nil || len(entries) != 1 || entries[0].ID != created.ID ||
			entries[0].TTL != sess.TTL || entries[0].LockDelay != sess.LockDelay || entries[0].NodeChecks == nil {
			t.Fatalf("%q: info %d %q (%v)", body, info.Code, info.Body.String(), err)
		}
	})
}

// FuzzAlarmParams: whatever query a disarm carries, alarmParams either
// refuses it or returns a known type (or any) and a member that cannot
// reach past its own alarm key.
func FuzzAlarmParams(f *testing.F) {
	for _, q := range []string{"", "type=nospace", "member=n2", "type=nospace&member=n2", "type=x", "member=a/b", "member=a%2Fb", "x=1", "type=nospace&type=y", ";;"} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		typ, member, err := alarmParams(q)
		if err != nil {
			return
		}
		if typ != "" && typ != storage.AlarmNoSpace {
			t.Fatalf("%q: type %q accepted", raw, typ)
		}
		if strings.Contains(member, "/") {
			t.Fatalf("%q: member %q accepted", raw, member)
		}
	})
}
