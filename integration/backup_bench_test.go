package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestBackupTimes measures a snapshot save and restore on a real 3-node
// cluster holding $TROUPE_BACKUP_KEYS keys of 100 bytes (skipped without
// it): the keys go in through /v1/txn, 128 to a transaction, then GET
// /v1/snapshot is timed to a file through a follower, and PUT
// /v1/snapshot through a follower until every node has applied the
// restore. Figures are in docs/performance.md.
func TestBackupTimes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("TROUPE_BACKUP_KEYS"))
	if n <= 0 {
		t.Skip("set TROUPE_BACKUP_KEYS to measure")
	}
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--raft-snapshot-threshold", "200000"}})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	value := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("v"), 100))
	start := time.Now()
	var wg sync.WaitGroup
	const batch, workers = 128, 4
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for first := range next {
				var ops []map[string]any
				for i := first; i < min(first+batch, n); i++ {
					ops = append(ops, map[string]any{"KV": map[string]any{"Verb": "set", "Key": fmt.Sprintf("bench/%08d", i), "Value": value}})
				}
				body, _ := json.Marshal(ops)
				for {
					code, out, _, err := leader.Do(http.MethodPut, "/v1/txn", body)
					if err == nil && code == 200 {
						break
					}
					t.Logf("load: %d %s %v; retrying", code, out, err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	for i := 0; i < n; i += batch {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("loaded %d keys in %v", n, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	code, data, h, err := follower.Do(http.MethodGet, "/v1/snapshot", nil)
	if err != nil || code != 200 {
		t.Fatalf("save: %d %v", code, err)
	}
	save := time.Since(start)
	t.Logf("save: %d keys, %d bytes, index %s, in %v", n, len(data), h.Get("X-Consul-Index"), save.Round(time.Millisecond))

	start = time.Now()
	code, out, _, err := follower.Do(http.MethodPut, "/v1/snapshot", data)
	if err != nil || code != 200 {
		t.Fatalf("restore: %d %s %v", code, out, err)
	}
	restored := time.Since(start)
	var info struct {
		RestoredAt uint64 `json:"restored_at"`
		Keys       int    `json:"keys"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Keys != n {
		t.Fatalf("restore answered %s", out)
	}
	for _, nd := range c.Nodes {
		nd.WaitApplied(info.RestoredAt, 10*time.Minute)
	}
	all := time.Since(start)
	t.Logf("restore: answered in %v, applied on every node in %v", restored.Round(time.Millisecond), all.Round(time.Millisecond))
}
