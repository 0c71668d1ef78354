package cluster

import (
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the Raft series this package measures itself, on the paths
// it owns (the state machine and the leader observer). hashicorp/raft
// reports its own through go-metrics, whose sink is process-wide: several
// nodes in one process (the tests) would mix their figures, so they are
// not bridged. A Metrics outlives the Node that feeds it, since the raft
// actor reopens Node on every restart; nil turns measuring off.
type Metrics struct {
	commit        prometheus.Histogram
	apply         prometheus.Histogram
	leaderChanges prometheus.Counter
}

// raftBuckets span what a commit or an apply takes here: well under a
// millisecond for a batch applied from the page cache, tens of
// milliseconds for an fsync on a busy disk, seconds when a quorum is slow.
var raftBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// NewMetrics makes the series; register Collectors with the node's
// registry.
func NewMetrics() *Metrics {
	return &Metrics{
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "troupe_raft_commit_duration_seconds",
			Help:    "On the leader: from appending a command entry to its log to handing it, committed, to the state machine (the leader's fsync, a majority's acknowledgement, the queue to the state machine).",
			Buckets: raftBuckets,
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "troupe_raft_fsm_apply_duration_seconds",
			Help:    "Time the state machine took to apply one batch of committed entries to kv.db (one bbolt transaction), on every node.",
			Buckets: raftBuckets,
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "troupe_raft_leader_changes_total",
			Help: "Times this node saw a new leader (a loss of leader alone is not counted).",
		}),
	}
}

// Collectors are the series to register.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.commit, m.apply, m.leaderChanges}
}

// observeBatch records one applied batch: its apply time, and the commit
// time of each entry this node appended as leader in the current term.
// Entries of other terms were stamped by another leader's clock (or
// before a restart), so their age says nothing about this commit path.
func (m *Metrics) observeBatch(logs []*raft.Log, start time.Time, leaderTerm uint64) {
	if m == nil {
		return
	}
	m.apply.Observe(time.Since(start).Seconds())
	if leaderTerm == 0 {
		return
	}
	for _, l := range logs {
		if l.Type == raft.LogCommand && l.Term == leaderTerm && !l.AppendedAt.IsZero() {
			m.commit.Observe(start.Sub(l.AppendedAt).Seconds())
		}
	}
}

func (m *Metrics) leaderChanged() {
	if m != nil {
		m.leaderChanges.Inc()
	}
}
