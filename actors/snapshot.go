package actors

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// Backups (GET and PUT /v1/snapshot) are the state machine's whole
// state in storage's backup format. A save is a read: any node serves it
// from its own state file, after a read barrier unless stale. A restore
// is the leader's: it keeps proposals out, builds a state file from the
// backup stamped at an index above every index handed out so far, and
// has Raft install it on every node (cluster.Node.RestoreState).

// restoreState asks the leading raft actor to restore the backup spooled
// in file, already read whole and found sound. The reply is a
// *restoreResult.
type restoreState struct {
	asked
	file *os.File
	info storage.BackupInfo
}

type restoreResult struct {
	info          storage.BackupInfo
	err           error
	leaderChanged <-chan struct{}
}

// restoreDone tells the raft actor its restore has ended.
type restoreDone struct{}

// errRestoring refuses writes and membership changes while a restore
// runs: nothing was applied, and a retry after it goes through.
var errRestoring = fmt.Errorf("%w (a snapshot restore is in progress; retry once it is done)", cluster.ErrBusy)

// restoreTimeout bounds a whole restore: reading the upload, building
// the state file and Raft installing it on a majority.
const restoreTimeout = 15 * time.Minute

// restoreIndexMargin is how far past the log's end a restore lands:
// room for an entry Raft appends of its own accord (a new term's no-op)
// between the restore being prepared and Raft taking it.
const restoreIndexMargin = 16

// SaveSnapshot writes a backup of this node's state to a temporary file
// and returns it, positioned at its start, with what it holds; the caller
// closes it (it has no name left on disk). Unless stale, it is taken
// after a read barrier, so it holds every write acknowledged before the
// call. Spooling first keeps the state pinned only as long as the copy
// takes, not as long as a slow client takes to read it.
func (c *Client) SaveSnapshot(ctx context.Context, stale bool) (*os.File, storage.BackupInfo, error) {
	if !stale {
		if err := c.ReadBarrier(ctx); err != nil {
			return nil, storage.BackupInfo{}, err
		}
	}
	f, err := c.spool()
	if err != nil {
		return nil, storage.BackupInfo{}, err
	}
	var term uint64
	if v := c.tree.view.Load(); v != nil {
		if st, err := c.Status(); err == nil {
			term = st.Term
		}
	}
	info, err := c.tree.cfg.Store.WriteBackup(f, storage.BackupHeader{Term: term, Node: c.NodeID(), Version: c.tree.cfg.Build.Version})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, storage.BackupInfo{}, fmt.Errorf("writing the snapshot: %w", err)
	}
	return f, info, nil
}

// spool opens an anonymous temporary file beside the state file.
func (c *Client) spool() (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(c.tree.cfg.Store.Path()), ".snapshot-spool-*")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

// RestoreSnapshot replaces the whole cluster's state with the backup read
// from r, through the leader; token is the client's ACL token, which the
// leader checks again when the backup reaches it through another node.
// The backup is read whole and checked first: a damaged one is refused
// (storage.ErrBadBackup) before anything changes.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, token string) (storage.BackupInfo, error) {
	return c.restoreSnapshot(ctx, r, token, false)
}

func (c *Client) restoreSnapshot(ctx context.Context, r io.Reader, token string, fromPeer bool) (storage.BackupInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	f, err := c.spool()
	if err != nil {
		return storage.BackupInfo{}, err
	}
	defer f.Close()
	info, err := storage.ReadBackup(io.TeeReader(r, f), nil)
	if err != nil {
		return info, err
	}
	// Waiting for a leader is bounded like any request; the restore
	// itself is not.
	wait, cancelWait := context.WithTimeout(ctx, c.tree.cfg.RequestTimeout)
	defer cancelWait()
	var out storage.BackupInfo
	err = c.untilLeader(wait, false, fromPeer, func() (<-chan struct{}, error) {
		target, addr, changed, err := c.route(fromPeer)
		if err != nil {
			return changed, err
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		if target == "forward" {
			out, err = c.tree.link.RestoreSnapshot(ctx, addr, token, f)
			return nil, err
		}
		q := newAsked()
		res, err := replyAs[*restoreResult](c.ask(ctx, "raft", &restoreState{asked: q, file: f, info: info}, q))
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", cluster.ErrUnknownOutcome, err)
		}
		out = res.info
		return res.leaderChanged, res.err
	})
	return out, err
}

// restoreState starts a restore on the leader, off the mailbox; from now
// until it ends, proposals and membership changes are refused.
func (a *raftActor) restoreState(ctx actor.Context, m *restoreState) {
	switch {
	case !a.node.IsLeader():
		m.answer(&restoreResult{err: cluster.ErrNotLeader, leaderChanged: a.node.LeaderChanged()})
		return
	case a.restoring:
		m.answer(&restoreResult{err: errRestoring})
		return
	}
	a.restoring = true
	self, root := ctx.Self(), ctx.ActorSystem().Root
	node, store, logger := a.node, a.tree.cfg.Store, a.tree.cfg.Logger
	drain := 2 * a.tree.cfg.RequestTimeout
	go func() {
		defer root.Send(self, restoreDone{})
		info, err := restore(node, store, &a.inflight, drain, m.file, m.info)
		if err != nil {
			logger.Warn("snapshot restore failed", "err", err)
		} else {
			logger.Info("snapshot restored", "index", info.RestoredAt, "snapshot_index", info.Index, "keys", info.Keys)
		}
		m.answer(&restoreResult{info: info, err: err})
	}()
}

// restore waits for the proposals already handed to Raft, builds the
// state file at an index past the log's end, and has Raft install it.
func restore(node *cluster.Node, store *storage.Store, inflight *atomic.Int64, drain time.Duration, f *os.File, info storage.BackupInfo) (storage.BackupInfo, error) {
	for deadline := time.Now().Add(drain); inflight.Load() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return info, fmt.Errorf("%w (writes in flight did not finish)", errRestoring)
		}
	}
	at := max(info.Index, node.LastIndex()) + restoreIndexMargin
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return info, err
	}
	dst := store.Path() + ".restore-build"
	defer os.Remove(dst)
	built, err := store.BuildRestore(f, dst, at)
	if err != nil {
		return info, err
	}
	if err := node.RestoreState(dst, at, restoreTimeout); err != nil {
		return info, err
	}
	built.RestoredAt = at
	return built, nil
}
