package client

import (
	"context"
	"time"
)

// PeerState is the failure detector's verdict on a peer.
type PeerState string

// The states a peer moves through: Alive → Suspect → Dead as the
// detector's suspicion (phi) rises, and back to Alive only after several
// answers in a row. Unknown means not heard from yet.
const (
	PeerUnknown PeerState = "unknown"
	PeerAlive   PeerState = "alive"
	PeerSuspect PeerState = "suspect"
	PeerDead    PeerState = "dead"
)

// PeerHealth is what one node's failure detector knows about one peer.
type PeerHealth struct {
	ID       string    `json:"id"`
	RaftAddr string    `json:"raft_addr"`
	HTTPAddr string    `json:"http_addr"`
	State    PeerState `json:"state"`
	// Phi is the detector's suspicion level: how unlikely it is that the
	// peer is merely slow (phi 1: 10%, phi 8: one in a hundred million).
	Phi float64 `json:"phi"`
	// LastHeard is when the peer last answered, on the answering node's
	// clock. A monitor that has just (re)started counts its start as the
	// last sign of life.
	LastHeard   time.Time `json:"last_heard"`
	RTTMeanMS   float64   `json:"rtt_mean_ms"`
	RTTStdDevMS float64   `json:"rtt_stddev_ms"`
	// Probes and Failures count the detector's pings and those that got
	// no answer in time.
	Probes   uint64 `json:"probes"`
	Failures uint64 `json:"failures"`
	// RaftHeartbeatFailures counts failed Raft heartbeats to the peer,
	// seen only while the answering node leads.
	RaftHeartbeatFailures uint64 `json:"raft_heartbeat_failures"`
	// StateSince is when State last changed, on the answering node's clock.
	StateSince time.Time `json:"state_since"`
	// Version is the release the peer said it runs at its last answer.
	Version string `json:"version,omitempty"`
	// StateCheck is the peer's newest state hash, as it last reported it.
	StateCheck *StateCheck `json:"state_check,omitempty"`
}

// StateCheck is a node's hash of its whole state at one checkpoint index
// (docs/fault-model.md, "State checks").
type StateCheck struct {
	Index uint64 `json:"index"`
	Hash  string `json:"hash"`
}

// Integrity is a node's verdict on its own state: State is unchecked,
// undecided, agrees, diverged (the node serves nothing) or corrupt.
type Integrity struct {
	State  string      `json:"state"`
	Check  *StateCheck `json:"check,omitempty"`
	Index  uint64      `json:"index,omitempty"`
	Reason string      `json:"reason,omitempty"`
}

// Health is one node's view of its peers and of the leader, from GET
// /v1/cluster/health. Like Status it is per node: Node says which one
// answered.
type Health struct {
	Node           string       `json:"node"`
	LeaderID       string       `json:"leader_id"`
	LeaderRaftAddr string       `json:"leader_raft_addr"`
	Peers          []PeerHealth `json:"peers"`
	// Integrity is the answering node's verdict on its own state.
	Integrity Integrity `json:"integrity"`
	// Alarms are the cluster's raised alarms, as the answering node's
	// state holds them.
	Alarms []Alarm `json:"alarms"`
	// Space is the answering node's disk use against its quota_bytes and
	// min_free_bytes; nil before its first measurement.
	Space *Space `json:"space,omitempty"`
}

// Space is one node's disk use, as its quota watcher last measured it.
type Space struct {
	// StateFileBytes is kv.db's size; StateUsedBytes the live data in it,
	// which quota_bytes limits.
	StateFileBytes int64 `json:"state_file_bytes"`
	StateUsedBytes int64 `json:"state_used_bytes"`
	// QuotaBytes is quota_bytes (0: none).
	QuotaBytes int64 `json:"quota_bytes"`
	// DataDirFreeBytes is the free space of the data directory's file
	// system; MinFreeBytes is min_free_bytes (0: not checked).
	DataDirFreeBytes int64 `json:"data_dir_free_bytes"`
	MinFreeBytes     int64 `json:"min_free_bytes"`
	// DataDirSizeBytes is the size of that file system.
	DataDirSizeBytes int64 `json:"data_dir_size_bytes"`
	// WALBytes and SnapshotBytes are what the Raft log and the retained
	// snapshots take.
	WALBytes      int64 `json:"wal_bytes"`
	SnapshotBytes int64 `json:"snapshot_bytes"`
	// Error is why the last measurement failed.
	Error      string    `json:"error,omitempty"`
	MeasuredAt time.Time `json:"measured_at"`
}

// Health returns the answering node's failure-detector view. To compare
// every node's view, give each endpoint its own client with
// WithMaxAttempts(1), as for Status.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	if err := c.getJSON(ctx, "/v1/cluster/health", &h); err != nil {
		return nil, err
	}
	return &h, nil
}
