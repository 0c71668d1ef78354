package actors

import (
	"math"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
)

func TestKeepsQuorum(t *testing.T) {
	voters := func(ids ...string) []cluster.Member {
		var ms []cluster.Member
		for _, id := range ids {
			ms = append(ms, cluster.Member{ID: id, Voter: true})
		}
		return ms
	}
	health := func(states map[string]cluster.PeerState) *cluster.Health {
		h := &cluster.Health{Node: "n1"}
		for id, s := range states {
			h.Peers = append(h.Peers, cluster.PeerStatus{ID: id, State: s})
		}
		return h
	}
	join := func(id string) peerlink.MembershipRequest {
		return peerlink.MembershipRequest{Join: &peerlink.JoinRequest{ID: id, RaftAddr: "x:1"}}
	}
	remove := func(id string) peerlink.MembershipRequest { return peerlink.MembershipRequest{Remove: id} }
	alive, dead := cluster.PeerAlive, cluster.PeerDead
	for _, tc := range []struct {
		name    string
		members []cluster.Member
		states  map[string]cluster.PeerState
		req     peerlink.MembershipRequest
		refused bool
	}{
		{"remove the dead one of three", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": dead}, remove("n3"), false},
		{"remove a live one while another is dead", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": dead}, remove("n2"), true},
		{"remove one of three, all alive", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": alive}, remove("n3"), false},
		{"remove the leader itself, others alive", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": alive}, remove("n1"), false},
		{"add a fourth with one dead", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": dead}, join("n4"), false},
		{"add to a five-node cluster with two dead", voters("n1", "n2", "n3", "n4", "n5"), map[string]cluster.PeerState{"n2": alive, "n3": alive, "n4": dead, "n5": dead}, join("n6"), false},
		{"add while the detector hears no peer", voters("n1", "n2", "n3", "n4"), map[string]cluster.PeerState{"n2": dead, "n3": dead, "n4": dead}, join("n5"), true},
		{"re-add an existing member", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": alive, "n3": dead}, join("n3"), false},
		{"a peer not heard from yet does not count", voters("n1", "n2", "n3"), map[string]cluster.PeerState{"n2": cluster.PeerUnknown, "n3": alive}, remove("n3"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := keepsQuorum(tc.members, health(tc.states), "n1", tc.req)
			if (err != nil) != tc.refused {
				t.Fatalf("refused %v: %v", tc.refused, err)
			}
			if err != nil && !strings.Contains(err.Error(), "force=true") {
				t.Fatalf("the refusal does not say how to override: %v", err)
			}
		})
	}
}

func TestRoundPhiHasNoNegativeZero(t *testing.T) {
	if got := roundPhi(-0.001); got != 0 || math.Signbit(got) {
		t.Fatalf("roundPhi(-0.001) = %v (signbit %v)", got, math.Signbit(got))
	}
	if got := roundPhi(3.14159); got != 3.14 {
		t.Fatalf("roundPhi(3.14159) = %v", got)
	}
}
