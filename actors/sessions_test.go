package actors_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/storage"
)

// The session tests create sessions through the tree, as the API's
// create does, but with TTLs far below the API's minimum, so timers fire
// within seconds. Waits are bounded and generous; what is asserted is
// the outcome (the session and its locks gone, or still there), never
// how long it took.

var sessionSeq int

func newSession(t *testing.T, c *actors.Client, s storage.Session) storage.Session {
	t.Helper()
	sessionSeq++
	s.ID = fmt.Sprintf("%08d-0000-4000-8000-000000000000", sessionSeq)
	if s.Behavior == "" {
		s.Behavior = storage.SessionRelease
	}
	res, err := c.Apply(ctx(t), &storage.Command{Op: storage.OpSessionCreate, Key: s.ID, Value: storage.EncodeSession(s)})
	if err != nil || !res.OK {
		t.Fatalf("create session: %+v %v", res, err)
	}
	s.CreateIndex, s.ModifyIndex = res.Index, res.Index
	return s
}

// acquire locks key for session through c and reports the outcome: "" for
// taken, else the transaction's error.
func acquire(t *testing.T, c *actors.Client, key, session string) string {
	t.Helper()
	res, err := c.Apply(ctx(t), &storage.Command{Op: storage.OpTxn, Txn: []storage.TxnOp{{Verb: storage.TxnLock, Key: key, Session: session}}})
	if err != nil {
		t.Fatalf("acquire %s: %v", key, err)
	}
	if res.Txn == nil {
		t.Fatalf("acquire %s: no transaction result", key)
	}
	if len(res.Txn.Errors) > 0 {
		return res.Txn.Errors[0].What
	}
	return ""
}

func sessionExists(t *testing.T, nd *inproc.Node, id string) bool {
	t.Helper()
	if err := nd.Client().ReadBarrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	_, found, _, err := nd.Store.Session(id)
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// waitGone waits (at most within) for session id to be gone on nd.
func waitGone(t *testing.T, nd *inproc.Node, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for sessionExists(t, nd, id) {
		if time.Now().After(deadline) {
			t.Fatalf("session %s still exists after %s", id, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A session nobody renews ends 2×TTL after its create, not before; the
// key it held is released and keeps its value.
func TestSessionTTLExpires(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	created := time.Now()
	s := newSession(t, follower.Client(), storage.Session{TTL: "1s"})
	if why := acquire(t, follower.Client(), "ttl/lock", s.ID); why != "" {
		t.Fatalf("acquire: %s", why)
	}
	present := sessionExists(t, leader, s.ID)
	if checked := time.Since(created); checked < 1500*time.Millisecond && !present {
		t.Fatalf("the session ended %s after its create, before 2×TTL", checked)
	}
	waitGone(t, follower, s.ID, 30*time.Second)
	e, found, _, err := follower.Store.Get("ttl/lock")
	if err != nil || !found || e.Session != "" || e.LockIndex != 1 {
		t.Fatalf("the lock after expiry: %+v %v %v", e, found, err)
	}
	logged := false
	for _, nd := range nodes {
		logged = logged || strings.Contains(nd.Logs.String(), "session expired")
	}
	if !logged {
		t.Fatal("no leader logged the expiry")
	}
}

// Renewals through a follower reach the leader and keep a session alive
// well past 2×TTL; once they stop, it ends. A renewal of a session that
// does not exist says so.
func TestSessionRenewThroughFollower(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	s := newSession(t, follower.Client(), storage.Session{TTL: "1s", Name: "renewed"})
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		got, found, err := follower.Client().RenewSession(ctx(t), s.ID)
		if err != nil || !found || got.ID != s.ID || got.TTL != "1s" || got.Name != "renewed" {
			t.Fatalf("renew: %+v %v %v", got, found, err)
		}
	}
	if !sessionExists(t, follower, s.ID) {
		t.Fatal("a session renewed every 300ms with a TTL of 1s ended")
	}
	waitGone(t, follower, s.ID, 30*time.Second)
	if _, found, err := follower.Client().RenewSession(ctx(t), s.ID); err != nil || found {
		t.Fatalf("renew of an ended session: found %v, %v", found, err)
	}
}

// A lock-delay is the leader's to enforce: after an invalidation, an
// acquisition of the released key is refused (through any node) until the
// delay passes; a key the session did not hold is free at once.
func TestLockDelayAfterInvalidation(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	follower := nodes[0]
	if follower == leader {
		follower = nodes[1]
	}
	c := follower.Client()
	s1 := newSession(t, c, storage.Session{LockDelay: 3 * time.Second})
	s2 := newSession(t, c, storage.Session{})
	if why := acquire(t, c, "ld/held", s1.ID); why != "" {
		t.Fatal(why)
	}
	if res, err := c.Apply(ctx(t), &storage.Command{Op: storage.OpSessionDestroy, Key: s1.ID}); err != nil || !res.OK {
		t.Fatalf("destroy: %+v %v", res, err)
	}
	destroyed := time.Now()
	why := acquire(t, c, "ld/held", s2.ID)
	if elapsed := time.Since(destroyed); elapsed < 2*time.Second && !strings.Contains(why, "due to lock delay") {
		t.Fatalf("acquired %s after the invalidation, within its 3s lock-delay: %q", elapsed, why)
	}
	if why := acquire(t, c, "ld/free", s2.ID); why != "" {
		t.Fatalf("a key the session never held: %s", why)
	}
	deadline := time.Now().Add(30 * time.Second)
	for acquire(t, c, "ld/held", s2.ID) != "" {
		if time.Now().After(deadline) {
			t.Fatal("the lock-delay never ended")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The sessions actor crashes on the leader: its supervisor restarts it,
// it takes the timers over again (a full TTL for every session), and
// renewals and expiry go on working.
func TestSessionsActorCrashRearms(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	c := leader.Client()
	renewed := newSession(t, c, storage.Session{TTL: "1s"})
	silent := newSession(t, c, storage.Session{TTL: "1s"})
	if err := c.Crash("sessions", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, leader.Logs, "actor failed", 10*time.Second)
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		if _, found, err := c.RenewSession(ctx(t), renewed.ID); err != nil || !found {
			t.Fatalf("renew after the crash: %v %v", found, err)
		}
	}
	waitGone(t, leader, silent.ID, 30*time.Second)
	if !sessionExists(t, leader, renewed.ID) {
		t.Fatal("the renewed session ended")
	}
}

// A node the leader's failure detector holds dead past the grace loses
// its sessions bound to serfHealth, and their locks; a session without
// node checks survives.
func TestSessionsOfADeadNodeEnd(t *testing.T) {
	nodes, leader, victim := leaderAndFollower(t)
	c := leader.Client()
	bound := newSession(t, c, storage.Session{Node: victim.ID, NodeChecks: []string{storage.CheckSerfHealth}})
	unbound := newSession(t, c, storage.Session{Node: victim.ID, NodeChecks: []string{}})
	if why := acquire(t, c, "node/lock", bound.ID); why != "" {
		t.Fatal(why)
	}
	victim.Stop()
	waitGone(t, leader, bound.ID, 60*time.Second)
	if e, _, _, _ := leader.Store.Get("node/lock"); e.Session != "" {
		t.Fatalf("the dead node's lock is still held: %+v", e)
	}
	if !sessionExists(t, leader, unbound.ID) {
		t.Fatal("a session without node checks ended with its node")
	}
	logged := false
	for _, nd := range nodes {
		logged = logged || strings.Contains(nd.Logs.String(), "the node of a session is dead")
	}
	if !logged {
		t.Fatal("no log line names the dead node's session")
	}
}

// Every session of a node removed from the cluster ends, whatever its
// checks (Consul ends a node's sessions when it is deregistered), even
// while the removed node's process still runs; a member's sessions stay.
func TestSessionsOfARemovedNodeEnd(t *testing.T) {
	_, leader, victim := leaderAndFollower(t)
	c := leader.Client()
	bound := newSession(t, c, storage.Session{Node: victim.ID, NodeChecks: []string{storage.CheckSerfHealth}})
	unbound := newSession(t, c, storage.Session{Node: victim.ID, NodeChecks: []string{}})
	kept := newSession(t, c, storage.Session{Node: leader.ID, NodeChecks: []string{}})
	if why := acquire(t, c, "removed/lock", unbound.ID); why != "" {
		t.Fatal(why)
	}
	if err := c.ChangeMembership(ctx(t), peerlink.MembershipRequest{Remove: victim.ID}); err != nil {
		t.Fatalf("remove %s: %v", victim.ID, err)
	}
	waitGone(t, leader, bound.ID, 60*time.Second)
	waitGone(t, leader, unbound.ID, 60*time.Second)
	if e, _, _, _ := leader.Store.Get("removed/lock"); e.Session != "" {
		t.Fatalf("the removed node's lock is still held: %+v", e)
	}
	if !sessionExists(t, leader, kept.ID) {
		t.Fatal("a member's session ended with another node's removal")
	}
	if !strings.Contains(leader.Logs.String(), "was removed from the cluster: invalidating the session") {
		t.Fatal("no log line names the removed node's sessions")
	}
}

// leaderAndFollower starts 3 nodes whose sessions of a dead node end
// 500 ms after it is held dead, and picks the leader and a follower.
func leaderAndFollower(t *testing.T) (nodes []*inproc.Node, leader, follower *inproc.Node) {
	t.Helper()
	nodes = inproc.Start(t, 3, inproc.Options{MaxRestarts: 5, SessionNodeGrace: 500 * time.Millisecond})
	leader = leaderOf(t, nodes)
	for _, nd := range nodes {
		if nd != leader {
			follower = nd
		}
	}
	return nodes, leader, follower
}

// Tombstones older than TombstoneTTL are reaped through the log: every
// node ends with none, and with the same state, byte for byte as hashed.
func TestTombstonesAreReapedEverywhere(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{MaxRestarts: 5, TombstoneTTL: time.Second})
	leader := leaderOf(t, nodes)
	c := leader.Client()
	for i := range 50 {
		key := fmt.Sprintf("churn/%03d", i)
		applyEventually(t, c, key, "x")
		if _, err := c.Apply(ctx(t), &storage.Command{Op: storage.OpDelete, Key: key}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _, err := leader.Store.Tombstones(); err != nil || n != 50 {
		t.Fatalf("%d tombstones before reaping (%v)", n, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, floor, err := leader.Store.Tombstones()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 && floor > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d tombstones still there after 60s", n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Every node applied the same reaps: at one index, the same state.
	res := applyEventually(t, c, "marker", "m")
	var hashes []uint64
	for _, nd := range nodes {
		if err := nd.Store.WaitApplied(ctx(t), res.Index); err != nil {
			t.Fatal(err)
		}
		if n, _, _ := nd.Store.Tombstones(); n != 0 {
			t.Fatalf("%s still holds %d tombstones", nd.ID, n)
		}
	}
	// Hashed once nothing more is applied: compare at one applied index.
	deadline = time.Now().Add(30 * time.Second)
	for {
		hashes = hashes[:0]
		same := true
		var at uint64
		for _, nd := range nodes {
			h, err := nd.Store.Verify()
			if err != nil {
				t.Fatal(err)
			}
			if at == 0 {
				at = h.Index
			}
			same = same && h.Index == at
			hashes = append(hashes, h.Hash)
		}
		if same {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the nodes never settled at one applied index")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if hashes[0] != hashes[1] || hashes[0] != hashes[2] {
		t.Fatalf("state hashes differ after the reaps: %x", hashes)
	}
}
