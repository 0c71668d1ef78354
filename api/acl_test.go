package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// The fake's ACL side: the real store's tables, and the barrier knob.

func (f *fakeBackend) ReadBarrier(ctx context.Context) error {
	f.barrierCalls.Add(1)
	return f.get(&f.barrierErr)
}

func (f *fakeBackend) ACLTokenBySecret(hash []byte) (storage.ACLToken, bool, error) {
	return f.store.ACLTokenBySecret(hash)
}

func (f *fakeBackend) ACLToken(id string) (storage.ACLToken, bool, error) {
	return f.store.ACLToken(id)
}
func (f *fakeBackend) ACLTokens() ([]storage.ACLToken, error) { return f.store.ACLTokens() }
func (f *fakeBackend) ACLPolicy(id string) (storage.ACLPolicy, bool, error) {
	return f.store.ACLPolicy(id)
}
func (f *fakeBackend) ACLPolicies() ([]storage.ACLPolicy, error) { return f.store.ACLPolicies() }
func (f *fakeBackend) ACLBootstrapped() (bool, uint64, error)    { return f.store.ACLBootstrapped() }

var _ ACL = (*fakeBackend)(nil)

func withACL(c *apiConfig) { c.opts.ACLEnabled = true }

// aclFixture is a node with ACLs on, bootstrapped, and the three kinds of
// token the tests try every endpoint class with.
type aclFixture struct {
	s          *Server
	b          *fakeBackend
	mgmt       string // the bootstrap token
	read       string // read on app/
	otherWrite string // write on other/ only
}

func newACLFixture(t *testing.T, opts ...func(*apiConfig)) *aclFixture {
	t.Helper()
	s, b := newAPI(t, append([]func(*apiConfig){withACL}, opts...)...)
	f := &aclFixture{s: s, b: b}
	f.mgmt = bootstrap(t, s)
	mkPolicy(t, s, f.mgmt, "app-read", `key_prefix "app/" { policy = "read" }`)
	mkPolicy(t, s, f.mgmt, "other-write", `key_prefix "other/" { policy = "write" }`)
	f.read = mkToken(t, s, f.mgmt, "app-read")
	f.otherWrite = mkToken(t, s, f.mgmt, "other-write")
	// Something to read, to delete and to protect.
	for _, k := range []string{"app/a", "app/b", "other/x", "secret/s"} {
		wantStatus(t, call(t, s, "PUT", "/v1/kv/"+k, []byte("v-"+k), "X-Consul-Token", f.mgmt), 200, "true")
	}
	return f
}

func bootstrap(t testing.TB, s *Server) string {
	t.Helper()
	w := call(t, s, "PUT", "/v1/acl/bootstrap", nil)
	wantStatus(t, w, 200)
	var tok ACLToken
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil {
		t.Fatal(err)
	}
	if tok.SecretID == "" || tok.AccessorID == "" || len(tok.Policies) != 1 || tok.Policies[0].ID != ManagementPolicyID {
		t.Fatalf("bootstrap token %+v", tok)
	}
	return tok.SecretID
}

func mkPolicy(t testing.TB, s *Server, token, name, rules string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"Name": name, "Rules": rules})
	w := call(t, s, "PUT", "/v1/acl/policy", body, "X-Consul-Token", token)
	wantStatus(t, w, 200)
	var p ACLPolicy
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.ID == "" || p.Name != name {
		t.Fatalf("policy %q: %+v %v", name, p, err)
	}
	return p.ID
}

func mkToken(t testing.TB, s *Server, token string, policies ...string) string {
	t.Helper()
	var links []ACLLink
	for _, p := range policies {
		links = append(links, ACLLink{Name: p})
	}
	body, _ := json.Marshal(map[string]any{"Description": "test", "Policies": links})
	w := call(t, s, "PUT", "/v1/acl/token", body, "X-Consul-Token", token)
	wantStatus(t, w, 200)
	var tok ACLToken
	if err := json.Unmarshal(w.Body.Bytes(), &tok); err != nil || tok.SecretID == "" {
		t.Fatalf("token: %+v %v", tok, err)
	}
	return tok.SecretID
}

// nodeState is everything a request could change on the node: the keys,
// the ACL tables, the applied index, and what the fake recorded of
// membership changes, crashes and fault rules.
type nodeState struct {
	store    storeState
	policies []storage.ACLPolicy
	tokens   []storage.ACLToken
	joins    []peerlink.JoinRequest
	removes  []string
	crashes  []string
	faults   string
}

func (f *fakeBackend) state(t testing.TB) nodeState {
	t.Helper()
	ps, err := f.store.ACLPolicies()
	if err != nil {
		t.Fatal(err)
	}
	ts, err := f.store.ACLTokens()
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := json.Marshal(f.Faults())
	f.mu.Lock()
	defer f.mu.Unlock()
	return nodeState{
		store: snapshotStore(t, f.store), policies: ps, tokens: ts,
		joins: slices.Clone(f.joins), removes: slices.Clone(f.removes), crashes: slices.Clone(f.crashes),
		faults: string(rules),
	}
}

type aclRequest struct {
	class        string
	method, path string
	body         string
}

// The endpoint classes, each with a request that would change something
// (or reveal something) if it were let through.
var aclRequests = []aclRequest{
	{"kv-read", "GET", "/v1/kv/app/a", ""},
	{"kv-list", "GET", "/v1/kv/app/?recurse", ""},
	{"kv-write", "PUT", "/v1/kv/app/a", "changed"},
	{"kv-create", "PUT", "/v1/kv/app/new", "new"},
	{"kv-cas", "PUT", "/v1/kv/app/c?cas=0", "new"},
	{"kv-delete", "DELETE", "/v1/kv/app/a", ""},
	{"kv-delete-tree", "DELETE", "/v1/kv/app/?recurse", ""},
	{"kv-delete-root", "DELETE", "/v1/kv/?recurse", ""},
	{"join", "POST", "/v1/cluster/join", `{"id":"n9","raft_addr":"10.0.0.9:8300"}`},
	{"remove", "DELETE", "/v1/cluster/members/n2", ""},
	{"promote", "POST", "/v1/cluster/members/n2/promote", ""},
	{"operator-raft-configuration", "GET", "/v1/operator/raft/configuration", ""},
	{"operator-raft-remove-peer", "DELETE", "/v1/operator/raft/peer?id=n2", ""},
	{"snapshot", "POST", "/v1/cluster/snapshot", ""},
	{"chaos-faults", "PUT", "/v1/chaos/faults", `{"rules":[{"peer":"n2","direction":"both","drop":1}]}`},
	{"chaos-clear", "DELETE", "/v1/chaos/faults", ""},
	{"chaos-read", "GET", "/v1/chaos/faults", ""},
	{"chaos-crash", "POST", "/v1/chaos/crash?actor=raft", ""},
	{"acl-policy-create", "PUT", "/v1/acl/policy", `{"Name":"sneaky","Rules":"key_prefix \"\" { policy = \"write\" }"}`},
	{"acl-token-create", "PUT", "/v1/acl/token", `{"Policies":[{"ID":"00000000-0000-0000-0000-000000000001"}]}`},
	{"acl-token-list", "GET", "/v1/acl/tokens", ""},
	{"acl-policy-list", "GET", "/v1/acl/policies", ""},
	{"members", "GET", "/v1/cluster/members", ""},
	{"status", "GET", "/v1/cluster/status", ""},
	{"health", "GET", "/v1/cluster/health", ""},
	{"alarms", "GET", "/v1/cluster/alarms", ""},
	{"disarm", "DELETE", "/v1/cluster/alarms", ""},
	{"token-self", "GET", "/v1/acl/token/self", ""},
	{"healthz", "GET", "/healthz", ""},
	{"txn-read", "PUT", "/v1/txn", `[{"KV":{"Verb":"get","Key":"app/a"}}]`},
	{"txn-write", "PUT", "/v1/txn", `[{"KV":{"Verb":"set","Key":"app/a","Value":"eA=="}}]`},
	{"txn-delete-tree", "PUT", "/v1/txn", `[{"KV":{"Verb":"delete-tree","Key":"other/"}}]`},
	{"leader", "GET", "/v1/status/leader", ""},
	{"peers", "GET", "/v1/status/peers", ""},
	{"session-create", "PUT", "/v1/session/create", `{"TTL":"10s"}`},
	{"session-list", "GET", "/v1/session/list", ""},
	{"session-destroy-unknown", "PUT", "/v1/session/destroy/0a2b4c6d-1111-2222-3333-444455556666", ""},
	{"kv-acquire", "PUT", "/v1/kv/app/a?acquire=0a2b4c6d-1111-2222-3333-444455556666", "v"},
	{"ui-files", "GET", "/ui/", ""},
	{"ui-cluster", "GET", "/v1/ui/cluster", ""},
	{"ui-peers", "GET", "/v1/ui/peers", ""},
	{"ui-events", "GET", "/v1/ui/events", ""},
	{"ui-chaos", "POST", "/v1/ui/chaos", `{"action":"crash","nodes":["n1"],"actor":"raft"}`},
}

// wantByToken is the status each token gets on each class: none, read on
// app/, write on other/, management.
var wantByToken = map[string][4]int{
	"kv-read":        {401, 200, 403, 200},
	"kv-list":        {401, 200, 200, 200}, // other/ write sees an empty, filtered listing: 404, checked below
	"kv-write":       {401, 403, 403, 200},
	"kv-create":      {401, 403, 403, 200},
	"kv-cas":         {401, 403, 403, 200},
	"kv-delete":      {401, 403, 403, 200},
	"kv-delete-tree": {401, 403, 403, 200},
	"kv-delete-root": {401, 403, 403, 200},
	"join":           {401, 403, 403, 200},
	"remove":         {401, 403, 403, 200},
	"promote":        {401, 403, 403, 200},
	// Consul's operator:read and operator:write: a management token.
	"operator-raft-configuration": {401, 403, 403, 200},
	"operator-raft-remove-peer":   {401, 403, 403, 200},
	"snapshot":                    {401, 403, 403, 200},
	"chaos-faults":                {401, 403, 403, 200},
	"chaos-clear":                 {401, 403, 403, 200},
	"chaos-read":                  {401, 403, 403, 200},
	"chaos-crash":                 {401, 403, 403, 200},
	"acl-policy-create":           {401, 403, 403, 200},
	"acl-token-create":            {401, 403, 403, 200},
	"acl-token-list":              {401, 403, 403, 200},
	"acl-policy-list":             {401, 403, 403, 200},
	"members":                     {401, 200, 200, 200},
	"status":                      {401, 200, 200, 200},
	"health":                      {401, 200, 200, 200},
	"alarms":                      {401, 200, 200, 200},
	"disarm":                      {401, 403, 403, 200},
	"token-self":                  {401, 200, 200, 200},
	"healthz":                     {200, 200, 200, 200},
	// A transaction refused for its token is a rolled-back one, as in
	// Consul: 409 with the op's "Permission denied" in Errors.
	"txn-read":        {401, 200, 409, 200},
	"txn-write":       {401, 409, 409, 200},
	"txn-delete-tree": {401, 409, 200, 200},
	"leader":          {200, 200, 200, 200},
	"peers":           {200, 200, 200, 200},
	// Session rules name nodes; none of the fixture's tokens but the
	// management one has any, so they see an empty list.
	"session-create":          {401, 403, 403, 200},
	"session-list":            {401, 200, 200, 200},
	"session-destroy-unknown": {401, 200, 200, 200},
	// Key write comes before any look at the session (unknown here: 500).
	"kv-acquire": {401, 403, 403, 500},
	// The console's files hold no data; its data calls carry the token.
	"ui-files":   {200, 200, 200, 200},
	"ui-cluster": {401, 200, 200, 200},
	"ui-peers":   {401, 200, 200, 200},
	"ui-events":  {401, 200, 200, 200},
	"ui-chaos":   {401, 403, 403, 200},
}

// Every endpoint class against no token, a read token, a write token on
// another prefix and the management token, on a node started with chaos
// on: each answer is the class's, and after every rejected request the
// node's whole state is as it was.
func TestACL_EndpointClasses(t *testing.T) {
	for _, rq := range aclRequests {
		t.Run(rq.class, func(t *testing.T) {
			// A fresh node per class, so the management token's own
			// (allowed) changes do not leak into the next class.
			f := newACLFixture(t, withChaos)
			want, ok := wantByToken[rq.class]
			if !ok {
				t.Fatalf("no expectations for %s", rq.class)
			}
			tokens := []struct{ name, secret string }{{"none", ""}, {"read", f.read}, {"other-write", f.otherWrite}, {"management", f.mgmt}}
			for i, tok := range tokens {
				before := f.b.state(t)
				calls := f.b.applyCalls.Load()
				var hdr []string
				if tok.secret != "" {
					hdr = []string{"X-Consul-Token", tok.secret}
				}
				w := call(t, f.s, rq.method, rq.path, []byte(rq.body), hdr...)
				code := w.Code
				if rq.class == "kv-list" && tok.name == "other-write" {
					// Nothing under app/ is readable to it: filtered to nothing.
					if code != 404 || w.Header().Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
						t.Errorf("%s with %s: %d, filtered=%q; want 404, filtered", rq.class, tok.name, code, w.Header().Get("X-Consul-Results-Filtered-By-ACLs"))
					}
					continue
				}
				if code != want[i] {
					t.Errorf("%s %s with %s token: %d %q, want %d", rq.method, rq.path, tok.name, code, w.Body.String(), want[i])
					continue
				}
				switch code {
				case 401:
					if !strings.Contains(w.Body.String(), "ACL not found") {
						t.Errorf("401 body %q lacks \"ACL not found\"", w.Body.String())
					}
				case 403, 409:
					if !strings.Contains(w.Body.String(), "Permission denied") || !strings.Contains(w.Body.String(), "lacks permission") {
						t.Errorf("%d body %q gives no reason", code, w.Body.String())
					}
				}
				if code == 401 || code == 403 || code == 409 {
					if after := f.b.state(t); !reflect.DeepEqual(before, after) {
						t.Errorf("rejected %s with %s token changed the node:\nbefore %+v\nafter  %+v", rq.class, tok.name, before, after)
					}
					if n := f.b.applyCalls.Load() - calls; n != 0 {
						t.Errorf("rejected %s with %s token called Apply %d times", rq.class, tok.name, n)
					}
					if strings.HasPrefix(rq.class, "kv-read") && strings.Contains(w.Body.String(), "v-app") {
						t.Errorf("rejected read leaked the value: %q", w.Body.String())
					}
				}
			}
		})
	}
}

// The three ways to send a token, with Consul's precedence: ?token= over
// X-Consul-Token over Authorization: Bearer (any case).
func TestACL_TokenSources(t *testing.T) {
	f := newACLFixture(t)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "Authorization", "Bearer "+f.read), 200)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "Authorization", "bearer "+f.read), 200)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a?token="+f.read, nil), 200)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "Authorization", "Basic "+f.read), 401)
	// ?token= wins over the header, the header over Bearer.
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a?token="+f.otherWrite, nil, "X-Consul-Token", f.read), 403)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "X-Consul-Token", f.otherWrite, "Authorization", "Bearer "+f.read), 403)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "X-Consul-Token", "not-a-token"), 401, "ACL not found")
	if got := call(t, f.s, "GET", "/v1/kv/app/a", nil, "X-Consul-Token", f.read).Header().Get("X-Consul-Default-ACL-Policy"); got != "deny" {
		t.Errorf("X-Consul-Default-ACL-Policy %q, want deny", got)
	}
}

// With ACLs off every request behaves as before, whatever token it
// carries, and the ACL endpoints say ACLs are disabled.
func TestACL_Off(t *testing.T) {
	s, b := newAPI(t)
	wantStatus(t, call(t, s, "PUT", "/v1/kv/a", []byte("v"), "X-Consul-Token", "whatever"), 200, "true")
	wantStatus(t, call(t, s, "GET", "/v1/kv/a?token=nonsense", nil), 200)
	b.unchanged(t, "bootstrap with ACLs off", func() {
		wantPlainError(t, call(t, s, "PUT", "/v1/acl/bootstrap", nil), 401, "ACL support disabled")
	})
	if done, _, _ := b.store.ACLBootstrapped(); done {
		t.Fatal("bootstrapped with ACLs off")
	}
}

func TestACL_BootstrapOnce(t *testing.T) {
	s, b := newAPI(t, withACL)
	first := bootstrap(t, s)
	before := b.state(t)
	w := call(t, s, "PUT", "/v1/acl/bootstrap", nil)
	wantPlainError(t, w, 403, "ACL bootstrap no longer allowed")
	if got := w.Header().Get(OutcomeHeader); got != OutcomeNotApplied {
		t.Errorf("refused bootstrap: %s %q, want %q", OutcomeHeader, got, OutcomeNotApplied)
	}
	if after := b.state(t); !reflect.DeepEqual(before, after) {
		t.Fatal("the refused bootstrap changed the state")
	}
	// The first token is a working management token.
	wantStatus(t, call(t, s, "POST", "/v1/cluster/snapshot", nil, "X-Consul-Token", first), 200)
}

// Concurrent bootstraps through the API: exactly one gets a token.
func TestACL_ConcurrentBootstrapAPI(t *testing.T) {
	s, b := newAPI(t, withACL)
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Go(func() { codes[i] = call(t, s, "PUT", "/v1/acl/bootstrap", nil).Code })
	}
	wg.Wait()
	if n := count(codes, 200); n != 1 || count(codes, 403) != len(codes)-1 {
		t.Fatalf("bootstrap answers %v, want one 200 and the rest 403", codes)
	}
	if toks, _ := b.store.ACLTokens(); len(toks) != 1 {
		t.Fatalf("%d tokens stored, want 1", len(toks))
	}
}

func count(xs []int, v int) int {
	n := 0
	for _, x := range xs {
		if x == v {
			n++
		}
	}
	return n
}

// Rule semantics through the API: longest match, exact beats prefix,
// deny under a writable prefix, filtered listings, recursive deletes.
func TestACL_KeyRules(t *testing.T) {
	f := newACLFixture(t)
	mkPolicy(t, f.s, f.mgmt, "mixed", `
# app/ is writable except app/locked/ and the exact key app/ro
key_prefix "app/" { policy = "write" }
key_prefix "app/locked/" { policy = "deny" }
key "app/ro" { policy = "read" }
key_prefix "app/r" { policy = "write" }
`)
	tok := mkToken(t, f.s, f.mgmt, "mixed")
	h := []string{"X-Consul-Token", tok}
	put := func(k string) int { return call(t, f.s, "PUT", "/v1/kv/"+k, []byte("x"), h...).Code }
	for k, want := range map[string]int{"app/x": 200, "app/locked/x": 403, "app/ro": 403, "app/ro2": 200, "app/r": 200, "secret/s": 403} {
		if got := put(k); got != want {
			t.Errorf("PUT %s: %d, want %d", k, got, want)
		}
	}
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/ro", nil, h...), 404) // readable, absent
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/locked/x", nil, h...), 403)
	// Seed a key the token cannot see, then list.
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/app/locked/y", []byte("hidden"), "X-Consul-Token", f.mgmt), 200)
	w := call(t, f.s, "GET", "/v1/kv/app/?recurse", nil, h...)
	wantStatus(t, w, 200)
	for _, p := range decodePairs(t, w) {
		if strings.HasPrefix(p.Key, "app/locked/") {
			t.Errorf("listing shows %s", p.Key)
		}
	}
	if w.Header().Get("X-Consul-Results-Filtered-By-ACLs") != "true" {
		t.Error("filtered listing not marked")
	}
	w = call(t, f.s, "GET", "/v1/kv/?keys&separator=/", nil, h...)
	wantStatus(t, w, 200)
	if keys := decodeKeys(t, w); !slices.Equal(keys, []string{"app/"}) {
		t.Errorf("folded keys %v, want [app/] (other/ and secret/ hidden)", keys)
	}
	// The management token sees everything, unmarked.
	w = call(t, f.s, "GET", "/v1/kv/?recurse", nil, "X-Consul-Token", f.mgmt)
	if w.Header().Get("X-Consul-Results-Filtered-By-ACLs") != "" || len(decodePairs(t, w)) < 5 {
		t.Errorf("management listing filtered: %s", w.Body.String())
	}
	// app/ holds a deny and a read-only rule: a recursive delete of it is
	// refused, and deletes nothing, though most keys are writable.
	f.b.unchanged(t, "refused delete-tree", func() {
		wantPlainError(t, call(t, f.s, "DELETE", "/v1/kv/app/?recurse", nil, h...), 403, "key:write")
	})
	wantStatus(t, call(t, f.s, "DELETE", "/v1/kv/app/x", nil, h...), 200)
	// A prefix entirely under write rules may be deleted recursively.
	wantStatus(t, call(t, f.s, "DELETE", "/v1/kv/app/r?recurse", nil, h...), 403) // app/ro is under it
	wantStatus(t, call(t, f.s, "DELETE", "/v1/kv/app/x/?recurse", nil, h...), 200)
}

// A token's policies are resolved at each request: changing the policy or
// deleting the token takes effect at once.
func TestACL_ChangesTakeEffect(t *testing.T) {
	f := newACLFixture(t)
	id := mkPolicy(t, f.s, f.mgmt, "flip", `key "flip" { policy = "write" }`)
	tok := mkToken(t, f.s, f.mgmt, "flip")
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/flip", []byte("1"), "X-Consul-Token", tok), 200)
	body := `{"Name":"flip","Rules":"key \"flip\" { policy = \"read\" }"}`
	wantStatus(t, call(t, f.s, "PUT", "/v1/acl/policy/"+id, []byte(body), "X-Consul-Token", f.mgmt), 200)
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/flip", []byte("2"), "X-Consul-Token", tok), 403)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/flip", nil, "X-Consul-Token", tok), 200)
	wantStatus(t, call(t, f.s, "DELETE", "/v1/acl/policy/"+id, nil, "X-Consul-Token", f.mgmt), 200)
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/flip", nil, "X-Consul-Token", tok), 403)
	// Delete the token itself: from now on it is unknown.
	w := call(t, f.s, "GET", "/v1/acl/tokens", nil, "X-Consul-Token", f.mgmt)
	var toks []ACLToken
	if err := json.Unmarshal(w.Body.Bytes(), &toks); err != nil {
		t.Fatal(err)
	}
	for _, tk := range toks {
		if tk.SecretID != "" {
			t.Errorf("token listing shows a secret: %+v", tk)
		}
		if len(tk.Policies) == 0 && tk.Description == "test" {
			wantStatus(t, call(t, f.s, "DELETE", "/v1/acl/token/"+tk.AccessorID, nil, "X-Consul-Token", f.mgmt), 200)
		}
	}
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/flip", nil, "X-Consul-Token", tok), 401)
}

// Bad ACL requests: a clear 400, and nothing stored.
func TestACL_BadRequests(t *testing.T) {
	f := newACLFixture(t)
	h := []string{"X-Consul-Token", f.mgmt}
	for _, c := range []struct{ method, path, body, want string }{
		{"PUT", "/v1/acl/policy", `{"Name":"x","Rules":"key \"a\" { policy = \"admin\" }"}`, "invalid policy"},
		{"PUT", "/v1/acl/policy", `{"Name":"x","Rules":"service \"a\" { policy = \"read\" }"}`, "unsupported rule"},
		{"PUT", "/v1/acl/policy", `{"Name":"x","Rules":"key \"a\" { policy = \"read\" "}`, "missing '}'"},
		{"PUT", "/v1/acl/policy", `{"Name":"bad name","Rules":""}`, "invalid policy name"},
		{"PUT", "/v1/acl/policy", `{"Name":"app-read","Rules":""}`, "already exists"},
		{"PUT", "/v1/acl/policy", `{"Name":"global-management"}`, "builtin"},
		{"PUT", "/v1/acl/policy", `{"Name":"x","Bogus":1}`, "unknown field"},
		{"PUT", "/v1/acl/policy", `{"ID":"abc","Name":"x"}`, "Cannot specify an ID"},
		{"PUT", "/v1/acl/policy", ``, "missing request body"},
		{"PUT", "/v1/acl/token", `{"Policies":[{"Name":"nope"}]}`, "no ACL policy named"},
		{"PUT", "/v1/acl/token", `{"Policies":[{}]}`, "needs an ID or a Name"},
		{"PUT", "/v1/acl/token", `{"Roles":[{"Name":"r"}]}`, "roles are not supported"},
		{"PUT", "/v1/acl/token", `{"SecretID":"short"}`, "must be a UUID"},
		{"PUT", "/v1/acl/token", `{"Local":true}`, "local tokens"},
		{"PUT", "/v1/acl/policy/" + ManagementPolicyID, `{"Name":"global-management"}`, "cannot be changed"},
		{"DELETE", "/v1/acl/policy/" + ManagementPolicyID, ``, "cannot be deleted"},
	} {
		f.b.unchanged(t, c.method+" "+c.body, func() {
			wantPlainError(t, call(t, f.s, c.method, c.path, []byte(c.body), h...), 400, c.want)
		})
	}
	f.b.unchanged(t, "missing policy", func() {
		wantStatus(t, call(t, f.s, "GET", "/v1/acl/policy/nope", nil, h...), 404)
		wantStatus(t, call(t, f.s, "GET", "/v1/acl/token/nope", nil, h...), 404)
	})
}

// Policies in the JSON rule form work like the HCL ones, and a token can
// name its policies by ID.
func TestACL_JSONRulesAndLinksByID(t *testing.T) {
	f := newACLFixture(t)
	id := mkPolicy(t, f.s, f.mgmt, "json", `{"key_prefix": {"j/": {"policy": "write"}}, "key": {"j/ro": {"policy": "read"}}}`)
	body, _ := json.Marshal(map[string]any{"Policies": []ACLLink{{ID: id}}})
	w := call(t, f.s, "PUT", "/v1/acl/token", body, "X-Consul-Token", f.mgmt)
	wantStatus(t, w, 200, `"Name":"json"`)
	var tok ACLToken
	_ = json.Unmarshal(w.Body.Bytes(), &tok)
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/j/x", []byte("1"), "X-Consul-Token", tok.SecretID), 200)
	wantStatus(t, call(t, f.s, "PUT", "/v1/kv/j/ro", []byte("1"), "X-Consul-Token", tok.SecretID), 403)
	self := call(t, f.s, "GET", "/v1/acl/token/self", nil, "X-Consul-Token", tok.SecretID)
	wantStatus(t, self, 200, tok.AccessorID)
	if strings.Contains(self.Body.String(), tok.SecretID) {
		t.Error("token/self shows the secret")
	}
}

// A token created on another node that this one has not applied yet is
// found after a read barrier, not refused.
func TestACL_UnknownTokenRetriesAfterBarrier(t *testing.T) {
	f := newACLFixture(t)
	calls := f.b.barrierCalls.Load()
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a", nil, "X-Consul-Token", "unknown"), 401)
	if f.b.barrierCalls.Load() == calls {
		t.Error("an unknown token was refused without a read barrier")
	}
	calls = f.b.barrierCalls.Load()
	wantStatus(t, call(t, f.s, "GET", "/v1/kv/app/a?stale", nil, "X-Consul-Token", f.read), 200)
	if f.b.barrierCalls.Load() != calls {
		t.Error("a known token cost a read barrier")
	}
}

func TestRequestToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/v1/kv/a", nil)
	r.Header.Set("Authorization", "BEARER  abc ")
	if got := requestToken(r); got != "abc" {
		t.Errorf("requestToken = %q", got)
	}
}
