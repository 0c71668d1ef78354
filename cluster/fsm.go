package cluster

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

// fsm adapts storage.Store to raft.BatchingFSM, so raft types stay out of
// storage and a whole batch of committed entries lands in one bbolt
// transaction (one fsync).
type fsm struct {
	store *storage.Store
}

// ApplyBatch decodes the command entries of a committed batch and applies
// them together. Configuration entries advance the applied index only.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	batch := make([]storage.Applied, len(logs))
	for i, l := range logs {
		batch[i].Index = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		cmd, err := storage.DecodeCommand(l.Data)
		if err != nil {
			// Every node holds the same log, so a corrupt entry is corrupt
			// everywhere: stopping is the only safe answer.
			panic(fmt.Sprintf("cluster: log entry %d: %v", l.Index, err))
		}
		batch[i].Cmd = cmd
	}
	results := f.store.ApplyBatch(batch)
	out := make([]any, len(results))
	for i := range results {
		out[i] = results[i]
	}
	return out
}

// Apply applies a single entry.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// Snapshot pins the current state; the copy happens later in Persist.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
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
