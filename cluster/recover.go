package cluster

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

// Recover rewrites the Raft configuration of a stopped node to servers,
// keeping its log and its state: the way back for a cluster that lost a
// majority for good, or that was given members that will never answer.
// Raft cannot change its configuration without a quorum, so this is done
// offline, on the node's files: its log is applied to the state file, a
// snapshot of the result is taken with the new configuration, and the log
// is emptied (hashicorp/raft's RecoverCluster).
//
// Entries the node had in its log but that were never committed are
// applied too: recover the node with the longest log, and let the others
// join it afresh.
func Recover(nodeID, dataDir string, store *storage.Store, servers []Server, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if len(servers) == 0 {
		return errors.New("recover: name at least this node as a member")
	}
	self := false
	var conf raft.Configuration
	for _, s := range servers {
		self = self || s.ID == nodeID
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Addr)})
	}
	if !self {
		return fmt.Errorf("recover: the members must include this node (%s)", nodeID)
	}
	if err := removeSnapshotLeftovers(dataDir, logger); err != nil {
		return err
	}
	logs, err := openLogStore(dataDir, 0, logger)
	if err != nil {
		return fmt.Errorf("recover: open the raft log: %w", recoverAdvice(err))
	}
	defer logs.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dataDir, 2, logger)
	if err != nil {
		return fmt.Errorf("recover: open the snapshots: %w", err)
	}
	// The same checks as at start, before anything is applied: a corrupt
	// entry must not reach the state file, and RecoverCluster would skip
	// a damaged snapshot for an older one whether the log bridges the
	// gap or not.
	if err := settleSnapshots(dataDir, nodeID, snaps, logs, store, logger); err != nil {
		return fmt.Errorf("recover: %w", recoverAdvice(err))
	}
	exists, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("recover: %s holds no Raft state: nothing to recover (start the node with initial_cluster or join instead)", dataDir)
	}
	rc := raftConfig(Config{NodeID: nodeID, Timing: DefaultTiming(), Logger: logger})
	_, trans := raft.NewInmemTransport("")
	var fault *ApplyFault
	f := &fsm{store: store, onFault: func(af *ApplyFault) { fault = af }}
	if err := raft.RecoverCluster(rc, releasingFSM{f}, logs, logs, snaps, trans, conf); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if fault != nil {
		return fmt.Errorf("recover: the state machine stopped at an entry: %w", fault)
	}
	return nil
}

// releasingFSM releases each snapshot once it is persisted:
// RecoverCluster persists the snapshot it takes but never releases it,
// which would hold the state file's read transaction (and so its close)
// open for good.
type releasingFSM struct{ *fsm }

func (f releasingFSM) Snapshot() (raft.FSMSnapshot, error) {
	s, err := f.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	return releasingSnapshot{s}, nil
}

type releasingSnapshot struct{ raft.FSMSnapshot }

func (s releasingSnapshot) Persist(sink raft.SnapshotSink) error {
	defer s.FSMSnapshot.Release()
	return s.FSMSnapshot.Persist(sink)
}

// Release does nothing: Persist has released the snapshot.
func (s releasingSnapshot) Release() {}

// recoverAdvice replaces the advice of a corrupt log or snapshot, which
// assumes a cluster with a quorum to rejoin: recovery is for one without.
func recoverAdvice(err error) error {
	var lc *LogCorruptError
	var sc *SnapshotCorruptError
	switch {
	case errors.As(err, &lc):
		return fmt.Errorf("entry %d in %s is corrupt (%v): recover another survivor, whose log is intact, and let this one join it afresh (docs/operations.md)", lc.Index, lc.File, lc.Err)
	case errors.As(err, &sc):
		return fmt.Errorf("snapshot %s is corrupt (%v): recover another survivor, whose files are intact, and let this one join it afresh (docs/operations.md)", sc.Dir, sc.Err)
	}
	return err
}
