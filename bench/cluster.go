package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/troupe-kv/troupe/internal/procstat"
	"github.com/troupe-kv/troupe/localcluster"
)

// Cluster is a local Troupe cluster of real kvnode processes, with the
// process control the failover and catch-up measurements need.
type Cluster struct {
	C *localcluster.Cluster
}

// StartCluster launches n nodes of the kvnode binary (fsync on, as in
// production) under dir and waits for their leader. With withTLS the
// nodes get certificates from a development CA under dir: HTTPS with
// client certificates required on the client port, mutual TLS between
// nodes (see localcluster.Options.TLS).
func StartCluster(ctx context.Context, dir, kvnode string, n int, args []string, withTLS bool) (*Cluster, error) {
	c, err := localcluster.Start(n, localcluster.Options{Binary: kvnode, Dir: dir, TLS: withTLS, Args: append([]string{"--log-level", "warn"}, args...)})
	if err != nil {
		return nil, err
	}
	// A TLS cluster whose client configuration cannot be loaded would be
	// measured over plain HTTP under the name "troupe": refuse instead.
	if withTLS && c.TLSConfig() == nil {
		_ = c.Kill()
		return nil, fmt.Errorf("the TLS cluster's client certificate under %s cannot be loaded", c.TLSDir())
	}
	if _, err := waitLeader(ctx, c); err != nil {
		_ = c.Kill()
		return nil, err
	}
	return &Cluster{C: c}, nil
}

// Store is how load reaches this cluster: plain Troupe, or Troupe over
// HTTPS with the cluster's CA and client certificate.
func (c *Cluster) Store() Troupe { return Troupe{TLS: c.C.TLSConfig()} }

// waitLeader gives an election a minute.
func waitLeader(ctx context.Context, c *localcluster.Cluster) (*localcluster.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return c.WaitLeader(ctx)
}

// Endpoints lists the nodes' HTTP addresses.
func (c *Cluster) Endpoints() []string { return c.C.Endpoints() }

// Pids lists the running nodes' process ids.
func (c *Cluster) Pids() []int { return c.C.Pids() }

// Close stops every node.
func (c *Cluster) Close() { _ = c.C.Stop() }

// Failover kills the leader with SIGKILL trials times and measures how
// long writes were unavailable: from the kill to the first acknowledged
// write through a survivor. The killed node is restarted and caught up
// between trials.
func (c *Cluster) Failover(ctx context.Context, trials int) ([]time.Duration, error) {
	store := c.Store()
	hc := NewClient(4, store.TLSConfig())
	var out []time.Duration
	for i := 0; i < trials; i++ {
		leader, err := waitLeader(ctx, c.C)
		if err != nil {
			return out, err
		}
		survivors := c.C.Followers(leader)
		t0 := time.Now()
		if err := leader.Kill(); err != nil {
			return out, err
		}
		for j := 0; ; j++ {
			if time.Since(t0) > time.Minute {
				return out, fmt.Errorf("no write succeeded within a minute of killing the leader")
			}
			n := survivors[j%len(survivors)]
			resp, err := hc.Do(store.Put(n.HTTPAddr, "bench/failover", []byte("x")).WithContext(ctx))
			if err == nil {
				ok := resp.StatusCode == http.StatusOK
				resp.Body.Close()
				if ok {
					out = append(out, time.Since(t0))
					break
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err := c.restartCaughtUp(ctx, leader, survivors[0], 2*time.Minute); err != nil {
			return out, err
		}
	}
	return out, nil
}

// restartCaughtUp starts node again and waits until it has applied what
// ref had committed when it came back.
func (c *Cluster) restartCaughtUp(ctx context.Context, node, ref *localcluster.Node, within time.Duration) error {
	if err := node.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := node.WaitHTTP(ctx); err != nil {
		return err
	}
	st, err := ref.Status()
	if err != nil {
		return err
	}
	return node.WaitApplied(ctx, st.CommitIndex)
}

// CatchUp kills a follower, writes n keys while it is down, restarts it
// and measures how long until it has applied everything the leader had
// committed. Each try writes its own keys under prefix.
func (c *Cluster) CatchUp(ctx context.Context, n int, prefix string) (time.Duration, error) {
	leader, err := waitLeader(ctx, c.C)
	if err != nil {
		return 0, err
	}
	follower := c.C.Followers(leader)[0]
	if err := follower.Kill(); err != nil {
		return 0, err
	}
	var live []string
	for _, node := range c.C.Followers(follower) {
		live = append(live, node.HTTPAddr)
	}
	if err := Preload(ctx, c.Store(), live, prefix, n, 100, 64); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := c.restartCaughtUp(ctx, follower, leader, 5*time.Minute); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// NodeFootprint is one node's memory and disk use.
type NodeFootprint struct {
	ID        string `json:"id"`
	RSSBytes  int64  `json:"rss_bytes"`
	AnonBytes int64  `json:"rss_anon_bytes"` // heap and stacks
	FileBytes int64  `json:"rss_file_bytes"` // mapped data files
	KVDB      int64  `json:"kv_db_bytes"`
	RaftLog   int64  `json:"raft_log_bytes"` // the WAL directory
	Snapshots int64  `json:"snapshots_bytes"`
}

// Footprint reads every node's resident memory (after a GC-friendly pause)
// and the size of its data files.
func (c *Cluster) Footprint() []NodeFootprint {
	var out []NodeFootprint
	for _, n := range c.C.Nodes {
		st := procstat.Status(n.Pid())
		fp := NodeFootprint{ID: n.ID, RSSBytes: st["VmRSS"], AnonBytes: st["RssAnon"], FileBytes: st["RssFile"]}
		fp.KVDB = fileSize(filepath.Join(n.DataDir, "kv.db"))
		fp.RaftLog = dirSize(filepath.Join(n.DataDir, "wal"))
		fp.Snapshots = dirSize(filepath.Join(n.DataDir, "snapshots"))
		out = append(out, fp)
	}
	return out
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func dirSize(dir string) int64 {
	var total int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

// Median and Max summarise measured durations.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// Max is the largest duration.
func Max(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds)
}

// Report is everything one benchmark run measured; it is written as JSON.
type Report struct {
	When        string             `json:"when"`
	Machine     string             `json:"machine"`
	Results     []Result           `json:"results"`
	FailoverMS  []float64          `json:"failover_ms,omitempty"`
	CatchUp     *CatchUpResult     `json:"catch_up,omitempty"`
	Footprints  []FootprintStep    `json:"footprints,omitempty"`
	Sessions    *SessionCost       `json:"sessions,omitempty"`
	LockHandoff *LockHandoffResult `json:"lock_handoff,omitempty"`
}

// LockHandoffResult summarises the lock hand-off measurement.
type LockHandoffResult struct {
	Waiters  int     `json:"waiters"`
	Handoffs int     `json:"handoffs"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// CatchUpResult is the catch-up measurement: the median of its tries.
type CatchUpResult struct {
	MissedWrites int       `json:"missed_writes"`
	Seconds      float64   `json:"seconds"`
	EachSeconds  []float64 `json:"each_seconds,omitempty"`
}

// FootprintStep is the cluster's footprint at a key count.
type FootprintStep struct {
	Keys  int             `json:"keys"`
	Nodes []NodeFootprint `json:"nodes"`
}

// WriteJSON saves the report.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
