package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// Errors returned by Node. They say whether a write may have been applied,
// which is what a client needs to know to retry safely.
// They are the peer channel's, so they survive a trip between nodes.
var (
	// ErrNotLeader: this node is not the leader; nothing was applied.
	ErrNotLeader = peerlink.ErrNotLeader
	// ErrNoLeader: no leader is known or reachable (no quorum, or an election
	// is running); nothing was applied.
	ErrNoLeader = peerlink.ErrNoLeader
	// ErrUnknownOutcome: the write was handed to Raft but its fate is
	// unknown (leadership was lost, or the node stopped); it may still commit.
	ErrUnknownOutcome = peerlink.ErrUnknownOutcome
	// ErrBusy: too many requests are in flight; nothing was applied.
	ErrBusy = peerlink.ErrBusy
)

// Node is one member's Raft: the log and stable store (the WAL), the snapshot
// store, the TCP transport and the raft.Raft instance that drives the FSM in
// storage. It is opened and closed as a unit, which is what the raft actor
// does when it starts and restarts.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	logStore  logStore
	store     *storage.Store
	transport *raft.NetworkTransport
	acks      *ackTransport // transport as raft uses it
	layer     *streamLayer
	observer  *raft.Observer
	obsDone   chan struct{}
	// running is raft once it runs: the peer port starts accepting before
	// raft exists, and asks it who is a member.
	running atomic.Pointer[raft.Raft]
	// rpc serves the forwarding protocol on the peer port.
	rpc *peerlink.Server

	leaderMu sync.Mutex
	leaderCh chan struct{} // closed and replaced at each leader change

	// readyTerm is the term in which this leader has applied an entry of its
	// own; only then does its commit index cover every earlier write.
	readyTerm atomic.Uint64
	readyMu   sync.Mutex

	// snaps is the snapshot store; configIndex the index of the newest
	// committed configuration entry the state machine has been handed
	// since Raft opened (see Configuration).
	snaps       raft.SnapshotStore
	configIndex atomic.Uint64

	// rulePurges counts the emptyings of the transport's connection pool
	// after fault-rule changes (see purgeIdleConnsOnRuleChange).
	rulePurges atomic.Uint64
}

// Open starts Raft for this node on top of store. A brand-new node with an
// InitialCluster bootstraps it; a node with state on disk resumes from it.
func Open(cfg Config, store *storage.Store) (*Node, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, err
	}
	wal, err := openLogStore(cfg.DataDir, cfg.LogSegmentSize, cfg.Logger)
	if err != nil {
		var corrupt *LogCorruptError
		if errors.As(err, &corrupt) {
			corrupt.Node = cfg.NodeID
			return nil, corrupt // one line that says it all
		}
		return nil, fmt.Errorf("open raft log: %w", err)
	}
	var logStore logStore = watchedLogStore{logStore: wal, health: cfg.Disk}
	n := &Node{cfg: cfg, logStore: logStore, store: store, leaderCh: make(chan struct{})}
	wal.node = cfg.NodeID
	wal.onCorrupt = n.logCorrupt
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()

	if err := removeSnapshotLeftovers(cfg.DataDir, cfg.Logger); err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if err := settleSnapshots(cfg.DataDir, cfg.NodeID, snaps, logStore, store, cfg.Logger); err != nil {
		return nil, err
	}

	if cfg.Network == nil {
		cfg.Network = faultnet.Plain(cfg.NodeID)
		n.cfg.Network = cfg.Network
	}
	for _, s := range cfg.InitialCluster {
		cfg.Network.SetPeerAddr(s.Addr, s.ID)
	}
	link := peerlink.Config{Network: cfg.Network, TLS: cfg.PeerTLS, Admit: n.admit, Logger: cfg.PeerLogger, ClusterID: store.ClusterID}
	layer, err := newStreamLayer(cfg.RaftBind, cfg.RaftAdvertise, link, n.fault)
	if err != nil {
		return nil, err
	}
	n.layer = layer
	n.transport = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  cfg.Logger,
	})

	rc := raftConfig(cfg)
	exists, err := raft.HasExistingState(logStore, logStore, snaps)
	if err != nil {
		n.transport.Close()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	if !exists && len(cfg.InitialCluster) > 0 {
		var servers []raft.Server
		for _, s := range cfg.InitialCluster {
			servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(s.ID), Address: raft.ServerAddress(s.Addr)})
		}
		err := raft.BootstrapCluster(rc, logStore, logStore, snaps, n.transport, raft.Configuration{Servers: servers})
		if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			n.transport.Close()
			return nil, fmt.Errorf("bootstrap: %w", err)
		}
	}
	cache, err := raft.NewLogCache(512, logStore)
	if err != nil {
		n.transport.Close()
		return nil, err
	}
	n.acks = newAckTransport(n.transport)
	n.snaps = snaps
	onConfig := func(index uint64) { n.configIndex.Store(max(n.configIndex.Load(), index)) }
	machine := &fsm{store: store, onFault: func(f *ApplyFault) { n.fault(f) }, metrics: cfg.Metrics, leaderTerm: n.leaderTerm, onConfig: onConfig}
	r, err := raft.NewRaft(rc, machine, cache, logStore, snaps, n.acks)
	if err != nil {
		n.transport.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.running.Store(r)
	if cfg.PeerHandler != nil {
		n.rpc = peerlink.Serve(layer.port.RPC(), cfg.PeerHandler, peerlink.ServerOptions{
			MaxCommandBytes: cfg.MaxCommandBytes,
			RequestTimeout:  cfg.RequestTimeout,
			Logger:          cfg.PeerLogger,
		})
	}
	n.watchLeader()
	if cfg.Network.Faults() {
		go n.purgeIdleConnsOnRuleChange(n.obsDone)
	}
	if last, snap := logTail(logStore, snaps); last > snap+cfg.Timing.SnapshotThreshold {
		go n.snapshotAfterReplay(last, n.obsDone)
	}
	ok = true
	return n, nil
}

func raftConfig(cfg Config) *raft.Config {
	t := cfg.Timing
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = cfg.Logger
	rc.HeartbeatTimeout = t.HeartbeatTimeout
	rc.ElectionTimeout = t.ElectionTimeout
	rc.LeaderLeaseTimeout = t.LeaderLeaseTimeout
	rc.CommitTimeout = t.CommitTimeout
	rc.MaxAppendEntries = t.MaxAppendEntries
	rc.SnapshotInterval = t.SnapshotInterval
	rc.SnapshotThreshold = t.SnapshotThreshold
	rc.TrailingLogs = t.TrailingLogs
	// The FSM persists itself: restarting from the file is instant, and
	// catchUpFromSnapshot covers the case where the file is behind.
	rc.NoSnapshotRestoreOnStart = true
	return rc
}

// ValidateTiming reports the first timing relation raft would reject.
func ValidateTiming(t Timing) error {
	return raft.ValidateConfig(raftConfig(Config{NodeID: "validate", Timing: t}))
}

// logTail returns the last index in the log and the index of the newest
// snapshot.
func logTail(logs raft.LogStore, snaps raft.SnapshotStore) (last, snap uint64) {
	last, _ = logs.LastIndex()
	if list, err := snaps.List(); err == nil && len(list) > 0 {
		snap = list[0].Index
	}
	return last, snap
}

// snapshotAfterReplay takes a snapshot once Raft has applied the log it
// found at start. On every start Raft reads each entry since the newest
// snapshot (for configuration changes) and hands it to the state machine
// again (which skips what kv.db already holds), so restarting costs time in
// proportion to that tail. A node restarted again before its snapshot timer
// fired would pay for the same, ever longer tail each time.
func (n *Node) snapshotAfterReplay(target uint64, done <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for n.raft.AppliedIndex() < target {
		select {
		case <-t.C:
		case <-done:
			return
		}
	}
	if _, err := n.Snapshot(); err != nil && n.cfg.Logger != nil {
		n.cfg.Logger.Warn("snapshot after replaying the log at start failed", "error", err)
	}
}

// purgeIdleConnsOnRuleChange empties the Raft transport's pool of idle
// connections whenever the fault rules change. A change closes the
// connections to the peers it names, but raft keeps idle ones in its pool
// and finds out only by using them: after a healed partition, each vote
// request of the next election could go out on a dead connection and fail,
// costing an election round apiece (seen in a chaos run: a 3 s gap after
// kill-leader instead of about 1 s).
func (n *Node) purgeIdleConnsOnRuleChange(done <-chan struct{}) {
	changed := n.cfg.Network.Changed()
	for {
		select {
		case <-changed:
			// Take the next channel first: a change made while the pool
			// is being emptied then wakes this loop again.
			changed = n.cfg.Network.Changed()
			n.transport.CloseStreams()
			n.rulePurges.Add(1)
		case <-done:
			return
		}
	}
}

// watchLeader turns raft's leader observations into a broadcast channel, so
// requests waiting for a leader wake as soon as one is known. A non-blocking
// observer never stalls raft.
func (n *Node) watchLeader() {
	ch := make(chan raft.Observation, 16)
	n.observer = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation:
			return true
		}
		return false
	})
	n.raft.RegisterObserver(n.observer)
	n.obsDone = make(chan struct{})
	go func() {
		for {
			select {
			case o := <-ch:
				switch d := o.Data.(type) {
				case raft.LeaderObservation:
					if d.LeaderID != "" {
						n.cfg.Metrics.leaderChanged()
					}
					n.leaderMu.Lock()
					close(n.leaderCh)
					n.leaderCh = make(chan struct{})
					n.leaderMu.Unlock()
					if n.cfg.OnLeaderChange != nil {
						n.cfg.OnLeaderChange()
					}
				case raft.FailedHeartbeatObservation:
					n.notifyPeer(PeerHeartbeat{Peer: string(d.PeerID), Failed: true})
				case raft.ResumedHeartbeatObservation:
					n.notifyPeer(PeerHeartbeat{Peer: string(d.PeerID)})
				}
			case <-n.obsDone:
				return
			}
		}
	}()
}

// PeerHeartbeat is what raft itself saw of a peer: as leader it heartbeats
// every follower, and reports when a heartbeat fails and when one succeeds
// again after failures. The failure detector takes it as extra evidence.
type PeerHeartbeat struct {
	Peer   string
	Failed bool
}

func (n *Node) notifyPeer(ev PeerHeartbeat) {
	if n.cfg.OnPeerHeartbeat != nil {
		n.cfg.OnPeerHeartbeat(ev)
	}
}

// fault passes a failure Raft cannot recover from by itself to the owner.
func (n *Node) fault(err error) {
	if n.cfg.OnFault != nil {
		n.cfg.OnFault(err)
	}
}

// logCorrupt hears of a corrupt log entry met while the node runs. The
// line goes to the log first: if Raft needed the entry to apply it, it
// panics as soon as the read returns, and the process ends there (exit
// status 2, the panic naming the same entry). Otherwise the owner stops
// the node (see Config.OnFault).
func (n *Node) logCorrupt(err *LogCorruptError) {
	if n.cfg.Logger != nil {
		n.cfg.Logger.Error("corrupt raft log entry: this node stops", "error", err.Error())
	}
	n.fault(err)
}

// leaderTerm is the term this node leads in, or 0 when it does not lead
// (or Raft does not run yet).
func (n *Node) leaderTerm() uint64 {
	r := n.running.Load()
	if r == nil || r.State() != raft.Leader {
		return 0
	}
	return r.CurrentTerm()
}

// Running reports whether Raft is still running: false once it has shut
// down, whether through Close or on its own.
func (n *Node) Running() bool { return n.raft.State() != raft.Shutdown }

// InjectShutdown stops Raft underneath its owner, as a fatal internal
// error would, so that tests and the chaos suite can watch the owner
// notice and recover (see Running). Nothing else calls it.
func (n *Node) InjectShutdown() error { return n.raft.Shutdown().Error() }

// InjectListenerFailure closes the Raft listener underneath the transport,
// as a failed socket would, so that tests and the chaos suite can watch
// the owner hear of it through OnFault and recover.
func (n *Node) InjectListenerFailure() error { return n.layer.port.InjectFailure() }

// LeaderChanged returns a channel closed at the next leader change.
func (n *Node) LeaderChanged() <-chan struct{} {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	return n.leaderCh
}

// Close stops Raft and closes the log store and transport. The state file
// belongs to the caller and stays open.
func (n *Node) Close() error {
	f := n.raft.Shutdown()
	n.layer.closeConns()
	err := f.Error()
	n.raft.DeregisterObserver(n.observer)
	close(n.obsDone)
	n.closeStores()
	if n.rpc != nil {
		n.rpc.Close()
	}
	return err
}

// admit lets a node use this node's peer port only while it is a member:
// a stranger, even one holding a certificate from the cluster CA, cannot
// send Raft RPCs or forward requests. A node that belongs to no cluster
// yet (a new node waiting to be added) admits anyone, since the leader
// that adds it has to reach it.
func (n *Node) admit(id string) error {
	r := n.running.Load()
	if r == nil {
		return fmt.Errorf("refusing %q: raft is not running yet", id)
	}
	servers := r.GetConfiguration().Configuration().Servers
	if len(servers) == 0 {
		return nil
	}
	for _, s := range servers {
		if string(s.ID) == id {
			return nil
		}
	}
	return fmt.Errorf("refusing %q: not a member of this cluster", id)
}

func (n *Node) closeStores() {
	if n.transport != nil {
		n.transport.Close()
	}
	if n.logStore != nil {
		n.logStore.Close()
	}
}

// ID is this node's id.
func (n *Node) ID() string { return n.cfg.NodeID }

// IsLeader reports whether this node currently believes it leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the id and Raft address of the leader this node knows of,
// or empty strings.
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// LeaderAPI returns the leader's id and registered HTTP address, if known.
func (n *Node) LeaderAPI() (id, apiAddr string) {
	id, _ = n.Leader()
	if id == "" {
		return "", ""
	}
	return id, n.store.NodeAddr(id)
}

// LeaderInfo is a node's view of the leader, as read responses report it.
type LeaderInfo struct {
	Known       bool
	ID          string
	RaftAddr    string
	LastContact time.Duration // since this node last heard from the leader; 0 on the leader
}

// LastContact is how long ago this node last heard from a leader; zero on
// the leader itself.
func (n *Node) LastContact() time.Duration {
	if n.IsLeader() {
		return 0
	}
	t := n.raft.LastContact()
	if t.IsZero() {
		return 0
	}
	return time.Since(t)
}

// Apply proposes an encoded storage.Command and waits until it is committed
// on a majority and applied here. It blocks: callers run it off their own
// hot path, and many Applies in flight let raft batch them into one disk
// write.
func (n *Node) Apply(cmd []byte, enqueueTimeout time.Duration) (storage.Result, error) {
	if !n.IsLeader() {
		return storage.Result{}, ErrNotLeader
	}
	f := n.raft.Apply(cmd, enqueueTimeout)
	if err := f.Error(); err != nil {
		return storage.Result{}, translate(err)
	}
	switch res := f.Response().(type) {
	case storage.Result:
		if res.NoSpace {
			// Refused alike on every node, and nothing changed.
			return res, &storage.NoSpaceError{Alarms: n.store.Alarms()}
		}
		return res, nil
	case error:
		// Committed, so durable on a majority, but not applied here.
		return storage.Result{}, fmt.Errorf("%w (committed at index %d, not applied on this node: %v)", ErrUnknownOutcome, f.Index(), res)
	}
	return storage.Result{}, fmt.Errorf("%w (unexpected state machine answer %T)", ErrUnknownOutcome, f.Response())
}

// translate maps raft's errors onto ours by what they mean for the client:
// was the write definitely not applied, or is its outcome unknown?
func translate(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return ErrNotLeader
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrBusy
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("%w (%v)", ErrUnknownOutcome, err)
	}
	return err
}

// EnsureReady makes a new leader commit an entry of its own term right away,
// so the first linearizable read after an election does not pay for it.
func (n *Node) EnsureReady(timeout time.Duration) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	return n.ensureReady(n.raft.CurrentTerm(), timeout)
}

// ensureReady makes sure this leader has committed an entry of the given
// term. Until it has, its commit index may trail writes acknowledged by the
// previous leader, so it must not hand out read indexes. raft's own no-op
// never reaches the FSM, hence our own OpNoop.
func (n *Node) ensureReady(term uint64, timeout time.Duration) error {
	if n.readyTerm.Load() == term {
		return nil
	}
	n.readyMu.Lock()
	defer n.readyMu.Unlock()
	if n.readyTerm.Load() == term {
		return nil
	}
	noop := (&storage.Command{Op: storage.OpNoop}).Encode()
	f := n.raft.Apply(noop, timeout)
	if err := f.Error(); err != nil {
		// The no-op has no effect a client could see: whatever became of
		// it, the answer is "not the leader (any more)".
		if err := translate(err); !errors.Is(err, ErrUnknownOutcome) {
			return err
		}
		return ErrNotLeader
	}
	if err, ok := f.Response().(error); ok {
		// The state machine did not apply it: reads here would miss it.
		return fmt.Errorf("%w (%v)", ErrNoLeader, err)
	}
	if n.raft.CurrentTerm() != term {
		return ErrNotLeader
	}
	n.readyTerm.Store(term)
	return nil
}

// Member is one server in the Raft configuration.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	Voter    bool   `json:"voter"`
	// Suffrage is "voter" or "nonvoter" (peerlink.SuffrageVoter,
	// SuffrageNonvoter): Voter said as a word, as kvctl and the docs
	// name it.
	Suffrage string `json:"suffrage"`
	Leader   bool   `json:"leader"`
	// Version is the release the member runs: this node's own, or what a
	// peer last said in answer to the failure detector's probe; "" for a
	// peer not heard from yet. The actors fill it in.
	Version string `json:"version"`
}

// LearnPeerAddrs tells the fault layer which node owns each Raft and HTTP
// address in the current configuration, so per-peer rules apply to dials.
func (n *Node) LearnPeerAddrs() {
	members, err := n.Members()
	if err != nil {
		return
	}
	for _, m := range members {
		n.cfg.Network.SetPeerAddr(m.RaftAddr, m.ID)
		n.cfg.Network.SetPeerAddr(m.HTTPAddr, m.ID)
	}
}

// Members lists the latest Raft configuration with each node's registered
// HTTP address.
func (n *Node) Members() ([]Member, error) {
	c, err := n.Configuration()
	return c.Members, err
}

// Configuration is the Raft configuration as this node holds it: its
// members and the log index of the newest committed configuration change
// (the Index of Consul's /v1/operator/raft/configuration). hashicorp/raft
// does not report the index itself (its GetConfiguration leaves it 0).
type Configuration struct {
	Members []Member
	Index   uint64
}

// Configuration returns the latest Raft configuration this node knows
// (which may not be committed yet) with each node's registered HTTP
// address.
func (n *Node) Configuration() (Configuration, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Configuration{}, err
	}
	addrs, err := n.store.NodeAddrs()
	if err != nil {
		return Configuration{}, err
	}
	leaderID, _ := n.Leader()
	out := Configuration{Index: n.configIndex.Load()}
	if list, err := n.snaps.List(); err == nil && len(list) > 0 {
		// A configuration older than the newest snapshot is not
		// replayed at start, nor seen after a snapshot from the leader.
		out.Index = max(out.Index, list[0].ConfigurationIndex)
	}
	for _, s := range f.Configuration().Servers {
		suffrage := peerlink.SuffrageVoter
		if s.Suffrage != raft.Voter {
			suffrage = peerlink.SuffrageNonvoter
		}
		out.Members = append(out.Members, Member{
			ID:       string(s.ID),
			RaftAddr: string(s.Address),
			HTTPAddr: addrs[string(s.ID)],
			Voter:    s.Suffrage == raft.Voter,
			Suffrage: suffrage,
			Leader:   string(s.ID) == leaderID,
		})
	}
	return out, nil
}

// member returns the server with id in the latest configuration.
func (n *Node) member(id string) (raft.Server, bool, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, false, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s, true, nil
		}
	}
	return raft.Server{}, false, nil
}

// AddVoter adds (or re-addresses) a voting member. Leader only.
func (n *Node) AddVoter(id, addr string, timeout time.Duration) error {
	existing, err := n.atAddress(id, addr)
	if err != nil || (existing != nil && existing.Suffrage == raft.Voter) {
		return err
	}
	return translate(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error())
}

// AddNonvoter adds a member that replicates the log but does not vote:
// it counts towards no quorum, so adding it can never cost the cluster
// its quorum, however far behind it starts. Adding it again at the same
// address is a no-op; a voter is not demoted. Leader only.
func (n *Node) AddNonvoter(id, addr string, timeout time.Duration) error {
	existing, err := n.atAddress(id, addr)
	switch {
	case err != nil:
		return err
	case existing != nil && existing.Suffrage == raft.Voter:
		return fmt.Errorf("%s is already a voter", id)
	case existing != nil:
		return nil
	}
	return translate(n.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout).Error())
}

// atAddress returns the member id at addr, if there is one, and refuses
// an address that belongs to another member.
func (n *Node) atAddress(id, addr string) (*raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	for _, s := range f.Configuration().Servers {
		if string(s.Address) == addr && string(s.ID) != id {
			return nil, fmt.Errorf("raft address %s already belongs to member %s", addr, s.ID)
		}
		if string(s.ID) == id && string(s.Address) == addr {
			return &s, nil
		}
	}
	return nil, nil
}

// ErrNotMember is Promote's error for an id that is not in the
// configuration.
var ErrNotMember = errors.New("not a member")

// Promote makes the non-voter id a voter, at the address it has. Its
// caller checks first that it has caught up (see actors); a voter is left
// as it is. Leader only.
func (n *Node) Promote(id string, timeout time.Duration) error {
	s, ok, err := n.member(id)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%q: %w", id, ErrNotMember)
	case s.Suffrage == raft.Voter:
		return nil
	}
	return translate(n.raft.AddVoter(s.ID, s.Address, 0, timeout).Error())
}

// RemoveServer removes a member. Leader only; removing the leader itself
// hands leadership over first so the cluster is not left electing.
func (n *Node) RemoveServer(id string, timeout time.Duration) error {
	if id == n.cfg.NodeID && n.IsLeader() {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			return fmt.Errorf("transfer leadership before removing self: %w", err)
		}
		return ErrNotLeader
	}
	return translate(n.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error())
}

// Snapshot takes a snapshot now and compacts the log behind it.
func (n *Node) Snapshot() (uint64, error) {
	f := n.raft.Snapshot()
	if err := f.Error(); err != nil {
		return 0, err
	}
	meta, rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	rc.Close()
	return meta.Index, nil
}

// Status is this node's view of the cluster.
type Status struct {
	ID                string `json:"id"`
	State             string `json:"state"`
	Term              uint64 `json:"term"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastLogIndex      uint64 `json:"last_log_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	LastContactMS     int64  `json:"last_contact_ms"`
	LeaderID          string `json:"leader_id"`
	LeaderRaftAddr    string `json:"leader_raft_addr"`
	LeaderHTTPAddr    string `json:"leader_http_addr"`
	// Version, Commit and GoVersion describe the answering node's build
	// (internal/version); the actors fill them in.
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// Status reports role, term, indexes, leader and last contact.
func (n *Node) Status() Status {
	leaderID, leaderAddr := n.Leader()
	st := Status{
		ID:             n.cfg.NodeID,
		State:          n.raft.State().String(),
		Term:           n.raft.CurrentTerm(),
		CommitIndex:    n.raft.CommitIndex(),
		AppliedIndex:   n.store.AppliedIndex(),
		LastLogIndex:   n.raft.LastIndex(),
		LastContactMS:  n.LastContact().Milliseconds(),
		LeaderID:       leaderID,
		LeaderRaftAddr: leaderAddr,
	}
	if leaderID != "" {
		st.LeaderHTTPAddr = n.store.NodeAddr(leaderID)
	}
	if v, ok := n.raft.Stats()["last_snapshot_index"]; ok {
		fmt.Sscan(v, &st.LastSnapshotIndex)
	}
	return st
}

// Peers returns the Raft addresses of the voters, as /v1/status/peers wants.
func (n *Node) Peers() ([]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out = append(out, string(s.Address))
		}
	}
	return out, nil
}

// HasState reports whether this node already belongs to a cluster (its
// configuration lists at least one server), so a --join is not needed.
func (n *Node) HasState() bool {
	f := n.raft.GetConfiguration()
	return f.Error() == nil && len(f.Configuration().Servers) > 0
}

// TransferLeadership asks raft to hand leadership to another voter; used
// by a fenced leader.
func (n *Node) TransferLeadership() error {
	_, err := n.HandOver(nil)
	return err
}

// HandOver transfers leadership to the first of the voters in prefer
// that takes it, trying each in turn, and returns which one did. With
// none preferred (or none left that is a voter) raft picks the most
// up-to-date voter itself. It is a no-op ("", nil) on a follower, and on
// a leader that is the only voter.
//
// Raft's own pick goes by replication progress alone, so in an idle
// cluster it can choose a voter that died since: the transfer then fails
// after an election timeout and the cluster waits one more for an
// election. A caller that knows who is alive (the failure detector) says
// so in prefer. Each attempt is bounded by raft (an election timeout,
// once the target has caught up).
func (n *Node) HandOver(prefer []string) (to string, err error) {
	if !n.IsLeader() {
		return "", nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", err
	}
	voters := map[string]string{}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != n.cfg.NodeID {
			voters[string(s.ID)] = string(s.Address)
		}
	}
	if len(voters) == 0 {
		return "", nil // nobody to hand over to
	}
	tried := false
	for _, id := range prefer {
		addr, ok := voters[id]
		if !ok {
			continue
		}
		tried = true
		err = n.transferTo(id, addr)
		if err == nil {
			return id, n.confirmLeader(id)
		}
		if !n.IsLeader() {
			// Deposed meanwhile: there is nothing left to hand over.
			return "", nil
		}
	}
	if tried {
		return "", fmt.Errorf("no preferred voter took over: %w", err)
	}
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return "", err
	}
	if err := n.confirmLeader(""); err != nil {
		return "", err
	}
	id, _ := n.Leader()
	return id, nil
}

// confirmWait bounds how long HandOver waits to hear from the new leader.
const confirmWait = 500 * time.Millisecond

// confirmLeader waits until this node hears from a new leader (id, or
// any other node for ""). Raft also answers a transfer with success when
// this leader merely stepped down during it (a lost quorum, a partition),
// which hands nothing over; a real handover is heard of at once, from the
// new leader's first heartbeat.
func (n *Node) confirmLeader(id string) error {
	timer := time.NewTimer(confirmWait)
	defer timer.Stop()
	for {
		changed := n.LeaderChanged()
		if got, _ := n.Leader(); got != "" && got != n.cfg.NodeID && (id == "" || got == id) {
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			who := id
			if who == "" {
				who = "another voter"
			}
			return fmt.Errorf("this node stepped down, but did not hear from %s as the new leader within %v", who, confirmWait)
		}
	}
}

// transferTo hands leadership to id. Raft keeps an attempt that timed
// out "in progress" for a moment after it answered, and refuses a new
// one meanwhile: that is waited out (for up to a second), not taken as
// the new target's failure.
func (n *Node) transferTo(id, addr string) error {
	for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error()
		if !errors.Is(err, raft.ErrLeadershipTransferInProgress) || time.Now().After(deadline) || !n.IsLeader() {
			return err
		}
	}
}

// removeSnapshotLeftovers deletes what an interrupted snapshot left in
// the snapshot directory: raft writes a snapshot into "<name>.tmp" and
// renames it when done, ignores such directories when it lists
// snapshots, and never deletes them, so each crash during a snapshot
// would otherwise leave a copy of the state behind for good.
func removeSnapshotLeftovers(dataDir string, logger hclog.Logger) error {
	dir := filepath.Join(dataDir, "snapshots")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("snapshot directory: %w", err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(path); err != nil {
			return fmt.Errorf("removing the unfinished snapshot %s: %w", path, err)
		}
		if logger != nil {
			logger.Warn("removed an unfinished snapshot left by an interrupted run", "path", path)
		}
	}
	return nil
}

// LastIndex is the index of the last entry in this node's log (or of its
// newest snapshot, when that is later).
func (n *Node) LastIndex() uint64 { return n.raft.LastIndex() }

// RestoreState replaces the whole cluster's state with the state file at
// path, built (storage.Store.BuildRestore) to stand at log index at.
// Leader only. It goes through hashicorp/raft's user-snapshot restore:
// the file becomes this node's newest snapshot, at index at and in the
// current term, with the current membership; the state machine takes it;
// the log jumps past the hole, so every follower is sent the snapshot; and
// the call returns once an entry after it has committed, which shows a
// majority has taken it. Raft lands the snapshot at at only when its log
// ends before at-1: the caller keeps proposals out while it runs, and an
// index that came out different is reported as an error (the state is
// replaced all the same).
func (n *Node) RestoreState(path string, at uint64, timeout time.Duration) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	if last := n.raft.LastIndex(); last >= at-1 {
		return fmt.Errorf("%w (the log reached index %d while the restore was prepared for %d; try again)", ErrBusy, last, at)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: at - 1, Term: n.raft.CurrentTerm(), Size: fi.Size()}
	if err := n.raft.Restore(meta, f, timeout); err != nil {
		return translate(err)
	}
	// Raft ends a restore with a no-op of its own, which the state
	// machine never sees: until an entry it does see commits, its applied
	// index trails the commit index and linearizable reads would wait.
	noop := (&storage.Command{Op: storage.OpNoop}).Encode()
	if err := n.raft.Apply(noop, timeout).Error(); err != nil {
		return fmt.Errorf("the state is restored, but the entry after it did not commit: %w", translate(err))
	}
	if got := n.store.AppliedIndex(); got < at {
		return fmt.Errorf("the restored state stands at index %d, not %d", got, at)
	}
	var snap uint64
	fmt.Sscan(n.raft.Stats()["last_snapshot_index"], &snap)
	if snap != at {
		return fmt.Errorf("raft placed the restored snapshot at index %d, not %d: indexes between may have gone backwards", snap, at)
	}
	return nil
}
