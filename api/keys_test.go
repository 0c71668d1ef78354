package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Keys are sent percent-encoded in the path, as Consul's client does.
func TestKeyValidationRejects(t *testing.T) {
	long := strings.Repeat("k", MaxKeySize+1)
	cases := []struct {
		name string
		path string // after /v1/kv/, still encoded
		want string
	}{
		{"leading slash", "/a", "must not start with '/'"},
		{"leading slash encoded", "%2Fa", "must not start with '/'"},
		{"double slash", "a//b", "empty segment"},
		{"double slash at end", "a//", "empty segment"},
		{"dot segment", "a/./b", `"." segment`},
		{"dot only", ".", `"." segment`},
		{"dot at end", "a/.", `"." segment`},
		{"dotdot segment", "a/../b", `".." segment`},
		{"dotdot only", "..", `".." segment`},
		{"dotdot at start", "../a", `".." segment`},
		{"dotdot encoded", "a/%2E%2E/b", `".." segment`},
		{"NUL", "a%00b", "control character"},
		{"newline", "a%0Ab", "control character"},
		{"carriage return", "a%0D", "control character"},
		{"tab", "a%09b", "control character"},
		{"escape", "%1B[31m", "control character"},
		{"DEL", "a%7F", "control character"},
		{"invalid UTF-8", "a%FFb", "UTF-8"},
		{"truncated UTF-8", "a%C3", "UTF-8"},
		{"too long", long, "limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := newAPI(t)
			put(t, s, "seed", "v")
			b.unchanged(t, c.name, func() {
				for _, m := range []struct{ method, query string }{
					{"PUT", ""}, {"GET", ""}, {"GET", "?raw"}, {"GET", "?recurse"}, {"GET", "?keys"},
					{"DELETE", ""}, {"DELETE", "?recurse"}, {"DELETE", "?cas=1"},
				} {
					w := call(t, s, m.method, "/v1/kv/"+c.path+m.query, []byte("v"))
					if w.Code != 400 {
						t.Errorf("%s %s: status %d, want 400 (%q)", m.method, m.query, w.Code, w.Body.String())
						continue
					}
					if !strings.Contains(w.Body.String(), c.want) {
						t.Errorf("%s %s: message %q does not say %q", m.method, m.query, w.Body.String(), c.want)
					}
				}
			})
		})
	}
}

func TestKeySizeLimit(t *testing.T) {
	s, _ := newAPI(t)
	atLimit := strings.Repeat("k", MaxKeySize)
	put(t, s, atLimit, "v")
	if v, ok := getValue(t, s, atLimit); !ok || v != "v" {
		t.Errorf("a key of exactly MaxKeySize did not round-trip")
	}
	// The limit is in bytes, not runes.
	multi := strings.Repeat("é", MaxKeySize/2) + "x"
	wantPlainError(t, call(t, s, "PUT", "/v1/kv/"+url.PathEscape(multi), []byte("v")), 400, "bytes")
}

// Through a real HTTP server and client: keys with characters that need
// escaping round-trip, and nothing is ever redirected.
func TestKeysRoundTripOverHTTP(t *testing.T) {
	s, _ := newAPI(t)
	srv := httptest.NewServer(s)
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	do := func(method, key, query, body string) (*http.Response, string) {
		t.Helper()
		u := &url.URL{Path: "/v1/kv/" + key, RawQuery: query} // the Consul client's encoding
		var r io.Reader
		if body != "" {
			r = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, srv.URL+u.RequestURI(), r)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	for _, key := range []string{
		"with space", " leading and trailing ", "question?mark", "hash#tag", "per%cent", "100%25",
		"plus+sign", "amp&er=sand", "semi;colon", "unicode/ключ/日本", "emoji/🙂", "trailing/", "a/b/c/",
		"dots.in.name", "...", ".hidden", "a/..b", "b../c", "quote\"s", "back\\slash", "~tilde",
	} {
		t.Run(key, func(t *testing.T) {
			resp, body := do("PUT", key, "", "value of "+key)
			if resp.StatusCode != 200 || body != "true" {
				t.Fatalf("PUT: %d %q", resp.StatusCode, body)
			}
			resp, body = do("GET", key, "raw", "")
			if resp.StatusCode != 200 || body != "value of "+key {
				t.Fatalf("GET raw: %d %q", resp.StatusCode, body)
			}
			resp, body = do("GET", key, "recurse", "")
			if resp.StatusCode != 200 || !strings.Contains(body, `"Key":`+jsonString(key)) {
				t.Fatalf("GET recurse: %d %q", resp.StatusCode, body)
			}
			resp, body = do("DELETE", key, "", "")
			if resp.StatusCode != 200 || body != "true" {
				t.Fatalf("DELETE: %d %q", resp.StatusCode, body)
			}
			if resp, _ = do("GET", key, "", ""); resp.StatusCode != 404 {
				t.Fatalf("GET after DELETE: %d", resp.StatusCode)
			}
		})
	}

	// "a/" and "a" are distinct keys.
	do("PUT", "dir/", "", "marker")
	do("PUT", "dir", "", "file")
	if _, body := do("GET", "dir/", "raw", ""); body != "marker" {
		t.Errorf("dir/ = %q", body)
	}
	if _, body := do("GET", "dir", "raw", ""); body != "file" {
		t.Errorf("dir = %q", body)
	}

	// ServeMux would answer these with a redirect, which Consul clients turn
	// into a GET. They must be refused in place instead.
	for _, raw := range []string{"/v1/kv//x", "/v1/kv/a//b", "/v1/kv/a/./b", "/v1/kv/a/../b", "/v1/kv/./x", "/v1/kv/../kv/x"} {
		for _, method := range []string{"GET", "PUT", "DELETE"} {
			req, err := http.NewRequest(method, srv.URL+raw, strings.NewReader("v"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("%s %s: status %d (Location %q), want 400", method, raw, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// BUG: validateKey rejects C0 control characters and DEL but lets the C1
// controls (U+0080..U+009F, e.g. NEL U+0085, CSI U+009B) through, although
// they are control characters too (unicode.IsControl) and Consul's
// printable-path filter refuses them.
func TestKeyValidationRejectsC1Controls(t *testing.T) {
	s, b := newAPI(t)
	for _, path := range []string{"a%C2%85b", "a%C2%9B31m", "%C2%80"} {
		b.unchanged(t, path, func() {
			w := call(t, s, "PUT", "/v1/kv/"+path, []byte("v"))
			if w.Code != 400 || !strings.Contains(w.Body.String(), "control character") {
				t.Errorf("PUT %s: %d %q, want 400 naming the control character", path, w.Code, w.Body.String())
			}
		})
	}
}
