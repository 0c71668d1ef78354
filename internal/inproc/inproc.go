// Package inproc runs complete Troupe nodes inside the test process, built
// by server.Start as kvnode builds its one: the same actor tree, Raft over
// real TCP, bbolt files and HTTP API, so tests of code above the API
// (clients, tools) exercise the real server and the race detector sees all
// of it.
package inproc

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/internal/version"
	"github.com/troupe-kv/troupe/server"
	"github.com/troupe-kv/troupe/storage"
)

// Options tune an in-process cluster.
type Options struct {
	// MaxRestarts is each node's restart budget (default 5).
	MaxRestarts int
	// RequestTimeout bounds requests that wait for a leader (default 3s).
	RequestTimeout time.Duration
	// Chaos mounts the fault-injection endpoints.
	Chaos bool
	// HTTPLimits bound client connections (zero: the defaults).
	HTTPLimits actors.HTTPLimits
	// DataDir, when set, gives a node its data directory (default: a new
	// temporary one), e.g. to put one node's files on a small disk.
	DataDir func(id string) string
	// LogSegmentSize is each node's Raft log segment size (0: default).
	LogSegmentSize int
	// ACLEnabled turns on ACL enforcement on every node.
	ACLEnabled bool
	// Build, when set, gives each node the build it reports (by node id);
	// otherwise every node reports this binary's.
	Build func(id string) version.Build
	// QuotaBytes, when set, gives each node its quota_bytes (0: none,
	// as when unset).
	QuotaBytes func(id string) int64
	// SessionNodeGrace and SessionTTLMin: see server.Config (zero: the
	// defaults).
	SessionNodeGrace time.Duration
	SessionTTLMin    time.Duration
	// TombstoneTTL: see server.Config (zero: the default).
	TombstoneTTL time.Duration
}

// Node is one in-process node.
type Node struct {
	*server.Node
	ID, HTTPAddr, RaftAddr string
	Store                  *storage.Store
	Logs                   *SyncBuffer

	mu      sync.Mutex
	stopped bool
}

// SyncBuffer is a goroutine-safe log sink.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p; safe to call from several goroutines.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FastTiming is Raft timing for tests: elections in well under a second,
// yet patient enough that a loaded machine running -race does not depose
// leaders all the time.
func FastTiming() cluster.Timing {
	t := cluster.DefaultTiming()
	t.HeartbeatTimeout = 400 * time.Millisecond
	t.ElectionTimeout = 400 * time.Millisecond
	t.LeaderLeaseTimeout = 300 * time.Millisecond
	t.CommitTimeout = 5 * time.Millisecond
	return t
}

// Start runs n nodes that bootstrap one cluster, and stops them at cleanup.
func Start(t testing.TB, n int, opts Options) []*Node {
	t.Helper()
	if opts.MaxRestarts == 0 {
		opts.MaxRestarts = 5
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 3 * time.Second
	}
	ports := testcluster.FreePorts(t, 2*n)
	var nodes []*Node
	var initial []cluster.Server
	for i := 0; i < n; i++ {
		nd := &Node{
			ID:       fmt.Sprintf("n%d", i+1),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			Logs:     &SyncBuffer{},
		}
		initial = append(initial, cluster.Server{ID: nd.ID, Addr: nd.RaftAddr})
		nodes = append(nodes, nd)
	}
	for _, nd := range nodes {
		logger := slog.New(slog.NewTextHandler(nd.Logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		var build version.Build
		if opts.Build != nil {
			build = opts.Build(nd.ID)
		}
		var quota int64
		if opts.QuotaBytes != nil {
			quota = opts.QuotaBytes(nd.ID)
		}
		dataDir := filepath.Join(t.TempDir(), nd.ID)
		if opts.DataDir != nil {
			dataDir = opts.DataDir(nd.ID)
		}
		node, err := server.Start(server.Config{
			NodeID:           nd.ID,
			DataDir:          dataDir,
			LogSegmentSize:   opts.LogSegmentSize,
			HTTPAddr:         nd.HTTPAddr,
			RaftAddr:         nd.RaftAddr,
			InitialCluster:   initial,
			Timing:           FastTiming(),
			RequestTimeout:   opts.RequestTimeout,
			MaxInFlight:      4096,
			MaxRestarts:      opts.MaxRestarts,
			RestartWindow:    time.Minute,
			Chaos:            opts.Chaos,
			HTTPLimits:       opts.HTTPLimits,
			ACLEnabled:       opts.ACLEnabled,
			Build:            build,
			SessionNodeGrace: opts.SessionNodeGrace,
			SessionTTLMin:    opts.SessionTTLMin,
			TombstoneTTL:     opts.TombstoneTTL,
			QuotaBytes:       quota,
			Logger:           logger,
		})
		if err != nil {
			t.Fatal(err)
		}
		nd.Node, nd.Store = node, node.Store()
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			if d := nd.Stop(); d > 5*time.Second {
				t.Logf("stopping %s took %s", nd.ID, d)
			}
		}
	})
	return nodes
}

// Stop shuts the node down (leadership handed over, HTTP drained, Raft
// closed, state file closed), once, and reports how long it took.
func (nd *Node) Stop() time.Duration {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.stopped {
		return 0
	}
	nd.stopped = true
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = nd.Node.Stop(ctx)
	return time.Since(start)
}

// Leader waits for a node that leads and has registered its HTTP address.
func Leader(t testing.TB, nodes []*Node) *Node {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			if st, err := nd.Client().Status(); err == nil && st.State == "Leader" && st.LeaderHTTPAddr != "" {
				return nd
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("no leader")
	return nil
}

// Addrs lists the nodes' HTTP addresses.
func Addrs(nodes []*Node) []string {
	var out []string
	for _, nd := range nodes {
		out = append(out, nd.HTTPAddr)
	}
	return out
}
