package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
)

func TestOperatorRaftConfiguration(t *testing.T) {
	s, b := newAPI(t)
	b.set(func(f *fakeBackend) {
		f.members = append(f.members, cluster.Member{ID: "n3", RaftAddr: "127.0.0.1:8302", Suffrage: peerlink.SuffrageNonvoter})
		f.status.LastLogIndex = 99
	})
	calls := b.barrierCalls.Load()
	w := call(t, s, "GET", "/v1/operator/raft/configuration", nil)
	wantStatus(t, w, 200)
	var got RaftConfiguration
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := RaftConfiguration{Index: 7, Servers: []RaftServer{
		{ID: "n1", Node: "n1", Address: "127.0.0.1:8300", Leader: true, ProtocolVersion: "3", Voter: true, LastIndex: 99},
		{ID: "n2", Node: "n2", Address: "127.0.0.1:8301", ProtocolVersion: "3", Voter: true},
		{ID: "n3", Node: "n3", Address: "127.0.0.1:8302", ProtocolVersion: "3"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("configuration\n%+v\nwant\n%+v", got, want)
	}
	if b.barrierCalls.Load() == calls {
		t.Error("a default read of the configuration passed no read barrier")
	}

	// ?stale answers from this node without a barrier, even when none
	// could pass.
	b.set(func(f *fakeBackend) { f.barrierErr = cluster.ErrNoLeader })
	wantStatus(t, call(t, s, "GET", "/v1/operator/raft/configuration", nil), 503)
	wantStatus(t, call(t, s, "GET", "/v1/operator/raft/configuration?stale", nil), 200, `"Index":7`)
	if b.staleConfigs != 1 {
		t.Errorf("stale reads %d, want 1", b.staleConfigs)
	}
	wantStatus(t, call(t, s, "GET", "/v1/operator/raft/configuration?stale&dc=elsewhere", nil), 500, "No path to datacenter")
}

func TestOperatorRaftRemovePeer(t *testing.T) {
	for _, c := range []struct {
		query  string
		status int
		want   string
	}{
		{"", 400, "Must specify either"},
		{"?id=n2&address=127.0.0.1:8301", 400, "Must specify either"},
		{"?id=n9", 404, `id "n9" was not found`},
		{"?address=127.0.0.1:9999", 404, `address "127.0.0.1:9999" was not found`},
		{"?id=n2&dc=elsewhere", 500, "No path to datacenter"},
	} {
		s, b := newAPI(t)
		wantStatus(t, call(t, s, "DELETE", "/v1/operator/raft/peer"+c.query, nil), c.status, c.want)
		if len(b.removes) != 0 {
			t.Errorf("%q removed %v", c.query, b.removes)
		}
	}
	for _, q := range []string{"?id=n2", "?address=127.0.0.1:8301"} {
		s, b := newAPI(t)
		w := call(t, s, "DELETE", "/v1/operator/raft/peer"+q, nil)
		wantStatus(t, w, 200)
		if w.Body.Len() != 0 {
			t.Errorf("%s: body %q, want Consul's empty one", q, w.Body.String())
		}
		if !reflect.DeepEqual(b.removes, []string{"n2"}) {
			t.Errorf("%s: removed %v, want n2", q, b.removes)
		}
	}
	s, b := newAPI(t)
	b.set(func(f *fakeBackend) {
		f.removeErr = errors.New("removing n2 would leave 1 voters, of which this leader reaches 1 ... pass ?force=true")
	})
	w := call(t, s, "DELETE", "/v1/operator/raft/peer?id=n2", nil)
	wantStatus(t, w, 409, "would leave")
	if got := w.Header().Get(OutcomeHeader); got != OutcomeNotApplied {
		t.Errorf("a refused removal: outcome %q", got)
	}
	b.set(func(f *fakeBackend) { f.removeErr = cluster.ErrNoLeader })
	wantStatus(t, call(t, s, "DELETE", "/v1/operator/raft/peer?id=n2", nil), 503)
}

func TestClusterPromote(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "POST", "/v1/cluster/members/n9/promote", nil)
	wantStatus(t, w, 404)
	if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, `"n9"`) {
		t.Errorf("error %q does not name the member", fe.Error)
	}
	wantStatus(t, call(t, s, "POST", "/v1/cluster/members/n2/promote?force=maybe", nil), 400, "force")
	if len(b.promotes) != 0 {
		t.Fatalf("promoted %v on bad requests", b.promotes)
	}
	wantStatus(t, call(t, s, "POST", "/v1/cluster/members/n2/promote", nil), 200, `"promoted":"n2"`)
	if !reflect.DeepEqual(b.promotes, []string{"n2"}) {
		t.Fatalf("promotes %v", b.promotes)
	}
	// The leader's refusal of a non-voter that lags keeps its status and
	// words.
	lag := &peerlink.RemoteError{Status: 409, Message: `non-voter "n2" has not caught up: 5000 entries behind`}
	b.set(func(f *fakeBackend) { f.promoteErr = lag })
	w = call(t, s, "POST", "/v1/cluster/members/n2/promote", nil)
	wantStatus(t, w, 409)
	if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, "5000 entries behind") {
		t.Errorf("error %q", fe.Error)
	}
	if w := call(t, s, "GET", "/v1/cluster/members/n2/promote", nil); w.Code != 405 {
		t.Errorf("GET promote: %d", w.Code)
	}
}

func TestClusterJoinSuffrage(t *testing.T) {
	s, b := newAPI(t)
	w := call(t, s, "POST", "/v1/cluster/join", []byte(`{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":"observer"}`))
	wantStatus(t, w, 400)
	if fe := decodeJSONError(t, w); !strings.Contains(fe.Error, "suffrage") {
		t.Errorf("error %q", fe.Error)
	}
	if len(b.joins) != 0 {
		t.Fatalf("joined %v", b.joins)
	}
	w = call(t, s, "POST", "/v1/cluster/join", []byte(`{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":"nonvoter"}`))
	wantStatus(t, w, 200, `"joined":"n4"`, `"suffrage":"nonvoter"`)
	wantStatus(t, call(t, s, "POST", "/v1/cluster/join", []byte(`{"id":"n5","raft_addr":"10.0.0.5:8300"}`)), 200, `"suffrage":"voter"`)
	want := []peerlink.JoinRequest{{ID: "n4", RaftAddr: "10.0.0.4:8300", Suffrage: "nonvoter"}, {ID: "n5", RaftAddr: "10.0.0.5:8300"}}
	if !reflect.DeepEqual(b.joins, want) {
		t.Fatalf("joins %+v, want %+v", b.joins, want)
	}
}

// FuzzMembershipRequests sends arbitrary join bodies, member ids and
// remove-peer queries through the membership endpoints (the join, the
// promotion, Consul's remove-peer). The handler must never panic, never
// answer 5xx but Consul's "No path to datacenter", and change the
// membership only when it answers 200.
func FuzzMembershipRequests(f *testing.F) {
	for _, s := range []struct {
		kind  uint8
		input string
	}{
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300"}`},
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":"nonvoter"}`},
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":"voter"}`},
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":""}`},
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":7}`},
		{0, `{"id":"n4","raft_addr":"10.0.0.4:8300","suffrage":"nonvoter","x":1}`},
		{0, `{"suffrage":"nonvoter"}`},
		{1, "n2"},
		{1, "n2/promote?force=true"},
		{1, "n2/promote?force=maybe"},
		{1, "n9"},
		{1, "%2e%2e"},
		{2, "id=n2"},
		{2, "address=127.0.0.1:8301"},
		{2, "id=n2&address=127.0.0.1:8301"},
		{2, "id=&address="},
		{2, "id=n2&dc=other"},
		{2, "id=%00"},
	} {
		f.Add(s.kind, s.input)
	}
	b := newFakeBackend(f, f.TempDir())
	s := New(Backends{KV: b, Cluster: b}, Options{RequestTimeout: time.Second})
	f.Fuzz(func(t *testing.T, kind uint8, input string) {
		var method, target string
		var body []byte
		switch kind % 3 {
		case 0:
			method, target, body = "POST", "/v1/cluster/join", []byte(input)
		case 1:
			method, target = "POST", "/v1/cluster/members/"+input
			if !strings.Contains(input, "/promote") {
				target += "/promote"
			}
		case 2:
			method, target = "DELETE", "/v1/operator/raft/peer?"+input
		}
		u, err := url.Parse(target)
		if err != nil {
			return
		}
		req := httptest.NewRequest(method, "/", bytes.NewReader(body))
		req.URL = u
		req.RequestURI = u.RequestURI()
		b.set(func(f *fakeBackend) { f.joins, f.removes, f.promotes = nil, nil, nil })
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		b.mu.Lock()
		changes := len(b.joins) + len(b.removes) + len(b.promotes)
		b.mu.Unlock()
		switch {
		case w.Code >= 500:
			if w.Code != 500 || !strings.Contains(w.Body.String(), "No path to datacenter") {
				t.Fatalf("%s %s: %d %q", method, target, w.Code, w.Body.String())
			}
			fallthrough
		case w.Code >= 400:
			if changes != 0 {
				t.Fatalf("%s %s: %d %q, but the membership changed", method, target, w.Code, w.Body.String())
			}
		case w.Code == 200:
			if changes != 1 {
				t.Fatalf("%s %s: 200 with %d changes", method, target, changes)
			}
		}
	})
}
