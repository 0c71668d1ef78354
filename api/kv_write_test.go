package api

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func getValue(t testing.TB, s http.Handler, key string) (string, bool) {
	t.Helper()
	w := call(t, s, "GET", "/v1/kv/"+key+"?raw", nil)
	switch w.Code {
	case 200:
		return w.Body.String(), true
	case 404:
		return "", false
	}
	t.Fatalf("GET %s: %d %q", key, w.Code, w.Body.String())
	return "", false
}

func TestPutPlain(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "PUT", "/v1/kv/a/b", []byte("v1"), "Content-Type", "application/octet-stream")
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Errorf("body %q, want exactly true", w.Body.String())
	}
	idx := headerIndex(t, w)
	if idx != b.store.AppliedIndex() {
		t.Errorf("X-Consul-Index %d, want the write's index %d", idx, b.store.AppliedIndex())
	}
	if v, _ := getValue(t, s, "a/b"); v != "v1" {
		t.Errorf("value %q", v)
	}
	// The request's Content-Type is irrelevant; the body is stored verbatim.
	body := []byte(`{"json": true}` + "\r\n\x00")
	w = call(t, s, "PUT", "/v1/kv/a/b", body, "Content-Type", "application/json; charset=utf-8")
	wantStatus(t, w, 200, "true")
	if v, _ := getValue(t, s, "a/b"); v != string(body) {
		t.Errorf("value %q, want %q", v, body)
	}
	// Clients with Config.WaitTime send wait (and possibly index) on writes
	// too; a write ignores them.
	w = call(t, s, "PUT", "/v1/kv/a/b?wait=15000ms&index=999999", []byte("v3"))
	wantStatus(t, w, 200, "true")
	w = call(t, s, "DELETE", "/v1/kv/a/b?wait=15000ms", nil)
	wantStatus(t, w, 200, "true")
}

func TestPutCAS(t *testing.T) {
	s, b := newAPI(t)
	// cas=0: create only.
	w := call(t, s, "PUT", "/v1/kv/lock?cas=0", []byte("first"))
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Fatalf("create-only on a missing key: %q", w.Body.String())
	}
	created := headerIndex(t, w)
	b.unchangedKV(t, "cas=0 on an existing key", func() {
		w = call(t, s, "PUT", "/v1/kv/lock?cas=0", []byte("second"))
		wantStatus(t, w, 200)
		if w.Body.String() != "false" {
			t.Errorf("create-only on an existing key: %q, want false", w.Body.String())
		}
	})
	// cas=N: only with the current ModifyIndex.
	for _, bad := range []uint64{created - 1, created + 1, 999} {
		b.unchangedKV(t, "cas with a stale index", func() {
			w = call(t, s, "PUT", "/v1/kv/lock?cas="+strconv.FormatUint(bad, 10), []byte("x"))
			wantStatus(t, w, 200)
			if w.Body.String() != "false" {
				t.Errorf("cas=%d (current %d): %q, want false", bad, created, w.Body.String())
			}
		})
	}
	w = call(t, s, "PUT", "/v1/kv/lock?cas="+strconv.FormatUint(created, 10), []byte("third"))
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Errorf("cas with the current index: %q", w.Body.String())
	}
	if v, _ := getValue(t, s, "lock"); v != "third" {
		t.Errorf("value %q, want third", v)
	}
	// cas=N on a missing key fails.
	w = call(t, s, "PUT", "/v1/kv/absent?cas=5", []byte("x"))
	wantStatus(t, w, 200, "false")
	if _, ok := getValue(t, s, "absent"); ok {
		t.Error("cas=5 created a missing key")
	}
}

// unchangedKV is unchanged for requests that do reach Apply but must leave
// the keys as they were (a failed CAS still takes a log index).
func (f *fakeBackend) unchangedKV(t testing.TB, what string, fn func()) {
	t.Helper()
	before := snapshotStore(t, f.store)
	fn()
	after := snapshotStore(t, f.store)
	if before.kvIndex != after.kvIndex || len(before.entries) != len(after.entries) {
		t.Errorf("%s changed the keys: %+v -> %+v", what, before, after)
		return
	}
	for i := range before.entries {
		if !entriesEqual(before.entries[i], after.entries[i]) {
			t.Errorf("%s changed %q: %+v -> %+v", what, before.entries[i].Key, before.entries[i], after.entries[i])
		}
	}
}

func TestPutRejectedRequestsStoreNothing(t *testing.T) {
	cases := []struct {
		name   string
		target string
		status int
		want   string
	}{
		{"cas+acquire", "/v1/kv/k?cas=0&acquire=s1", 400, "Conflicting flags"},
		{"cas+release", "/v1/kv/k?cas=0&release=s1", 400, "Conflicting flags"},
		{"acquire+release", "/v1/kv/k?acquire=s1&release=s1", 400, "Conflicting flags"},
		{"acquire", "/v1/kv/k?acquire=0a2b4c6d-1111-2222-3333-444455556666", 500, `invalid session "0a2b4c6d-1111-2222-3333-444455556666"`},
		{"acquire empty", "/v1/kv/k?acquire=", 400, "missing session"},
		{"release empty", "/v1/kv/k?release", 400, "missing session"},
		{"acquire oversized session", "/v1/kv/k?acquire=" + strings.Repeat("s", 129), 400, "limit"},
		{"flags not a number", "/v1/kv/k?flags=abc", 400, "flags"},
		{"flags negative", "/v1/kv/k?flags=-1", 400, "flags"},
		{"flags overflow", "/v1/kv/k?flags=18446744073709551616", 400, "flags"},
		{"flags empty", "/v1/kv/k?flags=", 400, "flags"},
		{"cas not a number", "/v1/kv/k?cas=x", 400, "cas"},
		{"cas empty", "/v1/kv/k?cas", 400, "cas"},
		{"cas negative", "/v1/kv/k?cas=-3", 400, "cas"},
		{"empty key", "/v1/kv/", 400, "Missing key name"},
		{"empty key no slash", "/v1/kv", 400, "Missing key name"},
		{"leading slash", "/v1/kv//k", 400, "must not start with '/'"},
		{"dc", "/v1/kv/k?dc=elsewhere", 500, "No path to datacenter"},
		{"ns", "/v1/kv/k?ns=team", 400, "Namespaces"},
		{"partition", "/v1/kv/k?partition=p1", 400, "partitions"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := newAPI(t)
			put(t, s, "k", "original")
			b.unchanged(t, c.target, func() {
				wantPlainError(t, call(t, s, "PUT", c.target, []byte("new value")), c.status, c.want)
			})
		})
	}
}

func TestPutValueSizeLimit(t *testing.T) {
	const limit = 1024
	cases := []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{"exactly the limit", limit, false, 200},
		{"one byte over", limit + 1, false, 413},
		{"far over", 10 * limit, false, 413},
		{"chunked, exactly the limit", limit, true, 200},
		{"chunked, one byte over", limit + 1, true, 413},
		{"chunked, far over", 10 * limit, true, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := newAPI(t, withMaxValue(limit))
			srv := httptest.NewServer(s)
			defer srv.Close()
			body := bytes.Repeat([]byte("x"), c.size)
			var r io.Reader = bytes.NewReader(body)
			if c.chunked {
				r = io.MultiReader(r) // hides the length: sent chunked
			}
			req, err := http.NewRequest("PUT", srv.URL+"/v1/kv/big", r)
			if err != nil {
				t.Fatal(err)
			}
			check := func() {
				resp, err := srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				msg, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != c.status {
					t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.status, msg)
				}
				if c.status == 413 && !strings.Contains(string(msg), "too large") {
					t.Errorf("413 body %q", msg)
				}
				if c.status == 413 && !strings.Contains(string(msg), strconv.Itoa(limit)) {
					t.Errorf("413 body %q does not name the limit", msg)
				}
			}
			if c.status == 200 {
				check()
				if v, _ := getValue(t, s, "big"); v != string(body) {
					t.Errorf("stored %d bytes, want %d", len(v), len(body))
				}
				return
			}
			b.unchanged(t, "an oversized PUT", check)
		})
	}
}

// With the default limit (Consul's 512 KiB), through the handler directly.
func TestPutDefaultValueSizeLimit(t *testing.T) {
	s, b := newAPI(t)
	ok := bytes.Repeat([]byte("a"), DefaultMaxValueSize)
	wantStatus(t, call(t, s, "PUT", "/v1/kv/k", ok), 200, "true")
	tooBig := append(ok, 'b')
	b.unchanged(t, "513 KiB PUT", func() {
		wantPlainError(t, call(t, s, "PUT", "/v1/kv/k", tooBig), 413, "524288")
	})
	// Without a Content-Length the limit holds while reading.
	b.unchanged(t, "chunked 513 KiB PUT", func() {
		req := httptest.NewRequest("PUT", "/v1/kv/k", io.MultiReader(bytes.NewReader(tooBig)))
		req.ContentLength = -1
		req.TransferEncoding = []string{"chunked"}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		wantPlainError(t, w, 413, "524288")
	})
}

// BUG: a chunked body over the limit is reported as "Request body (-1
// bytes) too large": readValue passes r.ContentLength, which is -1 when the
// length is unknown.
func TestPutChunkedTooLargeMessageHasNoNegativeSize(t *testing.T) {
	s, _ := newAPI(t, withMaxValue(16))
	req := httptest.NewRequest("PUT", "/v1/kv/k", io.MultiReader(strings.NewReader(strings.Repeat("x", 17))))
	req.ContentLength = -1
	req.TransferEncoding = []string{"chunked"}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	wantPlainError(t, w, 413, "too large")
	if strings.Contains(w.Body.String(), "-1") {
		t.Errorf("413 message reports a negative body size: %q", w.Body.String())
	}
}

func TestDelete(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "a", "1")
	put(t, s, "b", "2")

	w := call(t, s, "DELETE", "/v1/kv/a", nil)
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Errorf("body %q", w.Body.String())
	}
	if _, ok := getValue(t, s, "a"); ok {
		t.Error("a survived its delete")
	}
	if _, ok := getValue(t, s, "b"); !ok {
		t.Error("deleting a removed b")
	}
	// Deleting a missing key is fine.
	wantStatus(t, call(t, s, "DELETE", "/v1/kv/a", nil), 200, "true")

	// Empty key without recurse.
	b.unchanged(t, "DELETE /v1/kv/", func() {
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/", nil), 400, "Missing key name")
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv", nil), 400, "Missing key name")
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/?cas=0", nil), 400, "Missing key name")
	})
}

func TestDeleteCAS(t *testing.T) {
	s, b := newAPI(t)
	idx := put(t, s, "k", "v")
	for _, bad := range []string{"0", strconv.FormatUint(idx+1, 10), strconv.FormatUint(idx-1, 10)} {
		b.unchangedKV(t, "delete cas="+bad, func() {
			w := call(t, s, "DELETE", "/v1/kv/k?cas="+bad, nil)
			wantStatus(t, w, 200)
			if w.Body.String() != "false" {
				t.Errorf("cas=%s (current %d): %q, want false", bad, idx, w.Body.String())
			}
		})
	}
	b.unchanged(t, "delete with a bad cas", func() {
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/k?cas=abc", nil), 400, "cas")
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/k?cas=", nil), 400, "cas")
	})
	w := call(t, s, "DELETE", "/v1/kv/k?cas="+strconv.FormatUint(idx, 10), nil)
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Errorf("matching cas: %q", w.Body.String())
	}
	if _, ok := getValue(t, s, "k"); ok {
		t.Error("key survived a matching delete-cas")
	}
	// A missing key counts as deleted, whatever the index.
	for _, cas := range []string{"0", "7", strconv.FormatUint(idx, 10)} {
		w := call(t, s, "DELETE", "/v1/kv/k?cas="+cas, nil)
		wantStatus(t, w, 200)
		if w.Body.String() != "true" {
			t.Errorf("cas=%s on a missing key: %q, want true", cas, w.Body.String())
		}
	}
}

func TestDeleteRecurse(t *testing.T) {
	s, b := newAPI(t)
	keys := []string{"web/a", "web/b/c", "website", "wex", "other"}
	for _, k := range keys {
		put(t, s, k, "v")
	}
	w := call(t, s, "DELETE", "/v1/kv/web/?recurse", nil)
	wantStatus(t, w, 200)
	if w.Body.String() != "true" {
		t.Errorf("body %q", w.Body.String())
	}
	for k, want := range map[string]bool{"web/a": false, "web/b/c": false, "website": true, "wex": true, "other": true} {
		if _, ok := getValue(t, s, k); ok != want {
			t.Errorf("%s present %v, want %v", k, ok, want)
		}
	}
	// Plain string prefix: "web" takes "website" too.
	wantStatus(t, call(t, s, "DELETE", "/v1/kv/web?recurse=", nil), 200, "true")
	if _, ok := getValue(t, s, "website"); ok {
		t.Error("website survived DELETE web?recurse")
	}

	b.unchanged(t, "recurse+cas", func() {
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/wex?recurse&cas=0", nil), 400, "Conflicting flags")
		wantPlainError(t, call(t, s, "DELETE", "/v1/kv/?recurse&cas=3", nil), 400, "Conflicting flags")
	})

	// The empty prefix deletes everything.
	for _, target := range []string{"/v1/kv/?recurse", "/v1/kv?recurse"} {
		put(t, s, "x", "1")
		wantStatus(t, call(t, s, "DELETE", target, nil), 200, "true")
		if entries, _, _ := b.store.List(""); len(entries) != 0 {
			t.Errorf("%s left %d keys", target, len(entries))
		}
	}
	// Nothing to delete is still true.
	wantStatus(t, call(t, s, "DELETE", "/v1/kv/none/?recurse", nil), 200, "true")
}
