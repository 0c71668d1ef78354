package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

// Gateway is how the HTTP API reaches the actor tree. Writes, read indexes
// and membership changes go to the raft actor as messages; when this node
// is not the leader they are forwarded to the leader (one hop). Cheap status
// questions read the current Raft instance directly.
type Gateway struct {
	tree     *Tree
	self     string
	cur      atomic.Pointer[cluster.Node]
	inflight atomic.Int64
	fwd      *cluster.Forwarder
	reads    *readBatcher
	writes   *writeBatcher
}

func newGateway(t *Tree) *Gateway {
	g := &Gateway{tree: t, self: t.cfg.Raft.NodeID, fwd: cluster.NewForwarder(t.cfg.Raft.Network)}
	g.reads = &readBatcher{fetch: g.fwd.ReadIndex, timeout: t.cfg.RequestTimeout}
	g.writes = &writeBatcher{sendOne: g.fwd.Apply, send: g.fwd.ApplyBatch, timeout: t.cfg.RequestTimeout, maxInFlight: 2}
	return g
}

// Faults returns the fault rules on this node's links.
func (g *Gateway) Faults() faultnet.Rules { return g.tree.cfg.Raft.Network.Rules() }

// SetFaults replaces the fault rules on this node's links.
func (g *Gateway) SetFaults(rs faultnet.Rules) error {
	return g.tree.cfg.Raft.Network.SetRules(rs)
}

// AllowInbound applies the fault rules to a request peer sent this node.
func (g *Gateway) AllowInbound(ctx context.Context, peer string, size int) error {
	return g.tree.cfg.Raft.Network.AllowInbound(ctx, peer, size)
}

// AllowOutbound applies the fault rules to this node's answer to peer.
func (g *Gateway) AllowOutbound(ctx context.Context, peer string, size int) error {
	return g.tree.cfg.Raft.Network.AllowOutbound(ctx, peer, size)
}

func (g *Gateway) setNode(n *cluster.Node) { g.cur.Store(n) }
func (g *Gateway) node() *cluster.Node     { return g.cur.Load() }

// Store is the local state machine, for reads.
func (g *Gateway) Store() *storage.Store { return g.tree.cfg.Store }

// NodeID is this node's id.
func (g *Gateway) NodeID() string { return g.self }

// errRaftDown is returned while the raft actor is restarting.
var errRaftDown = fmt.Errorf("%w (raft is restarting on this node)", cluster.ErrNoLeader)

// ask sends msg to the named actor and waits for the reply until ctx ends.
func (g *Gateway) ask(ctx context.Context, name string, msg any) (any, error) {
	d := g.tree.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	if d <= 0 {
		return nil, context.DeadlineExceeded
	}
	return g.tree.system.Root.RequestFuture(g.tree.pid(name), msg, d).Result()
}

// Apply replicates cmd through the leader and returns once it is applied
// there. It waits for a leader (up to ctx) while nothing has been sent;
// once a write may have reached Raft, a failure is ErrUnknownOutcome.
func (g *Gateway) Apply(ctx context.Context, cmd *storage.Command) (storage.Result, error) {
	data := cmd.Encode()
	var res storage.Result
	err := g.onLeader(ctx, false,
		func() (err error) { res, err = g.propose(ctx, data); return err },
		func(addr string) (err error) { res, err = g.writes.apply(ctx, addr, data); return err },
	)
	return res, err
}

// ApplyForwarded applies an encoded command forwarded by a follower. It
// never forwards again: if this node no longer leads, the follower retries.
func (g *Gateway) ApplyForwarded(ctx context.Context, data []byte) (storage.Result, error) {
	if _, err := storage.DecodeCommand(data); err != nil {
		return storage.Result{}, err
	}
	if n := g.node(); n == nil || !n.IsLeader() {
		return storage.Result{}, cluster.ErrNotLeader
	}
	return g.propose(ctx, data)
}

// ApplyForwardedBatch applies a batch of commands a follower forwarded,
// all at once (Raft groups them into few disk writes), and answers each.
func (g *Gateway) ApplyForwardedBatch(ctx context.Context, cmds [][]byte) []cluster.BatchItemReply {
	replies := make([]cluster.BatchItemReply, len(cmds))
	fail := func(i int, err error) {
		replies[i] = cluster.BatchItemReply{Code: cluster.ErrorCode(err), Error: err.Error()}
	}
	if n := g.node(); n == nil || !n.IsLeader() {
		for i := range cmds {
			fail(i, cluster.ErrNotLeader)
		}
		return replies
	}
	var wg sync.WaitGroup
	for i, data := range cmds {
		if _, err := storage.DecodeCommand(data); err != nil {
			fail(i, err)
			continue
		}
		wg.Add(1)
		go func(i int, data []byte) {
			defer wg.Done()
			res, err := g.propose(ctx, data)
			if err != nil {
				fail(i, err)
				return
			}
			replies[i] = cluster.BatchItemReply{Index: res.Index, OK: res.OK}
		}(i, data)
	}
	wg.Wait()
	return replies
}

func (g *Gateway) propose(ctx context.Context, data []byte) (storage.Result, error) {
	reply, err := g.ask(ctx, "raft", &Propose{Data: data})
	switch {
	case errors.Is(err, actor.ErrDeadLetter):
		return storage.Result{}, errRaftDown
	case err != nil:
		// The raft actor may have handed the command to Raft already.
		return storage.Result{}, fmt.Errorf("%w (%v)", cluster.ErrUnknownOutcome, err)
	}
	r := reply.(*ProposeResult)
	return r.Result, r.Err
}

// ReadBarrier returns once a read of the local state machine is
// linearizable: the leader has confirmed its leadership with a quorum after
// this call began, and this node has applied everything the leader had
// committed at that moment.
func (g *Gateway) ReadBarrier(ctx context.Context) error {
	var idx uint64
	err := g.onLeader(ctx, true,
		func() (err error) { idx, err = g.readIndex(ctx); return err },
		func(addr string) (err error) { idx, err = g.reads.get(ctx, addr); return err },
	)
	if err != nil {
		return err
	}
	if err := g.Store().WaitApplied(ctx, idx); err != nil {
		return fmt.Errorf("%w (this node did not catch up to index %d in time)", cluster.ErrNoLeader, idx)
	}
	return nil
}

// ReadIndexForwarded answers a follower's read-index request. Only a leader
// can answer.
func (g *Gateway) ReadIndexForwarded(ctx context.Context) (uint64, error) {
	if n := g.node(); n == nil || !n.IsLeader() {
		return 0, cluster.ErrNotLeader
	}
	return g.readIndex(ctx)
}

func (g *Gateway) readIndex(ctx context.Context) (uint64, error) {
	reply, err := g.ask(ctx, "raft", &ReadIndex{})
	if err != nil {
		return 0, fmt.Errorf("%w (%v)", cluster.ErrNoLeader, err)
	}
	r := reply.(*ReadIndexResult)
	return r.Index, r.Err
}

// onLeader runs local when this node leads and remote (with the leader's
// HTTP address) when another node does. While there is no reachable leader,
// or the attempt failed without effect, it waits for a leader change and
// tries again until ctx ends. Reads (anyFailureRetries) retry on every
// error, since a read has no effect to duplicate.
func (g *Gateway) onLeader(ctx context.Context, anyFailureRetries bool, local func() error, remote func(addr string) error) error {
	lastErr := cluster.ErrNoLeader
	backoff := 5 * time.Millisecond
	for {
		var changed <-chan struct{}
		if n := g.node(); n != nil {
			changed = n.LeaderChanged()
			var err error
			tried := true
			if n.IsLeader() {
				err = local()
			} else if id, addr := n.LeaderAPI(); addr != "" && id != g.self {
				err = remote(addr)
			} else {
				tried = false
			}
			if tried {
				if err == nil || !(anyFailureRetries || isRetryable(err)) {
					return err
				}
				lastErr = err
			}
		} else {
			lastErr = errRaftDown
		}
		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return timedOut(lastErr, ctx)
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

// Leader reports this node's current view of the leader.
func (g *Gateway) Leader() cluster.LeaderInfo {
	n := g.node()
	if n == nil {
		return cluster.LeaderInfo{}
	}
	id, addr := n.Leader()
	return cluster.LeaderInfo{Known: id != "", ID: id, RaftAddr: addr, LastContact: n.LastContact()}
}

// Status reports this node's Raft status.
func (g *Gateway) Status() (cluster.Status, error) {
	n := g.node()
	if n == nil {
		return cluster.Status{ID: g.self, State: "Restarting"}, errRaftDown
	}
	return n.Status(), nil
}

// Members lists the cluster's members as this node knows them.
func (g *Gateway) Members() ([]cluster.Member, error) {
	n := g.node()
	if n == nil {
		return nil, errRaftDown
	}
	return n.Members()
}

// Peers lists the voters' Raft addresses.
func (g *Gateway) Peers() ([]string, error) {
	n := g.node()
	if n == nil {
		return nil, errRaftDown
	}
	return n.Peers()
}

// Ready reports whether this node can serve linearizable requests right
// now: Raft is up, a leader is known and this node is not far behind it.
func (g *Gateway) Ready() error {
	n := g.node()
	if n == nil {
		return errRaftDown
	}
	st := n.Status()
	if st.LeaderID == "" {
		return cluster.ErrNoLeader
	}
	if st.LeaderHTTPAddr == "" {
		return fmt.Errorf("the leader %s has not registered its HTTP address yet", st.LeaderID)
	}
	if st.CommitIndex > st.AppliedIndex+readyLag {
		return fmt.Errorf("catching up: applied %d of %d committed entries", st.AppliedIndex, st.CommitIndex)
	}
	return nil
}

// readyLag is how many committed entries a node may trail and still call
// itself ready; a node replaying a long log or receiving a snapshot is not.
const readyLag = 1024

// Join adds a member through the leader.
func (g *Gateway) Join(ctx context.Context, req cluster.JoinRequest, forwarded bool) error {
	body, _ := json.Marshal(req)
	return g.membership(ctx, forwarded, &Join{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr},
		http.MethodPost, cluster.JoinPath, body)
}

// Remove removes a member through the leader.
func (g *Gateway) Remove(ctx context.Context, id string, forwarded bool) error {
	return g.membership(ctx, forwarded, &Remove{ID: id}, http.MethodDelete, cluster.MembersPath+id, nil)
}

func (g *Gateway) membership(ctx context.Context, forwarded bool, msg any, method, path string, body []byte) error {
	local := func() error {
		reply, err := g.ask(ctx, "raft", msg)
		if err != nil {
			return fmt.Errorf("%w (%v)", cluster.ErrUnknownOutcome, err)
		}
		return reply.(*Done).Err
	}
	if forwarded {
		if n := g.node(); n == nil || !n.IsLeader() {
			return cluster.ErrNotLeader
		}
		return local()
	}
	return g.onLeader(ctx, false, local, func(addr string) error {
		status, b, err := g.fwd.Do(ctx, addr, method, path, body, true)
		if err != nil {
			return err
		}
		if status == http.StatusOK {
			return nil
		}
		return cluster.LeaderError(status, b)
	})
}

// Snapshot takes a snapshot on this node and compacts its log.
func (g *Gateway) Snapshot(ctx context.Context) (uint64, error) {
	reply, err := g.ask(ctx, "raft", &TakeSnapshot{})
	if err != nil {
		return 0, err
	}
	r := reply.(*SnapshotTaken)
	return r.Index, r.Err
}

// Health reports this node's failure detector view of its peers.
func (g *Gateway) Health(ctx context.Context) (*cluster.Health, error) {
	reply, err := g.ask(ctx, "peers", &GetHealth{})
	if err != nil {
		return nil, fmt.Errorf("%w (the peers actor did not answer: %v)", cluster.ErrNoLeader, err)
	}
	return reply.(*cluster.Health), nil
}

// CrashableActors are the actors Crash accepts; "peer/<id>" names the
// monitor of one peer.
var CrashableActors = []string{"raft", "http", "peers", "peer/<id>", "node"}

func (g *Gateway) isPeer(id string) bool {
	members, err := g.Members()
	if err != nil || id == g.self {
		return false
	}
	for _, m := range members {
		if m.ID == id {
			return true
		}
	}
	return false
}

// Crash makes the named actor panic (chaos mode only).
func (g *Gateway) Crash(name, reason string) error {
	var pid *actor.PID
	switch {
	case name == "raft" || name == "http" || name == "peers":
		pid = g.tree.pid(name)
	case strings.HasPrefix(name, "peer/"):
		id := strings.TrimPrefix(name, "peer/")
		if !g.isPeer(id) {
			return fmt.Errorf("no monitor for %q: not a member other than this node", id)
		}
		pid = g.tree.pid("peers/" + id)
	case name == "node":
		pid = g.tree.system.NewLocalPID("app/node")
	default:
		return fmt.Errorf("unknown actor %q (want one of %s)", name, strings.Join(CrashableActors, ", "))
	}
	g.tree.system.Root.Send(pid, &Crash{Reason: reason})
	return nil
}

// maintain runs beside one Raft instance until stop closes. On a new leader
// it commits an entry of the leader's term at once, so linearizable reads
// can start; it makes sure this node's HTTP address is registered in the
// state machine, so others can forward to it; and a node started with
// --join asks a member to add it.
func (g *Gateway) maintain(n *cluster.Node, stop <-chan struct{}) {
	cfg := g.tree.cfg
	joined := false
	for {
		changed := n.LeaderChanged()
		n.LearnPeerAddrs()
		if n.IsLeader() {
			_ = n.EnsureReady(cfg.RequestTimeout)
		}
		if len(cfg.Join) > 0 && !joined && !n.HasState() {
			joined = g.joinThroughSeeds(stop)
		}
		registered := g.Store().NodeAddr(g.self) == cfg.AdvertiseHTTP
		if !registered {
			if id, _ := n.Leader(); id != "" {
				ctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
				_, err := g.Apply(ctx, &storage.Command{Op: storage.OpRegisterNode, Key: g.self, Value: []byte(cfg.AdvertiseHTTP)})
				cancel()
				registered = err == nil
			}
		}
		wait := 30 * time.Second
		if !registered {
			wait = time.Second
		}
		timer := time.NewTimer(wait)
		select {
		case <-stop:
			timer.Stop()
			return
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// joinThroughSeeds asks each --join address in turn to add this node, until
// one accepts (true) or stop closes (false).
func (g *Gateway) joinThroughSeeds(stop <-chan struct{}) bool {
	cfg := g.tree.cfg
	body, _ := json.Marshal(cluster.JoinRequest{ID: g.self, RaftAddr: cfg.Raft.RaftAdvertise, HTTPAddr: cfg.AdvertiseHTTP})
	backoff := 200 * time.Millisecond
	for {
		for _, seed := range cfg.Join {
			ctx, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
			status, b, err := g.fwd.Do(ctx, seed, http.MethodPost, cluster.JoinPath, body, false)
			cancel()
			if err == nil && status == http.StatusOK {
				cfg.Logger.Info("joined the cluster", "through", seed)
				return true
			}
			cfg.Logger.Warn("join attempt failed", "seed", seed, "status", status, "err", err, "answer", string(bytes.TrimSpace(b)))
		}
		select {
		case <-stop:
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
