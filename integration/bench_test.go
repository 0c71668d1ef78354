package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

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

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// BenchmarkWrites16Clients measures write throughput and latency of a
// 3-node cluster of real kvnode processes (fsync on) with 16 concurrent
// clients spread over all nodes, 100-byte values over 10k keys.
func BenchmarkWrites16Clients(b *testing.B) {
	const clients = 16
	c := testcluster.Start(b, 3, testcluster.Options{Args: []string{"--log-level", "warn"}})
	c.WaitLeader(20 * time.Second)
	value := bytes.Repeat([]byte("x"), 100)
	// Warm the connections.
	for _, n := range c.Nodes {
		_ = benchPut(n.URL()+"/v1/kv/warm", value)
	}
	var (
		mu   sync.Mutex
		lats []time.Duration
		errs int
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			var mine []time.Duration
			bad := 0
			for i := w; i < b.N; i += clients {
				n := c.Nodes[i%len(c.Nodes)]
				t0 := time.Now()
				if err := benchPut(fmt.Sprintf("%s/v1/kv/bench/%d", n.URL(), rng.IntN(10000)), value); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errs += bad
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lats)
	b.ReportMetric(float64(len(lats))/elapsed.Seconds(), "writes/s")
	b.ReportMetric(float64(percentile(lats, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(lats, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(errs), "errors")
}

// BenchmarkLeaderFailover kills the leader with SIGKILL several times and
// measures (1) how long until the survivors agree on a new leader and (2)
// how long until a write is acknowledged again. Run with -benchtime=1x; it
// reports the median and worst of the trials.
func BenchmarkLeaderFailover(b *testing.B) {
	const trials = 9
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
