package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

type pair struct {
	Key         string
	Value       []byte
	ModifyIndex uint64
}

func put(t *testing.T, n *testcluster.Node, key, value string) (int, string) {
	t.Helper()
	code, body, _, err := n.Do(http.MethodPut, "/v1/kv/"+key, []byte(value))
	if err != nil {
		return 0, err.Error()
	}
	return code, strings.TrimSpace(string(body))
}

// waitCaughtUp waits until n has applied everything the leader has
// committed so far.
func waitCaughtUp(t *testing.T, leader, n *testcluster.Node) {
	t.Helper()
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	n.WaitApplied(st.CommitIndex, 20*time.Second)
}

func get(t *testing.T, n *testcluster.Node, key, query string) (int, *pair) {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/kv/"+key+query, nil)
	if err != nil || code != http.StatusOK {
		return code, nil
	}
	var ps []pair
	if err := json.Unmarshal(body, &ps); err != nil || len(ps) != 1 {
		t.Fatalf("GET %s: bad body %q", key, body)
	}
	return code, &ps[0]
}

func TestWriteThroughFollowerReadEverywhere(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	if code, body := put(t, follower, "greeting", "hello"); code != 200 || body != "true" {
		t.Fatalf("PUT through follower: %d %q", code, body)
	}
	for _, n := range c.Nodes {
		code, p := get(t, n, "greeting", "")
		if code != 200 || string(p.Value) != "hello" {
			t.Fatalf("GET from %s: %d %+v", n.ID, code, p)
		}
	}
}

// TestKillLeaderWhileWriting: kill -9 the leader under a steady writer; a new
// leader takes over, writes continue through the survivors, and the
// restarted node ends up holding every acknowledged write.
func TestKillLeaderWhileWriting(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)

	var (
		mu    sync.Mutex
		acked = map[string]string{}
		seq   atomic.Int64
		stop  = make(chan struct{})
		wg    sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := c.Nodes[(w+i)%len(c.Nodes)]
				if !n.Running() {
					continue
				}
				key := fmt.Sprintf("w%d/k%d", w, seq.Add(1))
				if code, body := put(t, n, key, key); code == 200 && body == "true" {
					mu.Lock()
					acked[key] = key
					mu.Unlock()
				}
			}
		}(w)
	}
	time.Sleep(500 * time.Millisecond)
	leader.Kill()
	newLeader := c.WaitNewLeader(leader, 20*time.Second)
	mu.Lock()
	before := len(acked)
	mu.Unlock()
	// Writes keep being acknowledged after the failover.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= before+50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d writes acknowledged after failover to %s", n-before, newLeader.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	leader.Start()
	close(stop)
	wg.Wait()

	st, err := newLeader.Status()
	if err != nil {
		t.Fatal(err)
	}
	leader.WaitApplied(st.CommitIndex, 30*time.Second)
	for key, want := range acked {
		code, p := get(t, leader, key, "?stale")
		if code != 200 || string(p.Value) != want {
			t.Fatalf("restarted %s lost acknowledged write %s: %d %+v", leader.ID, key, code, p)
		}
	}
	t.Logf("%d acknowledged writes, all present on the restarted node", len(acked))
}
