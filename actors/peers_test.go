package actors_test

import (
	"context"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
)

func peerState(t *testing.T, nd *node, peer string) cluster.PeerStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := nd.Client().Health(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range h.Peers {
		if p.ID == peer {
			return p
		}
	}
	return cluster.PeerStatus{ID: peer, State: "absent"}
}

func waitPeerState(t *testing.T, nd *node, peer string, want cluster.PeerState, within time.Duration) cluster.PeerStatus {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		st := peerState(t, nd, peer)
		if st.State == want {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s sees %s as %s, want %s", nd.ID, peer, st.State, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDetectorMarksSilentPeerDeadAndRecovers cuts one node off (to its
// peers it is as silent as a dead one), checks both others declare it
// Dead, then heals and checks it comes back Alive.
func TestDetectorMarksSilentPeerDeadAndRecovers(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{Chaos: true})
	inproc.Leader(t, nodes)
	victim := nodes[2]
	for _, nd := range nodes[:2] {
		waitPeerState(t, nd, victim.ID, cluster.PeerAlive, 10*time.Second)
	}
	isolate(t, nodes, victim)
	for _, nd := range nodes[:2] {
		st := waitPeerState(t, nd, victim.ID, cluster.PeerDead, 10*time.Second)
		if st.Phi < cluster.DefaultDetector().DeadPhi {
			t.Fatalf("dead with phi %.2f", st.Phi)
		}
	}
	// The isolated node sees everyone else as dead too.
	for _, nd := range nodes[:2] {
		waitPeerState(t, victim, nd.ID, cluster.PeerDead, 10*time.Second)
	}
	if err := victim.Client().SetFaults(faultnet.Rules{}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes[:2] {
		waitPeerState(t, nd, victim.ID, cluster.PeerAlive, 10*time.Second)
	}
}

// TestMonitorCrashIsContained panics one peer monitor: it restarts (its
// counters start over) while the monitor of the other peer is untouched.
func TestMonitorCrashIsContained(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{Chaos: true})
	inproc.Leader(t, nodes)
	watcher := nodes[0]
	waitPeerState(t, watcher, "n2", cluster.PeerAlive, 10*time.Second)
	waitPeerState(t, watcher, "n3", cluster.PeerAlive, 10*time.Second)
	time.Sleep(time.Second) // let both monitors count some probes
	before2, before3 := peerState(t, watcher, "n2"), peerState(t, watcher, "n3")
	if err := watcher.Client().Crash("peer/n2", "", "test"); err != nil {
		t.Fatal(err)
	}
	// n2's monitor starts over: its probe count falls back below what it
	// had; n3's keeps growing.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := peerState(t, watcher, "n2")
		if st.Probes < before2.Probes && st.State == cluster.PeerAlive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 monitor did not restart: %+v (before %+v)", st, before2)
		}
		time.Sleep(20 * time.Millisecond)
	}
	after3 := peerState(t, watcher, "n3")
	if after3.Probes <= before3.Probes || after3.State != cluster.PeerAlive || !after3.Since.Equal(before3.Since) {
		t.Fatalf("n3 monitor was disturbed: before %+v after %+v", before3, after3)
	}
	if err := watcher.Client().Crash("peer/nobody", "", "x"); err == nil {
		t.Fatal("crashing a monitor of a non-member should fail")
	}
}
