package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// writeKeys writes keys snap/0..n-1 (value "v<i>") through all nodes with
// concurrent writers, failing the test on any error.
func writeKeys(t *testing.T, c *testcluster.Cluster, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				node := c.Nodes[i%len(c.Nodes)]
				code, body := put(t, node, fmt.Sprintf("snap/%d", i), fmt.Sprintf("v%d", i))
				if code != 200 || body != "true" {
					errs <- fmt.Errorf("PUT snap/%d via %s: %d %q", i, node.ID, code, body)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkKeys lists snap/ on node (stale) and compares with the n keys written.
func checkKeys(t *testing.T, node *testcluster.Node, n int) {
	t.Helper()
	code, body, _, err := node.Do(http.MethodGet, "/v1/kv/snap/?recurse&stale", nil)
	if err != nil || code != 200 {
		t.Fatalf("list on %s: %d %v", node.ID, code, err)
	}
	var pairs []pair
	if err := json.Unmarshal(body, &pairs); err != nil {
		t.Fatal(err)
	}
	if len(pairs) != n {
		t.Fatalf("%s holds %d keys, want %d", node.ID, len(pairs), n)
	}
	for _, p := range pairs {
		var i int
		fmt.Sscanf(p.Key, "snap/%d", &i)
		if string(p.Value) != fmt.Sprintf("v%d", i) {
			t.Fatalf("%s: %s = %q", node.ID, p.Key, p.Value)
		}
	}
}

func snapshotIndex(t *testing.T, n *testcluster.Node) uint64 {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/cluster/status", nil)
	if err != nil || code != 200 {
		t.Fatalf("status: %d %v", code, err)
	}
	var st struct {
		LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	}
	_ = json.Unmarshal(body, &st)
	return st.LastSnapshotIndex
}

// TestSnapshotRecoveryAndCatchUp writes 10k keys, snapshots, then (1)
// restarts a node, which must recover the full state from its files, and
// (2) wipes another node, which must rejoin and catch up through a snapshot
// sent by the leader because the log behind the snapshot is compacted.
func TestSnapshotRecoveryAndCatchUp(t *testing.T) {
	const keys = 10000
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{
		"--raft-snapshot-threshold", "2000", "--raft-trailing-logs", "200",
		// Compaction frees whole log segments: with the default 64 MiB
		// the compacted entries would still sit in the first segment.
		"--raft-log-segment-size", "65536",
	}})
	leader := c.WaitLeader(20 * time.Second)
	start := time.Now()
	writeKeys(t, c, keys)
	t.Logf("%d writes with 16 writers in %s", keys, time.Since(start).Round(time.Millisecond))

	// Every node applies everything before the snapshots, so the restart
	// below must recover all keys from its own files, without catching up.
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		n.WaitApplied(st.CommitIndex, 30*time.Second)
	}
	for _, n := range c.Nodes {
		code, body, _, err := n.Do(http.MethodPost, "/v1/cluster/snapshot", nil)
		if err != nil || code != 200 {
			t.Fatalf("snapshot on %s: %d %s %v", n.ID, code, body, err)
		}
		if idx := snapshotIndex(t, n); idx < keys {
			t.Fatalf("%s snapshot index %d, want >= %d", n.ID, idx, keys)
		}
	}

	followers := c.Followers(leader)
	restarted, wiped := followers[0], followers[1]

	restarted.Stop()
	restarted.Start()
	restarted.WaitHTTP(20 * time.Second)
	checkKeys(t, restarted, keys) // straight from its files, before any catch-up

	wiped.Kill()
	wiped.Wipe()
	wiped.Start()
	st, err = leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	wiped.WaitApplied(st.CommitIndex, 60*time.Second)
	checkKeys(t, wiped, keys)
	if !strings.Contains(wiped.Log(), "Installed remote snapshot") || snapshotIndex(t, wiped) == 0 {
		t.Fatalf("wiped node caught up without a snapshot install; log:\n%s", wiped.Log())
	}
	// The cluster still takes writes with all three members.
	if code, _ := put(t, wiped, "after", "ok"); code != 200 {
		t.Fatalf("write through the rejoined node: %d", code)
	}
}
