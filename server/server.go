// Package server assembles one Troupe node from its configuration: it
// claims the data directory, opens the state file, builds the actor tree
// and the HTTP API over it, and starts them. kvnode runs one; tests run
// several in one process. There is no other way to build a node.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/api"
	"github.com/troupe-kv/troupe/certs"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/version"
	"github.com/troupe-kv/troupe/storage"
)

// Config is a node's validated configuration (cmd/kvnode reads it from
// flags, environment and file; docs/configuration.md lists every setting).
type Config struct {
	// Backups schedules snapshots of the state to a directory (off by
	// default).
	Backups        Backups
	NodeID         string
	DataDir        string
	HTTPAddr       string // address the HTTP API binds
	RaftAddr       string // address the Raft transport binds
	AdvertiseHTTP  string // HTTP address others use; default HTTPAddr
	AdvertiseRaft  string // Raft address others use; default RaftAddr
	InitialCluster []cluster.Server
	// InitialClusterToken goes into the cluster id derived from
	// InitialCluster (cluster.DeriveClusterID).
	InitialClusterToken string
	// CheckInitialCluster refuses to start a node whose state belongs to
	// another cluster than InitialCluster describes (set when the operator
	// gave initial_cluster, not when it defaulted to this node alone).
	CheckInitialCluster bool
	Join                []string
	// Nonvoter makes a node that joins (Join) ask to be added as a
	// non-voting member, to be promoted once it has caught up.
	Nonvoter       bool
	Datacenter     string
	MaxValueSize   int64
	LogSegmentSize int
	RequestTimeout time.Duration
	MaxInFlight    int
	MaxRestarts    int
	RestartWindow  time.Duration
	Timing         cluster.Timing
	Detector       cluster.DetectorConfig
	// SessionNodeGrace: see actors.Config; SessionTTLMin: see
	// api.Options.
	SessionNodeGrace time.Duration
	SessionTTLMin    time.Duration
	// TombstoneTTL: see actors.Config (negative keeps tombstones for
	// ever).
	TombstoneTTL time.Duration
	// HTTPLimits bound what a client connection may cost (zero values:
	// actors.DefaultHTTPLimits).
	HTTPLimits actors.HTTPLimits
	// Build is what the node reports as its build; zero means this
	// binary's (internal/version). Tests give nodes different ones.
	Build version.Build
	// MaxBlockingQueries, RateLimit and RateBurst: see api.Options.
	MaxBlockingQueries int
	RateLimit          float64
	// TxnMaxOps: see api.Options.
	TxnMaxOps int
	// StateCheckInterval: see actors.Config.
	StateCheckInterval time.Duration
	// QuotaBytes and MinFreeBytes: past either, the node raises the
	// NOSPACE alarm (see actors.Config); 0 turns the check off.
	QuotaBytes   int64
	MinFreeBytes int64
	RateBurst    int
	// Chaos turns on the fault layer on every node-to-node connection and
	// mounts /v1/chaos/*. Never in production.
	Chaos bool
	// UnsafeReads answers linearizable reads from local state without a
	// read barrier, so the chaos checker can be shown to catch it.
	UnsafeReads bool
	// TLS, when set, turns TLS on for both ports: HTTPS on the client
	// port, and mutual TLS with the cluster CA on the peer port. Its
	// certificate must name this node (NodeID).
	TLS *certs.Reloader
	// TLSVerifyIncoming requires client certificates from the cluster CA
	// on the client port too.
	TLSVerifyIncoming bool
	// RepairStateFile lets a node whose state file is damaged move it aside
	// and rebuild it from its newest snapshot and the Raft log; without
	// it such a node refuses to start and says so.
	RepairStateFile bool
	// Pprof mounts Go's profiler at /debug/pprof/.
	Pprof bool
	// ACLEnabled turns on ACL enforcement on the HTTP API (api.Options).
	ACLEnabled bool
	// ACLToken is the token this node sends when it calls another node's
	// client API (a join, for one) while ACLs are on.
	ACLToken string

	// Logger is the node's log; RaftLogger is hashicorp/raft's. Nil
	// discards.
	Logger     *slog.Logger
	RaftLogger hclog.Logger
}

// StateFileName is the state file's name in the data directory.
const StateFileName = "kv.db"

// Node is one running node.
type Node struct {
	cfg   Config
	store *storage.Store
	tree  *actors.Tree
	// stopBackups ends scheduled backups; backupsDone closes when they
	// have (nil when there are none).
	stopBackups chan struct{}
	backupsDone chan struct{}
	stopOnce    sync.Once
}

// Start builds the node described by cfg and starts it. The node runs
// until Stop, or until it fails for good (see Done).
func Start(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RaftLogger == nil {
		cfg.RaftLogger = hclog.NewNullLogger()
	}
	if cfg.AdvertiseHTTP == "" {
		cfg.AdvertiseHTTP = cfg.HTTPAddr
	}
	if cfg.AdvertiseRaft == "" {
		cfg.AdvertiseRaft = cfg.RaftAddr
	}
	if cfg.TLS != nil {
		if id := cfg.TLS.NodeID(); id != cfg.NodeID {
			return nil, fmt.Errorf("tls: the certificate %s names node %q, but this node is %q", cfg.TLS.Files().Cert, id, cfg.NodeID)
		}
	}
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return nil, err
	}
	store, err := openStateFile(cfg)
	if err != nil {
		return nil, err
	}
	var clusterID string
	if len(cfg.InitialCluster) > 0 {
		clusterID = cluster.DeriveClusterID(cfg.InitialCluster, cfg.InitialClusterToken)
	}
	if stored := store.ClusterID(); stored != "" && cfg.CheckInitialCluster && stored != clusterID {
		store.Close()
		return nil, fmt.Errorf("data_dir: %s holds the state of cluster %s, but initial_cluster and initial_cluster_token describe cluster %s: this is another cluster's data directory, or the settings changed (docs/fault-model.md)", cfg.DataDir, stored, clusterID)
	}
	if store.Discarded() {
		cfg.Logger.Warn("the state file was not flushed before the machine restarted; rebuilding it from the newest snapshot and the Raft log")
	}
	network := faultnet.Plain(cfg.NodeID)
	if cfg.Chaos {
		network = faultnet.New(cfg.NodeID)
	}
	var httpTLS, joinTLS *tls.Config
	if cfg.TLS != nil {
		httpTLS = cfg.TLS.APIServerConfig(cfg.TLSVerifyIncoming)
		f := cfg.TLS.Files()
		if joinTLS, err = certs.ClientConfig(f.CA, f.Cert, f.Key); err != nil {
			store.Close()
			return nil, err
		}
	}
	tree := actors.New(actors.Config{
		Raft: cluster.Config{
			NodeID:         cfg.NodeID,
			DataDir:        cfg.DataDir,
			RaftBind:       cfg.RaftAddr,
			RaftAdvertise:  cfg.AdvertiseRaft,
			InitialCluster: cfg.InitialCluster,
			Timing:         cfg.Timing,
			Logger:         cfg.RaftLogger,
			Network:        network,
			LogSegmentSize: cfg.LogSegmentSize,
			PeerLogger:     cfg.Logger.With("component", "peer-port"),
			PeerTLS:        peerTLS(cfg.TLS),
			// The API proposes nothing larger (a transaction that would
			// be is refused there).
			MaxCommandBytes: api.CommandLimit(cfg.MaxValueSize),
		},
		Store:              store,
		HTTPAddr:           cfg.HTTPAddr,
		AdvertiseHTTP:      cfg.AdvertiseHTTP,
		Join:               cfg.Join,
		JoinAsNonvoter:     cfg.Nonvoter,
		JoinTLS:            joinTLS,
		JoinToken:          cfg.ACLToken,
		ClusterID:          clusterID,
		ACLEnabled:         cfg.ACLEnabled,
		StateCheckInterval: cfg.StateCheckInterval,
		QuotaBytes:         cfg.QuotaBytes,
		MinFreeBytes:       cfg.MinFreeBytes,
		HTTPTLS:            httpTLS,
		RequestTimeout:     cfg.RequestTimeout,
		MaxInFlight:        cfg.MaxInFlight,
		MaxRestarts:        cfg.MaxRestarts,
		RestartWindow:      cfg.RestartWindow,
		Detector:           cfg.Detector,
		HTTPLimits:         cfg.HTTPLimits,
		SessionNodeGrace:   cfg.SessionNodeGrace,
		TombstoneTTL:       cfg.TombstoneTTL,
		Build:              cfg.Build,
		Logger:             cfg.Logger,
	})
	client := tree.Client()
	backends := api.Backends{KV: client, Cluster: client, ACL: client, Sessions: client, Snapshots: client, Console: client}
	if cfg.Chaos {
		backends.Chaos = client
	}
	handler := api.New(backends, api.Options{
		Datacenter:         cfg.Datacenter,
		NodeID:             cfg.NodeID,
		SessionTTLMin:      cfg.SessionTTLMin,
		MaxValueSize:       cfg.MaxValueSize,
		RequestTimeout:     cfg.RequestTimeout,
		Metrics:            tree.Metrics(),
		Registerer:         tree.Registerer(),
		UnsafeReads:        cfg.UnsafeReads,
		Pprof:              cfg.Pprof,
		MaxBlockingQueries: cfg.MaxBlockingQueries,
		TxnMaxOps:          cfg.TxnMaxOps,
		RateLimit:          cfg.RateLimit,
		RateBurst:          cfg.RateBurst,
		ACLEnabled:         cfg.ACLEnabled,
		MemberTLS:          joinTLS,
		Logger:             cfg.Logger,
	})
	if err := tree.Start(handler); err != nil {
		store.Close()
		return nil, err
	}
	cfg.Logger.Info("kvnode starting", "node_id", cfg.NodeID, "http", cfg.AdvertiseHTTP, "raft", cfg.AdvertiseRaft, "data_dir", cfg.DataDir, "chaos", cfg.Chaos, "tls", cfg.TLS != nil, "acl_enabled", cfg.ACLEnabled)
	if cfg.TLS == nil && !(IsLoopback(cfg.HTTPAddr) && IsLoopback(cfg.RaftAddr)) {
		cfg.Logger.Warn("TLS is off on a port beyond loopback: client requests travel in the clear, and anyone who can reach the Raft port can act as a member of this cluster (docs/security.md)", "http", cfg.HTTPAddr, "raft", cfg.RaftAddr)
	}
	if !cfg.ACLEnabled && !IsLoopback(cfg.HTTPAddr) {
		cfg.Logger.Warn("ACLs are off and the HTTP API listens on "+cfg.HTTPAddr+", beyond this machine: anyone who can reach it can read, write and delete every key, add and remove members, take snapshots"+chaosOpen(cfg.Chaos)+"; set acl_enabled (docs/configuration.md)", "http", cfg.HTTPAddr)
	}
	if cfg.Chaos {
		cfg.Logger.Warn("chaos endpoints are enabled: never run this in production")
	}
	if cfg.UnsafeReads {
		cfg.Logger.Warn("unsafe_local_reads is on: reads may return stale data; this setting exists only to test the chaos checker")
	}
	n := &Node{cfg: cfg, store: store, tree: tree, stopBackups: make(chan struct{})}
	if b := cfg.Backups; b.Dir != "" && b.Interval > 0 {
		n.backupsDone = make(chan struct{})
		go func() {
			defer close(n.backupsDone)
			runBackups(b, tree.Client(), cfg.NodeID, max(cfg.RequestTimeout, time.Minute), cfg.Logger, n.stopBackups)
		}()
	}
	return n, nil
}

func chaosOpen(on bool) string {
	if on {
		return ", and inject faults and crashes (chaos is on)"
	}
	return ""
}

// IsLoopback reports whether addr (host:port) binds only the loopback
// interface. An empty host or a wildcard binds every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Done delivers an error when the node stopped for good on its own (see
// actors.Tree.Done); the process should then exit non-zero.
func (n *Node) Done() <-chan error { return n.tree.Done() }

// Client is the node's way in, as the HTTP API uses it.
func (n *Node) Client() *actors.Client { return n.tree.Client() }

// Store is the node's state file.
func (n *Node) Store() *storage.Store { return n.store }

// Stop shuts the node down: leadership handed over, HTTP drained, Raft
// closed, then the state file closed. If the tree does not stop in time
// the state file is left open: Raft may still be applying to it, and
// bbolt is crash-safe.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stopBackups) })
	if n.backupsDone != nil {
		select {
		case <-n.backupsDone:
		case <-ctx.Done():
		}
	}
	if err := n.tree.Stop(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := n.store.Close(); err != nil {
		return fmt.Errorf("closing the state file: %w", err)
	}
	return nil
}

// claimDataDir records which node a data directory belongs to and refuses
// to start another node on it: Raft state under the wrong id would corrupt
// the cluster's view of its members.
func claimDataDir(dir, nodeID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	idFile := filepath.Join(dir, "node_id")
	b, err := os.ReadFile(idFile)
	switch {
	case err == nil:
		if owner := strings.TrimSpace(string(b)); owner != nodeID {
			return fmt.Errorf("data_dir: %s belongs to node %q, not %q", dir, owner, nodeID)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(idFile, []byte(nodeID+"\n"), 0o600)
	default:
		return fmt.Errorf("data_dir: %w", err)
	}
}

// ReloadTLS re-reads the certificate files (kvnode calls it on SIGHUP).
// New connections on both ports use the new material; on any error the
// old stays in use. Without TLS there is nothing to reload.
func (n *Node) ReloadTLS() error {
	if n.cfg.TLS == nil {
		return errors.New("TLS is off on this node: nothing to reload")
	}
	return n.cfg.TLS.Reload()
}

// peerTLS adapts the node's certificates to the peer port; nil when TLS
// is off.
func peerTLS(r *certs.Reloader) peerlink.TLS {
	if r == nil {
		return nil
	}
	return peerCerts{r}
}

type peerCerts struct{ *certs.Reloader }

func (peerCerts) PeerID(cs tls.ConnectionState) (string, error) { return certs.PeerID(cs) }

// openStateFile opens kv.db. A damaged one (cut short, unreadable
// metadata) is refused with its name and what to do; with
// RepairStateFile it is moved aside and the node starts from an empty
// state file, which Open fills from the newest snapshot and the Raft log
// replays, as after a lost state file.
func openStateFile(cfg Config) (*storage.Store, error) {
	path := filepath.Join(cfg.DataDir, StateFileName)
	store, err := storage.Open(path)
	var damaged *storage.DamagedError
	if !errors.As(err, &damaged) {
		return store, err
	}
	if !cfg.RepairStateFile {
		return nil, fmt.Errorf("%w; to rebuild it from the newest snapshot and the Raft log, start once with repair_state_file: true (docs/operations.md)", err)
	}
	aside := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(path, aside); err != nil {
		return nil, fmt.Errorf("repair_state_file: moving %s aside: %w", path, err)
	}
	cfg.Logger.Warn("the state file was damaged: moved aside, rebuilding it from the newest snapshot and the Raft log", "damaged", aside, "cause", damaged.Err)
	return storage.Open(path)
}
