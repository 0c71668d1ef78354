package integration

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestBadInputThroughRealNodes sends malformed and hostile requests to a
// follower and the leader of a real cluster: each gets a 4xx with a reason,
// nothing is stored, nothing is lost, and the nodes keep serving.
func TestBadInputThroughRealNodes(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	if code, _ := put(t, leader, "keep/me", "safe"); code != 200 {
		t.Fatal("setup write failed")
	}

	big := bytes.Repeat([]byte("x"), 512<<10+1)
	cases := []struct {
		name, method, path string
		body               []byte
		want               int
		reason             string
	}{
		{"oversized value", http.MethodPut, "/v1/kv/big", big, 413, "too large"},
		{"bad cas", http.MethodPut, "/v1/kv/keep/me?cas=abc", []byte("evil"), 400, "cas"},
		{"negative cas", http.MethodPut, "/v1/kv/keep/me?cas=-1", []byte("evil"), 400, "cas"},
		{"bad flags", http.MethodPut, "/v1/kv/keep/me?flags=1.5", []byte("evil"), 400, "flags"},
		{"flags overflow", http.MethodPut, "/v1/kv/keep/me?flags=18446744073709551616", []byte("evil"), 400, "flags"},
		{"empty key", http.MethodPut, "/v1/kv/", []byte("evil"), 400, "Missing key"},
		{"dot-dot segment", http.MethodPut, "/v1/kv/keep/../me", []byte("evil"), 400, ".."},
		{"double slash", http.MethodPut, "/v1/kv/keep//me", []byte("evil"), 400, "//"},
		{"control character", http.MethodPut, "/v1/kv/keep/%01me", []byte("evil"), 400, "control"},
		{"conflicting flags", http.MethodPut, "/v1/kv/keep/me?cas=1&acquire=s", []byte("evil"), 400, "Conflicting"},
		{"delete bad cas", http.MethodDelete, "/v1/kv/keep/me?cas=x", nil, 400, "cas"},
		{"delete empty key", http.MethodDelete, "/v1/kv/", nil, 400, "Missing key"},
		{"stale and consistent", http.MethodGet, "/v1/kv/keep/me?stale&consistent", nil, 400, "conflicting"},
		{"bad index", http.MethodGet, "/v1/kv/keep/me?index=x", nil, 400, "index"},
		{"bad wait", http.MethodGet, "/v1/kv/keep/me?index=1&wait=forever", nil, 400, "wait"},
		{"bad join", http.MethodPost, "/v1/cluster/join", []byte(`{"id":"","raft_addr":"x"}`), 400, "join"},
		{"join garbage", http.MethodPost, "/v1/cluster/join", []byte(`{{{`), 400, "join"},
		{"old internal path", http.MethodPost, "/v1/internal/apply", []byte{1, 1, 0}, 404, "not found"},
		{"chaos disabled", http.MethodPost, "/v1/chaos/crash?actor=raft", nil, 404, ""},
		{"session body garbage", http.MethodPut, "/v1/session/create", []byte(`{"TTL":`), 400, "decode"},
		{"session bad behavior", http.MethodPut, "/v1/session/create", []byte(`{"Behavior":"vanish"}`), 400, "behavior"},
		{"session TTL too short", http.MethodPut, "/v1/session/create", []byte(`{"TTL":"1s"}`), 400, "ttl"},
		{"session TTL too long", http.MethodPut, "/v1/session/create", []byte(`{"TTL":"48h"}`), 400, "ttl"},
		{"session unknown check", http.MethodPut, "/v1/session/create", []byte(`{"NodeChecks":["service:web"]}`), 400, "check"},
		{"session service check", http.MethodPut, "/v1/session/create", []byte(`{"ServiceChecks":[{"ID":"web"}]}`), 400, "check"},
		{"session negative lock-delay", http.MethodPut, "/v1/session/create", []byte(`{"LockDelay":"-5s"}`), 400, "negative"},
		{"session unknown node", http.MethodPut, "/v1/session/create", []byte(`{"Node":"n99"}`), 400, "node"},
		{"session oversized", http.MethodPut, "/v1/session/create", big, 413, "too large"},
		{"destroy without id", http.MethodPut, "/v1/session/destroy/", nil, 400, "missing session"},
		{"renew without id", http.MethodPut, "/v1/session/renew/", nil, 400, "missing session"},
		{"renew unknown", http.MethodPut, "/v1/session/renew/0a2b4c6d-1111-2222-3333-444455556666", nil, 404, "not found"},
		{"acquire without session", http.MethodPut, "/v1/kv/keep/me?acquire=", []byte("evil"), 400, "missing session"},
		{"acquire unknown session", http.MethodPut, "/v1/kv/keep/me?acquire=0a2b4c6d-1111-2222-3333-444455556666", []byte("evil"), 500, "invalid session"},
		{"txn lock without session", http.MethodPut, "/v1/txn", []byte(`[{"KV":{"Verb":"lock","Key":"keep/me"}}]`), 409, "missing session"},
	}
	for _, n := range []*testcluster.Node{follower, leader} {
		for _, tc := range cases {
			code, body, _, err := n.Do(tc.method, tc.path, tc.body)
			if err != nil {
				t.Fatalf("%s via %s: %v", tc.name, n.ID, err)
			}
			if code != tc.want || !strings.Contains(strings.ToLower(string(body)), strings.ToLower(tc.reason)) {
				t.Errorf("%s via %s: %d %q, want %d mentioning %q", tc.name, n.ID, code, body, tc.want, tc.reason)
			}
		}
	}

	// Nothing was stored or changed, no session was made, and every node
	// still serves.
	for _, n := range c.Nodes {
		code, body, _, err := n.Do(http.MethodGet, "/v1/kv/?recurse", nil)
		if err != nil || code != 200 {
			t.Fatalf("list on %s: %d %v", n.ID, code, err)
		}
		var pairs []pair
		if err := json.Unmarshal(body, &pairs); err != nil {
			t.Fatal(err)
		}
		if len(pairs) != 1 || pairs[0].Key != "keep/me" || string(pairs[0].Value) != "safe" {
			t.Fatalf("%s holds %+v after bad input", n.ID, pairs)
		}
		if code, body, _, err := n.Do(http.MethodGet, "/v1/session/list?stale", nil); err != nil || code != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Fatalf("sessions on %s after bad input: %d %q %v", n.ID, code, body, err)
		}
	}
	for _, n := range c.Nodes {
		if code, _ := put(t, n, "still/"+n.ID, "ok"); code != 200 {
			t.Fatalf("%s stopped serving writes after bad input", n.ID)
		}
	}
}
