package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

type member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

func members(t *testing.T, n *testcluster.Node) map[string]member {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/cluster/members", nil)
	if err != nil || code != 200 {
		t.Fatalf("members via %s: %d %v", n.ID, code, err)
	}
	var ms []member
	if err := json.Unmarshal(body, &ms); err != nil {
		t.Fatal(err)
	}
	out := map[string]member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func waitMembers(t *testing.T, n *testcluster.Node, want int, why string) map[string]member {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms := members(t, n)
		complete := len(ms) == want
		for _, m := range ms {
			complete = complete && m.HTTPAddr != ""
		}
		if complete {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d members %+v, want %d", why, len(ms), ms, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestJoinAndRemove grows a 3-node cluster with a node started with --join,
// checks it receives the data and serves, then removes it and the leader
// (which hands leadership over first) through DELETE /v1/cluster/members.
func TestJoinAndRemove(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	if code, _ := put(t, leader, "before-join", "1"); code != 200 {
		t.Fatal("setup write failed")
	}
	n4 := c.AddJoiner("n4")
	ms := waitMembers(t, leader, 4, "after join")
	if m := ms["n4"]; !m.Voter || m.RaftAddr != n4.RaftAddr || m.HTTPAddr != n4.HTTPAddr {
		t.Fatalf("n4 membership: %+v", m)
	}
	n4.WaitHTTP(20 * time.Second)
	// The newcomer has the old data and serves linearizable reads and writes.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, p := get(t, n4, "before-join", "")
		if code == 200 && string(p.Value) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 never served before-join: %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := put(t, n4, "via-n4", "2"); code != 200 || body != "true" {
		t.Fatalf("write via n4: %d %q", code, body)
	}

	// Remove n4 through a follower (forwarded to the leader).
	follower := c.Followers(leader)[0]
	if code, body, _, err := follower.Do(http.MethodDelete, "/v1/cluster/members/n4", nil); err != nil || code != 200 {
		t.Fatalf("remove n4: %d %s %v", code, body, err)
	}
	ms = waitMembers(t, leader, 3, "after removing n4")
	if _, ok := ms["n4"]; ok {
		t.Fatal("n4 still a member")
	}
	n4.Kill()

	// Removing an unknown member is a 404; removing the leader hands off.
	if code, _, _, _ := leader.Do(http.MethodDelete, "/v1/cluster/members/nobody", nil); code != http.StatusNotFound {
		t.Fatalf("remove unknown member: %d, want 404", code)
	}
	if code, body, _, err := leader.Do(http.MethodDelete, "/v1/cluster/members/"+leader.ID, nil); err != nil || code != 200 {
		t.Fatalf("remove the leader: %d %s %v", code, body, err)
	}
	survivor := c.Followers(leader)[0]
	ms = waitMembers(t, survivor, 2, "after removing the old leader")
	if _, ok := ms[leader.ID]; ok {
		t.Fatal("old leader still a member")
	}
	leader.Kill()
	// The two remaining members still commit (a quorum of two).
	if code, body := put(t, survivor, "after-removals", "3"); code != 200 || body != "true" {
		t.Fatalf("write after removals: %d %q", code, body)
	}
}

// TestRemovalThatLosesQuorumIsRefused: with one of three nodes dead,
// removing a live one would leave one reachable voter of two; the leader
// refuses, and nothing changes. Removing the dead one is fine, and the
// two that are left keep committing.
func TestRemovalThatLosesQuorumIsRefused(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	followers := c.Followers(leader)
	live, dead := followers[0], followers[1]
	dead.Kill()
	waitView(t, leader, dead.ID, "dead")

	code, body, _, err := leader.Do(http.MethodDelete, "/v1/cluster/members/"+live.ID, nil)
	if err != nil || code != http.StatusConflict || !strings.Contains(string(body), "force=true") {
		t.Fatalf("removing a live node while another is dead: %d %q %v", code, body, err)
	}
	if ms := members(t, leader); len(ms) != 3 {
		t.Fatalf("members after a refused removal: %+v", ms)
	}
	if code, body, _, err := live.Do(http.MethodDelete, "/v1/cluster/members/"+dead.ID, nil); err != nil || code != 200 {
		t.Fatalf("removing the dead node through a follower: %d %q %v", code, body, err)
	}
	if ms := waitMembers(t, leader, 2, "after removing the dead node"); ms[dead.ID].ID != "" {
		t.Fatalf("members: %+v", ms)
	}
	if code, body := put(t, live, "after", "1"); code != 200 || body != "true" {
		t.Fatalf("write after the removal: %d %q", code, body)
	}
}

// TestRecoverAfterLosingTheMajority: two of three nodes are gone for good
// (killed, their disks wiped); the survivor cannot elect a leader. Stopped
// and recovered with `kvnode recover` as the only member, it comes back
// as a one-node cluster with every acknowledged write, and commits again.
func TestRecoverAfterLosingTheMajority(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	for i := 0; i < 30; i++ {
		if code, body := put(t, c.Nodes[i%3], fmt.Sprintf("k/%02d", i), "v"); code != 200 || body != "true" {
			t.Fatalf("PUT %d: %d %q", i, code, body)
		}
	}
	survivor := c.Followers(leader)[0]
	waitCaughtUp(t, leader, survivor)
	for _, n := range c.Nodes {
		if n != survivor {
			n.Kill()
			n.Wipe()
		}
	}
	if code, _ := put(t, survivor, "without-quorum", "1"); code != 503 {
		t.Fatalf("a lone survivor committed a write: %d", code)
	}
	survivor.Stop()

	out, err := exec.Command(testcluster.Binary(t), "recover", "--members", survivor.ID+"="+survivor.RaftAddr,
		"--node-id", survivor.ID, "--data-dir", survivor.DataDir, "--http-addr", survivor.HTTPAddr, "--raft-addr", survivor.RaftAddr).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "recovered "+survivor.ID) {
		t.Fatalf("kvnode recover: %v\n%s", err, out)
	}
	survivor.Start()
	survivor.WaitHTTP(20 * time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := put(t, survivor, "after-recovery", "1")
		if code == 200 && body == "true" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write after the recovery: %d %q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 30; i++ {
		if code, p := get(t, survivor, fmt.Sprintf("k/%02d", i), ""); code != 200 || string(p.Value) != "v" {
			t.Fatalf("k/%02d after the recovery: %d", i, code)
		}
	}
	if ms := members(t, survivor); len(ms) != 1 {
		t.Fatalf("members after the recovery: %+v", ms)
	}
}

// Non-voters replicate and serve ?stale reads but count towards no
// quorum: with 3 voters and 2 non-voters, losing 2 voters stops every
// write although 3 of the 5 processes, a majority of them, still run;
// one voter back, and writes go on.
func TestNonvotersCountForNoQuorum(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--request-timeout", "2s"}})
	leader := c.WaitLeader(20 * time.Second)
	if code, body := put(t, leader, "before", "1"); code != 200 {
		t.Fatalf("setup write: %d %s", code, body)
	}
	var voters []*testcluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			voters = append(voters, n)
		}
	}
	learners := []*testcluster.Node{c.AddJoiner("n4", "--nonvoter"), c.AddJoiner("n5", "--nonvoter")}
	for _, n := range learners {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, p := get(t, n, "before", "?stale"); code == 200 && string(p.Value) == "1" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("non-voter %s never served the data:\n%s", n.ID, n.Tail(2000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	code, body, _, err := leader.Do(http.MethodGet, "/v1/cluster/members", nil)
	if err != nil || code != 200 {
		t.Fatalf("members: %d %v", code, err)
	}
	var members []struct {
		ID    string `json:"id"`
		Voter bool   `json:"voter"`
	}
	if err := json.Unmarshal(body, &members); err != nil || len(members) != 5 {
		t.Fatalf("members: %s", body)
	}
	for _, m := range members {
		if m.Voter != (m.ID != "n4" && m.ID != "n5") {
			t.Fatalf("members: %s", body)
		}
	}

	for _, n := range voters {
		n.Kill()
	}
	for _, n := range append([]*testcluster.Node{leader}, learners...) {
		if code, body := put(t, n, "after", "x"); code == 200 {
			t.Fatalf("a write through %s committed with 1 of 3 voters up (and 2 non-voters): %s", n.ID, body)
		}
	}
	if code, p := get(t, learners[0], "before", "?stale"); code != 200 || string(p.Value) != "1" {
		t.Fatalf("a non-voter's stale read without a quorum: %d %+v", code, p)
	}

	voters[0].Start()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := put(t, learners[1], "after", "y"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes did not resume with 2 of 3 voters up")
		}
		time.Sleep(200 * time.Millisecond)
	}
}
