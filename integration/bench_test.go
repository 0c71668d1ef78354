package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/bench"
	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

var benchClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 512},
}

func benchPut(url string, value []byte) error {
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(value))
	resp, err := benchClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "true" {
		return fmt.Errorf("%d %s", resp.StatusCode, body)
	}
	return nil
}

// BenchmarkWrites16Clients measures write throughput and latency of a
// 3-node cluster of real kvnode processes (fsync on) with 16 concurrent
// clients spread over all nodes, 100-byte values over 10k keys, for 10
// seconds. It drives the load with troupe-bench's generator (bench.Run),
// so every write stores a new value, as a real write would.
func BenchmarkWrites16Clients(b *testing.B) {
	c := testcluster.Start(b, 3, testcluster.Options{Args: []string{"--log-level", "warn"}})
	c.WaitLeader(20 * time.Second)
	b.ResetTimer()
	r := bench.Run(context.Background(), bench.Config{Store: bench.Troupe{}, Endpoints: c.Endpoints(), Kind: bench.Writes, Clients: 16, Duration: 10 * time.Second})
	b.StopTimer()
	b.ReportMetric(r.OpsPerSec, "writes/s")
	b.ReportMetric(r.P50MS, "p50-ms")
	b.ReportMetric(r.P99MS, "p99-ms")
	b.ReportMetric(float64(r.Errors), "errors")
}

// BenchmarkLeaderFailover kills the leader with SIGKILL several times and
// measures (1) how long until the survivors agree on a new leader and (2)
// how long until a write is acknowledged again. Run with -benchtime=1x; it
// reports the median and worst of the trials.
func BenchmarkLeaderFailover(b *testing.B) {
	trials := envInt("TROUPE_BENCH_TRIALS", 9)
	c := testcluster.Start(b, 3, testcluster.Options{Args: []string{"--log-level", "warn"}})
	var elect, write []time.Duration
	for i := 0; i < trials; i++ {
		leader := c.WaitLeader(30 * time.Second)
		survivors := c.Followers(leader)
		t0 := time.Now()
		leader.Kill()
		var elected, written time.Duration
		for elected == 0 || written == 0 {
			if time.Since(t0) > 30*time.Second {
				b.Fatalf("trial %d: no recovery within 30s", i)
			}
			if elected == 0 {
				for _, n := range survivors {
					if st, err := n.Status(); err == nil && st.LeaderID != "" && st.LeaderID != leader.ID {
						elected = time.Since(t0)
					}
				}
			}
			if written == 0 {
				n := survivors[rand.IntN(len(survivors))]
				if benchPut(n.URL()+"/v1/kv/failover", []byte("x")) == nil {
					written = time.Since(t0)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		elect = append(elect, elected)
		write = append(write, written)
		leader.Start()
		leader.WaitHTTP(20 * time.Second)
		c.WaitLeader(30 * time.Second)
	}
	slices.Sort(elect)
	slices.Sort(write)
	b.ReportMetric(float64(elect[trials/2].Milliseconds()), "elect-median-ms")
	b.ReportMetric(float64(elect[trials-1].Milliseconds()), "elect-max-ms")
	b.ReportMetric(float64(write[trials/2].Milliseconds()), "write-median-ms")
	b.ReportMetric(float64(write[trials-1].Milliseconds()), "write-max-ms")
}

// BenchmarkDetection kills a follower with SIGKILL, over and over, and
// measures how long until another node's failure detector declares it
// Dead (GET /v1/cluster/health). Run with -benchtime=1x.
func BenchmarkDetection(b *testing.B) {
	trials := envInt("TROUPE_BENCH_TRIALS", 21)
	c := testcluster.Start(b, 3, testcluster.Options{Args: []string{"--log-level", "warn"}})
	c.WaitLeader(30 * time.Second)
	var took []time.Duration
	for i := 0; i < trials; i++ {
		leader := c.WaitLeader(30 * time.Second)
		followers := c.Followers(leader)
		victim, observer := followers[i%2], leader
		waitPeer(b, observer, victim.ID, "alive", 30*time.Second)
		t0 := time.Now()
		victim.Kill()
		waitPeer(b, observer, victim.ID, "dead", 30*time.Second)
		took = append(took, time.Since(t0))
		victim.Start()
		waitPeer(b, observer, victim.ID, "alive", 30*time.Second)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "detect-median-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "detect-max-ms")
	b.ReportMetric(float64(took[0].Milliseconds()), "detect-min-ms")
}

// BenchmarkFalseDead runs a healthy cluster for TROUPE_BENCH_DURATION
// (default 5m) with 5% loss and 50ms ± 50ms delay on every link and counts
// how often a live peer was declared Dead (target: never).
func BenchmarkFalseDead(b *testing.B) {
	d := envDuration("TROUPE_BENCH_DURATION", 5*time.Minute)
	c := testcluster.Start(b, 3, testcluster.Options{Chaos: true, Args: []string{"--log-level", "warn"}})
	c.WaitLeader(30 * time.Second)
	for _, n := range c.Nodes {
		for _, p := range c.Nodes {
			if p != n {
				waitPeer(b, n, p.ID, "alive", 30*time.Second)
			}
		}
	}
	before := deadTransitions(b, c)
	installPlan(b, c, faultplan.Must(faultplan.Degrade(nodeIDs(c), nil, lossy(0.05), 11)))
	time.Sleep(d)
	falseDead := deadTransitions(b, c) - before
	suspects := 0
	for _, n := range c.Nodes {
		suspects += strings.Count(n.Log(), `to=suspect`)
	}
	b.ReportMetric(float64(falseDead), "false-dead")
	b.ReportMetric(float64(suspects), "suspect-events")
	b.ReportMetric(d.Seconds(), "seconds")
}

// BenchmarkPartitionFailover cuts the leader off from both followers and
// measures how long until the majority commits a write. Run with
// -benchtime=1x.
func BenchmarkPartitionFailover(b *testing.B) {
	trials := envInt("TROUPE_BENCH_TRIALS", 11)
	c := testcluster.Start(b, 3, testcluster.Options{Chaos: true, Args: []string{"--log-level", "warn", "--request-timeout", "1s"}})
	var took []time.Duration
	for i := 0; i < trials; i++ {
		leader := c.WaitLeader(30 * time.Second)
		majority := c.Followers(leader)
		cut := faultplan.Must(faultplan.Isolate(nodeIDs(c), leader.ID))
		t0 := time.Now()
		installPlan(b, c, cut)
		for j := 0; ; j++ {
			if time.Since(t0) > 30*time.Second {
				b.Fatal("the majority committed nothing within 30s")
			}
			n := majority[j%2]
			if benchPut(fmt.Sprintf("%s/v1/kv/partition/%d", n.URL(), i), []byte("x")) == nil {
				took = append(took, time.Since(t0))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if code, _, _, err := leader.Do(http.MethodDelete, "/v1/chaos/faults", nil); err != nil || code != 200 {
			b.Fatalf("heal: %d %v", code, err)
		}
		st, _ := majority[0].Status()
		leader.WaitApplied(st.CommitIndex, 30*time.Second)
	}
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "commit-median-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "commit-max-ms")
}

func waitPeer(b *testing.B, observer *testcluster.Node, peer, state string, within time.Duration) {
	b.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		code, body, _, err := observer.Do(http.MethodGet, "/v1/cluster/health", nil)
		if err == nil && code == 200 {
			var h struct {
				Peers []struct{ ID, State string } `json:"peers"`
			}
			if json.Unmarshal(body, &h) == nil {
				for _, p := range h.Peers {
					if p.ID == peer && p.State == state {
						return
					}
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatalf("%s never saw %s %s", observer.ID, peer, state)
}

// deadTransitions sums troupe_peer_state_changes_total{to="dead"} over the
// cluster.
func deadTransitions(b *testing.B, c *testcluster.Cluster) int {
	total := 0
	for _, n := range c.Nodes {
		_, body, _, err := n.Do(http.MethodGet, "/metrics", nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, "troupe_peer_state_changes_total{") && strings.Contains(line, `to="dead"`) {
				var v float64
				fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v)
				total += int(v)
			}
		}
	}
	return total
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}
