package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

// These tests drive sessions and locks with the official Consul client
// (api.Lock, api.Semaphore, Session()) and with Troupe's own, against
// real kvnode processes. They assert outcomes: who holds a lock, whether
// a session exists; every wait is bounded with a generous margin, and no
// test depends on how fast anything happened.

// fastSessions lets sessions have TTLs of a second, and ends the sessions
// of a dead node one second after the detector declares it dead, so the
// tests take seconds where Consul's defaults would take minutes.
var fastSessions = []string{"--session-ttl-min", "1s", "--session-node-grace", "1s"}

// eventually polls cond until it holds, failing after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// holder reads key's holder through n (linearizably); "" when unheld, and
// "<absent>" when the key does not exist.
func holder(t *testing.T, n *testcluster.Node, key string) string {
	t.Helper()
	p, _, err := consulClient(t, n).KV().Get(key, nil)
	if err != nil {
		return "<error: " + err.Error() + ">"
	}
	if p == nil {
		return "<absent>"
	}
	return p.Session
}

// api.Lock and api.Semaphore, as their users run them: one holder at a
// time, a second locker blocks until the first unlocks, a semaphore
// admits its limit and no more.
func TestConsulLockAndSemaphore(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	f := c.Followers(leader)

	l1, err := consulClient(t, f[0]).LockOpts(&consul.LockOptions{Key: "svc/leader", Value: []byte("first")})
	if err != nil {
		t.Fatal(err)
	}
	lost1, err := l1.Lock(nil)
	if err != nil || lost1 == nil {
		t.Fatalf("first Lock: %v", err)
	}
	l2, err := consulClient(t, leader).LockOpts(&consul.LockOptions{Key: "svc/leader", Value: []byte("second")})
	if err != nil {
		t.Fatal(err)
	}
	got2 := make(chan error, 1)
	go func() { _, err := l2.Lock(nil); got2 <- err }()
	select {
	case err := <-got2:
		t.Fatalf("the second locker got the lock while the first held it (%v)", err)
	case <-lost1:
		t.Fatal("the first holder lost the lock")
	case <-time.After(3 * time.Second):
	}
	p, _, err := consulClient(t, f[1]).KV().Get("svc/leader", nil)
	if err != nil || p == nil || string(p.Value) != "first" || p.LockIndex != 1 || p.Flags != consul.LockFlagValue {
		t.Fatalf("the lock key while held: %+v %v", p, err)
	}
	if err := l1.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got2:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second locker did not get the lock after the first unlocked")
	}
	if p, _, err := consulClient(t, f[1]).KV().Get("svc/leader", nil); err != nil || string(p.Value) != "second" || p.LockIndex != 2 {
		t.Fatalf("the lock key after the hand-off: %+v %v", p, err)
	}
	if err := l2.Unlock(); err != nil {
		t.Fatal(err)
	}
	if err := l2.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}

	// A semaphore of 2: two of three contenders hold it, the third
	// waits until one releases.
	var sems []*consul.Semaphore
	for i, n := range c.Nodes {
		s, err := consulClient(t, n).SemaphoreOpts(&consul.SemaphoreOptions{Prefix: "svc/workers", Limit: 2, Value: []byte{byte('a' + i)}})
		if err != nil {
			t.Fatal(err)
		}
		sems = append(sems, s)
	}
	for _, s := range sems[:2] {
		if _, err := s.Acquire(nil); err != nil {
			t.Fatalf("Acquire: %v", err)
		}
	}
	got3 := make(chan error, 1)
	go func() { _, err := sems[2].Acquire(nil); got3 <- err }()
	select {
	case err := <-got3:
		t.Fatalf("a third holder of a semaphore of 2 (%v)", err)
	case <-time.After(3 * time.Second):
	}
	if err := sems[0].Release(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got3:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the third contender did not get a slot after one was released")
	}
	for _, s := range sems[1:] {
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
}

// A lock survives kill -9 of the leader: the session lives in the
// replicated state, the new leader times it afresh, the holder's
// renewals reach it, and nobody else takes the lock meanwhile.
func TestLockSurvivesLeaderKill(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	holderNode := c.Followers(leader)[0]
	lock, err := consulClient(t, holderNode).LockOpts(&consul.LockOptions{Key: "svc/db", MonitorRetries: 30, MonitorRetryTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lost, err := lock.Lock(nil)
	if err != nil {
		t.Fatal(err)
	}
	session := holder(t, holderNode, "svc/db")
	leader.Kill()
	newLeader := c.WaitNewLeader(leader, 30*time.Second)
	// Past a full TTL of the lock's session (15s): still held, by the
	// same session, and a contender through the new leader is refused.
	other, _, err := consulClient(t, newLeader).Session().Create(&consul.SessionEntry{TTL: "30s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		if h := holder(t, newLeader, "svc/db"); h != session {
			t.Fatalf("after the leader's kill the lock is held by %q, not %q", h, session)
		}
		if ok, _, err := consulClient(t, newLeader).KV().Acquire(&consul.KVPair{Key: "svc/db", Session: other}, nil); err != nil || ok {
			t.Fatalf("a contender acquired the held lock: %v %v", ok, err)
		}
	}
	select {
	case <-lost:
		t.Fatal("the holder was told it lost the lock")
	default:
	}
	if err := lock.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// Sessions with a TTL end 2×TTL after their last renewal, not before; a
// session with behavior delete takes its keys with it (Consul's
// ephemeral keys); one with behavior release unlocks them.
func TestSessionTTLExpiryAndBehaviors(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: fastSessions})
	leader := c.WaitLeader(20 * time.Second)
	f := c.Followers(leader)[0]
	api := consulClient(t, f)
	created := time.Now()
	eph, _, err := api.Session().Create(&consul.SessionEntry{TTL: "2s", Behavior: consul.SessionBehaviorDelete, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rel, _, err := api.Session().Create(&consul.SessionEntry{TTL: "2s"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for key, s := range map[string]string{"ttl/ephemeral": eph, "ttl/released": rel} {
		if ok, _, err := api.KV().Acquire(&consul.KVPair{Key: key, Value: []byte("v"), Session: s}, nil); err != nil || !ok {
			t.Fatalf("acquire %s: %v %v", key, ok, err)
		}
	}
	info, _, err := api.Session().Info(eph, nil)
	if checked := time.Since(created); checked < 3500*time.Millisecond && (err != nil || info == nil) {
		t.Fatalf("the session ended %v after its create, before 2×TTL (%v)", checked, err)
	}
	eventually(t, 60*time.Second, "the ephemeral key deleted by its session's expiry", func() bool { return holder(t, f, "ttl/ephemeral") == "<absent>" })
	eventually(t, 60*time.Second, "the released key unlocked by its session's expiry", func() bool { return holder(t, f, "ttl/released") == "" })
	for _, s := range []string{eph, rel} {
		if info, _, err := api.Session().Info(s, nil); err != nil || info != nil {
			t.Fatalf("session %s after its expiry: %+v %v", s, info, err)
		}
	}
	// The Go client's renewer learns of the end at its next renewal.
	if entry, _, err := api.Session().Renew(rel, nil); err != nil || entry != nil {
		t.Fatalf("Renew of an expired session: %+v %v", entry, err)
	}
}

// Lock-delay: after a session holding a key is invalidated, nobody can
// acquire the key until its lock-delay passes; a release sets none.
func TestLockDelay(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	api := consulClient(t, c.Followers(leader)[0])
	s1, _, err := api.Session().Create(&consul.SessionEntry{LockDelay: 3 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, _, err := api.Session().Create(&consul.SessionEntry{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := api.KV().Acquire(&consul.KVPair{Key: "ld/key", Session: s1}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if _, err := api.Session().Destroy(s1, nil); err != nil {
		t.Fatal(err)
	}
	destroyed := time.Now()
	ok, _, err := api.KV().Acquire(&consul.KVPair{Key: "ld/key", Session: s2}, nil)
	if elapsed := time.Since(destroyed); err != nil || ok && elapsed < 2*time.Second {
		t.Fatalf("acquired %v after the invalidation, inside its 3s lock-delay (%v)", elapsed, err)
	}
	eventually(t, 60*time.Second, "the acquisition after the lock-delay", func() bool {
		ok, _, err := api.KV().Acquire(&consul.KVPair{Key: "ld/key", Session: s2}, nil)
		return err == nil && ok
	})
	// A release is no invalidation: the next acquisition is at once.
	if ok, _, err := api.KV().Release(&consul.KVPair{Key: "ld/key", Session: s2}, nil); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if ok, _, err := api.KV().Acquire(&consul.KVPair{Key: "ld/key", Session: s2}, nil); err != nil || !ok {
		t.Fatalf("acquire after a release: %v %v", ok, err)
	}
}

// Renewals keep a session alive across two leader changes (each a kill
// -9 of the leader, which comes back): renewals go through whichever node
// answers, reach the leader of the moment, and each new leader gives the
// session a full TTL; the session and its lock are still there at the
// end.
func TestSessionRenewalsAcrossTwoLeaderChanges(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: fastSessions})
	c.WaitLeader(20 * time.Second)
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.HTTPAddr)
	}
	cl := client.New(addrs, client.WithBackoff(50*time.Millisecond, 500*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	id, err := cl.CreateSession(ctx, client.SessionOptions{TTL: 3 * time.Second, NoChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, _, err := cl.Acquire(ctx, "renew/lock", id, []byte("held"), 0); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	var mu sync.Mutex
	var gone error
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
			s, err := cl.RenewSession(rctx, id)
			rcancel()
			if err == nil && s == nil {
				mu.Lock()
				gone = context.Canceled
				mu.Unlock()
				return
			}
		}
	}()
	leader := c.WaitLeader(20 * time.Second)
	for change := 1; change <= 2; change++ {
		leader.Kill()
		next := c.WaitNewLeader(leader, 30*time.Second)
		t.Logf("leader change %d: %s killed, %s leads", change, leader.ID, next.ID)
		leader.Start()
		leader.WaitHTTP(30 * time.Second)
		// A while under the new leader, longer than 2×TTL.
		time.Sleep(8 * time.Second)
		leader = c.WaitLeader(30 * time.Second)
	}
	close(stop)
	<-renewed
	mu.Lock()
	defer mu.Unlock()
	if gone != nil {
		t.Fatal("a renewal found the session gone")
	}
	s, _, err := cl.SessionInfo(ctx, id, client.ReadOptions{})
	if err != nil || s == nil {
		t.Fatalf("the session after two leader changes: %+v %v", s, err)
	}
	p, _, err := cl.Get(ctx, "renew/lock", client.ReadOptions{})
	if err != nil || p == nil || p.Session != id {
		t.Fatalf("the lock after two leader changes: %+v %v", p, err)
	}
}

// A session bound to its node's health (serfHealth, the default) ends
// when the node is killed: the leader's failure detector declares it dead
// and, past the grace, the session is invalidated and its lock released.
// A session without node checks on the same node lives on.
func TestSessionEndsWithItsNode(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: fastSessions})
	leader := c.WaitLeader(20 * time.Second)
	victim := c.Followers(leader)[0]
	api := consulClient(t, victim)
	bound, _, err := api.Session().Create(&consul.SessionEntry{Name: "bound"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	free, _, err := api.Session().CreateNoChecks(&consul.SessionEntry{Name: "free"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	info, _, err := api.Session().Info(bound, nil)
	if err != nil || info == nil || info.Node != victim.ID || len(info.NodeChecks) != 1 || info.NodeChecks[0] != "serfHealth" {
		t.Fatalf("the bound session: %+v %v", info, err)
	}
	if ok, _, err := api.KV().Acquire(&consul.KVPair{Key: "node/lock", Value: []byte("mine"), Session: bound}, nil); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	victim.Kill()
	other := consulClient(t, leader)
	eventually(t, 60*time.Second, "the dead node's session invalidated", func() bool {
		s, _, err := other.Session().Info(bound, nil)
		return err == nil && s == nil
	})
	if h := holder(t, leader, "node/lock"); h != "" {
		t.Fatalf("the dead node's lock is held by %q", h)
	}
	if s, _, err := other.Session().Info(free, nil); err != nil || s == nil {
		t.Fatalf("the session without node checks: %+v %v", s, err)
	}
	list, _, err := other.Session().Node(victim.ID, nil)
	if err != nil || len(list) != 1 || list[0].ID != free {
		t.Fatalf("sessions of %s: %+v %v", victim.ID, list, err)
	}
}
