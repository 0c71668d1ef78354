package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/localcluster"
)

// TestLeaderIsOneOfThePeersByHostName: members that advertise their Raft
// address by host name (as under docker compose or Kubernetes) are listed
// by it in /v1/status/peers, and every node, the leader and its followers,
// must name the leader in /v1/status/leader by that same address: Consul
// tools look the leader up among the peers. Raft used to carry the
// resolved IP in its messages, so the leader showed up as 127.0.0.1:port.
func TestLeaderIsOneOfThePeersByHostName(t *testing.T) {
	ports, err := localcluster.FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	var initial []cluster.Server
	for i := 0; i < 3; i++ {
		initial = append(initial, cluster.Server{ID: fmt.Sprintf("n%d", i+1), Addr: fmt.Sprintf("localhost:%d", ports[2*i+1])})
	}
	var nodes []*Node
	for i := 0; i < 3; i++ {
		httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[2*i])
		n, err := Start(Config{
			NodeID: initial[i].ID, DataDir: t.TempDir(),
			HTTPAddr: httpAddr, AdvertiseHTTP: httpAddr,
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]), AdvertiseRaft: initial[i].Addr,
			InitialCluster: initial,
			Timing:         cluster.DefaultTiming(), RequestTimeout: 2 * time.Second, MaxInFlight: 16, MaxRestarts: 1, RestartWindow: time.Minute,
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	defer func() {
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			n.Stop(ctx)
			cancel()
		}
	}()

	get := func(port int, path string, v any) error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(v)
	}
	for i := range nodes {
		var leader string
		var peers []string
		deadline := time.Now().Add(20 * time.Second)
		for {
			// A follower learns the leader from its first append.
			err := get(ports[2*i], "/v1/status/leader", &leader)
			if err == nil && leader != "" {
				err = get(ports[2*i], "/v1/status/peers", &peers)
				if err == nil && slices.Contains(peers, leader) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("n%d: leader %q is not among the peers %v (%v)", i+1, leader, peers, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
