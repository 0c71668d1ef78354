package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

func TestKVMethods(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "k", "v")
	for _, m := range []string{"POST", "PATCH", "CONNECT", "TRACE", "FOO"} {
		b.unchanged(t, m, func() {
			w := call(t, s, m, "/v1/kv/k", []byte("x"))
			wantPlainError(t, w, 405, m)
			if got := w.Header().Get("Allow"); got != "GET, PUT, DELETE, OPTIONS" {
				t.Errorf("%s: Allow %q", m, got)
			}
		})
	}
	w := call(t, s, "OPTIONS", "/v1/kv/k", nil)
	wantStatus(t, w, 200)
	if got := w.Header().Get("Allow"); !strings.Contains(got, "PUT") {
		t.Errorf("OPTIONS Allow %q", got)
	}
}

func TestDatacenterNamespacePartition(t *testing.T) {
	s, b := newAPI(t, func(c *apiConfig) { c.opts.Datacenter = "east" })
	put(t, s, "k", "v")
	cases := []struct {
		target string
		hdr    []string
		status int
		want   string
	}{
		{"/v1/kv/k?dc=east", nil, 200, ""},
		{"/v1/kv/k?dc=", nil, 200, ""},
		{"/v1/kv/k?datacenter=east", nil, 200, ""},
		{"/v1/kv/k?dc=dc1", nil, 500, `No path to datacenter "dc1"`},
		{"/v1/kv/k?datacenter=west", nil, 500, "No path to datacenter"},
		// datacenter wins over dc.
		{"/v1/kv/k?datacenter=east&dc=west", nil, 200, ""},
		{"/v1/kv/k?datacenter=west&dc=east", nil, 500, "No path to datacenter"},
		{"/v1/kv/k?ns=default", nil, 200, ""},
		{"/v1/kv/k?partition=default", nil, 200, ""},
		{"/v1/kv/k?ns=team", nil, 400, "Namespaces are not supported"},
		{"/v1/kv/k?partition=p", nil, 400, "Admin partitions are not supported"},
		{"/v1/kv/k", []string{"X-Consul-Namespace", "team"}, 400, "Namespaces"},
		{"/v1/kv/k", []string{"X-Consul-Partition", "p"}, 400, "partitions"},
		{"/v1/kv/k", []string{"X-Consul-Namespace", "default"}, 200, ""},
		{"/v1/kv/?keys&dc=nowhere", nil, 500, "No path to datacenter"},
		{"/v1/kv/?recurse&ns=x", nil, 400, "Namespaces"},
		{"/v1/status/leader?dc=nowhere", nil, 500, "No path to datacenter"},
		{"/v1/status/peers?dc=nowhere", nil, 500, "No path to datacenter"},
		{"/v1/status/leader?dc=east", nil, 200, ""},
	}
	for _, c := range cases {
		t.Run(c.target+strings.Join(c.hdr, ":"), func(t *testing.T) {
			before := b.barrierCalls.Load()
			w := call(t, s, "GET", c.target, nil, c.hdr...)
			wantStatus(t, w, c.status, c.want)
			if c.status != 200 && b.barrierCalls.Load() != before {
				t.Error("a rejected read ran the barrier")
			}
			// Writes in another scope are refused without storing anything.
			if c.status != 200 && strings.HasPrefix(c.target, "/v1/kv/k") {
				b.unchanged(t, "PUT "+c.target, func() {
					wantPlainError(t, call(t, s, "PUT", c.target, []byte("other"), c.hdr...), c.status, c.want)
					wantPlainError(t, call(t, s, "DELETE", c.target, nil, c.hdr...), c.status, c.want)
				})
			}
		})
	}
	// The default datacenter is dc1.
	s2, _ := newAPI(t)
	put(t, s2, "k", "v")
	wantStatus(t, call(t, s2, "GET", "/v1/kv/k?dc=dc1", nil), 200)
	wantStatus(t, call(t, s2, "GET", "/v1/kv/k?dc=east", nil), 500, "No path to datacenter")
}

func TestStatusEndpoints(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "GET", "/v1/status/leader", nil)
	wantStatus(t, w, 200)
	if got := strings.TrimSpace(w.Body.String()); got != `"127.0.0.1:8300"` {
		t.Errorf("leader %s", got)
	}
	w = call(t, s, "GET", "/v1/status/peers", nil)
	wantStatus(t, w, 200)
	var peers []string
	if err := json.Unmarshal(w.Body.Bytes(), &peers); err != nil || !reflect.DeepEqual(peers, []string{"127.0.0.1:8300", "127.0.0.1:8301"}) {
		t.Errorf("peers %s (%v)", w.Body.String(), err)
	}

	// No leader: "" and still 200, as Consul does.
	b.set(func(f *fakeBackend) { f.leader = cluster.LeaderInfo{}; f.peers = nil })
	w = call(t, s, "GET", "/v1/status/leader", nil)
	wantStatus(t, w, 200)
	if got := strings.TrimSpace(w.Body.String()); got != `""` {
		t.Errorf("leader without one: %s", got)
	}
	w = call(t, s, "GET", "/v1/status/peers", nil)
	wantStatus(t, w, 200)
	if got := strings.TrimSpace(w.Body.String()); got != "[]" {
		t.Errorf("no peers: %s, want []", got)
	}
	b.set(func(f *fakeBackend) { f.peersErr = cluster.ErrNoLeader })
	wantPlainError(t, call(t, s, "GET", "/v1/status/peers", nil), 503)

	w = call(t, s, "POST", "/v1/status/leader", nil)
	wantStatus(t, w, 405)
	if !strings.Contains(w.Header().Get("Allow"), "GET") {
		t.Errorf("Allow %q", w.Header().Get("Allow"))
	}
}

func TestHealthAndReady(t *testing.T) {
	s, b := newAPI(t)
	wantStatus(t, call(t, s, "GET", "/healthz", nil), 200, "ok")
	wantStatus(t, call(t, s, "GET", "/readyz", nil), 200, "ready")
	b.set(func(f *fakeBackend) { f.readyErr = cluster.ErrNoLeader })
	wantPlainError(t, call(t, s, "GET", "/readyz", nil), 503, "not ready", "no leader")
	wantStatus(t, call(t, s, "GET", "/healthz", nil), 200, "ok")
}

// "/" redirects to the console (TestUIFilesServedWithAStrictPolicy).
func TestUnknownPaths(t *testing.T) {
	s, _ := newAPI(t)
	for _, p := range []string{"/v1", "/v1/kvx", "/v1/txnx", "/v1/session/nope", "/v1/agent/self", "/v1/chaos/faults"} {
		if w := call(t, s, "GET", p, nil); w.Code != 404 {
			t.Errorf("GET %s: %d, want 404", p, w.Code)
		}
	}
}

func decodeJSONError(t testing.TB, w *httptest.ResponseRecorder) jsonError {
	t.Helper()
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var fe jsonError
	if err := json.Unmarshal(w.Body.Bytes(), &fe); err != nil || fe.Error == "" {
		t.Fatalf("not a JSON error: %q (%v)", w.Body.String(), err)
	}
	return fe
}

func TestClusterMembersAndStatus(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "GET", "/v1/cluster/members", nil)
	wantStatus(t, w, 200)
	var members []cluster.Member
	if err := json.Unmarshal(w.Body.Bytes(), &members); err != nil || len(members) != 2 || members[0].ID != "n1" || !members[0].Leader {
		t.Errorf("members %s (%v)", w.Body.String(), err)
	}
	w = call(t, s, "GET", "/v1/cluster/status", nil)
	wantStatus(t, w, 200, `"state":"Leader"`, `"term":3`)

	b.set(func(f *fakeBackend) { f.members = nil })
	w = call(t, s, "GET", "/v1/cluster/members", nil)
	wantStatus(t, w, 200)
	if got := strings.TrimSpace(w.Body.String()); got != "[]" {
		t.Errorf("no members: %s", got)
	}

	b.set(func(f *fakeBackend) {
		f.membersErr = fmt.Errorf("%w (raft is restarting)", cluster.ErrNoLeader)
		f.statusErr = f.membersErr
	})
	for _, p := range []string{"/v1/cluster/members", "/v1/cluster/status"} {
		w = call(t, s, "GET", p, nil)
		wantStatus(t, w, 503)
		if fe := decodeJSONError(t, w); fe.Code != peerlink.ErrorCode(cluster.ErrNoLeader) {
			t.Errorf("%s: code %q", p, fe.Code)
		}
	}
}

func TestClusterJoin(t *testing.T) {
	cases := []struct {
		name string
		body string
		want string
	}{
		{"not JSON", `{"id":`, "bad join request"},
		{"wrong type", `{"id": 5}`, "bad join request"},
		{"unknown field", `{"id":"n4","raft_addr":"10.0.0.4:8300","voter":true}`, "unknown field"},
		// A node registers its own client address; nobody names it for it.
		{"http_addr", `{"id":"n4","raft_addr":"10.0.0.4:8300","http_addr":"10.6.6.6:8500"}`, "unknown field"},
		{"empty body", ``, "bad join request"},
		{"missing id", `{"raft_addr":"10.0.0.4:8300"}`, "id"},
		{"blank id", `{"id":"  ","raft_addr":"10.0.0.4:8300"}`, "id"},
		{"id with slash", `{"id":"a/b","raft_addr":"10.0.0.4:8300"}`, "id"},
		{"id with equals", `{"id":"a=b","raft_addr":"10.0.0.4:8300"}`, "id"},
		{"id with comma", `{"id":"a,b","raft_addr":"10.0.0.4:8300"}`, "id"},
		{"missing raft_addr", `{"id":"n4"}`, "raft_addr"},
		{"raft_addr no port", `{"id":"n4","raft_addr":"10.0.0.4"}`, "raft_addr"},
		{"raft_addr port 0", `{"id":"n4","raft_addr":"10.0.0.4:0"}`, "raft_addr"},
		{"raft_addr no host", `{"id":"n4","raft_addr":":8300"}`, "raft_addr"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := newAPI(t)
			w := call(t, s, "POST", "/v1/cluster/join", []byte(c.body))
			wantStatus(t, w, 400)
			if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, c.want) {
				t.Errorf("error %q does not mention %q", fe.Error, c.want)
			}
			if len(b.joins) != 0 {
				t.Errorf("backend Join called for an invalid request: %+v", b.joins)
			}
		})
	}

	s, b := newAPI(t)
	body := `{"id":"n4","raft_addr":"10.0.0.4:8300"}`
	w := call(t, s, "POST", "/v1/cluster/join", []byte(body))
	wantStatus(t, w, 200, `"joined":"n4"`)
	want := []peerlink.JoinRequest{{ID: "n4", RaftAddr: "10.0.0.4:8300"}}
	if !reflect.DeepEqual(b.joins, want) {
		t.Errorf("joins %+v, want %+v", b.joins, want)
	}

	for _, c := range []struct {
		err    error
		status int
	}{
		{cluster.ErrNoLeader, 503},
		{cluster.ErrNotLeader, 503},
		{cluster.ErrUnknownOutcome, 503},
		{cluster.ErrBusy, 429},
		{errors.New("raft address 10.0.0.4:8300 already belongs to member n3"), 409},
	} {
		b.set(func(f *fakeBackend) { f.joinErr = c.err })
		w := call(t, s, "POST", "/v1/cluster/join", []byte(body))
		wantStatus(t, w, c.status)
		if fe := decodeJSONError(t, w); fe.Code != peerlink.ErrorCode(c.err) || !strings.Contains(fe.Error, c.err.Error()) {
			t.Errorf("%v: error %+v", c.err, fe)
		}
	}
	if w := call(t, s, "GET", "/v1/cluster/join", nil); w.Code != 405 {
		t.Errorf("GET join: %d", w.Code)
	}
}

func TestClusterRemove(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "DELETE", "/v1/cluster/members/n9", nil)
	wantStatus(t, w, 404)
	if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, `"n9"`) {
		t.Errorf("error %q does not name the member", fe.Error)
	}
	if len(b.removes) != 0 {
		t.Errorf("Remove called for an unknown member: %+v", b.removes)
	}
	wantStatus(t, call(t, s, "DELETE", "/v1/cluster/members/n2", nil), 200, `"removed":"n2"`)
	if want := []string{"n2"}; !reflect.DeepEqual(b.removes, want) {
		t.Errorf("removes %+v, want %+v", b.removes, want)
	}
	b.set(func(f *fakeBackend) { f.removeErr = cluster.ErrNoLeader })
	wantStatus(t, call(t, s, "DELETE", "/v1/cluster/members/n2", nil), 503)
	b.set(func(f *fakeBackend) { f.removeErr = errors.New("configuration changed since") })
	wantStatus(t, call(t, s, "DELETE", "/v1/cluster/members/n2", nil), 409)
}

// BUG: when the member list cannot be read (no leader, Raft restarting),
// clusterRemove answers 404 "no member with id", as if the member were
// already gone. A tool that treats 404 as "already removed" then skips a
// removal that never happened. It should answer the error's own status
// (503).
func TestClusterRemoveWhenMembersUnavailable(t *testing.T) {
	s, b := newAPI(t)
	b.set(func(f *fakeBackend) {
		f.membersErr = fmt.Errorf("%w (raft is restarting on this node)", cluster.ErrNoLeader)
	})
	w := call(t, s, "DELETE", "/v1/cluster/members/n2", nil)
	if w.Code != 503 {
		t.Errorf("status %d (%q), want 503: the member list was unavailable, the member is not known to be absent", w.Code, w.Body.String())
	}
}

func TestClusterSnapshot(t *testing.T) {
	s, b := newAPI(t)
	wantStatus(t, call(t, s, "POST", "/v1/cluster/snapshot", nil), 200, `"index":42`)
	b.set(func(f *fakeBackend) { f.snapErr = errors.New("nothing new to snapshot") })
	w := call(t, s, "POST", "/v1/cluster/snapshot", nil)
	wantStatus(t, w, 500)
	decodeJSONError(t, w)
}

// TestNoInternalRoutes: node-to-node traffic has its own port; on the
// client port the old internal paths and the header that once marked a
// peer's request are nothing special.
func TestNoInternalRoutes(t *testing.T) {
	s, b := newAPI(t, withChaos)
	data := (&storage.Command{Op: storage.OpRegisterNode, Key: "n1", Value: []byte("10.6.6.6:8500")}).Encode()
	b.unchanged(t, "internal paths", func() {
		for _, p := range []string{"/v1/internal/apply", "/v1/internal/apply-batch", "/v1/internal/read-index", "/v1/internal/ping"} {
			for _, hdr := range [][]string{nil, {"X-Troupe-Forwarded-By", "n2"}} {
				if w := call(t, s, "POST", p, data, hdr...); w.Code != 404 {
					t.Errorf("POST %s %v: %d, want 404", p, hdr, w.Code)
				}
			}
		}
	})
	if len(b.joins) != 0 {
		t.Fatalf("joins %+v", b.joins)
	}
}

func TestChaosEndpointsOffByDefault(t *testing.T) {
	s, b := newAPI(t)
	isolate, err := json.Marshal(faultplan.Must(faultplan.Isolate([]string{"n1", "n2"}, "n1"))[0].Rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/v1/chaos/faults", ""},
		{"PUT", "/v1/chaos/faults", string(isolate)},
		{"DELETE", "/v1/chaos/faults", ""},
		{"POST", "/v1/chaos/crash?actor=raft", ""},
	} {
		w := call(t, s, r.method, r.path, []byte(r.body))
		if w.Code != 404 {
			t.Errorf("%s %s with chaos off: %d, want 404", r.method, r.path, w.Code)
		}
	}
	if rs := b.Faults(); len(rs.Rules) != 0 {
		t.Errorf("rules installed with chaos off: %+v", rs)
	}
	if len(b.crashes) != 0 {
		t.Errorf("crashed with chaos off: %v", b.crashes)
	}
}

func TestChaosFaults(t *testing.T) {
	s, b := newAPI(t, withChaos)
	w := call(t, s, "GET", "/v1/chaos/faults", nil)
	wantStatus(t, w, 200, `"rules"`)

	want := faultnet.Rules{Seed: 7, Rules: []faultnet.Rule{
		{Peer: "n2", Direction: faultnet.Out, Delay: faultnet.Duration(50 * time.Millisecond), Jitter: faultnet.Duration(10 * time.Millisecond)},
		{Peer: "*", Direction: faultnet.Both, Cut: true},
	}}
	good, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	w = call(t, s, "PUT", "/v1/chaos/faults", good)
	wantStatus(t, w, 200, `"seed":7`, `"delay":"50ms"`)
	if got := b.Faults(); !reflect.DeepEqual(got, want) {
		t.Errorf("installed %+v, want %+v", got, want)
	}
	wantStatus(t, call(t, s, "GET", "/v1/chaos/faults", nil), 200, `"peer":"n2"`)

	for _, c := range []struct{ name, body, want string }{
		{"not JSON", `{"rules":[`, "bad fault rules"},
		{"unknown field", `{"rules":[{"peer":"n2","direction":"out","cut":true,"loss":0.5}]}`, "unknown field"},
		{"unknown top-level field", `{"rule":[]}`, "unknown field"},
		{"bad direction", `{"rules":[{"peer":"n2","direction":"sideways","cut":true}]}`, "direction"},
		{"no peer", `{"rules":[{"direction":"out","cut":true}]}`, "peer"},
		{"no effect", `{"rules":[{"peer":"n2","direction":"out"}]}`, "does nothing"},
		{"bad duration", `{"rules":[{"peer":"n2","direction":"out","delay":"soon"}]}`, "bad fault rules"},
		{"negative delay", `{"rules":[{"peer":"n2","direction":"out","delay":"-5ms"}]}`, "negative"},
		{"jitter over delay", `{"rules":[{"peer":"n2","direction":"out","delay":"5ms","jitter":"10ms"}]}`, "jitter"},
		{"delay over limit", `{"rules":[{"peer":"n2","direction":"out","delay":"2m"}]}`, "limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := call(t, s, "PUT", "/v1/chaos/faults", []byte(c.body))
			wantStatus(t, w, 400)
			if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, c.want) {
				t.Errorf("error %q does not mention %q", fe.Error, c.want)
			}
			if got := b.Faults(); !reflect.DeepEqual(got, want) {
				t.Errorf("a rejected PUT changed the rules to %+v", got)
			}
		})
	}

	w = call(t, s, "DELETE", "/v1/chaos/faults", nil)
	wantStatus(t, w, 200)
	if got := b.Faults(); len(got.Rules) != 0 {
		t.Errorf("rules after DELETE: %+v", got)
	}
}

func TestChaosCrash(t *testing.T) {
	s, b := newAPI(t, withChaos)
	wantStatus(t, call(t, s, "POST", "/v1/chaos/crash?actor=raft", nil), 200, `"crashed":"raft"`)
	w := call(t, s, "POST", "/v1/chaos/crash?actor=bogus", nil)
	wantStatus(t, w, 400)
	if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, "bogus") {
		t.Errorf("error %q", fe.Error)
	}
	wantStatus(t, call(t, s, "POST", "/v1/chaos/crash", nil), 400)
	if !reflect.DeepEqual(b.crashes, []string{"raft"}) {
		t.Errorf("crashes %v", b.crashes)
	}
	if w := call(t, s, "GET", "/v1/chaos/crash?actor=raft", nil); w.Code != 405 {
		t.Errorf("GET crash: %d, want 405", w.Code)
	}
}
