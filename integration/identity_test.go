package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

// copyDir replaces dst's contents with src's.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.RemoveAll(dst); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
}

// TestForeignDataDirIsRefused: node n2 of cluster A is given the data
// directory of n2 of cluster B. Started with A's initial_cluster, it
// refuses to start with a one-line reason. Started without it (as a
// node that once joined would be), it starts, but refuses A's leader, and
// A's members would refuse it: A's members, leader and data stay as they
// were, and nothing of B reaches A nor of A reaches it.
func TestForeignDataDirIsRefused(t *testing.T) {
	a := testcluster.Start(t, 3, testcluster.Options{})
	b := testcluster.Start(t, 3, testcluster.Options{})
	leaderA := a.WaitLeader(20 * time.Second)
	b.WaitLeader(20 * time.Second)
	for i, n := range a.Nodes {
		if code, _ := put(t, n, fmt.Sprintf("a/%d", i), "A"); code != 200 {
			t.Fatal("write to A failed")
		}
	}
	for i, n := range b.Nodes {
		if code, _ := put(t, n, fmt.Sprintf("b/%d", i), "B"); code != 200 {
			t.Fatal("write to B failed")
		}
	}
	victim := a.Followers(leaderA)[0]
	donor := b.Node(victim.ID)
	victim.Stop()
	donor.Stop()
	copyDir(t, donor.DataDir, victim.DataDir)

	victim.Start()
	exit := victim.WaitExit(20 * time.Second)
	if exit == nil || !strings.Contains(victim.Log(), "holds the state of cluster") {
		t.Fatalf("a node with another cluster's data started (exit %v):\n%s", exit, victim.Tail(2000))
	}

	// Without the initial_cluster check: it runs, and is kept out.
	victim.SetFlags("--initial-cluster=")
	victim.Start()
	victim.WaitHTTP(20 * time.Second)
	// A's leader still sends to n2's address; n2, holding B's state,
	// refuses it.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(victim.Log(), "belongs to cluster") {
		if time.Now().After(deadline) {
			t.Fatalf("the foreign node did not refuse A's leader:\n%s", victim.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st, err := leaderA.Status(); err != nil || st.LeaderID == victim.ID || st.LeaderID == "" {
		t.Fatalf("A's leadership: %+v %v", st, err)
	}
	if code, body := put(t, leaderA, "a/after", "A"); code != 200 || body != "true" {
		t.Fatalf("A stopped committing: %d %q", code, body)
	}
	for _, n := range a.Nodes {
		if n == victim {
			continue
		}
		for i := range a.Nodes {
			if code, p := get(t, n, fmt.Sprintf("a/%d", i), ""); code != 200 || string(p.Value) != "A" {
				t.Fatalf("a/%d on %s: %d", i, n.ID, code)
			}
		}
		if code, _ := get(t, n, "b/0", "?stale"); code != 404 {
			t.Fatalf("B's data reached %s of A: %d", n.ID, code)
		}
	}
	// Nothing of A reaches it either: it is B's n2 at another address.
	if code, _ := get(t, victim, "a/after", "?stale"); code != 404 {
		t.Fatalf("A's write reached the node holding B's state: %d", code)
	}
}

// TestMemberIDCannotBeTakenOver: a second process that claims a member's
// id from another address cannot join in its place; the member keeps its
// address and the cluster its leader.
func TestMemberIDCannotBeTakenOver(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	member := c.Followers(leader)[0]
	impostor := inproc.ProbeOnly(t, member.ID)
	body := fmt.Sprintf(`{"id":%q,"raft_addr":%q}`, member.ID, impostor)
	for _, n := range c.Nodes {
		code, answer, _, err := n.Do("POST", "/v1/cluster/join", []byte(body))
		if err != nil || code != 409 || !strings.Contains(string(answer), "already a member") {
			t.Fatalf("impostor's join through %s: %d %q %v", n.ID, code, answer, err)
		}
	}
	if m := waitMembers(t, leader, 3, "after the impostor")[member.ID]; m.RaftAddr != member.RaftAddr {
		t.Fatalf("%s moved to %s", member.ID, m.RaftAddr)
	}
	if code, body := put(t, member, "still", "here"); code != 200 || body != "true" {
		t.Fatalf("write through %s: %d %q", member.ID, code, body)
	}
}
