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

	// Nothing was stored or changed, and every node still serves.
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
	}
	for _, n := range c.Nodes {
		if code, _ := put(t, n, "still/"+n.ID, "ok"); code != 200 {
			t.Fatalf("%s stopped serving writes after bad input", n.ID)
		}
	}
}
