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
	withNonvoter := func(ms []cluster.Member, id string) []cluster.Member {
		return append(ms, cluster.Member{ID: id})
	}
	joinNonvoter := func(id string) peerlink.MembershipRequest {
		return peerlink.MembershipRequest{Join: &peerlink.JoinRequest{ID: id, RaftAddr: "x:1", Suffrage: peerlink.SuffrageNonvoter}}
	}
	promote := func(id string) peerlink.MembershipRequest { return peerlink.MembershipRequest{Promote: id} }
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
		{"a live non-voter does not make up a quorum", withNonvoter(voters("n1", "n2", "n3"), "n4"), map[string]cluster.PeerState{"n2": alive, "n3": dead, "n4": alive}, remove("n2"), true},
		{"removing a dead non-voter leaves the voters alone", withNonvoter(voters("n1", "n2", "n3"), "n4"), map[string]cluster.PeerState{"n2": alive, "n3": dead, "n4": dead}, remove("n4"), false},
		{"a joining voter counts as reached", voters("n1", "n2", "n3", "n4"), map[string]cluster.PeerState{"n2": alive, "n3": dead, "n4": dead}, join("n5"), false},
		{"a joining non-voter does not", voters("n1", "n2", "n3", "n4"), map[string]cluster.PeerState{"n2": alive, "n3": dead, "n4": dead}, joinNonvoter("n5"), true},
		{"promote a non-voter while one voter of three is dead", withNonvoter(voters("n1", "n2", "n3"), "n4"), map[string]cluster.PeerState{"n2": alive, "n3": dead, "n4": alive}, promote("n4"), false},
		{"promote a non-voter while two voters of three are dead", withNonvoter(voters("n1", "n2", "n3"), "n4"), map[string]cluster.PeerState{"n2": dead, "n3": dead, "n4": alive}, promote("n4"), true},
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

// A voter's join of a member that is a non-voter at the same address is
// its promotion, so it meets the catch-up check; anything else is left
// as asked.
func TestJoinOfANonvoterIsAPromotion(t *testing.T) {
	members := []cluster.Member{{ID: "n1", RaftAddr: "a:1", Voter: true}, {ID: "n4", RaftAddr: "a:4"}}
	join := func(id, addr, suffrage string) peerlink.MembershipRequest {
		return peerlink.MembershipRequest{Join: &peerlink.JoinRequest{ID: id, RaftAddr: addr, Suffrage: suffrage}, Token: "t"}
	}
	if got := asPromotion(join("n4", "a:4", ""), members); got.Promote != "n4" || got.Join != nil || got.Token != "t" {
		t.Fatalf("a voter's join of non-voter n4: %+v", got)
	}
	for _, req := range []peerlink.MembershipRequest{
		join("n4", "a:4", peerlink.SuffrageNonvoter), // already one: a no-op join
		join("n4", "a:9", ""),                        // another address: refused later
		join("n5", "a:5", ""),                        // a new node
		join("n1", "a:1", ""),                        // already a voter
	} {
		if got := asPromotion(req, members); got.Promote != "" || got.Join == nil {
			t.Fatalf("%+v became %+v", req.Join, got)
		}
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
