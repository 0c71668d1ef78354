package actors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/cluster/timeline"
	"github.com/troupe-kv/troupe/storage"
)

// Client is the typed way into a node's actor tree, for the HTTP API: each
// call is a message to the actor that owns the answer. Calls that need a
// leader wait for one (until ctx ends) while nothing has been sent; once a
// write may have reached Raft, a failure is cluster.ErrUnknownOutcome.
type Client struct {
	tree *Tree
}

// ask sends msg (a request with its asked) to the named actor and waits
// for the answer until ctx ends, or RequestTimeout when ctx has no
// deadline.
func (c *Client) ask(ctx context.Context, name string, msg answerer, q asked) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.tree.cfg.RequestTimeout)
		defer cancel()
	}
	c.tree.send(name, msg)
	select {
	case r := <-q.reply:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// replyAs checks an actor's answer is a T. An actor that cannot serve a
// request at all (the raft actor while it stops, a message that found no
// actor) answers with a *done carrying the reason, whatever was asked.
func replyAs[T any](reply any, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	if r, ok := reply.(T); ok {
		return r, nil
	}
	if d, ok := reply.(*done); ok && d.err != nil {
		return zero, d.err
	}
	return zero, fmt.Errorf("unexpected reply %T", reply)
}

// quick asks the raft actor for an answer it gives at once; while it
// restarts, the answer is errRaftDown.
func quick[T any](c *Client, msg answerer, q asked) (T, error) {
	r, err := replyAs[T](c.ask(context.Background(), "raft", msg, q))
	if errors.Is(err, context.DeadlineExceeded) {
		err = errRaftDown
	}
	return r, err
}

func deadline(ctx context.Context, fallback time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(fallback)
}

// Apply replicates cmd through the leader and returns once it is applied
// there. While this node holds a raised NOSPACE alarm, a command that
// would grow the state is refused here, without a log entry: the leader
// would refuse it anyway (see storage.Result.NoSpace), and refused writes
// would still lengthen every node's log.
func (c *Client) Apply(ctx context.Context, cmd *storage.Command) (storage.Result, error) {
	if store := c.tree.cfg.Store; store.NoSpace() && cmd.Grows() {
		return storage.Result{}, &storage.NoSpaceError{Alarms: store.Alarms()}
	}
	return c.propose(ctx, cmd.Encode(), false)
}

// Alarms lists the cluster's raised alarms, as this node's state holds
// them.
func (c *Client) Alarms() []storage.Alarm { return c.tree.cfg.Store.Alarms() }

// Disarm clears the alarms of type typ about member ("" for either: any)
// through the leader, and reports whether one was raised. A member still
// past its limits raises its alarm again within a second.
func (c *Client) Disarm(ctx context.Context, typ, member string) (bool, error) {
	res, err := c.Apply(ctx, &storage.Command{Op: storage.OpAlarmClear, Key: storage.AlarmKey(typ, member)})
	return res.OK, err
}

// applyForwardedBatch applies a batch of encoded commands another node
// forwarded, all at once (Raft groups them into few disk writes), and
// answers each.
func (c *Client) applyForwardedBatch(ctx context.Context, cmds [][]byte) []peerlink.BatchItemReply {
	replies := make([]peerlink.BatchItemReply, len(cmds))
	var wg sync.WaitGroup
	for i, data := range cmds {
		wg.Go(func() { replies[i] = peerlink.ReplyFor(c.propose(ctx, data, true)) })
	}
	wg.Wait()
	return replies
}

// route picks the actor that serves a request needing the leader, by the
// view the raft actor publishes: raft when this node leads, forward (with
// the leader's Raft address, where its peer port is) when another node
// does. A peer's request is
// only ever served here, so forwarding stays one hop. Without a leader the
// error says so, with the channel that closes at the next change.
func (c *Client) route(fromPeer bool) (target, addr string, changed <-chan struct{}, err error) {
	v := c.tree.view.Load()
	switch {
	case v == nil:
		return "", "", nil, errRaftDown
	case v.IsLeader():
		return "raft", "", nil, nil
	case fromPeer:
		return "", "", v.LeaderChanged(), cluster.ErrNotLeader
	}
	id, addr := v.Leader()
	if addr == "" || id == c.NodeID() {
		return "", "", v.LeaderChanged(), cluster.ErrNoLeader
	}
	return "forward", addr, nil, nil
}

func (c *Client) propose(ctx context.Context, data []byte, fromPeer bool) (storage.Result, error) {
	var res storage.Result
	if err := c.tree.integrity.err(); err != nil {
		// Its answers (a CAS's outcome, a transaction's reads) would come
		// from the state that failed its check.
		return res, err
	}
	err := c.untilLeader(ctx, false, fromPeer, func() (<-chan struct{}, error) {
		target, addr, changed, err := c.route(fromPeer)
		if err != nil {
			return changed, err
		}
		q := newAsked()
		var msg answerer = &propose{asked: q, data: data, deadline: deadline(ctx, c.tree.cfg.RequestTimeout), fromPeer: fromPeer}
		if target == "forward" {
			msg = &forwardWrite{asked: q, addr: addr, data: data, deadline: deadline(ctx, c.tree.cfg.RequestTimeout)}
		}
		r, err := replyAs[*proposeResult](c.ask(ctx, target, msg, q))
		switch {
		case err != nil && !isRetryable(err):
			// The command may have reached Raft already.
			return nil, fmt.Errorf("%w (%v)", cluster.ErrUnknownOutcome, err)
		case err != nil:
			return nil, err
		}
		res = r.res
		return r.leaderChanged, r.err
	})
	return res, err
}

// ReadBarrier returns once a read of the local state machine is
// linearizable: the leader has confirmed its leadership with a quorum after
// this call began, and this node has applied everything the leader had
// committed at that moment.
func (c *Client) ReadBarrier(ctx context.Context) error {
	if err := c.tree.disk.Err(); err != nil {
		// It cannot take new entries, so it would only wait to time out
		// and then blame the quorum.
		return fmt.Errorf("%w; read through another node", err)
	}
	idx, err := c.readIndex(ctx, false)
	if err != nil {
		return err
	}
	if err := c.tree.cfg.Store.WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w (this node did not catch up to index %d in time)", cluster.ErrNoLeader, idx)
	}
	return nil
}

func (c *Client) readIndex(ctx context.Context, fromPeer bool) (uint64, error) {
	var idx uint64
	err := c.untilLeader(ctx, true, fromPeer, func() (<-chan struct{}, error) {
		target, addr, changed, err := c.route(fromPeer)
		if err != nil {
			return changed, err
		}
		q := newAsked()
		var msg answerer = &readIndex{asked: q, deadline: deadline(ctx, c.tree.cfg.RequestTimeout), fromPeer: fromPeer}
		if target == "forward" {
			msg = &forwardRead{asked: q, addr: addr, deadline: deadline(ctx, c.tree.cfg.RequestTimeout)}
		}
		r, err := replyAs[*readIndexResult](c.ask(ctx, target, msg, q))
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", cluster.ErrNoLeader, err)
		}
		idx = r.index
		return r.leaderChanged, r.err
	})
	return idx, err
}

// Read runs q against the local state file, as a blocking query when b
// asks, after a read barrier unless stale.
func (c *Client) Read(ctx context.Context, q storage.Query, stale bool, b storage.Block) (storage.QueryResult, error) {
	if err := c.tree.integrity.err(); err != nil {
		return storage.QueryResult{}, err
	}
	var barrier func(context.Context) error
	if !stale {
		barrier = func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, c.tree.cfg.RequestTimeout)
			defer cancel()
			return c.ReadBarrier(ctx)
		}
	}
	r, err := c.tree.cfg.Store.BlockingQuery(ctx, q, b, barrier)
	if err != nil {
		c.tree.corrupted(err)
		return r, err
	}
	// A blocking read may have waited across the moment the node was
	// fenced off; what it found then is not to be served either.
	if err := c.tree.integrity.err(); err != nil {
		return storage.QueryResult{}, err
	}
	return r, nil
}

// untilLeader runs attempt until it succeeds, fails for good, or ctx ends.
// A failure after which nothing was applied (no leader, not the leader) is
// retried at the next leader change or after a short backoff; reads
// (anyFailureRetries) retry on every error, since a read has no effect to
// duplicate. A peer's request is tried once: the peer does the retrying.
func (c *Client) untilLeader(ctx context.Context, anyFailureRetries, fromPeer bool, attempt func() (<-chan struct{}, error)) error {
	backoff := 5 * time.Millisecond
	for {
		changed, err := attempt()
		if err == nil || fromPeer || !(anyFailureRetries || isRetryable(err)) {
			return err
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return timedOut(err, ctx)
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

// isRetryable reports errors after which nothing was applied.
func isRetryable(err error) bool {
	return errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrNoLeader)
}

func timedOut(last error, ctx context.Context) error {
	if errors.Is(last, cluster.ErrUnknownOutcome) {
		return last
	}
	msg := "no leader could be reached"
	if !errors.Is(last, cluster.ErrNoLeader) && !errors.Is(last, cluster.ErrNotLeader) {
		msg = last.Error()
	}
	return fmt.Errorf("%w (%s before the request deadline: %v)", cluster.ErrNoLeader, msg, ctx.Err())
}

// Leader reports this node's current view of the leader, from the view
// the raft actor publishes (see leaderView); nothing while Raft is closed.
func (c *Client) Leader() cluster.LeaderInfo {
	v := c.tree.view.Load()
	if v == nil {
		return cluster.LeaderInfo{}
	}
	id, addr := v.Leader()
	return cluster.LeaderInfo{Known: id != "", ID: id, RaftAddr: addr, LastContact: v.LastContact()}
}

// Status reports this node's Raft status.
func (c *Client) Status() (cluster.Status, error) {
	q := newAsked()
	r, err := quick[*statusReply](c, &getStatus{q}, q)
	if err != nil {
		r = &statusReply{status: cluster.Status{ID: c.tree.cfg.Raft.NodeID, State: "Restarting"}, err: err}
	}
	b := c.tree.cfg.Build
	r.status.Version, r.status.Commit, r.status.GoVersion = b.Version, b.Commit, b.GoVersion
	return r.status, r.err
}

// Members lists the cluster's members as this node knows them.
func (c *Client) Members() ([]cluster.Member, error) {
	conf, err := c.configuration()
	return conf.Members, err
}

// Configuration is the Raft configuration as this node holds it, with
// the index it was made at; unless stale, after a read barrier, so that
// it holds every change committed before the call (Consul answers
// /v1/operator/raft/configuration from the leader unless ?stale).
func (c *Client) Configuration(ctx context.Context, stale bool) (cluster.Configuration, error) {
	if !stale {
		if err := c.ReadBarrier(ctx); err != nil {
			return cluster.Configuration{}, err
		}
	}
	return c.configuration()
}

func (c *Client) configuration() (cluster.Configuration, error) {
	q := newAsked()
	r, err := quick[*membersReply](c, &getMembers{q}, q)
	if err != nil {
		return cluster.Configuration{}, err
	}
	for i := range r.members {
		m := &r.members[i]
		if m.ID == c.NodeID() {
			m.Version = c.tree.cfg.Build.Version
		} else {
			m.Version = c.tree.versions.get(m.ID)
		}
	}
	return cluster.Configuration{Members: r.members, Index: r.index}, r.err
}

// Peers lists the voters' Raft addresses.
func (c *Client) Peers() ([]string, error) {
	members, err := c.Members()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range members {
		if m.Voter {
			out = append(out, m.RaftAddr)
		}
	}
	return out, nil
}

// Ready reports whether this node can serve linearizable requests now:
// its client port accepts connections, and Raft is ready.
func (c *Client) Ready() error {
	if err := c.tree.clientPort.err(time.Now()); err != nil {
		return err
	}
	q := newAsked()
	r, err := quick[*done](c, &getReady{q}, q)
	if err != nil {
		return err
	}
	return r.err
}

// ChangeMembership adds a voter or a non-voter (once the leader has
// reached it at its Raft address and it answered with its id), removes a
// member, or promotes a non-voter that has caught up, through the leader.
// Unless forced, a change that would leave the reachable voters short of
// a quorum is refused, and so is the promotion of a non-voter more than
// PromoteMaxLag entries behind.
func (c *Client) ChangeMembership(ctx context.Context, req peerlink.MembershipRequest) error {
	return c.membership(ctx, &membership{req: req})
}

func (c *Client) membership(ctx context.Context, m *membership) error {
	m.deadline = deadline(ctx, c.tree.cfg.RequestTimeout)
	return c.untilLeader(ctx, false, m.fromPeer, func() (<-chan struct{}, error) {
		target, addr, changed, err := c.route(m.fromPeer)
		if err != nil {
			return changed, err
		}
		m.asked = newAsked()
		var msg answerer = m
		if target == "forward" {
			msg = &forwardMembership{addr: addr, req: m}
		}
		r, err := replyAs[*done](c.ask(ctx, target, msg, m.asked))
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", cluster.ErrUnknownOutcome, err)
		}
		return r.leaderChanged, r.err
	})
}

// RenewSession resets session id's TTL timer on the leader (through it,
// when another node leads) and returns the session; found false means
// there is no such session. A renewal is no Raft entry: the leader's
// timers are the only state it changes, so one that failed on the way is
// safe to send again.
func (c *Client) RenewSession(ctx context.Context, id string) (storage.Session, bool, error) {
	return c.renewSession(ctx, id, false)
}

func (c *Client) renewSession(ctx context.Context, id string, fromPeer bool) (storage.Session, bool, error) {
	var out *sessionRenewed
	err := c.untilLeader(ctx, true, fromPeer, func() (<-chan struct{}, error) {
		target, addr, changed, err := c.route(fromPeer)
		if err != nil {
			return changed, err
		}
		q := newAsked()
		var msg answerer = &renewSession{asked: q, id: id}
		if target == "forward" {
			msg = &forwardRenew{asked: q, addr: addr, id: id}
		} else {
			target = "sessions"
		}
		r, err := replyAs[*sessionRenewed](c.ask(ctx, target, msg, q))
		if err != nil {
			return nil, fmt.Errorf("%w (%v)", cluster.ErrNoLeader, err)
		}
		out = r
		return r.leaderChanged, r.err
	})
	if err != nil {
		return storage.Session{}, false, err
	}
	return out.session, out.found, nil
}

// Snapshot takes a snapshot on this node and compacts its log.
func (c *Client) Snapshot(ctx context.Context) (uint64, error) {
	q := newAsked()
	r, err := replyAs[*snapshotTaken](c.ask(ctx, "raft", &takeSnapshot{q}, q))
	if err != nil {
		return 0, err
	}
	return r.index, r.err
}

// Health reports this node's failure detector view of its peers.
func (c *Client) Health(ctx context.Context) (*cluster.Health, error) {
	q := newAsked()
	h, err := replyAs[*cluster.Health](c.ask(ctx, "peers", &getHealth{q}, q))
	if err != nil {
		return nil, fmt.Errorf("%w (the peers actor did not answer: %v)", cluster.ErrNoLeader, err)
	}
	li := c.Leader()
	h.LeaderID, h.Leader = li.ID, li.RaftAddr
	h.Alarms = c.Alarms()
	if h.Alarms == nil {
		h.Alarms = []storage.Alarm{}
	}
	h.Space = c.tree.space.Load()
	return h, nil
}

// NodeID is this node's id.
func (c *Client) NodeID() string { return c.tree.cfg.Raft.NodeID }

// The ways Crash can make an actor fail.
const (
	// FaultPanic panics inside the actor (any actor).
	FaultPanic = "panic"
	// FaultRaftShutdown stops Raft underneath the raft actor, as a fatal
	// error inside Raft would.
	FaultRaftShutdown = "raft-shutdown"
	// FaultListener closes the listener underneath the raft actor (Raft's)
	// or the http actor (the API's), as a failed socket would.
	FaultListener = "listener"
)

// CrashableActors are the actors Crash accepts; "peer/<id>" names the
// monitor of one peer.
var CrashableActors = []string{"raft", "forward", "http", "peers", "peer/<id>", "sessions", "quota", "node"}

// CrashFaults are the faults Crash accepts besides FaultPanic, which every
// actor takes.
var CrashFaults = map[string][]string{
	"raft": {FaultRaftShutdown, FaultListener},
	"http": {FaultListener},
}

// Crash makes the named actor fail in the way fault says (chaos mode
// only); "" means FaultPanic.
func (c *Client) Crash(name, fault, reason string) error {
	if fault == "" {
		fault = FaultPanic
	}
	target := name
	switch {
	case name == "raft" || name == "forward" || name == "http" || name == "peers" || name == "sessions" || name == "quota":
	case strings.HasPrefix(name, "peer/"):
		id := strings.TrimPrefix(name, "peer/")
		if !c.isPeer(id) {
			return fmt.Errorf("no monitor for %q: not a member other than this node", id)
		}
		target = "peers/" + id
	case name == "node":
		target = ""
	default:
		return fmt.Errorf("unknown actor %q (want one of %s)", name, strings.Join(CrashableActors, ", "))
	}
	if fault != FaultPanic && !slices.Contains(CrashFaults[name], fault) {
		return fmt.Errorf("actor %s cannot fail with %q (it takes %s)", name, fault, strings.Join(append([]string{FaultPanic}, CrashFaults[name]...), ", "))
	}
	msg := &crash{fault: fault, reason: reason}
	c.tree.console.events.Add(timeline.Event{Kind: timeline.KindFault, Subject: name, To: "crash", Detail: fault + " injected"})
	if target == "" {
		c.tree.system.Root.Send(c.tree.system.NewLocalPID("app/node"), msg)
		return nil
	}
	c.tree.send(target, msg)
	return nil
}

func (c *Client) isPeer(id string) bool {
	members, err := c.Members()
	if err != nil || id == c.NodeID() {
		return false
	}
	for _, m := range members {
		if m.ID == id {
			return true
		}
	}
	return false
}

// Faults returns the fault rules on this node's links.
func (c *Client) Faults() faultnet.Rules { return c.tree.cfg.Raft.Network.Rules() }

// SetFaults replaces the fault rules on this node's links.
func (c *Client) SetFaults(rs faultnet.Rules) error {
	if err := c.tree.cfg.Raft.Network.SetRules(rs); err != nil {
		return err
	}
	c.tree.recordFaults(rs)
	return nil
}
