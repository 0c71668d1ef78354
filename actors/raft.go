package actors

import (
	"context"
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// raftActor owns this node's Raft instance. Started opens it from disk;
// Restarting and Stopping close it, so a crash of this actor is a full
// crash-recovery of Raft inside the process: the log, snapshots and state
// file on disk are all that survive.
//
// The mailbox never waits for consensus. Each proposal runs in its own
// goroutine that replies to the requester when Raft has applied it, so
// many proposals are in flight at once and raft batches them into one disk
// write; read-index requests that arrive together share one leadership
// confirmation.
type raftActor struct {
	tree *Tree
	node *cluster.Node
	stop chan struct{}

	readWaiters []*actor.PID
	round       *readRound
}

func newRaftActor(t *Tree) *raftActor { return &raftActor{tree: t} }

func (a *raftActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.open()
	case *actor.Restarting:
		a.close(ctx)
	case *actor.Stopping:
		a.close(ctx)
	case *Propose:
		a.propose(ctx, m)
	case *ReadIndex:
		a.readWaiters = append(a.readWaiters, ctx.Sender())
		if a.round == nil {
			a.startReadRound(ctx)
		}
	case *readRoundDone:
		for _, w := range m.waiters {
			ctx.Send(w, &ReadIndexResult{Index: m.index, Err: m.err})
		}
		if m.round == a.round {
			a.round = nil
			if len(a.readWaiters) > 0 {
				a.startReadRound(ctx)
			}
		}
	case *Join:
		a.async(ctx, func(node *cluster.Node) any {
			err := node.AddVoter(m.ID, m.RaftAddr, a.tree.cfg.RequestTimeout)
			if err == nil && m.HTTPAddr != "" {
				err = a.applyAsync(&storage.Command{Op: storage.OpRegisterNode, Key: m.ID, Value: []byte(m.HTTPAddr)})
			}
			return &Done{Err: err}
		})
	case *Remove:
		a.async(ctx, func(node *cluster.Node) any {
			err := node.RemoveServer(m.ID, a.tree.cfg.RequestTimeout)
			if err == nil {
				err = a.applyAsync(&storage.Command{Op: storage.OpDeregisterNode, Key: m.ID})
			}
			return &Done{Err: err}
		})
	case *TakeSnapshot:
		a.async(ctx, func(node *cluster.Node) any {
			idx, err := node.Snapshot()
			return &SnapshotTaken{Index: idx, Err: err}
		})
	case *Crash:
		panic(fmt.Sprintf("injected crash: %s", m.Reason))
	}
}

func (a *raftActor) open() {
	node, err := cluster.Open(a.tree.cfg.Raft, a.tree.cfg.Store)
	if err != nil {
		// Failing Started is a crash like any other: the supervisor retries
		// within its budget, then the node exits.
		panic(fmt.Sprintf("open raft: %v", err))
	}
	a.node = node
	a.stop = make(chan struct{})
	peers, root := a.tree.pid("peers"), a.tree.system.Root
	node.OnPeerHeartbeat(func(ev cluster.PeerHeartbeat) { root.Send(peers, ev) })
	a.tree.gateway.setNode(node)
	go a.tree.gateway.maintain(node, a.stop)
}

func (a *raftActor) close(ctx actor.Context) {
	for _, w := range a.readWaiters {
		ctx.Send(w, &ReadIndexResult{Err: cluster.ErrNotLeader})
	}
	a.readWaiters = nil
	if a.node == nil {
		return
	}
	a.tree.gateway.setNode(nil)
	close(a.stop)
	if err := a.node.Close(); err != nil {
		a.tree.cfg.Logger.Warn("raft shutdown", "err", err)
	}
	a.node = nil
}

// propose hands one command to Raft without blocking the mailbox.
func (a *raftActor) propose(ctx actor.Context, m *Propose) {
	sender := ctx.Sender()
	gw := a.tree.gateway
	if gw.inflight.Add(1) > int64(a.tree.cfg.MaxInFlight) {
		gw.inflight.Add(-1)
		ctx.Respond(&ProposeResult{Err: cluster.ErrBusy})
		return
	}
	node, root := a.node, ctx.ActorSystem().Root
	timeout := a.tree.cfg.RequestTimeout
	go func() {
		defer gw.inflight.Add(-1)
		reply := &ProposeResult{Err: cluster.ErrUnknownOutcome}
		defer func() {
			if r := recover(); r != nil {
				reply = &ProposeResult{Err: fmt.Errorf("%w: %v", cluster.ErrUnknownOutcome, r)}
			}
			root.Send(sender, reply)
		}()
		res, err := node.Apply(m.Data, timeout)
		reply = &ProposeResult{Result: res, Err: err}
	}()
}

func (a *raftActor) startReadRound(ctx actor.Context) {
	round := &readRound{}
	a.round = round
	waiters := a.readWaiters
	a.readWaiters = nil
	node, self, root := a.node, ctx.Self(), ctx.ActorSystem().Root
	timeout := a.tree.cfg.RequestTimeout
	go func() {
		idx, err := node.ReadIndex(timeout)
		root.Send(self, &readRoundDone{round: round, index: idx, err: err, waiters: waiters})
	}()
}

// async runs a blocking Raft call off the mailbox and replies with its
// result.
func (a *raftActor) async(ctx actor.Context, fn func(*cluster.Node) any) {
	sender, node, root := ctx.Sender(), a.node, ctx.ActorSystem().Root
	go func() {
		root.Send(sender, fn(node))
	}()
}

// applyAsync proposes a command from a goroutine of this actor, going
// through the gateway like any client so it is forwarded if leadership
// moved in between.
func (a *raftActor) applyAsync(cmd *storage.Command) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.tree.cfg.RequestTimeout)
	defer cancel()
	_, err := a.tree.gateway.Apply(ctx, cmd)
	return err
}
