package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
)

// Server is one voting member: its stable node id and its Raft address.
type Server struct {
	ID   string
	Addr string
}

// ParseInitialCluster reads an etcd-style member list,
// "n1=10.0.0.1:7001,n2=10.0.0.2:7001". Ids and addresses must be unique.
func ParseInitialCluster(s string) ([]Server, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var servers []Server
	ids := map[string]bool{}
	addrs := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		id, addr = strings.TrimSpace(id), strings.TrimSpace(addr)
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("%q is not id=host:port", part)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", part, err)
		}
		if p, err := strconv.ParseUint(port, 10, 16); host == "" || err != nil || p == 0 {
			return nil, fmt.Errorf("%q: address must be host:port with a port from 1 to 65535", part)
		}
		if ids[id] {
			return nil, fmt.Errorf("node id %q appears twice", id)
		}
		if addrs[addr] {
			return nil, fmt.Errorf("address %q appears twice", addr)
		}
		ids[id], addrs[addr] = true, true
		servers = append(servers, Server{ID: id, Addr: addr})
	}
	return servers, nil
}

// Timing holds the Raft timing knobs. See docs/configuration.md for what
// each one trades off.
type Timing struct {
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	MaxAppendEntries   int
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64
}

// DefaultTiming is tuned for a LAN of VMs: a dead leader is noticed within
// about one to two heartbeat timeouts.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatTimeout:   400 * time.Millisecond,
		ElectionTimeout:    400 * time.Millisecond,
		LeaderLeaseTimeout: 400 * time.Millisecond,
		CommitTimeout:      20 * time.Millisecond,
		MaxAppendEntries:   256,
		SnapshotInterval:   30 * time.Second,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
	}
}

// Config is everything Open needs to start this node's Raft.
type Config struct {
	NodeID        string
	DataDir       string
	RaftBind      string // address the Raft listener binds
	RaftAdvertise string // address peers use to reach this node
	// InitialCluster bootstraps a brand-new cluster; it is ignored once the
	// node has Raft state on disk.
	InitialCluster []Server
	Timing         Timing
	Logger         hclog.Logger
	// Network carries every connection to other nodes; its fault rules
	// outlive Raft restarts. Nil means faultnet.Plain: no fault layer.
	Network *faultnet.Network
	// OnLeaderChange, when set, is called after every change of leader (or
	// loss of one) this node observes. It must not block.
	OnLeaderChange func()
	// OnPeerHeartbeat, when set, receives raft's heartbeat observations
	// (see PeerHeartbeat). It must not block.
	OnPeerHeartbeat func(PeerHeartbeat)
	// OnFault, when set, hears of failures Raft cannot get over by itself:
	// the state machine stopped applying (an *ApplyFault), the Raft
	// listener died (a *TransportFault), or a read of the log met a
	// corrupt entry (a *LogCorruptError). It must not block.
	OnFault func(error)
	// PeerHandler serves what other nodes ask of this one over the peer
	// port (forwarded writes, read-index requests, membership changes,
	// probes); nil serves none of it (tests of Raft alone).
	PeerHandler peerlink.Handler
	// PeerTLS, when set, requires mutual TLS with the cluster CA on the
	// peer port; nil is plaintext.
	PeerTLS peerlink.TLS
	// PeerLogger hears of connections the peer port refused; nil discards.
	PeerLogger *slog.Logger
	// Disk hears of every write of the Raft log, failed or not; nil keeps
	// no record.
	Disk *DiskHealth
	// MaxCommandBytes is the largest command another node may forward.
	MaxCommandBytes int64
	// RequestTimeout bounds a forwarded request's wait for this node.
	RequestTimeout time.Duration
	// Metrics, when set, receives the commit and apply times and the
	// leader changes (see Metrics); it outlives this Node.
	Metrics *Metrics
	// LogSegmentSize is the size at which the Raft log starts a new segment
	// file; 0 means raft-wal's default (64 MiB). Compaction frees whole
	// segments only, so tests that need entries gone use small ones.
	LogSegmentSize int
}

// DeriveClusterID is the id of the cluster that servers bootstrap with
// token: every node of a new cluster computes the same id from the same
// initial_cluster, without talking to the others (etcd derives its
// cluster id the same way). token tells apart clusters that happen to
// list the same addresses.
func DeriveClusterID(servers []Server, token string) string {
	parts := make([]string, len(servers))
	for i, s := range servers {
		parts[i] = s.ID + "=" + s.Addr
	}
	sort.Strings(parts)
	sum := sha256.Sum256([]byte(token + "\x00" + strings.Join(parts, ",")))
	return hex.EncodeToString(sum[:8])
}
