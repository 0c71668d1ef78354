package actors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/storage"
)

type node = inproc.Node

func startCluster(t *testing.T, n int, maxRestarts int) []*node {
	return inproc.Start(t, n, inproc.Options{MaxRestarts: maxRestarts, Chaos: true})
}

func leaderOf(t *testing.T, nodes []*node) *node { return inproc.Leader(t, nodes) }

// isolate cuts nd off from every peer, both ways.
func isolate(t *testing.T, nodes []*node, nd *node) {
	t.Helper()
	var members []string
	for _, m := range nodes {
		members = append(members, m.ID)
	}
	plan := faultplan.Must(faultplan.Isolate(members, nd.ID))
	if err := nd.Client().SetFaults(*plan[0].Rules); err != nil {
		t.Fatal(err)
	}
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
		res, err := nd.Client().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: key, Value: []byte(nd.ID)})
		if err != nil || !res.OK || res.Index == 0 {
			t.Fatalf("apply via %s: %+v %v", nd.ID, res, err)
		}
	}
	for _, nd := range nodes {
		if err := nd.Client().ReadBarrier(ctx); err != nil {
			t.Fatalf("read barrier on %s: %v", nd.ID, err)
		}
		for i, src := range nodes {
			e, found, _, err := nd.Store.Get(fmt.Sprintf("k%d", i))
			if err != nil || !found || string(e.Value) != src.ID {
				t.Fatalf("%s: k%d = %+v %v %v", nd.ID, i, e, found, err)
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
	gw := leader.Client()
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
	entries, _, err := leader.Store.List("c/")
	if err != nil || len(entries) != 64*20 {
		t.Fatalf("listed %d entries (%v), want %d", len(entries), err, 64*20)
	}
}

func TestRaftActorCrashRecovers(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	gw := leader.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := gw.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "before", Value: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if err := gw.Crash("raft", "", "test"); err != nil {
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
		if _, found, _, _ := leader.Store.Get(key); !found {
			t.Fatalf("%s missing after the crash", key)
		}
	}
	if !strings.Contains(leader.Logs.String(), "actor failed") {
		t.Fatalf("restart not logged:\n%s", leader.Logs.String())
	}
}

func TestCrashPastBudgetStopsTheNode(t *testing.T) {
	nodes := startCluster(t, 1, 1)
	nd := nodes[0]
	leaderOf(t, nodes)
	gw := nd.Client()
	for i := 0; i < 2; i++ {
		if err := gw.Crash("http", "", "test"); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			// Wait for the restarted http actor to serve again.
			deadline := time.Now().Add(10 * time.Second)
			for {
				if code, _, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/healthz", ""); err == nil && code == 200 {
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
	case err := <-nd.Done():
		if err == nil || !strings.Contains(err.Error(), "giving up") {
			t.Fatalf("Done: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("node did not give up after exhausting its restart budget")
	}
}

func TestCrashUnknownActor(t *testing.T) {
	nodes := startCluster(t, 1, 5)
	if err := nodes[0].Client().Crash("nobody", "", "x"); err == nil {
		t.Fatal("crashing an unknown actor should fail")
	}
}

func TestNoLeaderFailsInBoundedTime(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	// Cut the leader off from everyone: it cannot commit, and must say so
	// instead of hanging.
	isolate(t, nodes, leader)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := leader.Client().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "x", Value: []byte("y")})
	if !errors.Is(err, cluster.ErrNoLeader) && !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("apply on a cut-off leader: %v", err)
	}
	if err := leader.Client().ReadBarrier(ctx); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("read barrier on a cut-off leader: %v", err)
	}
}

// TestLeaderRecordsClusterID: the first leader records the id every node
// derived from the initial cluster, and it reaches every node's state.
func TestLeaderRecordsClusterID(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leaderOf(t, nodes)
	var initial []cluster.Server
	for _, n := range nodes {
		initial = append(initial, cluster.Server{ID: n.ID, Addr: n.RaftAddr})
	}
	want := cluster.DeriveClusterID(initial, "")
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.Store.ClusterID() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: cluster id %q, want %q", n.ID, n.Store.ClusterID(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestIsolatedNodeIsNotReady: a node cut off from every peer loses its
// leader and says so on /readyz; healed, it is ready again.
func TestIsolatedNodeIsNotReady(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{Chaos: true})
	leader := leaderOf(t, nodes)
	var f *node
	for _, n := range nodes {
		if n != leader {
			f = n
		}
	}
	if err := f.Client().Ready(); err != nil {
		t.Fatalf("ready before: %v", err)
	}
	isolate(t, nodes, f)
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := httpDo(http.MethodGet, "http://"+f.HTTPAddr+"/readyz", "")
		if err == nil && code == 503 && strings.Contains(body, "no leader") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("an isolated node's /readyz: %d %q %v", code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := f.Client().SetFaults(faultnet.Rules{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for f.Client().Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready after the heal: %v", f.Client().Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
