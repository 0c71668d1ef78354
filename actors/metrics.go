package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// metrics are the node's Prometheus series. Each Tree has its own registry
// so several nodes can share a process (tests) without colliding.
type metrics struct {
	registry     *prometheus.Registry
	peerState    *prometheus.GaugeVec
	peerPhi      *prometheus.GaugeVec
	peerChanges  *prometheus.CounterVec
	actorFailure *prometheus.CounterVec

	sessionsTimed        prometheus.Gauge
	sessionRenewals      prometheus.Counter
	sessionInvalidations *prometheus.CounterVec
	tombstoneReaps       prometheus.Counter
}

func newMetrics(t *Tree) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		peerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "troupe_peer_state",
			Help: "1 for the failure detector's current verdict on each peer (state label), 0 otherwise.",
		}, []string{"peer", "state"}),
		peerPhi: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "troupe_peer_phi",
			Help: "Phi-accrual suspicion level of each peer at its last evaluation.",
		}, []string{"peer"}),
		peerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troupe_peer_state_changes_total",
			Help: "Failure detector state changes, by peer and new state.",
		}, []string{"peer", "to"}),
		actorFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troupe_actor_failures_total",
			Help: "Actor crashes handled by a supervisor, by actor and decision.",
		}, []string{"actor", "directive"}),
		sessionsTimed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "troupe_sessions_timed",
			Help: "Sessions with a TTL timer running on this node (the leader; 0 elsewhere).",
		}),
		sessionRenewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "troupe_session_renewals_total",
			Help: "Session renewals this node served as leader (none is a Raft entry).",
		}),
		sessionInvalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "troupe_session_invalidations_total",
			Help: "Sessions this node, as leader, invalidated on its own: ttl (not renewed for 2xTTL) node (its node dead past the grace) or removed (its node no longer a member).",
		}, []string{"reason"}),
		tombstoneReaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "troupe_tombstone_reaps_total",
			Help: "Reaps of old tombstones this node proposed as leader (each one Raft entry).",
		}),
	}
	status := func(f func(cluster.Status) float64) func() float64 {
		return func() float64 {
			st, err := t.client.Status()
			if err != nil {
				return 0
			}
			return f(st)
		}
	}
	// Series that exist from the start, at 0, rather than from their
	// first event: Prometheus' increase() and rate() miss the first
	// increment of a series that appears with it, and a dashboard or an
	// alert can only be checked against names the exposition holds.
	for _, child := range supervisedActors {
		for _, d := range []actor.Directive{actor.RestartDirective, actor.StopDirective} {
			m.actorFailure.WithLabelValues(child, d.String())
		}
	}
	for _, why := range []string{"ttl", "node"} {
		m.sessionInvalidations.WithLabelValues(why)
	}
	b := t.cfg.Build
	m.registry.MustRegister(t.cfg.Raft.Metrics.Collectors()...)
	m.registry.MustRegister(
		m.peerState, m.peerPhi, m.peerChanges, m.actorFailure,
		m.sessionsTimed, m.sessionRenewals, m.sessionInvalidations, m.tombstoneReaps,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "troupe_build_info",
			Help:        "Always 1; its labels name the release, commit and Go version this node runs.",
			ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
		}, func() float64 { return 1 }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_leader", Help: "1 while this node is the Raft leader."},
			status(func(s cluster.Status) float64 { return b2f(s.State == "Leader") })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_term", Help: "Current Raft term."},
			status(func(s cluster.Status) float64 { return float64(s.Term) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_commit_index", Help: "Highest log index known committed."},
			status(func(s cluster.Status) float64 { return float64(s.CommitIndex) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_applied_index", Help: "Highest log index applied to the state file."},
			status(func(s cluster.Status) float64 { return float64(s.AppliedIndex) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_log_writable", Help: "1 while this node's last write of its Raft log succeeded; 0 after a failure (a full disk), until a write succeeds."},
			func() float64 { return b2f(t.disk.Err() == nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_fenced", Help: "1 while this node serves nothing because its state failed a check (diverged from the majority's hash, or a value failed its checksum)."},
			func() float64 { return b2f(t.integrity.err() != nil) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_diverged", Help: "1 while this node's state hash at the newest decided checkpoint differs from the one a majority of voters hold."},
			func() float64 { return b2f(t.integrity.get().State == cluster.StateDiverged) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_check_index", Help: "Log index of this node's newest state hash (0 before the first checkpoint)."},
			func() float64 { return float64(lastCheck(t).Index) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_check_seconds", Help: "How long this node's newest state hash took (a pass over the whole state file)."},
			func() float64 { return lastCheck(t).Took.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_alarm", Help: "1 while an alarm of this type is raised in the cluster (any member's), as this node's state holds it.", ConstLabels: prometheus.Labels{"type": storage.AlarmNoSpace}},
			func() float64 { return b2f(t.cfg.Store.NoSpace()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_file_bytes", Help: "Size of this node's state file (kv.db) on disk; it never shrinks."},
			space(t, func(s *cluster.Space) int64 { return s.StateFileBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_state_used_bytes", Help: "Live data in this node's state file (its size less bbolt's free pages): what quota_bytes limits."},
			space(t, func(s *cluster.Space) int64 { return s.StateUsedBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_quota_bytes", Help: "quota_bytes: the live data past which this node raises the NOSPACE alarm (0: no quota)."},
			func() float64 { return float64(t.cfg.QuotaBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_data_dir_free_bytes", Help: "Free space of the file system holding this node's data directory; below min_free_bytes the node raises the NOSPACE alarm."},
			space(t, func(s *cluster.Space) int64 { return s.DataDirFreeBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_data_dir_size_bytes", Help: "Size of the file system holding this node's data directory (with troupe_data_dir_free_bytes: how full it is)."},
			space(t, func(s *cluster.Space) int64 { return s.DataDirSizeBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_wal_bytes", Help: "Size of this node's Raft log (the segment files under wal/)."},
			space(t, func(s *cluster.Space) int64 { return s.WALBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_snapshot_bytes", Help: "Size of the Raft snapshots this node retains (under snapshots/)."},
			space(t, func(s *cluster.Space) int64 { return s.SnapshotBytes })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "troupe_raft_last_contact_seconds", Help: "Time since this node last heard from a leader (0 on the leader)."},
			status(func(s cluster.Status) float64 { return float64(s.LastContactMS) / 1000 })),
	)
	return m
}

// supervisedActors are the actors whose crashes are counted from the
// start (the peer monitors, one per peer, come and go with the members).
var supervisedActors = []string{"app/node", "app/node/forward", "app/node/peers", "app/node/raft", "app/node/sessions", "app/node/quota", "app/node/http"}

// space reads one figure of the quota actor's latest measurement (0
// before the first).
func space(t *Tree, f func(*cluster.Space) int64) func() float64 {
	return func() float64 {
		if s := t.space.Load(); s != nil {
			return float64(f(s))
		}
		return 0
	}
}

func lastCheck(t *Tree) storage.StateCheck {
	c := t.cfg.Store.StateChecks()
	if len(c) == 0 {
		return storage.StateCheck{}
	}
	return c[len(c)-1]
}

// peerStatus records a monitor's latest verdict.
func (m *metrics) peerStatus(st *cluster.PeerStatus) {
	for _, s := range []cluster.PeerState{cluster.PeerUnknown, cluster.PeerAlive, cluster.PeerSuspect, cluster.PeerDead} {
		m.peerState.WithLabelValues(st.ID, string(s)).Set(b2f(st.State == s))
	}
	m.peerPhi.WithLabelValues(st.ID).Set(st.Phi)
}

// forgetPeer drops the series of a removed member.
func (m *metrics) forgetPeer(id string) {
	m.peerState.DeletePartialMatch(prometheus.Labels{"peer": id})
	m.peerPhi.DeleteLabelValues(id)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
