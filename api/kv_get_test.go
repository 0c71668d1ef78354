package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
)

func TestGetSingleKey(t *testing.T) {
	s, _ := newAPI(t)
	put(t, s, "other", "x")
	idx := put(t, s, "web/config", "hello")
	put(t, s, "zzz", "later") // a later write must not move the key's index

	w := call(t, s, "GET", "/v1/kv/web/config", nil)
	wantStatus(t, w, 200)
	if got := headerIndex(t, w); got != idx {
		t.Errorf("X-Consul-Index %d, want the key's ModifyIndex %d", got, idx)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	// The wire form: a one-element array, Value in standard base64, no
	// Session field when there is none.
	var raw []map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if len(raw) != 1 {
		t.Fatalf("got %d objects, want 1: %s", len(raw), w.Body.String())
	}
	if raw[0]["Value"] != "aGVsbG8=" {
		t.Errorf("Value %v, want base64 of hello", raw[0]["Value"])
	}
	if _, ok := raw[0]["Session"]; ok {
		t.Errorf("Session present although empty: %s", w.Body.String())
	}
	for _, f := range []string{"LockIndex", "Key", "Flags", "Value", "CreateIndex", "ModifyIndex"} {
		if _, ok := raw[0][f]; !ok {
			t.Errorf("field %s missing: %s", f, w.Body.String())
		}
	}
	p := decodePairs(t, w)[0]
	want := KVPair{Key: "web/config", Value: []byte("hello"), CreateIndex: idx, ModifyIndex: idx}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("pair %+v, want %+v", p, want)
	}
}

func TestGetCreateIndexSurvivesOverwrite(t *testing.T) {
	s, _ := newAPI(t)
	created := put(t, s, "k", "v1")
	modified := put(t, s, "k", "v2")
	p := decodePairs(t, call(t, s, "GET", "/v1/kv/k", nil))[0]
	if p.CreateIndex != created || p.ModifyIndex != modified || string(p.Value) != "v2" {
		t.Errorf("pair %+v, want CreateIndex %d ModifyIndex %d value v2", p, created, modified)
	}
}

func TestGetEmptyValueIsNull(t *testing.T) {
	s, _ := newAPI(t)
	put(t, s, "empty", "")
	w := call(t, s, "GET", "/v1/kv/empty", nil)
	wantStatus(t, w, 200, `"Value":null`)
}

func TestGetMissingKey(t *testing.T) {
	s, _ := newAPI(t)
	for _, target := range []string{"/v1/kv/nope", "/v1/kv/nope?raw", "/v1/kv/nope?recurse", "/v1/kv/nope?keys", "/v1/kv/?recurse"} {
		t.Run(target, func(t *testing.T) {
			w := call(t, s, "GET", target, nil)
			wantStatus(t, w, 404)
			if w.Body.Len() != 0 {
				t.Errorf("404 body %q, want empty", w.Body.String())
			}
			// Never 0: blocking clients feed it back as ?index.
			if idx := headerIndex(t, w); idx < 1 {
				t.Errorf("X-Consul-Index %d on an empty store", idx)
			}
			for _, h := range []string{"X-Consul-KnownLeader", "X-Consul-LastContact"} {
				if w.Header().Get(h) == "" {
					t.Errorf("404 lacks %s", h)
				}
			}
		})
	}

	// A missing key reports the KV-wide index.
	put(t, s, "a", "1")
	last := put(t, s, "b", "2")
	if got := headerIndex(t, call(t, s, "GET", "/v1/kv/nope", nil)); got != last {
		t.Errorf("missing key: X-Consul-Index %d, want the KV-wide index %d", got, last)
	}
}

func TestGetEmptyKeyIsRejected(t *testing.T) {
	s, _ := newAPI(t)
	for _, target := range []string{"/v1/kv/", "/v1/kv", "/v1/kv/?raw"} {
		wantPlainError(t, call(t, s, "GET", target, nil), 400, "Missing key name")
	}
}

func TestGetRaw(t *testing.T) {
	s, b := newAPI(t)
	value := []byte("<html>\x00\xff\n binary")
	cmdIdx := putBytes(t, s, "blob", value)
	w := call(t, s, "GET", "/v1/kv/blob?raw", nil)
	wantStatus(t, w, 200)
	if got := w.Body.Bytes(); string(got) != string(value) {
		t.Errorf("raw body %q, want %q", got, value)
	}
	h := w.Header()
	for name, want := range map[string]string{
		"Content-Type":            "text/plain; charset=utf-8",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "sandbox",
		"Content-Length":          strconv.Itoa(len(value)),
		"X-Consul-Index":          strconv.FormatUint(cmdIdx, 10),
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if b.barrierCalls.Load() == 0 {
		t.Error("?raw skipped the read barrier")
	}

	// Empty value: 200 with an empty body, Content-Length 0.
	putBytes(t, s, "nothing", nil)
	w = call(t, s, "GET", "/v1/kv/nothing?raw=", nil)
	wantStatus(t, w, 200)
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != "0" {
		t.Errorf("empty raw: body %q Content-Length %q", w.Body.String(), w.Header().Get("Content-Length"))
	}

	// HEAD answers the headers only.
	w = call(t, s, "HEAD", "/v1/kv/blob?raw", nil)
	wantStatus(t, w, 200)
	if w.Body.Len() != 0 || w.Header().Get("Content-Length") != strconv.Itoa(len(value)) {
		t.Errorf("HEAD raw: body %q, Content-Length %q", w.Body.String(), w.Header().Get("Content-Length"))
	}
}

func putBytes(t testing.TB, h http.Handler, key string, value []byte) uint64 {
	t.Helper()
	if value == nil {
		value = []byte{}
	}
	w := call(t, h, "PUT", "/v1/kv/"+key, value)
	wantStatus(t, w, 200, "true")
	return headerIndex(t, w)
}

func TestGetRecurse(t *testing.T) {
	s, _ := newAPI(t)
	// Inserted out of order; the answer is in byte order, by plain string
	// prefix (so "web" also matches "website").
	for _, k := range []string{"web/b", "web/a/2", "website", "web/a/1", "web/B", "wea", "web/", "x"} {
		put(t, s, k, "v-"+k)
	}
	cases := []struct {
		prefix string
		want   []string
	}{
		{"web", []string{"web/", "web/B", "web/a/1", "web/a/2", "web/b", "website"}},
		{"web/", []string{"web/", "web/B", "web/a/1", "web/a/2", "web/b"}},
		{"web/a/", []string{"web/a/1", "web/a/2"}},
		{"", []string{"wea", "web/", "web/B", "web/a/1", "web/a/2", "web/b", "website", "x"}},
		{"web/a/1", []string{"web/a/1"}},
	}
	for _, c := range cases {
		t.Run(c.prefix, func(t *testing.T) {
			for _, q := range []string{"?recurse", "?recurse=", "?recurse=true&raw"} {
				w := call(t, s, "GET", "/v1/kv/"+c.prefix+q, nil)
				wantStatus(t, w, 200)
				var got []string
				var maxIdx uint64
				for _, p := range decodePairs(t, w) {
					got = append(got, p.Key)
					if string(p.Value) != "v-"+p.Key {
						t.Errorf("%s: value %q", p.Key, p.Value)
					}
					maxIdx = max(maxIdx, p.ModifyIndex)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Errorf("%s: keys %q, want %q", q, got, c.want)
				}
				if idx := headerIndex(t, w); idx < maxIdx {
					t.Errorf("%s: X-Consul-Index %d below the newest entry %d", q, idx, maxIdx)
				}
			}
		})
	}
	wantStatus(t, call(t, s, "GET", "/v1/kv/nomatch/?recurse", nil), 404)
}

func TestGetRecurseIndexIsPrefixIndex(t *testing.T) {
	s, _ := newAPI(t)
	put(t, s, "a/1", "x")
	aIdx := put(t, s, "a/2", "x")
	put(t, s, "b/1", "x")
	if got := headerIndex(t, call(t, s, "GET", "/v1/kv/a/?recurse", nil)); got != aIdx {
		t.Errorf("recurse a/: index %d, want %d (writes under b/ must not count)", got, aIdx)
	}
	// Deleting a key that is not the newest under the prefix still moves the
	// prefix index (tombstones).
	w := call(t, s, "DELETE", "/v1/kv/a/1", nil)
	wantStatus(t, w, 200, "true")
	del := headerIndex(t, w)
	if got := headerIndex(t, call(t, s, "GET", "/v1/kv/a/?recurse", nil)); got != del {
		t.Errorf("after delete: index %d, want %d", got, del)
	}
}

func TestGetKeys(t *testing.T) {
	s, _ := newAPI(t)
	for _, k := range []string{"web/a", "web/sub/x", "web/sub/y", "web/sub/", "web/other/deep/z", "webby", "zz/top"} {
		put(t, s, k, "v")
	}
	cases := []struct {
		target string
		want   []string
	}{
		{"/v1/kv/web/?keys", []string{"web/a", "web/other/deep/z", "web/sub/", "web/sub/x", "web/sub/y"}},
		{"/v1/kv/web/?keys&separator=/", []string{"web/a", "web/other/", "web/sub/"}},
		{"/v1/kv/web/?keys=&separator=%2F", []string{"web/a", "web/other/", "web/sub/"}},
		{"/v1/kv/web/?keys&seperator=/", []string{"web/a", "web/other/", "web/sub/"}},
		// separator wins over the old spelling, even when empty.
		{"/v1/kv/web/?keys&separator=&seperator=/", []string{"web/a", "web/other/deep/z", "web/sub/", "web/sub/x", "web/sub/y"}},
		{"/v1/kv/web/?keys&separator=-&seperator=/", []string{"web/a", "web/other/deep/z", "web/sub/", "web/sub/x", "web/sub/y"}},
		{"/v1/kv/web?keys&separator=/", []string{"web/", "webby"}},
		{"/v1/kv/?keys&separator=/", []string{"web/", "webby", "zz/"}},
		{"/v1/kv?keys&separator=/", []string{"web/", "webby", "zz/"}},
		{"/v1/kv/web/sub/x?keys", []string{"web/sub/x"}},
		// keys beats recurse.
		{"/v1/kv/web/?keys&recurse&separator=/", []string{"web/a", "web/other/", "web/sub/"}},
	}
	for _, c := range cases {
		t.Run(c.target, func(t *testing.T) {
			w := call(t, s, "GET", c.target, nil)
			wantStatus(t, w, 200)
			if got := decodeKeys(t, w); !reflect.DeepEqual(got, c.want) {
				t.Errorf("keys %q, want %q", got, c.want)
			}
			if headerIndex(t, w) < 1 {
				t.Error("X-Consul-Index 0")
			}
		})
	}
	wantStatus(t, call(t, s, "GET", "/v1/kv/nothing/?keys", nil), 404)
}

func TestGetKeysAtEmptyRootIs200EmptyArray(t *testing.T) {
	s, _ := newAPI(t)
	for _, target := range []string{"/v1/kv/?keys", "/v1/kv/?keys=&separator=/", "/v1/kv?keys"} {
		w := call(t, s, "GET", target, nil)
		wantStatus(t, w, 200)
		if got := strings.TrimSpace(w.Body.String()); got != "[]" {
			t.Errorf("%s: body %q, want []", target, got)
		}
		if idx := headerIndex(t, w); idx != 1 {
			t.Errorf("%s: X-Consul-Index %d, want the floor 1", target, idx)
		}
	}
	// Also after everything was deleted again.
	put(t, s, "a", "1")
	wantStatus(t, call(t, s, "DELETE", "/v1/kv/?recurse", nil), 200, "true")
	w := call(t, s, "GET", "/v1/kv/?keys", nil)
	wantStatus(t, w, 200)
	if got := strings.TrimSpace(w.Body.String()); got != "[]" {
		t.Errorf("body %q, want []", got)
	}
}

func TestFlagsAreExactUint64(t *testing.T) {
	s, _ := newAPI(t)
	for _, flags := range []uint64{0, 1, 3304740253564472344, 16210313421097356768, 1<<64 - 1} {
		f := strconv.FormatUint(flags, 10)
		w := call(t, s, "PUT", "/v1/kv/sem?flags="+f, []byte("v"))
		wantStatus(t, w, 200, "true")
		w = call(t, s, "GET", "/v1/kv/sem", nil)
		// The literal digits, not a float rendering.
		wantStatus(t, w, 200, `"Flags":`+f+`,`)
		if got := decodePairs(t, w)[0].Flags; got != flags {
			t.Errorf("Flags %d, want %d", got, flags)
		}
	}
	// A PUT without ?flags resets them to 0, as in Consul.
	call(t, s, "PUT", "/v1/kv/sem?flags=7", []byte("v"))
	put(t, s, "sem", "v")
	if got := decodePairs(t, call(t, s, "GET", "/v1/kv/sem", nil))[0].Flags; got != 0 {
		t.Errorf("Flags %d after a PUT without ?flags, want 0", got)
	}
}

func TestReadConsistencyModes(t *testing.T) {
	cases := []struct {
		query       string
		wantBarrier bool
	}{
		{"", true},
		{"?consistent", true},
		{"?consistent=", true},
		{"?stale", false},
		{"?stale=", false},
		{"?stale&recurse", false},
		{"?stale&keys", false},
		{"?recurse", true},
		{"?keys", true},
		{"?raw", true},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			s, b := newAPI(t)
			put(t, s, "k", "v")
			b.set(func(f *fakeBackend) {
				f.leader = cluster.LeaderInfo{Known: false, LastContact: 1500 * time.Millisecond}
			})
			before := b.barrierCalls.Load()
			w := call(t, s, "GET", "/v1/kv/k"+c.query, nil)
			wantStatus(t, w, 200)
			if called := b.barrierCalls.Load() > before; called != c.wantBarrier {
				t.Errorf("ReadBarrier called: %v, want %v", called, c.wantBarrier)
			}
			// A linearizable read has just confirmed a leader; a stale one
			// reports what the node knows.
			wantKnown, wantContact := "true", "0"
			if !c.wantBarrier {
				wantKnown, wantContact = "false", "1500"
			}
			if got := w.Header().Get("X-Consul-KnownLeader"); got != wantKnown {
				t.Errorf("X-Consul-KnownLeader %q, want %q", got, wantKnown)
			}
			if got := w.Header().Get("X-Consul-LastContact"); got != wantContact {
				t.Errorf("X-Consul-LastContact %q, want %q", got, wantContact)
			}
		})
	}
}

func TestStaleWithConsistentIsRejected(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "k", "v")
	for _, q := range []string{"?stale&consistent", "?consistent=&stale=", "?stale&consistent&recurse"} {
		before := b.barrierCalls.Load()
		wantPlainError(t, call(t, s, "GET", "/v1/kv/k"+q, nil), 400, "Cannot specify ?stale with ?consistent")
		if b.barrierCalls.Load() != before {
			t.Errorf("%s: a rejected read still ran the barrier", q)
		}
	}
}

func TestStaleReadWorksWithoutLeader(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "k", "v")
	b.set(func(f *fakeBackend) { f.barrierErr = cluster.ErrNoLeader })
	wantStatus(t, call(t, s, "GET", "/v1/kv/k?stale", nil), 200)
	wantPlainError(t, call(t, s, "GET", "/v1/kv/k", nil), 503, "no leader")
	wantPlainError(t, call(t, s, "GET", "/v1/kv/k?consistent", nil), 503)
	wantPlainError(t, call(t, s, "GET", "/v1/kv/?keys", nil), 503)
}
