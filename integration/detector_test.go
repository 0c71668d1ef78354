package integration

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/internal/testcluster"
)

type peerView struct {
	ID    string  `json:"id"`
	State string  `json:"state"`
	Phi   float64 `json:"phi"`
}

func healthOf(t *testing.T, n *testcluster.Node) map[string]peerView {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/cluster/health", nil)
	if err != nil || code != 200 {
		t.Fatalf("health of %s: %d %v", n.ID, code, err)
	}
	var h struct {
		Peers []peerView `json:"peers"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatal(err)
	}
	out := map[string]peerView{}
	for _, p := range h.Peers {
		out[p.ID] = p
	}
	return out
}

func waitView(t *testing.T, observer *testcluster.Node, peer, state string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if v := healthOf(t, observer)[peer]; v.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never saw %s as %s (sees %+v)", observer.ID, peer, state, healthOf(t, observer)[peer])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDetectorKillAndResume: a peer killed with SIGKILL is declared Dead by
// both survivors, and Alive again once it is restarted.
func TestDetectorKillAndResume(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	c.WaitLeader(20 * time.Second)
	victim, watchers := c.Nodes[2], c.Nodes[:2]
	for _, w := range watchers {
		waitView(t, w, victim.ID, "alive")
	}
	victim.Kill()
	for _, w := range watchers {
		waitView(t, w, victim.ID, "dead")
		// The change is counted in the node's metrics.
		code, body, _, err := w.Do(http.MethodGet, "/metrics", nil)
		want := `troupe_peer_state_changes_total{peer="` + victim.ID + `",to="dead"} 1`
		if err != nil || code != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("metrics of %s lack %q", w.ID, want)
		}
		if !strings.Contains(w.Log(), "peer state changed") {
			t.Fatalf("%s did not log the state change", w.ID)
		}
	}
	victim.Start()
	for _, w := range watchers {
		waitView(t, w, victim.ID, "alive")
	}
}

// TestDetectorToleratesJitterAndLoss: with 5% loss and 50ms ± 50ms delay on
// every link, no live peer is ever declared Dead.
func TestDetectorToleratesJitterAndLoss(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Chaos: true})
	c.WaitLeader(20 * time.Second)
	for _, n := range c.Nodes {
		for _, p := range c.Nodes {
			if p != n {
				waitView(t, n, p.ID, "alive")
			}
		}
	}
	installPlan(t, c, faultplan.Must(faultplan.Degrade(nodeIDs(c), nil, lossy(0.05), 5)))
	end := time.Now().Add(15 * time.Second)
	samples := 0
	for time.Now().Before(end) {
		for _, n := range c.Nodes {
			for id, v := range healthOf(t, n) {
				if v.State == "dead" {
					t.Fatalf("%s declared live peer %s dead under jitter and loss (phi %.1f)", n.ID, id, v.Phi)
				}
			}
		}
		samples++
		time.Sleep(100 * time.Millisecond)
	}
	clearFaults(t, c)
	t.Logf("%d health samples, no false Dead", samples)
}
