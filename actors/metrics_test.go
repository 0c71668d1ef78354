package actors_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/troupe-kv/troupe/internal/inproc"
)

// metricValue scrapes nd's /metrics and returns the value of the
// unlabelled series name: a counter's or gauge's value, a histogram's
// count of observations.
func metricValue(t *testing.T, nd *inproc.Node, name string) float64 {
	t.Helper()
	code, body, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", nd.ID, code, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("scrape %s: %v", nd.ID, err)
	}
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("%s exposes no single series %s", nd.ID, name)
	}
	m := f.GetMetric()[0]
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("%s: unexpected type %v", name, f.GetType())
	return 0
}

// TestRaftMetrics: writes show in the leader's commit and every node's
// apply histograms, the data directory's files in their size gauges, and
// a change of leader in every survivor's leader-changes counter.
func TestRaftMetrics(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{})
	leader := inproc.Leader(t, nodes)
	var follower *inproc.Node
	for _, nd := range nodes {
		if nd != leader {
			follower = nd
		}
	}
	commit0 := metricValue(t, leader, "troupe_raft_commit_duration_seconds")
	apply0 := metricValue(t, leader, "troupe_raft_fsm_apply_duration_seconds")
	followerApply0 := metricValue(t, follower, "troupe_raft_fsm_apply_duration_seconds")
	const writes = 10
	for i := range writes {
		if code, body, err := httpDo(http.MethodPut, fmt.Sprintf("http://%s/v1/kv/m/%d", leader.HTTPAddr, i), "v"); err != nil || code != http.StatusOK {
			t.Fatalf("put: %d %s %v", code, body, err)
		}
	}
	// Each write is an entry of the leader's own term: one commit time
	// apiece; batches may hold several, so applies grow by at least one.
	if got := metricValue(t, leader, "troupe_raft_commit_duration_seconds") - commit0; got < writes {
		t.Errorf("the leader timed %v commits for %d writes", got, writes)
	}
	if got := metricValue(t, leader, "troupe_raft_fsm_apply_duration_seconds") - apply0; got < 1 {
		t.Errorf("the leader timed no apply after %d writes", writes)
	}
	waitFor(t, 10*time.Second, "the follower never timed an apply", func() bool {
		return metricValue(t, follower, "troupe_raft_fsm_apply_duration_seconds") > followerApply0
	})
	// A follower never measures commits: it did not append the entries.
	if got := metricValue(t, follower, "troupe_raft_commit_duration_seconds"); got != 0 {
		t.Errorf("a follower timed %v commits", got)
	}

	// The quota actor measures the data directory every second.
	waitFor(t, 10*time.Second, "the WAL and disk sizes never showed", func() bool {
		return metricValue(t, leader, "troupe_wal_bytes") > 0 &&
			metricValue(t, leader, "troupe_data_dir_size_bytes") >= metricValue(t, leader, "troupe_data_dir_free_bytes") &&
			metricValue(t, leader, "troupe_data_dir_free_bytes") > 0
	})
	if code, body, err := httpDo(http.MethodPost, "http://"+leader.HTTPAddr+"/v1/cluster/snapshot", ""); err != nil || code != http.StatusOK {
		t.Fatalf("snapshot: %d %s %v", code, body, err)
	}
	waitFor(t, 10*time.Second, "the snapshot's size never showed", func() bool {
		return metricValue(t, leader, "troupe_snapshot_bytes") > 0
	})

	// Every node has seen the first leader.
	changes := map[string]float64{}
	for _, nd := range nodes {
		if changes[nd.ID] = metricValue(t, nd, "troupe_raft_leader_changes_total"); changes[nd.ID] < 1 {
			t.Errorf("%s counts %v leader changes, having seen a leader", nd.ID, changes[nd.ID])
		}
	}
	leader.Stop() // hands leadership over first
	var rest []*inproc.Node
	for _, nd := range nodes {
		if nd != leader {
			rest = append(rest, nd)
		}
	}
	inproc.Leader(t, rest)
	for _, nd := range rest {
		waitFor(t, 10*time.Second, nd.ID+" never counted the new leader", func() bool {
			return metricValue(t, nd, "troupe_raft_leader_changes_total") > changes[nd.ID]
		})
	}
}
