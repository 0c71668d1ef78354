package integration

import (
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// writer keeps writing unique keys through all nodes and remembers which
// were acknowledged.
type writer struct {
	c     *testcluster.Cluster
	mu    sync.Mutex
	acked map[string]bool
	seq   atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startWriters(t *testing.T, c *testcluster.Cluster, n int) *writer {
	w := &writer{c: c, acked: map[string]bool{}, stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go func(i int) {
			defer w.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-w.stop:
					return
				default:
				}
				node := c.Nodes[(i+j)%len(c.Nodes)]
				if !node.Running() {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				key := fmt.Sprintf("w/%d", w.seq.Add(1))
				if code, body := put(t, node, key, key); code == 200 && body == "true" {
					w.mu.Lock()
					w.acked[key] = true
					w.mu.Unlock()
				}
			}
		}(i)
	}
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitMore waits until n more writes are acknowledged.
func (w *writer) waitMore(t *testing.T, n int, why string) {
	t.Helper()
	target := w.count() + n
	deadline := time.Now().Add(30 * time.Second)
	for w.count() < target {
		if time.Now().After(deadline) {
			t.Fatalf("writes stalled %s", why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *writer) finish() map[string]bool {
	close(w.stop)
	w.wg.Wait()
	return w.acked
}

// checkAll asserts that every acknowledged key is readable on node n.
func checkAll(t *testing.T, c *testcluster.Cluster, acked map[string]bool) {
	t.Helper()
	leader := c.WaitLeader(20 * time.Second)
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		n.WaitApplied(st.CommitIndex, 30*time.Second)
		for key := range acked {
			if code, p := get(t, n, key, "?stale"); code != 200 || string(p.Value) != key {
				t.Fatalf("%s lost acknowledged write %s (%d)", n.ID, key, code)
			}
		}
	}
}

// TestRaftActorPanicDuringWrites crashes the raft actor of the leader and of
// a follower while writes run. Supervision restarts it (Raft closes and
// reopens from disk); the node serves again and no acknowledged write is
// lost.
func TestRaftActorPanicDuringWrites(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Chaos: true})
	leader := c.WaitLeader(20 * time.Second)
	w := startWriters(t, c, 4)
	w.waitMore(t, 50, "before the crash")

	for _, victim := range []*testcluster.Node{leader, c.Followers(leader)[0]} {
		code, body, _, err := victim.Do(http.MethodPost, "/v1/chaos/crash?actor=raft", nil)
		if err != nil || code != 200 {
			t.Fatalf("crash raft on %s: %d %s %v", victim.ID, code, body, err)
		}
		w.waitMore(t, 50, "after crashing raft on "+victim.ID)
		// The crashed node itself serves writes again.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, _ := put(t, victim, "after-crash/"+victim.ID, "ok"); code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not serve writes after its raft actor restarted", victim.ID)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(victim.Log(), "actor failed") || !strings.Contains(victim.Log(), "RestartDirective") {
			t.Fatalf("%s logged no restart of its raft actor", victim.ID)
		}
	}
	acked := w.finish()
	checkAll(t, c, acked)
	t.Logf("%d acknowledged writes survived two raft actor crashes", len(acked))
}

// TestRestartBudgetExhaustedExitsNonZero crashes the raft actor more often
// than max_restarts allows: the node must exit non-zero with a clear line
// so the OS supervisor can take over.
func TestRestartBudgetExhaustedExitsNonZero(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Chaos: true, Args: []string{"--max-restarts", "2", "--restart-window", "1m"}})
	n := c.Nodes[0]
	c.WaitLeader(20 * time.Second)
	for i := 0; i < 3; i++ {
		// Each crash waits until the node answers again, so crashes are not
		// merged into one.
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, _, _, err := n.Do(http.MethodPost, "/v1/chaos/crash?actor=raft", nil)
			if err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("crash %d not accepted: %v", i, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if i < 2 {
			c.WaitLeader(20 * time.Second)
		}
	}
	err := n.WaitExit(30 * time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("node exit: %v, want a non-zero exit status", err)
	}
	if !strings.Contains(n.Log(), "giving up") {
		t.Fatalf("no clear log line about giving up:\n%s", n.Log())
	}
}
