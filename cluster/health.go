package cluster

import (
	"errors"
	"time"

	"github.com/troupe-kv/troupe/cluster/peerlink"
)

// PeerState is the failure detector's verdict on a peer.
type PeerState string

// The states a peer moves through. Alive → Suspect → Dead as phi rises;
// back to Alive only after RecoverProbes answers in a row.
const (
	PeerUnknown PeerState = "unknown" // not heard from yet
	PeerAlive   PeerState = "alive"
	PeerSuspect PeerState = "suspect"
	PeerDead    PeerState = "dead"
)

// PeerStateChanged is published on the actor system's event stream when a
// monitor's verdict on its peer changes.
type PeerStateChanged struct {
	Peer     string
	From, To PeerState
	Phi      float64
	At       time.Time
}

// PeerStatus is one monitor's current view of its peer.
type PeerStatus struct {
	ID           string    `json:"id"`
	RaftAddr     string    `json:"raft_addr"`
	HTTPAddr     string    `json:"http_addr"`
	State        PeerState `json:"state"`
	Phi          float64   `json:"phi"`
	LastHeard    time.Time `json:"last_heard"`
	RTTMeanMS    float64   `json:"rtt_mean_ms"`
	RTTStdDevMS  float64   `json:"rtt_stddev_ms"`
	Probes       uint64    `json:"probes"`
	Failures     uint64    `json:"failures"`
	RaftFailures uint64    `json:"raft_heartbeat_failures"`
	Since        time.Time `json:"state_since"`
	// ClientPortError is why the peer said, at its last answer, that its
	// client port cannot serve; "" when it can.
	ClientPortError string `json:"client_port_error,omitempty"`
	// DiskError is why the peer said, at its last answer, that it cannot
	// write its Raft log; "" when it can.
	DiskError string `json:"disk_error,omitempty"`
	// Version is the release the peer said it runs at its last answer; ""
	// until it has answered.
	Version string `json:"version,omitempty"`
	// StateCheck is the peer's newest state hash, as it last reported it.
	StateCheck *StateCheck `json:"state_check,omitempty"`
}

// StateCheck is a node's hash of its state at a checkpoint index.
type StateCheck = peerlink.StateCheck

// The verdicts of Integrity.State.
const (
	// StateUnchecked: no checkpoint has been hashed here yet.
	StateUnchecked = "unchecked"
	// StateUndecided: not enough voters have reported a hash of an index
	// this node hashed too.
	StateUndecided = "undecided"
	// StateAgrees: a majority of voters hold this node's hash.
	StateAgrees = "agrees"
	// StateDiverged: a majority of voters hold another hash; the node is
	// fenced off (unready, serves nothing).
	StateDiverged = "diverged"
	// StateCorrupt: a value in the state file failed its checksum; the
	// node stops.
	StateCorrupt = "corrupt"
)

// Integrity is a node's verdict on its own state: its newest checkpoint
// hash, and whether a majority of the voters agree with it.
type Integrity struct {
	State string `json:"state"`
	// Check is this node's newest hash.
	Check *StateCheck `json:"check,omitempty"`
	// Index is the checkpoint the verdict is about.
	Index uint64 `json:"index,omitempty"`
	// Reason says what disagreed, or what is corrupt.
	Reason string `json:"reason,omitempty"`
}

// ErrStateDiverged is the error of a node fenced off because its state
// hash at a checkpoint differs from the one a majority of voters hold.
var ErrStateDiverged = errors.New("this node's state differs from the one a majority of the cluster holds; it serves nothing until repaired (docs/operations.md: a node whose state diverged)")

// Health is this node's view of its peers and of the leader, for
// GET /v1/cluster/health.
type Health struct {
	Node     string       `json:"node"`
	LeaderID string       `json:"leader_id"`
	Leader   string       `json:"leader_raft_addr"`
	Peers    []PeerStatus `json:"peers"`
	// Integrity is this node's verdict on its own state.
	Integrity Integrity `json:"integrity"`
}
