package cluster

import (
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ackTransport is the node's Raft transport with one addition: it records,
// for each peer, when the newest heartbeat (or other unpipelined append,
// or snapshot) that peer answered with success was sent. Pipelined appends
// are left out: relaying their answers would delay every commit, and
// VerifyLeader sends every follower a heartbeat anyway. ReadIndex needs it because raft's VerifyLeader counts any
// success that arrives after the verification was registered, including
// the answer to a heartbeat sent before it: a heartbeat delayed on the
// wire past an election could then confirm a leader that had already been
// replaced (seen in TestIsolatedLeaderStopsServingReads as a read index
// handed out right after the leader was cut off).
type ackTransport struct {
	*raft.NetworkTransport

	mu      sync.Mutex
	acked   map[raft.ServerID]time.Time // send time of the newest acknowledged request
	changed chan struct{}               // closed and replaced at every new acknowledgement
}

func newAckTransport(t *raft.NetworkTransport) *ackTransport {
	return &ackTransport{NetworkTransport: t, acked: map[raft.ServerID]time.Time{}, changed: make(chan struct{})}
}

func (t *ackTransport) ack(id raft.ServerID, sent time.Time) {
	t.mu.Lock()
	if sent.After(t.acked[id]) {
		t.acked[id] = sent
		close(t.changed)
		t.changed = make(chan struct{})
	}
	t.mu.Unlock()
}

// next returns a channel closed at the next acknowledgement.
func (t *ackTransport) next() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// ackedSince reports whether peer id acknowledged a request sent at or
// after start.
func (t *ackTransport) ackedSince(id raft.ServerID, start time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.acked[id].Before(start)
}

// AppendEntries carries heartbeats and unpipelined appends.
func (t *ackTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	sent := time.Now()
	err := t.NetworkTransport.AppendEntries(id, target, args, resp)
	if err == nil && resp.Success {
		t.ack(id, sent)
	}
	return err
}

// InstallSnapshot carries a snapshot to a follower far behind.
func (t *ackTransport) InstallSnapshot(id raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	sent := time.Now()
	err := t.NetworkTransport.InstallSnapshot(id, target, args, resp, data)
	if err == nil && resp.Success {
		t.ack(id, sent)
	}
	return err
}

// ReadIndex returns an index that every write acknowledged before the call
// is at or below, after confirming with a quorum that this node is still the
// leader. A reader that waits until the state machine has applied this index
// reads linearizably; a deposed leader gets ErrNotLeader instead of serving
// stale data.
//
// The confirmation counts only answers to requests sent after the call
// began (see ackTransport): a quorum that still followed this leader after
// that moment means no other leader can have committed anything before it.
// VerifyLeader makes every follower's heartbeat go out at once (after the
// one in flight, if any), so when older answers satisfied it, the new
// ones follow within a round trip; they are waited for, up to a heartbeat
// timeout, before VerifyLeader runs again.
func (n *Node) ReadIndex(timeout time.Duration) (uint64, error) {
	if !n.IsLeader() {
		return 0, ErrNotLeader
	}
	term := n.raft.CurrentTerm()
	if err := n.ensureReady(term, timeout); err != nil {
		return 0, err
	}
	start := time.Now()
	idx := n.raft.CommitIndex()
	deadline := start.Add(timeout)
	for {
		if err := n.raft.VerifyLeader().Error(); err != nil {
			return 0, ErrNotLeader
		}
		if n.raft.CurrentTerm() != term {
			// Leadership was lost and regained: idx may predate writes made
			// by another leader in between.
			return 0, ErrNotLeader
		}
		until := time.Now().Add(n.cfg.Timing.HeartbeatTimeout)
		if until.After(deadline) {
			until = deadline
		}
		if n.awaitQuorumAcks(start, until) {
			return idx, nil
		}
		if time.Now().After(deadline) {
			return 0, ErrNotLeader
		}
	}
}

// awaitQuorumAcks waits until a quorum acknowledged requests sent at or
// after start (true), or until (false).
func (n *Node) awaitQuorumAcks(start, until time.Time) bool {
	timer := time.NewTimer(time.Until(until))
	defer timer.Stop()
	for {
		next := n.acks.next()
		if n.quorumAckedSince(start) {
			return true
		}
		select {
		case <-next:
		case <-timer.C:
			return false
		}
	}
}

// quorumAckedSince reports whether this node and enough voters to make a
// quorum have acknowledged requests sent at or after start.
func (n *Node) quorumAckedSince(start time.Time) bool {
	var voters, acked int
	for _, s := range n.raft.GetConfiguration().Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.NodeID || n.acks.ackedSince(s.ID, start) {
			acked++
		}
	}
	return acked > voters/2
}
