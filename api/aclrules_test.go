package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

func TestParseRules_Accepts(t *testing.T) {
	for _, c := range []struct {
		name, text    string
		exact, prefix map[string]access
	}{
		{"empty", "", nil, nil},
		{"comments only", "# nothing\n// nothing\n/* nothing\nat all */", nil, nil},
		{"one line", `key "a" { policy = "read" }`, map[string]access{"a": accessRead}, nil},
		{"multi line", "key_prefix \"web/\" {\n  policy = \"write\"\n}\n", nil, map[string]access{"web/": accessWrite}},
		{"list is read", `key_prefix "" { policy = "list" }`, nil, map[string]access{"": accessRead}},
		{"equals form", `key "a" = { policy = "deny" }`, map[string]access{"a": accessDeny}, nil},
		{"separators", `key "a" { policy = "read"; } key "b" { policy = "write", }`, map[string]access{"a": accessRead, "b": accessWrite}, nil},
		{"escapes", `key "a\"b\\c\u00e9" { policy = "read" }`, map[string]access{"a\"b\\cé": accessRead}, nil},
		{"deny wins a duplicate", `key "a" { policy = "write" } key "a" { policy = "deny" } key "a" { policy = "read" }`, map[string]access{"a": accessDeny}, nil},
		{"json", `{"key": {"a": {"policy": "read"}}, "key_prefix": {"b/": {"policy": "write"}}}`, map[string]access{"a": accessRead}, map[string]access{"b/": accessWrite}},
		{"json lists", `{"key_prefix": [{"b/": {"policy": "deny"}}, {"c/": {"policy": "list"}}]}`, nil, map[string]access{"b/": accessDeny, "c/": accessRead}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs, err := parseRules(c.text)
			if err != nil {
				t.Fatal(err)
			}
			if !sameAccess(rs.exact, c.exact) || !sameAccess(rs.prefix, c.prefix) {
				t.Fatalf("parsed %+v / %+v, want %+v / %+v", rs.exact, rs.prefix, c.exact, c.prefix)
			}
		})
	}
}

// Session rules name nodes, as Consul's do, with the same longest-match
// rule as keys; they live apart from the key rules.
func TestParseRules_SessionRules(t *testing.T) {
	for _, text := range []string{
		"session \"n1\" { policy = \"write\" }\nsession_prefix \"\" { policy = \"read\" }\nsession_prefix \"n9\" { policy = \"deny\" }\nkey \"n1\" { policy = \"read\" }",
		`{"session": {"n1": {"policy": "write"}}, "session_prefix": [{"": {"policy": "read"}}, {"n9": {"policy": "deny"}}], "key": {"n1": {"policy": "read"}}}`,
	} {
		rs, err := parseRules(text)
		if err != nil {
			t.Fatal(err)
		}
		for node, want := range map[string]access{"n1": accessWrite, "n2": accessRead, "n9x": accessDeny, "": accessRead} {
			if got := rs.sessionAccess(node); got != want {
				t.Errorf("%s: session access on %q = %d, want %d", text[:1], node, got, want)
			}
		}
		if rs.keyAccess("n1") != accessRead || rs.keyAccess("n2") != accessNone {
			t.Errorf("session rules leaked into keys: %+v", rs.exact)
		}
	}
}

func sameAccess(got, want map[string]access) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func TestParseRules_Rejects(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{`key "a" { policy = "admin" }`, `invalid policy "admin"`},
		{`key "a" { }`, "missing policy"},
		{`key "a" { policy = "read" policy = "write" }`, "policy given twice"},
		{`key "a" { policy = "read" intentions = "x" }`, `unsupported attribute "intentions"`},
		{`node "a" { policy = "read" }`, `unsupported rule "node"`},
		{`operator = "write"`, `unsupported rule "operator"`},
		{`key a { policy = "read" }`, "expected a quoted string"},
		{`key "a { policy = "read" }`, `expected '{'`},
		{`key "a" { policy = "read"`, "missing '}'"},
		{`key "a" { policy "read" }`, `expected '='`},
		{"key \"a\nb\" { policy = \"read\" }", "newline in a quoted string"},
		{`key "a" { policy = "read" } }`, "expected a rule"},
		{`/* open`, "unterminated"},
		{`key "\q" { policy = "read" }`, "bad string"},
		{"\xff", "not valid UTF-8"},
		{`{"key": {"a": {"policy": "nope"}}}`, `invalid policy "nope"`},
		{`{"service": {"a": {"policy": "read"}}}`, `unsupported rule "service"`},
		{`{"key": {"a": {"policy": "read", "x": 1}}}`, `unsupported attribute "x"`},
		{`{"key": {"a": {}}}`, "missing policy"},
		{`{"key": {"a": {"policy": 1}}}`, "must be a string"},
		{`{"key": "a"}`, "want an object"},
		{`{"key": [1]}`, "want an object or a list"},
		{`{"key": `, "invalid JSON"},
		{strings.Repeat("#", maxRulesSize+1), "limit"},
	} {
		_, err := parseRules(c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parseRules(%.40q) = %v, want an error containing %q", c.text, err, c.want)
		}
	}
	// The error names the line.
	_, err := parseRules("key \"a\" { policy = \"read\" }\n\nkey \"b\" { policy = \"x\" }")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error %v does not name line 3", err)
	}
}

// Consul's matching: the longest rule wins, an exact rule beats a prefix
// rule of the same length, no rule is deny.
func TestRuleSet_Matching(t *testing.T) {
	rs, err := parseRules(`
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key_prefix "app/secret" { policy = "deny" }
key "app/secret" { policy = "read" }
key "app/x" { policy = "deny" }
`)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]access{
		"anything":       accessRead,
		"app/":           accessWrite,
		"app/y":          accessWrite,
		"app/x":          accessDeny,
		"app/xy":         accessWrite,
		"app/secret":     accessRead, // exact beats the prefix of the same length
		"app/secrets":    accessDeny,
		"app/secret/one": accessDeny,
	} {
		if got := rs.keyAccess(key); got != want {
			t.Errorf("keyAccess(%q) = %v, want %v", key, got, want)
		}
	}
	empty, _ := parseRules("")
	if empty.keyAccess("a").canRead() {
		t.Error("no rules grants read")
	}
	for prefix, want := range map[string]bool{
		"app/":        false, // app/secret and app/x below it are not writable
		"app/y":       true,
		"app/z/":      true,
		"app/secret/": false,
		"":            false,
		"other/":      false, // only read there
	} {
		if got := rs.canWritePrefix(prefix); got != want {
			t.Errorf("canWritePrefix(%q) = %v, want %v", prefix, got, want)
		}
	}
}

// Merging policies: deny from one policy is not lifted by another's write.
func TestRuleSet_MergeDenyWins(t *testing.T) {
	a, _ := parseRules(`key_prefix "x/" { policy = "write" }`)
	b, _ := parseRules(`key_prefix "x/" { policy = "deny" } key "y" { policy = "read" }`)
	rs := newRuleSet()
	rs.merge(a)
	rs.merge(b)
	if rs.keyAccess("x/1") != accessDeny || rs.keyAccess("y") != accessRead {
		t.Fatalf("merged: %+v %+v", rs.exact, rs.prefix)
	}
}

// FuzzParseRules: the parser never panics, an accepted text's rules are
// all well formed, and the HCL and JSON forms of the same rules agree.
func FuzzParseRules(f *testing.F) {
	for _, s := range []string{
		``, `key "a" { policy = "read" }`, `key_prefix "" { policy = "write" }`,
		"key \"a\" {\n policy = \"deny\"\n}\n# c\n// c\n/* c */",
		`key "a" = { policy = "list", }`, `{"key": {"a": {"policy": "read"}}}`,
		`{"key_prefix": [{"b": {"policy": "write"}}]}`, `key "\u00e9\"" { policy = "read" }`,
		`key "a" { policy = "read"`, `/*`, `{"key": [`,
		`session_prefix "" { policy = "write" } session "n1" { policy = "deny" }`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			// The size limit has its own test; huge inputs only make the
			// fuzzer spend its time minimising them.
			return
		}
		rs, err := parseRules(text)
		if err != nil {
			if rs != nil {
				t.Fatal("rules returned with an error")
			}
			if !strings.HasPrefix(err.Error(), "rules") {
				t.Fatalf("error %q does not say it is about the rules", err)
			}
			return
		}
		check := func(m map[string]access, exact bool) {
			for k, a := range m {
				if a == accessNone || a > accessDeny {
					t.Fatalf("rule %q has access %d", k, a)
				}
				// Matching must agree with the rule it parsed.
				if exact && rs.keyAccess(k) != a {
					t.Fatalf("exact rule %q not matched", k)
				}
			}
		}
		check(rs.exact, true)
		check(rs.prefix, false)
		for k, a := range rs.sessExact {
			if rs.sessionAccess(k) != a {
				t.Fatalf("exact session rule %q not matched", k)
			}
		}
		// Round trip: the same rules rendered as HCL parse to the same set.
		var b strings.Builder
		names := map[access]string{accessRead: "read", accessWrite: "write", accessDeny: "deny"}
		for _, kind := range []string{"key", "key_prefix", "session", "session_prefix"} {
			for k, a := range rs.table(kind) {
				b.WriteString(kind + " " + hclQuote(k) + " { policy = \"" + names[a] + "\" }\n")
			}
		}
		again, err := parseRules(b.String())
		if err != nil {
			t.Fatalf("re-rendered rules do not parse: %v\n%s", err, b.String())
		}
		for _, kind := range []string{"key", "key_prefix", "session", "session_prefix"} {
			if !sameAccess(again.table(kind), rs.table(kind)) {
				t.Fatalf("round trip changed the %s rules", kind)
			}
		}
	})
}

// hclQuote quotes s in the escapes the parser reads.
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			b.WriteString(`\u00`)
			b.WriteString(strings.ToLower(string("0123456789ABCDEF"[r>>4]) + string("0123456789ABCDEF"[r&0xf])))
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// FuzzKVPathACL sends arbitrary KV requests with a token whose rules mix
// write, read and deny under one prefix. Whatever the method, path and
// query, the request may change only keys the token may write, and a
// successful read shows only keys it may read.
func FuzzKVPathACL(f *testing.F) {
	for _, s := range []struct {
		method uint8
		target string
		body   string
	}{
		{2, "app/x", "v"}, {2, "app/ro/x", "v"}, {2, "app/deny", "v"}, {2, "other/x?cas=0", "v"},
		{3, "?recurse", ""}, {3, "app/?recurse", ""}, {3, "app/w/?recurse", ""}, {3, "app/deny?cas=0", ""},
		{0, "?recurse", ""}, {0, "?keys&separator=/", ""}, {0, "app/ro/a?raw", ""}, {0, "app/?keys", ""},
		{2, "app/ro/x?acquire=s", "v"}, {1, "other/a", ""},
	} {
		f.Add(s.method, s.target, []byte(s.body))
	}
	b := newFakeBackend(f, f.TempDir())
	s := New(Backends{KV: b, Cluster: b, ACL: b}, Options{ACLEnabled: true, MaxValueSize: 64, RequestTimeout: time.Second})
	mgmt := bootstrap(f, s)
	mkPolicy(f, s, mgmt, "mixed", `
key_prefix "app/" { policy = "write" }
key_prefix "app/ro/" { policy = "read" }
key "app/deny" { policy = "deny" }
key "other/a" { policy = "read" }`)
	token := mkToken(f, s, mgmt, "mixed")
	a, err := s.resolve(context.Background(), token)
	if err != nil || a == nil {
		f.Fatal(a, err)
	}
	seed := func(tb testing.TB) {
		for _, k := range []string{"app/w/a", "app/ro/a", "app/deny", "other/a", "other/b", "appx"} {
			if w := call(tb, s, "PUT", "/v1/kv/"+k, []byte("seed"), "X-Consul-Token", mgmt); w.Code != 200 {
				tb.Fatalf("seeding %s: %d", k, w.Code)
			}
		}
	}
	seed(f)

	f.Fuzz(func(t *testing.T, m uint8, target string, body []byte) {
		req, _ := fuzzKVRequest(t, m, target, body)
		method, uri := req.Method, req.RequestURI
		req.Header.Set("X-Consul-Token", token)
		before := entryMap(t, b.store)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		after := entryMap(t, b.store)
		for k := range mergeKeys(before, after) {
			if !entriesEqual(before[k], after[k]) && !a.keyWrite(k) {
				t.Fatalf("%s %s (%d) changed %q, which the token may not write", method, uri, w.Code, k)
			}
		}
		if w.Code == 200 && (method == "GET" || method == "HEAD") && strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			var pairs []KVPair
			var keys []string
			switch {
			case json.Unmarshal(w.Body.Bytes(), &pairs) == nil:
				for _, p := range pairs {
					if !a.keyRead(p.Key) {
						t.Fatalf("%s %s showed %q", method, uri, p.Key)
					}
				}
			case json.Unmarshal(w.Body.Bytes(), &keys) == nil:
				for _, k := range keys {
					if !a.keyRead(k) && !a.mayReadUnder(k) {
						t.Fatalf("%s %s listed %q", method, uri, k)
					}
				}
			}
		}
		if len(after) < 3 {
			seed(t) // keep something to protect
		}
	})
}

func entryMap(t testing.TB, st *storage.Store) map[string]storage.Entry {
	t.Helper()
	entries, _, err := st.List("")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]storage.Entry{}
	for _, e := range entries {
		m[e.Key] = e
	}
	return m
}

func mergeKeys(a, b map[string]storage.Entry) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
