// Package actors is one node's supervision tree: the actors that own Raft,
// the way to the leader, the failure detector and the HTTP listener, the
// supervisors that restart them, and Client, the typed way in for the HTTP
// API. docs/architecture.md draws the tree.
package actors

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/version"
	"github.com/troupe-kv/troupe/storage"
)

// Config is what the actor tree needs to run one node. The state file
// (Store) is opened by the caller and outlives every actor restart.
type Config struct {
	// Raft configures the Raft instance the raft actor opens. Its Network
	// carries every connection to other nodes (faultnet.New with chaos on,
	// faultnet.Plain otherwise); nil means Plain.
	Raft          cluster.Config
	Store         *storage.Store
	HTTPAddr      string // address the HTTP API binds
	AdvertiseHTTP string // address other nodes and clients use
	// Join lists the client addresses (host:port or URL) of existing
	// members to ask, through their client API, to add this node.
	Join []string
	// JoinAsNonvoter asks the seeds to add this node as a non-voter.
	JoinAsNonvoter bool
	// JoinTLS, when set, is used for https seeds (and makes bare
	// host:port seeds https); JoinToken is the ACL token sent with the
	// request.
	JoinTLS   *tls.Config
	JoinToken string
	// HTTPTLS, when set, serves the client API over TLS.
	HTTPTLS *tls.Config
	// ACLEnabled makes the leader check the client's token on membership
	// changes other nodes pass on.
	ACLEnabled bool
	// QuotaBytes is the most live data the state file may hold before
	// this node raises the NOSPACE alarm; MinFreeBytes the least free
	// space the data directory's file system may have. 0 turns either
	// check off (see quotaActor).
	QuotaBytes   int64
	MinFreeBytes int64
	// StateCheckInterval is how often the leader proposes a checkpoint at
	// which every node hashes its state to compare with the others'
	// (see stateIntegrity); 0 turns the comparison off.
	StateCheckInterval time.Duration
	// ClusterID is the id the first leader records for a cluster that has
	// none (cluster.DeriveClusterID of the initial cluster); "" means a
	// random one.
	ClusterID string

	// RequestTimeout bounds how long a request waits for a leader, a
	// quorum or an apply before it fails with "no leader".
	RequestTimeout time.Duration
	// MaxInFlight caps proposals waiting on Raft; beyond it writes are
	// refused at once with ErrBusy instead of queueing without bound.
	MaxInFlight int
	// MaxRestarts within RestartWindow is how often one child may crash
	// before the node gives up and exits.
	MaxRestarts   int
	RestartWindow time.Duration

	// Detector tunes the per-peer failure detector.
	Detector cluster.DetectorConfig
	// SessionNodeGrace is how long the leader's failure detector must
	// hold a node dead before the sessions bound to its health end
	// (default DefaultSessionNodeGrace).
	SessionNodeGrace time.Duration
	// TombstoneTTL is how long the tombstone of a deleted key is kept
	// before the leader has it reaped; negative keeps tombstones for
	// ever, zero means DefaultTombstoneTTL.
	TombstoneTTL time.Duration
	// HTTPLimits bound what a client connection may cost; zero values
	// take DefaultHTTPLimits'.
	HTTPLimits HTTPLimits
	// Build is what this node reports as its build (status, probes,
	// troupe_build_info); zero means this binary's, version.Info().
	Build version.Build

	Logger *slog.Logger
}

// Tree is one node's actor system: app → node → {raft, forward, peers,
// sessions, quota, http}.
type Tree struct {
	cfg     Config
	system  *actor.ActorSystem
	client  *Client
	app     *actor.PID
	metrics *metrics
	// link is the node's connection pool to other nodes' peer ports
	// (forwarding, probes). It is a plain struct shared by the actors that
	// talk to peers: it holds no state of its own beyond idle connections.
	link *peerlink.Client

	stopping atomic.Bool
	// raftLeftOpen is set when Raft did not close within RaftCloseTimeout
	// as the node stopped.
	raftLeftOpen atomic.Bool
	exitOnce     sync.Once
	exited       chan error
	stopped      chan struct{} // closed when the app actor (so the whole tree) has stopped

	lastFailMu sync.Mutex
	lastFail   map[string]string // actor id -> reason of its latest crash

	// view is what the raft actor publishes for the one question every
	// read asks (who leads, and how long since this node heard from it);
	// nil while Raft is closed. See leaderView.
	view atomic.Pointer[published]

	// clientPort is the client port's latest trouble (see portHealth).
	clientPort portHealth
	// disk is the Raft log's latest write failure; it outlives Raft
	// restarts.
	disk cluster.DiskHealth
	// space is the quota actor's latest measurement; nil before the
	// first.
	space atomic.Pointer[cluster.Space]
	// integrity is this node's verdict on its own state (see
	// stateIntegrity): while fenced it serves nothing.
	integrity stateIntegrity
	// versions is what each peer last said it runs (see peerVersions).
	versions peerVersions
	// console is the node's recent past for the web console.
	console *console

	// spawning is held for writing while an actor (re)creates children
	// that others send to by name, and for reading by those senders:
	// protoactor registers a new actor's name before its mailbox is ready
	// to take messages, and a message sent in between races with that.
	spawning sync.RWMutex
}

// New builds the actor system and the Client that the HTTP API uses to talk
// to it. Nothing runs until Start.
func New(cfg Config) *Tree {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Raft.Network == nil {
		cfg.Raft.Network = faultnet.Plain(cfg.Raft.NodeID)
	}
	if cfg.Detector.ProbeInterval <= 0 {
		cfg.Detector = cluster.DefaultDetector()
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.SessionNodeGrace <= 0 {
		cfg.SessionNodeGrace = DefaultSessionNodeGrace
	}
	if cfg.TombstoneTTL == 0 {
		cfg.TombstoneTTL = DefaultTombstoneTTL
	}
	cfg.Raft.RequestTimeout = cfg.RequestTimeout
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4096
	}
	def := DefaultHTTPLimits()
	l := &cfg.HTTPLimits
	l.ReadHeaderTimeout = cmp.Or(l.ReadHeaderTimeout, def.ReadHeaderTimeout)
	l.ReadTimeout = cmp.Or(l.ReadTimeout, def.ReadTimeout)
	l.IdleTimeout = cmp.Or(l.IdleTimeout, def.IdleTimeout)
	l.MaxHeaderBytes = cmp.Or(l.MaxHeaderBytes, def.MaxHeaderBytes)
	l.MaxConns = cmp.Or(l.MaxConns, def.MaxConns)
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 5
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = time.Minute
	}
	if cfg.Build == (version.Build{}) {
		cfg.Build = version.Info()
	}
	// protoactor logs every recovered panic and dead letter at Info; the
	// node reports restarts itself (see watchSupervision), so only its
	// warnings are worth passing through.
	quiet := cfg.Logger.With("lib", "protoactor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(levelFilter{quiet.Handler(), slog.LevelWarn})
	}))
	t := &Tree{
		cfg: cfg, system: system,
		link:     peerlink.NewClient(peerlink.Config{Network: cfg.Raft.Network, TLS: cfg.Raft.PeerTLS}),
		exited:   make(chan error, 1),
		stopped:  make(chan struct{}),
		lastFail: map[string]string{},
		console:  newConsole(cfg.Raft.NodeID),
	}
	t.client = &Client{tree: t}
	t.cfg.Raft.PeerHandler = peerHandler{t.client}
	t.cfg.Raft.Disk = &t.disk
	// Raft's own series outlive each reopening of Raft by the raft actor.
	t.cfg.Raft.Metrics = cluster.NewMetrics()
	t.metrics = newMetrics(t)
	// The leader's session timers hear of every session created and
	// destroyed; elsewhere the message is dropped at once.
	cfg.Store.OnSessionChange(func(c storage.SessionChange) { t.send("sessions", &c) })
	return t
}

// Metrics is the node's Prometheus registry, served at /metrics.
func (t *Tree) Metrics() prometheus.Gatherer { return t.metrics.registry }

// Registerer is the same registry, for the parts built around the tree
// (the HTTP API) to add the series they measure themselves.
func (t *Tree) Registerer() prometheus.Registerer { return t.metrics.registry }

// Client is the HTTP API's way into the tree.
func (t *Tree) Client() *Client { return t.client }

// Start spawns the tree; handler is served by the http actor.
func (t *Tree) Start(handler http.Handler) error {
	t.watchSupervision()
	t.watchTimeline()
	props := actor.PropsFromProducer(
		func() actor.Actor { return &appActor{tree: t, handler: handler} },
		actor.WithSupervisor(t.childStrategy()),
	)
	pid, err := t.system.Root.SpawnNamed(props, "app")
	if err != nil {
		return fmt.Errorf("spawn app actor: %w", err)
	}
	t.app = pid
	return nil
}

// Done delivers an error when the node stopped for good on its own: a
// child kept crashing past its restart budget, or a failure no restart can
// cure. main exits non-zero on it.
func (t *Tree) Done() <-chan error { return t.exited }

func (t *Tree) fail(err error) {
	t.exitOnce.Do(func() { t.exited <- err })
}

// The steps of a graceful stop, each with a deadline of its own, so that
// no fault (a dead or partitioned peer, a client write waiting for a
// quorum that is not there, a snapshot being written) can hold a stop
// past kvnode's shutdown bound, itself well inside Docker's default stop
// timeout (10 s) and systemd's (90 s). Measured figures are in
// docs/operations.md ("Stopping a node").
const (
	// HandOverTimeout bounds the leadership transfer. Raft bounds each
	// attempt by an election timeout once the target has caught up.
	HandOverTimeout = 1500 * time.Millisecond
	// DrainTimeout bounds how long in-flight HTTP requests may take to
	// finish; those still running then are cut off (their clients see
	// the connection close: for a write, an unknown outcome, as for a
	// crash).
	DrainTimeout = 1500 * time.Millisecond
	// RaftCloseTimeout bounds Raft's shutdown. Past it the node stops
	// without waiting, and leaves the state file open (Raft may still be
	// writing to it): both it and the log are crash-safe.
	RaftCloseTimeout = 1500 * time.Millisecond
)

// ErrRaftLeftOpen is Stop's error when Raft did not shut down within
// RaftCloseTimeout: the caller must not close the state file under it.
var ErrRaftLeftOpen = errors.New("raft did not shut down in time; leaving it and the state file to the operating system")

// Stop shuts the node down: leadership is handed over if this node leads
// (at most HandOverTimeout), then HTTP drains (at most DrainTimeout) and
// Raft closes (at most RaftCloseTimeout). ctx bounds the whole.
func (t *Tree) Stop(ctx context.Context) error {
	if t.app == nil {
		return nil
	}
	t.handOver(ctx)
	t.stopping.Store(true)
	// Wait for the app actor's Stopped (not a PoisonFuture, whose timeout is
	// fixed at 10s): Raft must be closed before the caller closes the state
	// file underneath it.
	t.system.Root.Poison(t.app)
	select {
	case <-t.stopped:
		if t.raftLeftOpen.Load() {
			return ErrRaftLeftOpen
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actor tree did not stop in time: %w", ctx.Err())
	}
}

// handOver transfers leadership before the node stops, if it leads, and
// logs the outcome: the line an operator (and the tests) read to know the
// stop was graceful.
func (t *Tree) handOver(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, HandOverTimeout)
	defer cancel()
	start := time.Now()
	q := newAsked()
	r, err := replyAs[*handedOver](t.client.ask(ctx, "raft", &transferLeadership{q}, q))
	switch {
	case err != nil:
		t.cfg.Logger.Warn("leadership transfer before shutdown did not finish; stopping anyway", "err", err, "took", time.Since(start).Round(time.Millisecond))
	case !r.wasLeader:
	case r.err != nil:
		t.cfg.Logger.Warn("leadership transfer before shutdown failed; stopping anyway (the others elect a leader after an election timeout)", "err", r.err, "term", r.term, "took", time.Since(start).Round(time.Millisecond))
	default:
		t.cfg.Logger.Info("leadership handed over before shutdown", "to", r.to, "term", r.term, "took", time.Since(start).Round(time.Millisecond))
	}
}

// leaderView is the part of Raft the raft actor lets others observe
// without a message: who leads, where to reach it, how long since this
// node heard from it, and when that changes. Client reads it to send each
// request straight to the actor that serves it (raft on the leader,
// forward elsewhere), and every read reports it in its headers. All are
// reads of Raft's own atomics; a round trip through the raft actor's
// mailbox for them cost a seventh of a node's CPU under stale reads, and
// a second hop on every forwarded request. Everything else about Raft
// goes through the actor, which still checks that it leads before it
// proposes.
type leaderView interface {
	IsLeader() bool
	Leader() (id, raftAddr string)
	LeaderAPI() (id, httpAddr string)
	LastContact() time.Duration
	LeaderChanged() <-chan struct{}
}

type published struct{ leaderView }

// publish makes v the view (nil: none, while Raft is closed).
func (t *Tree) publish(v leaderView) {
	if v == nil {
		t.view.Store(nil)
		return
	}
	t.view.Store(&published{v})
}

// pid returns the stable PID of a named actor in the tree. PIDs survive
// restarts, so they can be computed instead of looked up.
func (t *Tree) pid(name string) *actor.PID {
	return t.system.NewLocalPID("app/node/" + name)
}

// send delivers msg to the named actor from outside its parent (see
// spawning).
func (t *Tree) send(name string, msg any) {
	t.spawning.RLock()
	defer t.spawning.RUnlock()
	t.system.Root.Send(t.pid(name), msg)
}

// watchSupervision logs every supervision decision, so each restart leaves a
// line naming the actor and the panic, and remembers the last reason per
// actor for the message the node gives up with.
func (t *Tree) watchSupervision() {
	t.system.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *actor.SupervisorEvent:
			reason := fmt.Sprint(e.Reason)
			t.cfg.Logger.Warn("actor failed", "actor", e.Child.Id, "directive", e.Directive.String(), "reason", reason)
			t.metrics.actorFailure.WithLabelValues(e.Child.Id, e.Directive.String()).Inc()
			t.lastFailMu.Lock()
			t.lastFail[e.Child.Id] = reason
			t.lastFailMu.Unlock()
		case *actor.DeadLetterEvent:
			// A request that found no actor (one stopped for good) would
			// otherwise wait for an answer until its deadline.
			if q, ok := e.Message.(answerer); ok {
				q.answer(&done{err: errRaftDown})
			}
		case *cluster.PeerStateChanged:
			level := slog.LevelInfo
			if e.To == cluster.PeerDead || e.To == cluster.PeerSuspect {
				level = slog.LevelWarn
			}
			t.cfg.Logger.Log(context.Background(), level, "peer state changed", "peer", e.Peer, "from", string(e.From), "to", string(e.To), "phi", math.Round(e.Phi*100)/100)
			t.metrics.peerChanges.WithLabelValues(e.Peer, string(e.To)).Inc()
		}
	})
}

// lastFailure is the reason of actor id's latest crash, or "".
func (t *Tree) lastFailure(id string) string {
	t.lastFailMu.Lock()
	defer t.lastFailMu.Unlock()
	return t.lastFail[id]
}

// levelFilter drops records below min.
type levelFilter struct {
	slog.Handler
	min slog.Level
}

func (f levelFilter) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= f.min && f.Handler.Enabled(ctx, l)
}

func (f levelFilter) WithAttrs(a []slog.Attr) slog.Handler {
	return levelFilter{f.Handler.WithAttrs(a), f.min}
}

func (f levelFilter) WithGroup(g string) slog.Handler {
	return levelFilter{f.Handler.WithGroup(g), f.min}
}
