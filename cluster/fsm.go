package cluster

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

// ErrStateMachine marks a committed entry this node could not apply. The
// entry is durable in the log; what became of it here is unknown to the
// client until the node has recovered.
var ErrStateMachine = errors.New("the state machine stopped applying entries")

// ApplyFault is what the state machine reports when it stops applying: the
// first log index it could not apply and why. Permanent faults (an entry
// that cannot be decoded) come back on every replay, so restarting Raft
// cannot cure them; the others (a failed commit of the state file) may
// clear once Raft is reopened and replays the log from the file's applied
// index.
type ApplyFault struct {
	Index     uint64
	Permanent bool
	Err       error
}

// Error names the entry and the cause.
func (f *ApplyFault) Error() string {
	return fmt.Sprintf("log entry %d: %v", f.Index, f.Err)
}

// Unwrap returns the cause.
func (f *ApplyFault) Unwrap() error { return f.Err }

// fsm adapts storage.Store to raft.BatchingFSM, so raft types stay out of
// storage and a whole batch of committed entries lands in one bbolt
// transaction.
//
// hashicorp/raft treats Apply as infallible: it moves its applied index on
// whatever the FSM returns. So after the first batch that fails, the fsm
// applies nothing more (a later batch on top of a missing one would
// silently diverge from the other nodes); it answers every entry with
// ErrStateMachine and reports the fault once through onFault, whose owner
// decides between reopening Raft (which replays from the state file's
// applied index) and stopping the node.
type fsm struct {
	store   *storage.Store
	onFault func(*ApplyFault)
	// metrics (nil: none) times each batch; leaderTerm is the term this
	// node leads in, 0 when it does not lead.
	metrics    *Metrics
	leaderTerm func() uint64
	// onConfig hears the index of every committed configuration entry
	// (see Node.Configuration).
	onConfig func(index uint64)

	mu     sync.Mutex
	failed bool
}

// ApplyBatch decodes the command entries of a committed batch and applies
// them together. Configuration entries advance the applied index only.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	fail := func(fault *ApplyFault) []any {
		f.failed = true
		if f.onFault != nil {
			f.onFault(fault)
		}
		return f.refuse(out)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed {
		return f.refuse(out)
	}
	start := time.Now()
	batch := make([]storage.Applied, len(logs))
	for i, l := range logs {
		batch[i].Index = l.Index
		if l.Type == raft.LogConfiguration && f.onConfig != nil {
			f.onConfig(l.Index)
		}
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := storage.DecodeCommand(l.Data)
		if err != nil {
			// Every replica holds the same entry, and every replay
			// meets it again.
			return fail(&ApplyFault{Index: l.Index, Permanent: true, Err: err})
		}
		batch[i].Cmd = cmd
	}
	results, err := f.store.ApplyBatch(batch)
	if err != nil {
		// A command no node can apply fails on every replay too; a file
		// that could not take the batch may take it after a reopen.
		return fail(&ApplyFault{Index: logs[0].Index, Permanent: errors.Is(err, storage.ErrBadCommand), Err: err})
	}
	for i := range results {
		out[i] = results[i]
	}
	if f.metrics != nil {
		f.metrics.observeBatch(logs, start, f.leaderTerm())
	}
	return out
}

func (f *fsm) refuse(out []any) []any {
	for i := range out {
		out[i] = ErrStateMachine
	}
	return out
}

// Apply applies a single entry.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// Snapshot pins the current state; the copy happens later in Persist.
// After a fault it refuses: raft would label the snapshot with its own
// applied index, past entries the state file does not hold, and then
// compact them out of the log.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	failed := f.failed
	f.mu.Unlock()
	if failed {
		return nil, ErrStateMachine
	}
	sn, err := f.store.Snapshot()
	if err != nil {
		return nil, err
	}
	return fsmSnapshot{sn}, nil
}

// Restore replaces the state with a snapshot received from the leader.
func (f *fsm) Restore(r io.ReadCloser) error {
	defer r.Close()
	return f.store.Restore(r)
}

type fsmSnapshot struct{ sn *storage.Snapshot }

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.sn.WriteTo(sink); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() { s.sn.Release() }
