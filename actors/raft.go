package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// raftActor owns this node's Raft instance: it proposes on the leader,
// within the in-flight limit, and refuses (not leader) otherwise; it runs
// the read-index rounds; it publishes the view of who leads that Client
// routes by (see leaderView); it commits the new leader's first entry,
// keeps this node's HTTP address registered and teaches the fault layer
// who is where (a maintenance tick and every leader change); and it starts
// the join child when the node was told to join a cluster.
//
// Started opens Raft from disk; Restarting and Stopping close it, so a
// crash of this actor is a full crash-recovery of Raft inside the process:
// the log, snapshots and state file on disk are all that survive.
//
// The mailbox never waits for consensus. Each proposal runs in a goroutine
// of its own that calls raft.Apply and answers the requester: hashicorp/raft
// groups the Applies waiting on its channel into one disk write, so many
// callers blocked at once is what makes group commit work, and a goroutine
// is the cheapest way to have them.
type raftActor struct {
	tree *Tree
	node *cluster.Node
	// token tells this incarnation's callbacks and goroutines from those
	// of one closed before a restart.
	token *int

	// inflight counts proposals handed to Raft and not yet answered: the
	// admission limit. Only the mailbox adds to it; the goroutine of each
	// proposal takes its own back off when it answers (a message back per
	// write would double the mailbox traffic of the write path).
	inflight atomic.Int64

	readWaiters []asked
	round       *readRound

	registering   bool
	namingCluster bool
	// checkpointing is set while a checkpoint is proposed; lastCheckpoint
	// is when the last one ended (zero until this node first led).
	checkpointing  bool
	lastCheckpoint time.Time

	// tombstones is the leader's clock for reaping tombstones.
	tombstones  *tombstoneClock
	handingOver bool
	cancelTick  func()

	// restoring is set while a snapshot restore runs: proposals and
	// membership changes are refused meanwhile (see restoreState).
	restoring bool
}

// Messages the raft actor sends itself.
type (
	leaderChanged    struct{}
	maintainTick     struct{}
	registerDone     struct{ err error }
	clusterNamed     struct{ err error }
	checkpointDone   struct{ err error }
	tombstonesReaped struct {
		upTo     uint64
		complete bool
		err      error
	}
	fencedHandedOver struct{}
	// raftFault reports a failure Raft cannot get over by itself (see
	// cluster.Config.OnFault).
	raftFault struct {
		token *int
		err   error
	}
	readRound     struct{}
	readRoundDone struct {
		round   *readRound
		index   uint64
		err     error
		waiters []asked
	}
)

// maintainEvery is the maintenance tick: how soon a node that lost its
// registration, or whose Raft stopped on its own, notices.
const maintainEvery = time.Second

// errRaftDown is returned while the raft actor is restarting.
var errRaftDown = fmt.Errorf("%w (raft is restarting on this node)", cluster.ErrNoLeader)

func (a *raftActor) Receive(ctx actor.Context) {
	switch ctx.Message().(type) {
	case *actor.Started:
		a.open(ctx)
		return
	case *actor.Restarting:
		a.close(ctx)
		return
	case *actor.Stopping:
		a.closeWithin(ctx, RaftCloseTimeout)
		return
	case actor.SystemMessage, actor.AutoReceiveMessage:
		return
	}
	if a.node == nil {
		// Closed and not reopened (the actor is stopping): nothing here can
		// be served.
		if q, ok := ctx.Message().(answerer); ok {
			q.answer(&done{err: errRaftDown})
		}
		return
	}
	switch m := ctx.Message().(type) {
	case *propose:
		a.propose(ctx, m)
	case *readIndex:
		a.readIndex(ctx, m)
	case *readRoundDone:
		for _, w := range m.waiters {
			w.answer(&readIndexResult{index: m.index, err: m.err})
		}
		if m.round == a.round {
			a.round = nil
			if len(a.readWaiters) > 0 {
				a.startReadRound(ctx)
			}
		}
	case *membership:
		a.membership(ctx, m)
	case *restoreState:
		a.restoreState(ctx, m)
	case restoreDone:
		a.restoring = false
	case *getStatus:
		m.answer(&statusReply{status: a.node.Status()})
	case *getMembers:
		c, err := a.node.Configuration()
		m.answer(&membersReply{members: c.Members, index: c.Index, err: err})
	case *getReady:
		m.answer(&done{err: a.ready()})
	case *takeSnapshot:
		a.async(m.asked, func(n *cluster.Node) any {
			idx, err := n.Snapshot()
			return &snapshotTaken{index: idx, err: err}
		})
	case *transferLeadership:
		a.handOverForShutdown(m)
	case leaderChanged, maintainTick:
		a.maintain(ctx)
	case *clusterNamed:
		a.namingCluster = false
		if m.err != nil {
			a.tree.cfg.Logger.Warn("recording the cluster id failed; retrying", "err", m.err)
		}
	case *tombstonesReaped:
		a.tombstones.done(m.upTo, m.err == nil && m.complete)
		if m.err != nil {
			a.tree.cfg.Logger.Warn("reaping tombstones failed; retrying", "up_to", m.upTo, "err", m.err)
		}
	case *checkpointDone:
		a.checkpointing = false
		a.lastCheckpoint = time.Now()
		if m.err != nil {
			a.tree.cfg.Logger.Warn("proposing a state checkpoint failed", "err", m.err)
		}
	case *fencedHandedOver:
		a.handingOver = false
	case *registerDone:
		a.registering = false
		if m.err != nil {
			a.tree.cfg.Logger.Warn("registering this node's HTTP address failed; retrying", "err", m.err)
		}
	case *raftFault:
		a.fault(ctx, m)
	case *crash:
		a.crash(ctx, m)
	}
}

func (a *raftActor) open(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	token := new(int)
	cfg := a.tree.cfg.Raft
	cfg.OnLeaderChange = func() { root.Send(self, leaderChanged{}) }
	cfg.OnPeerHeartbeat = func(ev cluster.PeerHeartbeat) { a.tree.send("peers", ev) }
	cfg.OnFault = func(err error) { root.Send(self, &raftFault{token: token, err: err}) }
	node, err := cluster.Open(cfg, a.tree.cfg.Store)
	if err != nil {
		if damagedData(err) {
			// Every retry would meet the same bytes: stop now, with
			// the error's own line (file, entry, what to do).
			ctx.Send(ctx.Parent(), &giveUp{err: err})
			return
		}
		// Failing Started is a crash like any other: the supervisor retries
		// within its budget, then the node exits.
		panic(fmt.Sprintf("open raft: %v", err))
	}
	a.node, a.token = node, token
	a.tree.publish(node)
	a.cancelTick = sendEvery(ctx.ActorSystem().Root, maintainEvery, maintainEvery, self, maintainTick{})
	if len(a.tree.cfg.Join) > 0 && !node.HasState() {
		props := actor.PropsFromProducer(func() actor.Actor { return &joinActor{tree: a.tree} })
		if _, err := ctx.SpawnNamed(props, "join"); err != nil {
			panic(fmt.Sprintf("spawn join: %v", err))
		}
	}
	ctx.Send(self, maintainTick{})
}

// raftCloseStall, set only by tests, runs before Raft closes as the node
// stops: it stands in for a Raft shutdown that hangs, such as an apply
// stuck on a disk that no longer answers.
var raftCloseStall func()

// closeWithin closes Raft as the node stops, waiting at most timeout:
// Raft's shutdown waits for its goroutines, and one writing a large
// snapshot does not stop midway. Past the timeout the close goes on in
// the background and the tree says so (see Tree.Stop), so the state file
// stays open under it.
func (a *raftActor) closeWithin(ctx actor.Context, timeout time.Duration) {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		if raftCloseStall != nil {
			raftCloseStall()
		}
		a.close(ctx)
	}()
	select {
	case <-closed:
	case <-time.After(timeout):
		a.tree.raftLeftOpen.Store(true)
		a.tree.cfg.Logger.Error("raft did not shut down in time; stopping without it", "timeout", timeout)
	}
}

func (a *raftActor) close(ctx actor.Context) {
	if a.cancelTick != nil {
		a.cancelTick()
	}
	for _, w := range a.readWaiters {
		w.answer(&readIndexResult{err: errRaftDown})
	}
	a.readWaiters = nil
	if a.node == nil {
		return
	}
	a.tree.publish(nil)
	// Proposals in flight fail with an unknown outcome as Raft shuts down.
	if err := a.node.Close(); err != nil {
		a.tree.cfg.Logger.Warn("raft shutdown", "err", err)
	}
	a.node = nil
}

func (a *raftActor) propose(ctx actor.Context, m *propose) {
	if !a.node.IsLeader() {
		// Client routed it here by a view that has changed since: it
		// routes it again.
		m.answer(&proposeResult{err: cluster.ErrNotLeader, leaderChanged: a.node.LeaderChanged()})
		return
	}
	if a.restoring {
		m.answer(&proposeResult{err: errRestoring})
		return
	}
	if a.inflight.Load() >= int64(a.tree.cfg.MaxInFlight) {
		m.answer(&proposeResult{err: cluster.ErrBusy})
		return
	}
	a.inflight.Add(1)
	node, store := a.node, a.tree.cfg.Store
	enqueue := max(time.Until(m.deadline), time.Millisecond)
	go func() {
		reply := &proposeResult{err: cluster.ErrUnknownOutcome}
		defer func() {
			if r := recover(); r != nil {
				reply = &proposeResult{err: fmt.Errorf("%w: %v", cluster.ErrUnknownOutcome, r)}
			}
			m.answer(reply)
			a.inflight.Add(-1)
		}()
		// Lock-delays are the leader's to check, as in Consul's
		// endpoint: an acquisition during one is refused here, without
		// a log entry (see storage.CheckLockDelays).
		data, refused, err := store.CheckLockDelays(m.data)
		switch {
		case err != nil:
			reply = &proposeResult{err: err}
			return
		case refused != nil:
			reply = &proposeResult{res: storage.Result{Txn: refused}}
			return
		}
		res, err := node.Apply(data, enqueue)
		reply = &proposeResult{res: res, err: err}
	}()
}

// readIndex serves a linearizable read's first step. On the leader,
// requests arriving together share one leadership confirmation: a request
// joins only a round that starts after it arrived, which is what keeps the
// read linearizable.
func (a *raftActor) readIndex(ctx actor.Context, m *readIndex) {
	if !a.node.IsLeader() {
		// Client routed it here by a view that has changed since: it
		// routes it again.
		m.answer(&readIndexResult{err: cluster.ErrNotLeader, leaderChanged: a.node.LeaderChanged()})
		return
	}
	a.readWaiters = append(a.readWaiters, m.asked)
	if a.round == nil {
		a.startReadRound(ctx)
	}
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

// membership adds, removes or promotes a member on the leader,
// dropping a removed member's HTTP address with it.
func (a *raftActor) membership(ctx actor.Context, m *membership) {
	if !a.node.IsLeader() {
		// Client routed it here by a view that has changed since: it
		// routes it again.
		m.answer(&done{err: cluster.ErrNotLeader, leaderChanged: a.node.LeaderChanged()})
		return
	}
	if a.restoring {
		m.answer(&done{err: errRestoring})
		return
	}
	timeout := a.tree.cfg.RequestTimeout
	link, client, self := a.tree.link, a.tree.client, a.tree.cfg.Raft.NodeID
	a.async(m.asked, func(n *cluster.Node) any {
		members, err := n.Members()
		if err != nil {
			return &done{err: err}
		}
		req := asPromotion(m.req, members)
		if t := req.TransferLeader; t != nil {
			return &done{err: transferLeader(n, link, client, members, t.To, timeout)}
		}
		if id := req.Promote; id != "" {
			if err := promotable(n, link, members, id, req.Force, timeout); err != nil {
				return &done{err: err}
			}
		}
		if !req.Force {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			h, err := client.Health(ctx)
			cancel()
			if err != nil {
				return &done{err: err}
			}
			if err := keepsQuorum(members, h, self, req); err != nil {
				return &done{err: err}
			}
		}
		switch {
		case req.Promote != "":
			return &done{err: n.Promote(req.Promote, timeout)}
		case req.Join != nil:
			j := req.Join
			if err := reachable(n, link, j, timeout); err != nil {
				return &done{err: err}
			}
			// The new node registers its own client address once it is
			// a member: only it may.
			if j.Nonvoter() {
				return &done{err: n.AddNonvoter(j.ID, j.RaftAddr, timeout)}
			}
			return &done{err: n.AddVoter(j.ID, j.RaftAddr, timeout)}
		}
		err = n.RemoveServer(req.Remove, timeout)
		if err == nil {
			cmd := &storage.Command{Op: storage.OpDeregisterNode, Key: req.Remove}
			_, err = n.Apply(cmd.Encode(), timeout)
		}
		return &done{err: err}
	})
}

// transferLeader hands leadership to voter to, or with to empty to the
// live voter that answers a ping first (as a SIGTERMed leader does).
func transferLeader(n *cluster.Node, link *peerlink.Client, client *Client, members []cluster.Member, to string, timeout time.Duration) error {
	if to != "" {
		i := slices.IndexFunc(members, func(m cluster.Member) bool { return m.ID == to })
		switch {
		case i < 0:
			return fmt.Errorf("%q is not a member", to)
		case !members[i].Voter:
			return fmt.Errorf("%q is a non-voter and cannot lead: promote it first", to)
		case to == n.ID():
			return fmt.Errorf("%q leads already", to)
		}
		_, err := n.HandOver([]string{to})
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 250*time.Millisecond))
	h, err := client.Health(ctx)
	cancel()
	if err != nil {
		return err
	}
	prefer := answeringFirst(link, h, handOverOrder(h), handOverProbe)
	if len(prefer) == 0 {
		return errors.New("no other voter is alive to take over")
	}
	_, err = n.HandOver(prefer)
	return err
}

// asPromotion turns a voter's join of a member that is a non-voter at
// the same address into its promotion, so that the join cannot make a
// voter of a node that has not caught up.
func asPromotion(req peerlink.MembershipRequest, members []cluster.Member) peerlink.MembershipRequest {
	j := req.Join
	if j == nil || j.Nonvoter() {
		return req
	}
	for _, m := range members {
		if m.ID == j.ID && !m.Voter && m.RaftAddr == j.RaftAddr {
			return peerlink.MembershipRequest{Promote: j.ID, Token: req.Token, Force: req.Force}
		}
	}
	return req
}

// PromoteMaxLag is how many committed entries a non-voter may still lack
// to be promoted: Consul's autopilot calls a server healthy within 250
// entries of the leader (max_trailing_logs), and etcd promotes a learner
// only once it is as good as caught up. A voter that is far behind would
// count towards the quorum while it cannot yet help one form: with one
// more node down, the cluster would stall until it caught up.
const PromoteMaxLag = 250

// promotable checks that id is a non-voter (a voter is left alone) and,
// unless forced, that it has caught up: asked at its Raft address, it
// has applied all but at most PromoteMaxLag of the entries this leader
// has committed.
func promotable(n *cluster.Node, link *peerlink.Client, members []cluster.Member, id string, force bool, timeout time.Duration) error {
	var target *cluster.Member
	for i := range members {
		if members[i].ID == id {
			target = &members[i]
		}
	}
	switch {
	case target == nil:
		return &peerlink.RemoteError{Status: http.StatusNotFound, Message: fmt.Sprintf("no member with id %q", id)}
	case target.Voter || force:
		return nil
	}
	commit := n.Status().CommitIndex
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 3*time.Second))
	defer cancel()
	got, err := link.Identify(ctx, target.RaftAddr, id)
	switch {
	case err != nil:
		return &peerlink.RemoteError{Status: http.StatusConflict, Message: fmt.Sprintf("cannot reach non-voter %q at %s to see how far it has caught up (%v): not promoted", id, target.RaftAddr, err)}
	case got.AppliedIndex+PromoteMaxLag < commit:
		return &peerlink.RemoteError{Status: http.StatusConflict, Message: fmt.Sprintf(
			"non-voter %q has not caught up: it has applied index %d, the leader has committed %d (%d entries behind; promotion needs it within %d): not promoted; try again once it has caught up (kvctl members promote --wait)",
			id, got.AppliedIndex, commit, commit-got.AppliedIndex, PromoteMaxLag)}
	}
	return nil
}

// keepsQuorum refuses a change after which the voters this leader can
// reach (itself, the peers its failure detector calls alive, and a node
// being added or promoted, which is checked to answer) would be fewer
// than a quorum of the new configuration: the cluster would stop
// committing, perhaps for good (etcd's strict reconfiguration check).
// Adding or removing a non-voter changes no quorum. MembershipRequest.Force
// skips it, for an operator who knows better.
func keepsQuorum(members []cluster.Member, h *cluster.Health, self string, req peerlink.MembershipRequest) error {
	alive := map[string]bool{self: true}
	for _, p := range h.Peers {
		alive[p.ID] = p.State == cluster.PeerAlive
	}
	newVoter := req.Promote
	if req.Join != nil && !req.Join.Nonvoter() {
		newVoter = req.Join.ID
	}
	voters, reached := 0, 0
	var unreached []string
	known := false
	for _, m := range members {
		if m.ID == newVoter {
			known = m.Voter
		}
		if !m.Voter || m.ID == req.Remove {
			continue
		}
		voters++
		if alive[m.ID] {
			reached++
		} else {
			unreached = append(unreached, m.ID)
		}
	}
	if newVoter != "" && !known {
		voters++
		reached++
	}
	if quorum := voters/2 + 1; reached < quorum {
		what := "removing " + req.Remove
		switch {
		case req.Promote != "":
			what = "promoting " + req.Promote
		case req.Join != nil:
			what = "adding " + req.Join.ID
		}
		return fmt.Errorf("%s would leave %d voters, of which this leader reaches %d (not alive: %s), and a quorum needs %d: the cluster would stop committing; bring the others back first, or pass ?force=true", what, voters, reached, strings.Join(unreached, ", "), quorum)
	}
	return nil
}

// reachable checks, before a voter is added, that the address is no
// other member's, that the id is no member's at another address, and that
// the node is there: its peer port answers at the
// given address with the given id (proven by its certificate when TLS is
// on). A voter that cannot be reached still counts towards the quorum, so
// a few bogus ones, added by mistake or by anyone who may change the
// membership, would leave the cluster without a leader for good.
func reachable(n *cluster.Node, link *peerlink.Client, j *peerlink.JoinRequest, timeout time.Duration) error {
	members, err := n.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.RaftAddr == j.RaftAddr && m.ID != j.ID {
			return fmt.Errorf("%s is the address of member %q, not of %q", j.RaftAddr, m.ID, j.ID)
		}
		if m.ID == j.ID && m.RaftAddr != j.RaftAddr {
			// A second process with a member's id must not take over its
			// place; moving a member is a removal and a join.
			return fmt.Errorf("%q is already a member, at %s: to move it, remove it first (DELETE /v1/cluster/members/%s)", j.ID, m.RaftAddr, j.ID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 3*time.Second))
	defer cancel()
	got, err := link.Identify(ctx, j.RaftAddr, j.ID)
	switch {
	case err != nil:
		return fmt.Errorf("cannot reach node %q at %s (%v): start it before adding it", j.ID, j.RaftAddr, err)
	case got.ID != j.ID:
		return fmt.Errorf("the node at %s is %q, not %q", j.RaftAddr, got.ID, j.ID)
	}
	return nil
}

// async runs a blocking Raft call off the mailbox and answers the
// requester with its result.
func (a *raftActor) async(q asked, fn func(*cluster.Node) any) {
	node := a.node
	go func() { q.answer(fn(node)) }()
}

// maintain runs on every leader change and maintenance tick. It notices a
// Raft that stopped underneath (the actor then crashes, so its supervisor
// reopens Raft from disk), makes a new leader commit an entry of its own
// term at once (so linearizable reads can start), teaches the fault layer
// the members' addresses, and registers this node's HTTP address in the
// state machine if it is missing, so others can forward to it.
func (a *raftActor) maintain(ctx actor.Context) {
	n := a.node
	if !n.Running() {
		panic("raft stopped underneath its actor")
	}
	n.LearnPeerAddrs()
	cfg := a.tree.cfg
	if n.IsLeader() {
		if a.tree.integrity.err() != nil && !a.handingOver {
			// A leader whose state is fenced off must not decide the
			// outcome of conditional writes from it.
			a.handOver(ctx)
		}
		go func() { _ = n.EnsureReady(cfg.RequestTimeout) }()
		if cfg.Store.ClusterID() == "" && !a.namingCluster {
			a.nameCluster(ctx)
		}
		if cfg.StateCheckInterval > 0 && !a.checkpointing && time.Since(a.lastCheckpoint) >= cfg.StateCheckInterval {
			a.checkpoint(ctx)
		}
		a.reapTombstones(ctx)
	} else if a.tombstones != nil {
		a.tombstones.reset()
	}
	if a.registering || cfg.Store.NodeAddr(cfg.Raft.NodeID) == cfg.AdvertiseHTTP {
		return
	}
	if id, _ := n.Leader(); id == "" {
		return
	}
	a.registering = true
	self, root, client := ctx.Self(), ctx.ActorSystem().Root, a.tree.client
	go func() {
		c, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
		defer cancel()
		_, err := client.Apply(c, &storage.Command{Op: storage.OpRegisterNode, Key: cfg.Raft.NodeID, Value: []byte(cfg.AdvertiseHTTP)})
		root.Send(self, &registerDone{err: err})
	}()
}

// reapTombstones proposes an OpReapTombstones for the tombstones the
// leader's clock says are older than TombstoneTTL (see tombstoneClock).
func (a *raftActor) reapTombstones(ctx actor.Context) {
	if a.tombstones == nil {
		a.tombstones = newTombstoneClock(a.tree.cfg.TombstoneTTL)
	}
	kvIndex, err := a.tree.cfg.Store.KVIndex()
	if err != nil {
		return
	}
	upTo := a.tombstones.tick(time.Now(), kvIndex)
	if upTo == 0 {
		return
	}
	a.tombstones.busy = true
	self, root, client, timeout := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, a.tree.cfg.RequestTimeout
	reaps := a.tree.metrics.tombstoneReaps
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		res, err := client.Apply(c, &storage.Command{Op: storage.OpReapTombstones, Index: upTo, Flags: tombstoneBatch})
		if err == nil {
			reaps.Inc()
		}
		root.Send(self, &tombstonesReaped{upTo: upTo, complete: res.OK, err: err})
	}()
}

// checkpoint proposes an OpCheckpoint: every node hashes its state as of
// that entry, and the hashes are compared through the probes (see
// stateIntegrity). The first comes one interval after this node became
// leader.
func (a *raftActor) checkpoint(ctx actor.Context) {
	if a.lastCheckpoint.IsZero() {
		a.lastCheckpoint = time.Now()
		return
	}
	a.checkpointing = true
	self, root, client, timeout := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, a.tree.cfg.RequestTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.Apply(c, &storage.Command{Op: storage.OpCheckpoint})
		root.Send(self, &checkpointDone{err: err})
	}()
}

// handOverForShutdown hands leadership to a voter the failure detector
// holds alive, before this node stops: otherwise the others notice the
// leader gone only after an election timeout, and elect one more
// timeout later. Voters the detector is unsure of come after those it
// holds alive; those it holds dead are not tried (a transfer to one would
// use up the attempt's election timeout for nothing).
func (a *raftActor) handOverForShutdown(m *transferLeadership) {
	client, timeout, link := a.tree.client, a.tree.cfg.RequestTimeout, a.tree.link
	a.async(m.asked, func(n *cluster.Node) any {
		if !n.IsLeader() {
			return &handedOver{}
		}
		if voters, err := n.Peers(); err == nil && len(voters) < 2 {
			return &handedOver{} // a cluster of one: nobody to hand over to
		}
		term := n.Status().Term
		ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 250*time.Millisecond))
		h, err := client.Health(ctx)
		cancel()
		var prefer []string
		if err == nil {
			if prefer = handOverOrder(h); len(prefer) == 0 {
				return &handedOver{wasLeader: true, term: term, err: errors.New("no other voter is alive")}
			}
			prefer = answeringFirst(link, h, prefer, handOverProbe)
		}
		to, err := n.HandOver(prefer)
		return &handedOver{wasLeader: true, to: to, term: term, err: err}
	})
}

// handOverProbe bounds the ping each hand-over candidate gets first.
const handOverProbe = 200 * time.Millisecond

// answeringFirst pings the candidates at once and puts those that answer
// within probe first, fastest first, keeping the rest in their order
// after them. A peer killed a moment ago is still Alive to the failure
// detector, and a transfer to it would spend the whole hand-over budget
// on an election timeout; a dead process or a cut link does not answer a
// ping. Without a link (tests) the order stands.
func answeringFirst(link *peerlink.Client, h *cluster.Health, order []string, probe time.Duration) []string {
	if link == nil {
		return order
	}
	addr := map[string]string{}
	for _, p := range h.Peers {
		addr[p.ID] = p.RaftAddr
	}
	ctx, cancel := context.WithTimeout(context.Background(), probe)
	defer cancel()
	answered := make(chan string, len(order))
	for _, id := range order {
		go func() {
			if _, err := link.Ping(ctx, addr[id]); err == nil {
				answered <- id
				return
			}
			answered <- ""
		}()
	}
	var first []string
	for range order {
		if id := <-answered; id != "" {
			first = append(first, id)
		}
	}
	for _, id := range order {
		if !slices.Contains(first, id) {
			first = append(first, id)
		}
	}
	return first
}

// handOverOrder lists the peers to hand leadership to: alive ones first,
// then those not yet judged or suspect; never the dead. The list holds
// every member; HandOver skips those that are not voters.
func handOverOrder(h *cluster.Health) []string {
	var alive, unsure []string
	for _, p := range h.Peers {
		switch p.State {
		case cluster.PeerAlive:
			alive = append(alive, p.ID)
		case cluster.PeerDead:
		default:
			unsure = append(unsure, p.ID)
		}
	}
	return append(alive, unsure...)
}

// handOver transfers leadership away from a fenced leader.
func (a *raftActor) handOver(ctx actor.Context) {
	a.handingOver = true
	self, root, n, logger := ctx.Self(), ctx.ActorSystem().Root, a.node, a.tree.cfg.Logger
	go func() {
		err := n.TransferLeadership()
		if err != nil {
			logger.Warn("a fenced leader could not hand over leadership; retrying", "err", err)
		}
		root.Send(self, &fencedHandedOver{})
	}()
}

// nameCluster records the cluster's id in the state machine, once, on the
// first leader: the id every node of a new cluster derived from
// initial_cluster, or a random one for a cluster that had none (made by
// an older release). From then on every node's peer port carries it and
// refuses callers with another (see peerlink.Config.ClusterID).
func (a *raftActor) nameCluster(ctx actor.Context) {
	id := a.tree.cfg.ClusterID
	if id == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		id = hex.EncodeToString(b)
	}
	a.namingCluster = true
	self, root, client, timeout := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, a.tree.cfg.RequestTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.Apply(c, &storage.Command{Op: storage.OpSetClusterID, Key: id})
		root.Send(self, &clusterNamed{err: err})
	}()
}

// fault decides what a failure reported by Raft costs. An entry that
// cannot be applied on any replay, or a log entry that fails its checksum,
// stops the node: a restart would meet it again. Anything else (a failed commit of the state file, a dead Raft
// listener) crashes this actor, so its supervisor reopens Raft from disk,
// which replays the log from the state file's applied index; if the cause
// lasts, the restart budget runs out and the node stops.
func (a *raftActor) fault(ctx actor.Context, m *raftFault) {
	if m.token != a.token {
		return // from a Raft instance closed since
	}
	if errors.Is(m.err, storage.ErrCorrupt) {
		// The state file holds a value that fails its checksum: replaying
		// onto it would build on bytes nobody committed.
		a.tree.corrupted(m.err)
		return
	}
	var af *cluster.ApplyFault
	if errors.As(m.err, &af) && af.Permanent {
		ctx.Send(ctx.Parent(), &giveUp{err: fmt.Errorf("raft: %w; every replay of the log meets this entry again, so the node stops (docs/operations.md: recovering a node)", m.err)})
		return
	}
	if damagedData(m.err) {
		ctx.Send(ctx.Parent(), &giveUp{err: m.err})
		return
	}
	panic(fmt.Sprintf("raft: %v", m.err))
}

// damagedData reports a Raft log or snapshot that failed its checksum:
// reopening meets the same bytes again, and the node must not serve from
// them, so it stops for good.
func damagedData(err error) bool {
	var lc *cluster.LogCorruptError
	var sc *cluster.SnapshotCorruptError
	return errors.As(err, &lc) || errors.As(err, &sc)
}

// crash injects one of CrashFaults.
func (a *raftActor) crash(ctx actor.Context, m *crash) {
	switch m.fault {
	case FaultRaftShutdown:
		if err := a.node.InjectShutdown(); err != nil {
			a.tree.cfg.Logger.Warn("injected raft shutdown", "err", err)
		}
		ctx.Send(ctx.Self(), maintainTick{})
	case FaultListener:
		if err := a.node.InjectListenerFailure(); err != nil {
			a.tree.cfg.Logger.Warn("injected listener failure", "err", err)
		}
	default:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// ready reports whether this node can serve linearizable requests right
// now: a leader is known and this node is not far behind it.
func (a *raftActor) ready() error {
	if err := a.tree.disk.Err(); err != nil {
		return err
	}
	if err := a.tree.integrity.err(); err != nil {
		return err
	}
	st := a.node.Status()
	if st.LeaderID == "" {
		return cluster.ErrNoLeader
	}
	if st.CommitIndex > st.AppliedIndex+readyLag {
		return fmt.Errorf("catching up: applied %d of %d committed entries", st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// readyLag is how many committed entries a node may trail and still call
// itself ready; a node replaying a long log or receiving a snapshot is not.
const readyLag = 1024
