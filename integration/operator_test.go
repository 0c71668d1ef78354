package integration

import (
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// raftServers reads the Raft configuration through n with consul/api's
// Operator().RaftGetConfiguration, keyed by id.
func raftServers(t *testing.T, c *consul.Client, q *consul.QueryOptions) (map[string]*consul.RaftServer, uint64) {
	t.Helper()
	conf, err := c.Operator().RaftGetConfiguration(q)
	if err != nil {
		t.Fatalf("RaftGetConfiguration: %v", err)
	}
	out := map[string]*consul.RaftServer{}
	for _, s := range conf.Servers {
		out[s.ID] = s
	}
	return out, conf.Index
}

// TestConsulOperatorRaft drives Consul's operator endpoints with the
// official client, on a cluster with ACLs on: the configuration lists
// voters and a non-voter as Consul would, a token without management
// rights (or none) is refused both endpoints and changes nothing, and
// RaftRemovePeerByID and RaftRemovePeerByAddress remove the members they
// name, after which the cluster still commits.
func TestConsulOperatorRaft(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--acl-enabled"}})
	for _, n := range c.Nodes {
		n.WaitHTTP(20 * time.Second)
	}
	mgmt := bootstrapACL(t, c.Nodes[0]).SecretID
	// /v1/cluster/status needs a token with ACLs on; Consul's
	// /v1/status/leader does not.
	addr, err := consulClient(t, c.Nodes[0]).Status().Leader()
	if err != nil {
		t.Fatal(err)
	}
	var leader *testcluster.Node
	for _, n := range c.Nodes {
		if n.RaftAddr == addr {
			leader = n
		}
	}
	if leader == nil {
		t.Fatalf("no node at the leader's address %q", addr)
	}
	admin := consulWithToken(t, leader, mgmt)
	if _, _, err := admin.ACL().PolicyCreate(&consul.ACLPolicy{Name: "app-rw", Rules: `key_prefix "app/" { policy = "write" }`}, nil); err != nil {
		t.Fatal(err)
	}
	app, _, err := admin.ACL().TokenCreate(&consul.ACLToken{Policies: []*consul.ACLTokenPolicyLink{{Name: "app-rw"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n4 := c.AddJoiner("n4", "--nonvoter", "--acl-token", mgmt)
	follower := c.Followers(leader)[0]
	viaFollower := consulWithToken(t, follower, mgmt)

	var servers map[string]*consul.RaftServer
	var index uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		servers, index = raftServers(t, viaFollower, nil)
		if len(servers) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 never showed in the configuration: %+v", servers)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.Nodes {
		s := servers[n.ID]
		if s == nil || s.Node != n.ID || s.Address != n.RaftAddr || s.ProtocolVersion != "3" || s.Leader != (n == leader) || s.Voter != (n != n4) {
			t.Fatalf("%s in the configuration: %+v", n.ID, s)
		}
	}
	if index == 0 {
		t.Fatal("the configuration has no index")
	}
	if stale, _ := raftServers(t, consulWithToken(t, n4, mgmt), &consul.QueryOptions{AllowStale: true}); len(stale) != 4 || stale["n4"].Voter {
		t.Fatalf("?stale through the non-voter: %+v", stale)
	}

	// Without a management token both endpoints are refused, and nothing
	// changes.
	for _, tok := range []string{"", app.SecretID} {
		cl := consulWithToken(t, leader, tok)
		_, err := cl.Operator().RaftGetConfiguration(nil)
		want := map[string]string{"": "401", app.SecretID: "403"}[tok]
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RaftGetConfiguration with token %q: %v, want %s", tok, err, want)
		}
		if err := cl.Operator().RaftRemovePeerByID("n4", nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("RaftRemovePeerByID with token %q: %v, want %s", tok, err, want)
		}
	}
	if err := admin.Operator().RaftRemovePeerByID("nobody", nil); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("removing an unknown id: %v", err)
	}
	if servers, _ := raftServers(t, admin, nil); len(servers) != 4 {
		t.Fatalf("refused removals changed the configuration: %+v", servers)
	}

	// By id (the non-voter), then by address (a voter).
	if err := admin.Operator().RaftRemovePeerByID("n4", nil); err != nil {
		t.Fatalf("RaftRemovePeerByID: %v", err)
	}
	gone := c.Followers(leader)[0]
	if gone == n4 {
		gone = c.Followers(leader)[1]
	}
	if err := admin.Operator().RaftRemovePeerByAddress(gone.RaftAddr, nil); err != nil {
		t.Fatalf("RaftRemovePeerByAddress: %v", err)
	}
	servers, after := raftServers(t, admin, nil)
	if len(servers) != 2 || servers["n4"] != nil || servers[gone.ID] != nil || !servers[leader.ID].Voter {
		t.Fatalf("after the removals: %+v", servers)
	}
	if after <= index {
		t.Fatalf("the configuration's index is %d after two changes, %d before", after, index)
	}
	if _, err := consulWithToken(t, leader, app.SecretID).KV().Put(&consul.KVPair{Key: "app/after", Value: []byte("1")}, nil); err != nil {
		t.Fatalf("a write after the removals: %v", err)
	}
}

// leaderByRaftAddr is the node whose Raft address consul/api's
// Status().Leader names, through c; it waits (5 s at most) while c's node
// knows no leader, as right after a transfer.
func leaderByRaftAddr(t *testing.T, tc *testcluster.Cluster, c *consul.Client) *testcluster.Node {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		addr, err := c.Status().Leader()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range tc.Nodes {
			if addr != "" && n.RaftAddr == addr {
				return n
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no node at the leader's address %q", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConsulOperatorTransferLeader: consul/api's RaftLeaderTransfer, sent
// through a follower, moves leadership to the voter it names, or to one
// the leader picks; the answer comes once the new leader leads. A token
// without management rights, an unknown id and a non-voter are refused
// and leadership stays where it is.
func TestConsulOperatorTransferLeader(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--acl-enabled"}})
	for _, n := range c.Nodes {
		n.WaitHTTP(20 * time.Second)
	}
	mgmt := bootstrapACL(t, c.Nodes[0]).SecretID
	old := leaderByRaftAddr(t, c, consulClient(t, c.Nodes[0]))
	admin := consulWithToken(t, old, mgmt)
	if _, _, err := admin.ACL().PolicyCreate(&consul.ACLPolicy{Name: "kv-rw", Rules: `key_prefix "" { policy = "write" }`}, nil); err != nil {
		t.Fatal(err)
	}
	kv, _, err := admin.ACL().TokenCreate(&consul.ACLToken{Policies: []*consul.ACLTokenPolicyLink{{Name: "kv-rw"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	n4 := c.AddJoiner("n4", "--nonvoter", "--acl-token", mgmt)
	n4.WaitHTTP(20 * time.Second)
	followers := c.Followers(old)
	var target *testcluster.Node
	for _, f := range followers {
		if f.ID != "n4" {
			target = f
		}
	}
	via := consulWithToken(t, followers[0], mgmt)

	for name, call := range map[string]func() error{
		"a key-write token": func() error {
			_, err := consulWithToken(t, followers[0], kv.SecretID).Operator().RaftLeaderTransfer(target.ID, nil)
			return err
		},
		"an unknown id": func() error { _, err := via.Operator().RaftLeaderTransfer("n9", nil); return err },
		"a non-voter":   func() error { _, err := via.Operator().RaftLeaderTransfer("n4", nil); return err },
	} {
		if err := call(); err == nil {
			t.Fatalf("a transfer with %s succeeded", name)
		}
		if now := leaderByRaftAddr(t, c, via); now.ID != old.ID {
			t.Fatalf("after the refused transfer with %s, %s leads instead of %s", name, now.ID, old.ID)
		}
	}

	res, err := via.Operator().RaftLeaderTransfer(target.ID, nil)
	if err != nil || !res.Success {
		t.Fatalf("RaftLeaderTransfer(%s): %+v %v", target.ID, res, err)
	}
	// Every node hears of the new leader with its first heartbeat.
	deadline := time.Now().Add(5 * time.Second)
	for now := leaderByRaftAddr(t, c, via); now.ID != target.ID; now = leaderByRaftAddr(t, c, via) {
		if time.Now().After(deadline) {
			t.Fatalf("after the transfer to %s, %s leads", target.ID, now.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	res, err = via.Operator().RaftLeaderTransfer("", nil)
	if err != nil || !res.Success {
		t.Fatalf("RaftLeaderTransfer(any): %+v %v", res, err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for now := leaderByRaftAddr(t, c, via); now.ID == target.ID || now.ID == "n4"; now = leaderByRaftAddr(t, c, via) {
		if time.Now().After(deadline) {
			t.Fatalf("after a transfer to any voter, %s leads", now.ID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := admin.KV().Put(&consul.KVPair{Key: "after", Value: []byte("transfers")}, nil); err != nil {
		t.Fatalf("a write after the transfers: %v", err)
	}
}
