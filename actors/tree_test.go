package actors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/api"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/storage"
)

// node is one in-process Troupe node: the same actor tree, Raft, bbolt and
// HTTP API as kvnode, so the race detector sees all of it.
type node struct {
	id, httpAddr, raftAddr string
	tree                   *actors.Tree
	store                  *storage.Store
	logs                   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fastTiming() cluster.Timing {
	t := cluster.DefaultTiming()
	t.HeartbeatTimeout = 300 * time.Millisecond
	t.ElectionTimeout = 300 * time.Millisecond
	t.LeaderLeaseTimeout = 150 * time.Millisecond
	t.CommitTimeout = 5 * time.Millisecond
	return t
}

// startCluster starts n in-process nodes on loopback.
func startCluster(t *testing.T, n int, maxRestarts int) []*node {
	t.Helper()
	ports := testcluster.FreePorts(t, 2*n)
	var nodes []*node
	var initial []cluster.Server
	for i := 0; i < n; i++ {
		nd := &node{
			id:       fmt.Sprintf("n%d", i+1),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			raftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			logs:     &syncBuffer{},
		}
		initial = append(initial, cluster.Server{ID: nd.id, Addr: nd.raftAddr})
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		dir := filepath.Join(t.TempDir(), nd.id)
		store, err := storage.Open(filepath.Join(t.TempDir(), nd.id+"-kv.db"))
		if err != nil {
			t.Fatal(err)
		}
		nd.store = store
		logger := slog.New(slog.NewTextHandler(nd.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		nd.tree = actors.New(actors.Config{
			Raft: cluster.Config{
				NodeID: nd.id, DataDir: dir, RaftBind: nd.raftAddr, RaftAdvertise: nd.raftAddr,
				InitialCluster: initial, Timing: fastTiming(), Logger: hclog.NewNullLogger(),
			},
			Store:          store,
			HTTPAddr:       nd.httpAddr,
			AdvertiseHTTP:  nd.httpAddr,
			RequestTimeout: 3 * time.Second,
			MaxInFlight:    1024,
			MaxRestarts:    maxRestarts,
			RestartWindow:  time.Minute,
			Logger:         logger,
		})
		handler := api.New(nd.tree.Gateway(), api.Options{RequestTimeout: 3 * time.Second, Chaos: true})
		if err := nd.tree.Start(handler); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			start := time.Now()
			_ = nd.tree.Stop(ctx)
			if d := time.Since(start); d > 5*time.Second {
				t.Logf("stopping %s took %s", nd.id, d)
			}
			cancel()
			nd.store.Close()
		}
	})
	return nodes
}

func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			if st, err := nd.tree.Gateway().Status(); err == nil && st.State == "Leader" && st.LeaderHTTPAddr != "" {
				return nd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

func httpDo(method, url string, body string) (int, string, error) {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestGatewayWritesAndReadsThroughEveryNode(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leaderOf(t, nodes)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, nd := range nodes {
		key := fmt.Sprintf("k%d", i)
		res, err := nd.tree.Gateway().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: key, Value: []byte(nd.id)})
		if err != nil || !res.OK || res.Index == 0 {
			t.Fatalf("apply via %s: %+v %v", nd.id, res, err)
		}
	}
	for _, nd := range nodes {
		if err := nd.tree.Gateway().ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier on %s: %v", nd.id, err)
		}
		for i, src := range nodes {
			e, found, _, err := nd.store.Get(fmt.Sprintf("k%d", i))
			if err != nil || !found || string(e.Value) != src.id {
				t.Fatalf("%s: k%d = %+v %v %v", nd.id, i, e, found, err)
			}
		}
	}
}

// TestConcurrentProposalsInFlight checks the raft actor does not serialise
// proposals: many concurrent writers through one node all succeed, and
// raft commits them in fewer log batches than writes (they share disk
// writes), which only happens when they are in flight together.
func TestConcurrentProposalsInFlight(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	gw := leader.tree.Gateway()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := 0; i < 20; i++ {
				if _, err := gw.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: fmt.Sprintf("c/%d/%d", w, i), Value: []byte("x")}); err != nil {
					errs <- err
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
	entries, _, err := leader.store.List("c/")
	if err != nil || len(entries) != 64*20 {
		t.Fatalf("listed %d entries (%v), want %d", len(entries), err, 64*20)
	}
}

func TestRaftActorCrashRecovers(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	gw := leader.tree.Gateway()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := gw.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "before", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if err := gw.Crash("raft", "test"); err != nil {
		t.Fatal(err)
	}
	// The node (whose Raft restarted from disk) serves writes again, through
	// whichever node leads now.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := gw.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "after", Value: []byte("2")})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write after the raft actor crash: %v", err)
		}
	}
	if err := gw.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"before", "after"} {
		if _, found, _, _ := leader.store.Get(key); !found {
			t.Fatalf("%s missing after the crash", key)
		}
	}
	if !strings.Contains(leader.logs.String(), "actor failed") {
		t.Fatalf("restart not logged:\n%s", leader.logs.String())
	}
}

func TestCrashPastBudgetStopsTheNode(t *testing.T) {
	nodes := startCluster(t, 1, 1)
	nd := nodes[0]
	leaderOf(t, nodes)
	gw := nd.tree.Gateway()
	for i := 0; i < 2; i++ {
		if err := gw.Crash("http", "test"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Wait for the restarted http actor to serve again.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if code, _, err := httpDo(http.MethodGet, "http://"+nd.httpAddr+"/healthz", ""); err == nil && code == 200 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("http actor did not come back")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	select {
	case err := <-nd.tree.Done():
		if err == nil || !strings.Contains(err.Error(), "giving up") {
			t.Fatalf("Done: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not give up after exhausting its restart budget")
	}
}

func TestCrashUnknownActor(t *testing.T) {
	nodes := startCluster(t, 1, 5)
	if err := nodes[0].tree.Gateway().Crash("nobody", "x"); err == nil {
		t.Fatal("crashing an unknown actor should fail")
	}
}

func TestNoLeaderFailsInBoundedTime(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	// Cut the leader off from everyone: it cannot commit, and must say so
	// instead of hanging.
	cut := `{"rules":[{"peer":"*","direction":"both","cut":true}]}`
	if code, body, err := httpDo(http.MethodPut, "http://"+leader.httpAddr+"/v1/chaos/faults", cut); err != nil || code != 200 {
		t.Fatalf("cut: %d %s %v", code, body, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := leader.tree.Gateway().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "x", Value: []byte("y")})
	if !errors.Is(err, cluster.ErrNoLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("apply on a cut-off leader: %v", err)
	}
	if err := leader.tree.Gateway().ReadBarrier(ctx); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("read barrier on a cut-off leader: %v", err)
	}
}
