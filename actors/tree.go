package actors

import (
	"context"
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
	"github.com/troupe-kv/troupe/storage"
)

// Config is what the actor tree needs to run one node. The state file
// (Store) is opened by the caller and outlives every actor restart.
type Config struct {
	Raft          cluster.Config
	Store         *storage.Store
	HTTPAddr      string   // address the HTTP API binds
	AdvertiseHTTP string   // address other nodes and clients use
	Join          []string // HTTP addresses of existing members to join through

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

	Logger *slog.Logger
}

// Tree is one node's actor system: app → node → {raft, http}.
type Tree struct {
	cfg     Config
	system  *actor.ActorSystem
	gateway *Gateway
	app     *actor.PID
	metrics *metrics

	stopping atomic.Bool
	exitOnce sync.Once
	exited   chan error
	stopped  chan struct{} // closed when the app actor (so the whole tree) has stopped
}

// New builds the actor system and the Gateway that the HTTP API uses to talk
// to it. Nothing runs until Start.
func New(cfg Config) *Tree {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Raft.Network == nil {
		cfg.Raft.Network = faultnet.New(cfg.Raft.NodeID)
	}
	if cfg.Detector.ProbeInterval <= 0 {
		cfg.Detector = cluster.DefaultDetector()
	}
	// protoactor logs every recovered panic and dead letter at Info; the
	// node reports restarts itself (see watchSupervision), so only its
	// warnings are worth passing through.
	quiet := cfg.Logger.With("lib", "protoactor")
	system := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(levelFilter{quiet.Handler(), slog.LevelWarn})
	}))
	t := &Tree{cfg: cfg, system: system, exited: make(chan error, 1), stopped: make(chan struct{})}
	t.gateway = newGateway(t)
	t.metrics = newMetrics(t)
	return t
}

// Metrics is the node's Prometheus registry, served at /metrics.
func (t *Tree) Metrics() prometheus.Gatherer { return t.metrics.registry }

// Gateway is the entry point for the HTTP API.
func (t *Tree) Gateway() *Gateway { return t.gateway }

// Start spawns the tree; handler is served by the http actor.
func (t *Tree) Start(handler http.Handler) error {
	t.watchSupervision()
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

// Done delivers an error when the node stopped for good on its own (a child
// kept crashing past its restart budget). main exits non-zero on it.
func (t *Tree) Done() <-chan error { return t.exited }

func (t *Tree) fail(err error) {
	t.exitOnce.Do(func() { t.exited <- err })
}

// Stop shuts the node down: leadership is handed over if this node leads,
// then HTTP drains and Raft closes.
func (t *Tree) Stop(ctx context.Context) error {
	t.stopping.Store(true)
	if n := t.gateway.node(); n != nil && n.IsLeader() {
		done := make(chan error, 1)
		go func() { done <- n.TransferLeadership() }()
		select {
		case err := <-done:
			if err != nil {
				t.cfg.Logger.Warn("leadership transfer before shutdown failed", "err", err)
			}
		case <-ctx.Done():
		}
	}
	if t.app == nil {
		return nil
	}
	// Wait for the app actor's Stopped (not a PoisonFuture, whose timeout is
	// fixed at 10s): Raft must be closed before the caller closes the state
	// file underneath it.
	t.system.Root.Poison(t.app)
	select {
	case <-t.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("actor tree did not stop in time: %w", ctx.Err())
	}
}

// pid returns the stable PID of a named actor in the tree. PIDs survive
// restarts, so they can be computed instead of looked up.
func (t *Tree) pid(name string) *actor.PID {
	return t.system.NewLocalPID("app/node/" + name)
}

// watchSupervision logs every supervision decision, so each restart leaves a
// line naming the actor and the panic.
func (t *Tree) watchSupervision() {
	t.system.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *actor.SupervisorEvent:
			t.cfg.Logger.Warn("actor failed", "actor", e.Child.Id, "directive", e.Directive.String(), "reason", fmt.Sprint(e.Reason))
			t.metrics.actorFailure.WithLabelValues(e.Child.Id, e.Directive.String()).Inc()
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
