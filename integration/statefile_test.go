package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestTruncatedStateFile: a stopped follower's kv.db is cut to half of
// what it uses. Started again, the node refuses with one line naming the
// file and what to do, never a runtime fault trace. Started with
// repair_state_file, it moves the file aside, rebuilds from its snapshot
// and log, and serves every acknowledged write.
func TestTruncatedStateFile(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--raft-snapshot-threshold=100", "--raft-snapshot-interval=1s"}})
	leader := c.WaitLeader(20 * time.Second)
	const n = 400
	for i := 0; i < n; i++ {
		if code, body := put(t, c.Nodes[i%3], fmt.Sprintf("k/%03d", i), strings.Repeat("v", 200)); code != 200 || body != "true" {
			t.Fatalf("PUT %d: %d %q", i, code, body)
		}
	}
	victim := c.Followers(leader)[0]
	waitCaughtUp(t, leader, victim)
	victim.Stop()

	path := filepath.Join(victim.DataDir, "kv.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var used int64
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	if err := os.Truncate(path, used/2); err != nil {
		t.Fatal(err)
	}

	victim.Start()
	if exit := victim.WaitExit(20 * time.Second); exit == nil {
		t.Fatal("a node with a truncated state file kept running")
	}
	log := victim.Log()
	if !strings.Contains(log, "is damaged: truncated") || !strings.Contains(log, "repair_state_file") || strings.Contains(log, "fatal error") || strings.Contains(log, "goroutine ") {
		t.Fatalf("the refusal is not one clear line:\n%s", victim.Tail(3000))
	}

	victim.SetFlags("--repair-state-file")
	victim.Start()
	victim.WaitHTTP(20 * time.Second)
	for i := 0; i < n; i++ {
		deadline := time.Now().Add(20 * time.Second)
		for {
			code, p := get(t, victim, fmt.Sprintf("k/%03d", i), "")
			if code == 200 && len(p.Value) == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("k/%03d after the repair: %d", i, code)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("the damaged file was not kept aside: %v", aside)
	}
}
