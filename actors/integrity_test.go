package actors

import (
	"testing"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

func TestJudgeState(t *testing.T) {
	check := func(idx, h uint64) storage.StateCheck {
		return storage.StateCheck{StateHash: storage.StateHash{Index: idx, Hash: h}}
	}
	report := func(idx, h uint64) *cluster.StateCheck {
		return &cluster.StateCheck{Index: idx, Hash: hashString(h)}
	}
	three := map[string]bool{"n1": true, "n2": true, "n3": true}
	for _, tc := range []struct {
		name   string
		own    []storage.StateCheck
		peers  map[string]*cluster.StateCheck
		voters map[string]bool
		want   string
		index  uint64
	}{
		{"no checkpoint yet", nil, nil, three, cluster.StateUnchecked, 0},
		{"peers not there yet", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(5, 9)}, three, cluster.StateUndecided, 0},
		{"one peer agrees", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(10, 1), "n3": report(10, 2)}, three, cluster.StateAgrees, 10},
		{"both peers hold another hash", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(10, 2), "n3": report(10, 2)}, three, cluster.StateDiverged, 10},
		{"three different hashes decide nothing", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(10, 2), "n3": report(10, 3)}, three, cluster.StateUndecided, 0},
		{"an older checkpoint of this node matches the peers' newest", []storage.StateCheck{check(10, 1), check(20, 7)}, map[string]*cluster.StateCheck{"n2": report(10, 2), "n3": report(10, 2)}, three, cluster.StateDiverged, 10},
		{"a failed hash is no verdict", []storage.StateCheck{check(10, 1), {StateHash: storage.StateHash{Index: 20}, Err: storage.ErrCorrupt}}, map[string]*cluster.StateCheck{"n2": report(10, 1)}, three, cluster.StateAgrees, 10},
		{"a non-voter is judged by the voters", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(10, 2), "n3": report(10, 2)}, map[string]bool{"n2": true, "n3": true}, cluster.StateDiverged, 10},
		{"a non-voter's report does not count", []storage.StateCheck{check(10, 1)}, map[string]*cluster.StateCheck{"n2": report(10, 2), "n4": report(10, 2)}, three, cluster.StateUndecided, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := judgeState("n1", tc.own, tc.peers, tc.voters)
			if got.State != tc.want || got.Index != tc.index {
				t.Fatalf("judgeState = %+v, want %s at %d", got, tc.want, tc.index)
			}
			if tc.want == cluster.StateDiverged && got.Reason == "" {
				t.Fatal("a divergence without a reason")
			}
		})
	}
}

// A corruption found while the node is already fenced (diverged) still
// stops it: the first corruption is what counts, not the fencing.
func TestCorruptionAfterDivergence(t *testing.T) {
	var s stateIntegrity
	if !s.set(cluster.Integrity{State: cluster.StateDiverged, Reason: "r"}) {
		t.Fatal("fencing a diverged node changed nothing")
	}
	if !s.markCorrupt(storage.ErrCorrupt) {
		t.Fatal("a corruption on a diverged node was not taken as the first")
	}
	if s.markCorrupt(storage.ErrCorrupt) {
		t.Fatal("a second corruption was taken as the first")
	}
	if s.set(cluster.Integrity{State: cluster.StateAgrees}) || s.err() == nil || s.get().State != cluster.StateCorrupt {
		t.Fatalf("a later verdict lifted the corruption's fence: %+v", s.get())
	}
}
