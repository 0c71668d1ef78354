package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

// consulWithToken is consulClient with Config.Token set, as an application
// configured for a Consul cluster with ACLs would be.
func consulWithToken(t *testing.T, node *testcluster.Node, token string) *consul.Client {
	t.Helper()
	consulClient(t, node) // clears CONSUL_* from the environment
	cfg := consul.DefaultConfig()
	cfg.Address = node.HTTPAddr
	cfg.Token = token
	c, err := consul.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawCall sends one request with an optional token and returns the status
// and body.
func rawCall(t *testing.T, n *testcluster.Node, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr+path, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.ID, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// bootstrapACL bootstraps the ACL system through n with consul/api,
// retrying until there is a leader to take it, and returns the
// management token.
func bootstrapACL(t *testing.T, n *testcluster.Node) *consul.ACLToken {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		boot, _, err := consulClient(t, n).ACL().Bootstrap()
		if err == nil {
			if boot.SecretID == "" || len(boot.Policies) != 1 || boot.Policies[0].Name != "global-management" {
				t.Fatalf("bootstrap token %+v", boot)
			}
			return boot
		}
		if strings.Contains(err.Error(), "no longer allowed") || time.Now().After(deadline) {
			t.Fatalf("bootstrap: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterView is everything a client could have changed, as one node
// reports it through linearizable reads.
type clusterView struct {
	KV       map[string]string
	Tokens   []string // accessor IDs
	Policies []string // names
	Faults   string
	Members  int
}

func viewOf(t *testing.T, n *testcluster.Node, mgmt string) clusterView {
	t.Helper()
	c := consulWithToken(t, n, mgmt)
	pairs, _, err := c.KV().List("", nil)
	if err != nil {
		t.Fatalf("%s: list: %v", n.ID, err)
	}
	v := clusterView{KV: map[string]string{}}
	for _, p := range pairs {
		v.KV[p.Key] = string(p.Value)
	}
	toks, _, err := c.ACL().TokenList(nil)
	if err != nil {
		t.Fatalf("%s: token list: %v", n.ID, err)
	}
	for _, tk := range toks {
		v.Tokens = append(v.Tokens, tk.AccessorID)
	}
	slices.Sort(v.Tokens)
	pols, _, err := c.ACL().PolicyList(nil)
	if err != nil {
		t.Fatalf("%s: policy list: %v", n.ID, err)
	}
	for _, p := range pols {
		v.Policies = append(v.Policies, p.Name)
	}
	slices.Sort(v.Policies)
	code, faults := rawCall(t, n, "GET", "/v1/chaos/faults", mgmt, "")
	if code != 200 {
		t.Fatalf("%s: faults: %d %s", n.ID, code, faults)
	}
	v.Faults = faults
	code, members := rawCall(t, n, "GET", "/v1/cluster/members", mgmt, "")
	if code != 200 {
		t.Fatalf("%s: members: %d %s", n.ID, code, members)
	}
	v.Members = strings.Count(members, `"id"`)
	return v
}

// TestACLCluster: three real nodes with ACLs on. The bootstrap goes
// through one node, a policy and a token are made through another, and
// the token is used through the third, with the official Consul client's
// Config.Token. Every request the token may not make is refused, and after
// each refusal every node reads back exactly the state before it.
func TestACLCluster(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--acl-enabled"}, Chaos: true})
	for _, n := range c.Nodes {
		n.WaitHTTP(20 * time.Second)
	}
	n1, n2, n3 := c.Nodes[0], c.Nodes[1], c.Nodes[2]

	// Before the bootstrap, without a token, nothing but the open
	// endpoints answers.
	if code, body := rawCall(t, n3, "PUT", "/v1/kv/app/x", "", "v"); code != 401 || !strings.Contains(body, "ACL not found") {
		t.Fatalf("PUT without a token: %d %q", code, body)
	}
	if code, _ := rawCall(t, n3, "GET", "/v1/status/leader", "", ""); code != 200 {
		t.Fatalf("status/leader without a token: %d", code)
	}

	// Bootstrap through n1 with consul/api.
	boot := bootstrapACL(t, n1)
	mgmt := boot.SecretID

	// A policy and a token through n2.
	admin2 := consulWithToken(t, n2, mgmt)
	pol, _, err := admin2.ACL().PolicyCreate(&consul.ACLPolicy{Name: "app-rw", Description: "the app", Rules: `key_prefix "app/" { policy = "write" }`}, nil)
	if err != nil || pol.ID == "" {
		t.Fatalf("PolicyCreate: %+v %v", pol, err)
	}
	tok, _, err := admin2.ACL().TokenCreate(&consul.ACLToken{Description: "app servers", Policies: []*consul.ACLTokenPolicyLink{{Name: "app-rw"}}}, nil)
	if err != nil || tok.SecretID == "" || len(tok.Policies) != 1 || tok.Policies[0].ID != pol.ID {
		t.Fatalf("TokenCreate: %+v %v", tok, err)
	}

	// The token through n3, set once in the client's configuration.
	app3 := consulWithToken(t, n3, tok.SecretID)
	if _, err := app3.KV().Put(&consul.KVPair{Key: "app/x", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("Put with the app token through n3: %v", err)
	}
	if p, _, err := app3.KV().Get("app/x", nil); err != nil || p == nil || string(p.Value) != "1" {
		t.Fatalf("Get: %+v %v", p, err)
	}
	if self, _, err := app3.ACL().TokenReadSelf(nil); err != nil || self.AccessorID != tok.AccessorID {
		t.Fatalf("TokenReadSelf: %+v %v", self, err)
	}
	// Seed a key the app token may not see, with the management token.
	if _, err := consulWithToken(t, n1, mgmt).KV().Put(&consul.KVPair{Key: "secret/s", Value: []byte("s")}, nil); err != nil {
		t.Fatal(err)
	}
	pairs, meta, err := app3.KV().List("", nil)
	if err != nil || len(pairs) != 1 || pairs[0].Key != "app/x" || !meta.ResultsFilteredByACLs {
		t.Fatalf("List with the app token: %+v filtered=%v %v", pairs, meta != nil && meta.ResultsFilteredByACLs, err)
	}

	want := clusterView{
		KV:       map[string]string{"app/x": "1", "secret/s": "s"},
		Tokens:   []string{boot.AccessorID, tok.AccessorID},
		Policies: []string{"app-rw", "global-management"},
		Members:  3,
	}
	slices.Sort(want.Tokens)
	checkAll := func(after string) {
		t.Helper()
		for _, n := range c.Nodes {
			got := viewOf(t, n, mgmt)
			want.Faults = got.Faults
			if !strings.Contains(got.Faults, `"rules":[]`) && !strings.Contains(got.Faults, `"rules":null`) {
				t.Errorf("after %s, %s has fault rules: %s", after, n.ID, got.Faults)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("after %s, %s reads\n%+v\nwant\n%+v", after, n.ID, got, want)
			}
		}
	}
	checkAll("the setup")

	// Every refused request, through every node: no token, the app token
	// outside its prefix and on management endpoints.
	refusals := []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"put without a token", "PUT", "/v1/kv/app/y", "", "v", 401},
		{"put with an unknown token", "PUT", "/v1/kv/app/y", "00000000-0000-4000-8000-000000000000", "v", 401},
		{"put outside the prefix", "PUT", "/v1/kv/secret/s", tok.SecretID, "changed", 403},
		{"read outside the prefix", "GET", "/v1/kv/secret/s", tok.SecretID, "", 403},
		{"delete outside the prefix", "DELETE", "/v1/kv/secret/s", tok.SecretID, "", 403},
		{"delete everything", "DELETE", "/v1/kv/?recurse", tok.SecretID, "", 403},
		{"chaos faults", "PUT", "/v1/chaos/faults", tok.SecretID, `{"rules":[{"peer":"*","direction":"both","drop":1}]}`, 403},
		{"chaos crash", "POST", "/v1/chaos/crash?actor=raft", tok.SecretID, "", 403},
		{"join", "POST", "/v1/cluster/join", tok.SecretID, `{"id":"n9","raft_addr":"127.0.0.1:1"}`, 403},
		{"remove", "DELETE", "/v1/cluster/members/n3", tok.SecretID, "", 403},
		{"snapshot", "POST", "/v1/cluster/snapshot", tok.SecretID, "", 403},
		{"token create", "PUT", "/v1/acl/token", tok.SecretID, `{"Policies":[{"Name":"global-management"}]}`, 403},
		{"policy change", "PUT", "/v1/acl/policy/" + pol.ID, tok.SecretID, `{"Name":"app-rw","Rules":"key_prefix \"\" { policy = \"write\" }"}`, 403},
		{"second bootstrap", "PUT", "/v1/acl/bootstrap", "", "", 403},
	}
	for _, r := range refusals {
		for _, n := range c.Nodes {
			code, body := rawCall(t, n, r.method, r.path, r.token, r.body)
			if code != r.status {
				t.Errorf("%s through %s: %d %q, want %d", r.name, n.ID, code, body, r.status)
			}
		}
		checkAll(r.name)
	}

	// The consul/api client reports the refusals as errors carrying the
	// status, so applications see them.
	if _, err := app3.KV().Put(&consul.KVPair{Key: "secret/t", Value: []byte("x")}, nil); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("Put outside the prefix through consul/api: %v", err)
	}
	if _, _, err := consulClient(t, n2).ACL().Bootstrap(); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("second Bootstrap through consul/api: %v", err)
	}
	checkAll("the consul/api refusals")

	// Updates and deletes through consul/api, each through another node:
	// narrowing the policy to read-only takes the write away everywhere,
	// and a deleted token is refused everywhere.
	admin3 := consulWithToken(t, n3, mgmt)
	pol.Rules = `key_prefix "app/" { policy = "read" }`
	if _, _, err := admin3.ACL().PolicyUpdate(pol, nil); err != nil {
		t.Fatalf("PolicyUpdate: %v", err)
	}
	tok.Description = "app readers"
	if upd, _, err := consulWithToken(t, n1, mgmt).ACL().TokenUpdate(tok, nil); err != nil || upd.Description != "app readers" {
		t.Fatalf("TokenUpdate: %+v %v", upd, err)
	}
	// Tokens resolve from each node's own copy: a linearizable read
	// through every node first makes each apply the update.
	checkAll("the updates")
	for _, n := range c.Nodes {
		app := consulWithToken(t, n, tok.SecretID)
		if p, _, err := app.KV().Get("app/x", nil); err != nil || p == nil {
			t.Errorf("read through %s after narrowing: %v", n.ID, err)
		}
		if _, err := app.KV().Put(&consul.KVPair{Key: "app/x", Value: []byte("2")}, nil); err == nil || !strings.Contains(err.Error(), "403") {
			t.Errorf("write through %s after narrowing: %v", n.ID, err)
		}
	}
	checkAll("the narrowed writes")
	if _, err := admin2.ACL().TokenDelete(tok.AccessorID, nil); err != nil {
		t.Fatalf("TokenDelete: %v", err)
	}
	if _, err := admin2.ACL().PolicyDelete(pol.ID, nil); err != nil {
		t.Fatalf("PolicyDelete: %v", err)
	}
	want.Tokens, want.Policies = []string{boot.AccessorID}, []string{"global-management"}
	checkAll("the deletes")
	for _, n := range c.Nodes {
		// Each node has applied the delete: checkAll read through it with a
		// read barrier.
		if code, body := rawCall(t, n, "GET", "/v1/kv/app/x", tok.SecretID, ""); code != 401 {
			t.Errorf("deleted token through %s: %d %q", n.ID, code, body)
		}
	}

	// Membership through a follower: the follower passes the change on
	// over the peer port with the client's token, and the leader checks
	// the token itself. A member that passes one on without a management
	// token is refused by the leader.
	var leaderRaft string
	if code, body := rawCall(t, n1, "GET", "/v1/status/leader", "", ""); code != 200 || json.Unmarshal([]byte(body), &leaderRaft) != nil {
		t.Fatalf("status/leader: %d %q", code, body)
	}
	var follower, leader *testcluster.Node
	for _, n := range c.Nodes {
		if n.RaftAddr == leaderRaft {
			leader = n
		} else if follower == nil {
			follower = n
		}
	}
	n9 := inproc.ProbeOnly(t, "n9")
	body := fmt.Sprintf(`{"id":"n9","raft_addr":%q}`, n9)
	if code, answer := rawCall(t, follower, "POST", "/v1/cluster/join", mgmt, body); code != 200 {
		t.Fatalf("join through follower %s with the management token: %d %q", follower.ID, code, answer)
	}
	if code, answer := rawCall(t, follower, "DELETE", "/v1/cluster/members/n9", mgmt, ""); code != 200 {
		t.Fatalf("remove through follower %s with the management token: %d %q", follower.ID, code, answer)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	member := peerlink.NewClient(peerlink.Config{Network: faultnet.Plain(follower.ID)})
	defer member.Close()
	var re *peerlink.RemoteError
	for _, token := range []string{"", boot.AccessorID, "00000000-0000-4000-8000-000000000000"} {
		err := member.Membership(ctx, leader.RaftAddr, peerlink.MembershipRequest{Join: &peerlink.JoinRequest{ID: "n9", RaftAddr: n9}, Token: token})
		if !errors.As(err, &re) || re.Status != http.StatusForbidden {
			t.Errorf("a member passing on a join with token %q: %v, want 403", token, err)
		}
	}
	checkAll("the membership changes")

	// A new node joins with its acl_token; without one its seeds refuse it.
	c.AddJoiner("n5")
	c.AddJoiner("n4", "--acl-token", mgmt)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := rawCall(t, n1, "GET", "/v1/cluster/members", mgmt, "")
		if code == 200 && strings.Contains(body, `"id":"n4"`) {
			if strings.Contains(body, `"id":"n5"`) {
				t.Fatalf("a node without a token joined: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 never joined: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// n4 may be in before n5's first attempt has come back: wait for it.
	n5 := c.Node("n5")
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(n5.Log(), "join attempt failed") || !strings.Contains(n5.Log(), "401"); {
		if time.Now().After(deadline) {
			t.Fatalf("n5 did not log its refused joins:\n%s", n5.Tail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, body := rawCall(t, n1, "GET", "/v1/cluster/members", mgmt, ""); code != 200 || strings.Contains(body, `"id":"n5"`) {
		t.Fatalf("a node without a token joined: %d %s", code, body)
	}
}
