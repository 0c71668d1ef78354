package cluster

import (
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// ackTransport is the node's Raft transport with one addition: it records,
// for each peer, when the newest request that peer answered with success
// was sent. ReadIndex needs it because raft's VerifyLeader counts any
// success that arrives after the verification was registered, including
// the answer to a heartbeat sent before it: a heartbeat delayed on the
// wire past an election could then confirm a leader that had already been
// replaced (seen in TestIsolatedLeaderStopsServingReads as a read index
// handed out right after the leader was cut off).
type ackTransport struct {
	*raft.NetworkTransport

	mu    sync.Mutex
	acked map[raft.ServerID]time.Time // send time of the newest acknowledged request
}

func newAckTransport(t *raft.NetworkTransport) *ackTransport {
	return &ackTransport{NetworkTransport: t, acked: map[raft.ServerID]time.Time{}}
}

func (t *ackTransport) ack(id raft.ServerID, sent time.Time) {
	t.mu.Lock()
	if sent.After(t.acked[id]) {
		t.acked[id] = sent
	}
	t.mu.Unlock()
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

// AppendEntriesPipeline carries pipelined appends; their answers are
// recorded as raft consumes them.
func (t *ackTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	ap := &ackPipeline{AppendPipeline: p, out: make(chan raft.AppendFuture), done: make(chan struct{})}
	go ap.relay(t, id)
	return ap, nil
}

// ackPipeline passes a pipeline's answers on to raft, recording each
// success first, so a verification that raft completes on it finds the
// acknowledgement already recorded.
type ackPipeline struct {
	raft.AppendPipeline
	out       chan raft.AppendFuture
	done      chan struct{}
	closeOnce sync.Once
}

func (p *ackPipeline) relay(t *ackTransport, id raft.ServerID) {
	in := p.AppendPipeline.Consumer()
	for {
		select {
		case f := <-in:
			if f.Error() == nil && f.Response().Success {
				t.ack(id, f.Start())
			}
			select {
			case p.out <- f:
			case <-p.done:
				return
			}
		case <-p.done:
			return
		}
	}
}

// Consumer returns the answers, after they are recorded.
func (p *ackPipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close closes the pipeline and stops the relay.
func (p *ackPipeline) Close() error {
	p.closeOnce.Do(func() { close(p.done) })
	return p.AppendPipeline.Close()
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
// When VerifyLeader was satisfied by older answers, it runs again; the
// heartbeats it triggers are new.
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
		if n.quorumAckedSince(start) {
			return idx, nil
		}
		if time.Now().After(deadline) {
			return 0, ErrNotLeader
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
