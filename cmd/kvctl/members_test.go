package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

// These tests run real kvnode processes (internal/testcluster: the binary
// named by TROUPE_KVNODE) and kvctl's own code in-process, with the
// command lines docs/operations.md gives.

// onProc runs kvctl against the given nodes' HTTP addresses.
func onProc(t *testing.T, nodes []*testcluster.Node, args ...string) result {
	t.Helper()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.HTTPAddr)
	}
	return kvctl(t, "", nil, append([]string{"--addr", strings.Join(addrs, ",")}, args...)...)
}

// membersOf is `kvctl -o json members`, keyed by id.
func membersOf(t *testing.T, nodes []*testcluster.Node) map[string]client.Member {
	t.Helper()
	var ms []client.Member
	decodeJSON(t, onProc(t, nodes, "-o", "json", "members"), &ms)
	out := map[string]client.Member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

// faultsOn installs fault rules (JSON) on n, or clears them ("").
func faultsOn(t *testing.T, n *testcluster.Node, rules string) {
	t.Helper()
	method := http.MethodPut
	if rules == "" {
		method = http.MethodDelete
	}
	if code, body, _, err := n.Do(method, "/v1/chaos/faults", []byte(rules)); err != nil || code != 200 {
		t.Fatalf("faults on %s: %d %s %v", n.ID, code, body, err)
	}
}

// TestMembersAddAndPromoteOnlyWhenCaughtUp: a node added by hand as a
// non-voter while its incoming links are throttled to 1 KiB/s cannot
// catch up on 400 KiB of log; the leader refuses to promote it and says
// how far behind it is. Once the links are free it catches up, serves
// ?stale reads as a non-voter, and promote --wait makes it a voter.
func TestMembersAddAndPromoteOnlyWhenCaughtUp(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Chaos: true})
	leader := c.WaitLeader(20 * time.Second)
	nodes := []*testcluster.Node{leader}
	nodes = append(nodes, c.Followers(leader)...)
	cl := client.New([]string{leader.HTTPAddr})
	defer cl.CloseIdleConnections()
	value := []byte(strings.Repeat("v", 1024))
	for i := 0; i < 400; i++ {
		if _, _, err := cl.Put(timeout(t), fmt.Sprintf("k/%03d", i), value, client.WriteOptions{}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}

	// n4's only seed is an address nothing answers at, so it waits to
	// be added, as a node whose seeds refuse it would.
	n4 := c.AddJoiner("n4", "--join", deadAddr(t))
	n4.WaitHTTP(20 * time.Second)
	// Its Raft port opens beside its HTTP port, not before it: wait until
	// Raft answers too.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := n4.Status(); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("n4's Raft never came up: %v", err)
		}
	}
	faultsOn(t, n4, `{"rules":[{"peer":"*","direction":"in","bandwidth":1024}]}`)

	onProc(t, nodes, "members", "add", "n4", "nohost", n4.HTTPAddr).expectErr(t, 2, `raft_addr "nohost" must be host:port`)
	onProc(t, nodes, "members", "add", "n4", n4.RaftAddr, deadAddr(t), "--nonvoter").expectErr(t, 2, "start node n4 first")
	onProc(t, nodes, "members", "add", "n4", n4.RaftAddr, n4.HTTPAddr, "--nonvoter").expect(t, 0, "added n4 as a nonvoter\n")
	if m := membersOf(t, nodes)["n4"]; m.Voter || m.Suffrage != "nonvoter" || m.HTTPAddr != n4.HTTPAddr {
		t.Fatalf("n4 after members add: %+v", m)
	}
	if r := onProc(t, nodes, "members"); !strings.Contains(r.stdout, "nonvoter") {
		t.Fatalf("members does not show the non-voter:\n%s", r.stdout)
	}

	r := onProc(t, nodes, "members", "promote", "n4")
	r.expectErr(t, 2, `non-voter "n4" has not caught up`)
	if !strings.Contains(r.stderr, "entries behind") || !strings.Contains(r.stderr, "HTTP 409") {
		t.Fatalf("the refusal does not say how far behind: %s", r.stderr)
	}
	if m := membersOf(t, nodes)["n4"]; m.Voter {
		t.Fatalf("a lagging non-voter was promoted: %+v", m)
	}

	faultsOn(t, n4, "")
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	n4.WaitApplied(st.CommitIndex, 60*time.Second)
	code, body, _, err := n4.Do(http.MethodGet, "/v1/kv/k/399?stale&raw", nil)
	if err != nil || code != 200 || string(body) != string(value) {
		t.Fatalf("a ?stale read on the non-voter: %d %v", code, err)
	}
	// Its next join attempt (within 5 s) finds it a member, and stops.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(n4.LastRun(), `msg="added to the cluster"`); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n4 never noticed it was added (its join attempts go on):\n%s", n4.Tail(2000))
		}
	}
	onProc(t, nodes, "members", "promote", "n4", "--wait", "60s").expect(t, 0, "promoted n4\n")
	if m := membersOf(t, nodes)["n4"]; !m.Voter || m.Suffrage != "voter" {
		t.Fatalf("n4 after promote: %+v", m)
	}
	onProc(t, nodes, "members", "promote", "n9").expectErr(t, 2, `HTTP 404: no member with id "n9"`)
}

// writer writes fresh keys one after another through cl and counts the
// failures since the last reset.
type writer struct {
	cl       *client.Client
	mu       sync.Mutex
	acked    []string
	failed   []string
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// finish stops the writer and waits for its last write.
func (w *writer) finish() {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.done
}

func startWriter(cl *client.Client) *writer {
	w := &writer{cl: cl, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			key := fmt.Sprintf("w/%06d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _, err := w.cl.Put(ctx, key, []byte(key), client.WriteOptions{})
			cancel()
			w.mu.Lock()
			if err != nil {
				w.failed = append(w.failed, fmt.Sprintf("%s: %v", key, err))
			} else {
				w.acked = append(w.acked, key)
			}
			w.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// checkpoint returns the failures since the last checkpoint, and how many
// writes were acknowledged since.
func (w *writer) checkpoint() (failed []string, acked int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	failed, w.failed = w.failed, nil
	return failed, len(w.acked)
}

// TestReplaceDeadNode is the procedure of docs/operations.md, "Replacing
// a dead node": of three voters the leader dies for good, its disk with
// it. A fresh node joins as a non-voter, is promoted once it has caught
// up, and the dead one is removed. A writer runs throughout: once the
// survivors have elected a leader, no write fails at any step (the
// voters never drop below a quorum), and at the end the configuration is
// three voters and the new node holds every acknowledged write.
func TestReplaceDeadNode(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	dead := c.WaitLeader(20 * time.Second)
	survivors := c.Followers(dead)
	seed := client.New([]string{dead.HTTPAddr})
	defer seed.CloseIdleConnections()
	for i := 0; i < 100; i++ {
		if _, _, err := seed.Put(timeout(t), fmt.Sprintf("k/%03d", i), []byte("v"), client.WriteOptions{}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	dead.Kill()
	dead.Wipe()
	c.WaitNewLeader(dead, 20*time.Second)

	cl := client.New([]string{survivors[0].HTTPAddr, survivors[1].HTTPAddr})
	defer cl.CloseIdleConnections()
	w := startWriter(cl)
	defer w.finish()
	// Writes go through from here on, at every step.
	step := func(what string, tolerate bool) {
		t.Helper()
		_, before := w.checkpoint()
		deadline := time.Now().Add(20 * time.Second)
		for {
			failed, acked := w.checkpoint()
			if len(failed) > 0 && !tolerate {
				t.Fatalf("%s: %d writes failed, e.g. %s", what, len(failed), failed[0])
			}
			if acked > before+5 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the writer made no progress", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// Failures until the writer first gets through are the election's.
	step("after the election", true)

	// 1. A fresh node joins as a non-voter.
	n4 := c.AddJoiner("n4", "--nonvoter")
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, ok := membersOf(t, survivors)["n4"]
		if ok && m.HTTPAddr != "" {
			if m.Voter {
				t.Fatalf("n4 joined as a voter: %+v", m)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n4 never joined:\n%s", n4.Tail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	step("after n4 joined as a non-voter", false)

	// 2. Promoted once it has caught up.
	onProc(t, survivors, "members", "promote", "n4", "--wait", "2m").expect(t, 0, "promoted n4\n")
	step("after n4 was promoted", false)

	// 3. The dead node removed.
	onProc(t, survivors, "members", "remove", dead.ID).expect(t, 0, "removed "+dead.ID+"\n")
	step("after the dead node was removed", false)

	ms := membersOf(t, survivors)
	if len(ms) != 3 || !ms["n4"].Voter || !ms[survivors[0].ID].Voter || !ms[survivors[1].ID].Voter {
		t.Fatalf("final members: %+v", ms)
	}
	w.finish()
	failed, _ := w.checkpoint()
	if len(failed) > 0 {
		t.Fatalf("%d writes failed at the end, e.g. %s", len(failed), failed[0])
	}
	// The new node holds everything: the data from before, and every
	// write acknowledged during the procedure (linearizable reads on n4).
	only := client.New([]string{n4.HTTPAddr}, client.WithMaxAttempts(1))
	defer only.CloseIdleConnections()
	keys, _, err := only.Keys(timeout(t), "", "", client.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, k := range keys {
		have[k] = true
	}
	for i := 0; i < 100; i++ {
		if k := fmt.Sprintf("k/%03d", i); !have[k] {
			t.Fatalf("n4 lacks %s", k)
		}
	}
	w.mu.Lock()
	acked := w.acked
	w.mu.Unlock()
	for _, k := range acked {
		if !have[k] {
			t.Fatalf("n4 lacks the acknowledged write %s", k)
		}
	}
	t.Logf("%d writes acknowledged during the replacement, none failed", len(acked))
}
