package chaos

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

func startLocal(t *testing.T, nodes int, args ...string) *LocalTarget {
	t.Helper()
	lt, err := StartLocal(LocalConfig{
		Nodes:  nodes,
		Dir:    t.TempDir(),
		KVNode: testcluster.Binary(t),
		Args:   append([]string{"--request-timeout", "2s"}, args...),
	}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lt.Close() })
	return lt
}

// TestChaosSmoke is the short run CI does on every change: kills, leader
// partitions and pauses against a 3-node cluster under load, then the full
// check. Any violation, lost write or divergence fails the build.
func TestChaosSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos smoke takes a minute")
	}
	lt := startLocal(t, 3, "--session-ttl-min", "1s")
	out := t.TempDir()
	sum, err := Run(context.Background(), Config{
		Duration:      75 * time.Second,
		Lock:          LockConfig{Clients: 3, TTL: 2 * time.Second},
		Nemeses:       []string{"kill", "kill-leader", "partition-leader", "partition-half", "pause", "pause-leader"},
		Interval:      5 * time.Second,
		FaultDuration: 5 * time.Second,
		Seed:          20261128,
		OutDir:        out,
	}, lt)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d operations (%d ok, %d failed, %d unknown), %d faults, report %s",
		sum.Operations, sum.Verdict.OK, sum.Verdict.Failed, sum.Verdict.Unknown, len(sum.Faults), out)
	if sum.Error != "" {
		t.Fatalf("run error: %s", sum.Error)
	}
	if !sum.Verdict.Passed() {
		t.Fatalf("chaos smoke failed: linearizable=%s keys=%v lost=%d diverged=%v (history in %s)",
			sum.Verdict.Linearizable, sum.Verdict.ViolatingKeys, len(sum.Verdict.LostWrites), sum.Verdict.Diverged, out)
	}
	if len(sum.Faults) < 5 || sum.Verdict.OK < 1000 {
		t.Fatalf("the run did too little to mean anything: %d faults, %d ok operations", len(sum.Faults), sum.Verdict.OK)
	}
	if l := sum.Lock; l == nil || l.Verdict != "ok" || l.Acquisitions < 5 || l.Accepted < 10 {
		t.Fatalf("the lock workload: %+v", sum.Lock)
	}
	t.Logf("lock: %d acquisitions, %d fenced writes accepted, %d refused, %d holders frozen",
		sum.Lock.Acquisitions, sum.Lock.Accepted, sum.Lock.Refused, sum.Lock.Pauses)
}

// TestCheckerCatchesUnsafeReads runs the same pipeline against nodes that
// answer reads from local state without asking the leader: a node cut off
// from the majority then serves stale values. The run must be reported as
// a linearizability violation — a green run means nothing until this
// fails.
func TestCheckerCatchesUnsafeReads(t *testing.T) {
	if testing.Short() {
		t.Skip("takes half a minute")
	}
	lt := startLocal(t, 3, "--unsafe-local-reads")
	out := t.TempDir()
	sum, err := Run(context.Background(), Config{
		Duration:      30 * time.Second,
		Nemeses:       []string{"partition-half"},
		Interval:      3 * time.Second,
		FaultDuration: 6 * time.Second,
		Seed:          7,
		OutDir:        out,
	}, lt)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Verdict.Linearizable != "violation" || len(sum.Verdict.ViolatingKeys) == 0 {
		t.Fatalf("unsafe reads went unnoticed: linearizable=%s (%d ops, history in %s)", sum.Verdict.Linearizable, sum.Operations, out)
	}
	t.Logf("violation found on keys %v, as it must be", sum.Verdict.ViolatingKeys)
}

// TestChaosOSPartition cuts the network below Troupe: nodes in network
// namespaces, partitioned with iptables. Needs root and iproute2/iptables.
func TestChaosOSPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("takes half a minute")
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	lt, err := StartLocal(LocalConfig{
		Nodes: 3, Dir: t.TempDir(), KVNode: testcluster.Binary(t),
		Args: []string{"--request-timeout", "2s"}, UseNetNS: true,
	}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	defer lt.Close()
	sum, err := Run(context.Background(), Config{
		Duration:      30 * time.Second,
		Nemeses:       []string{"os-partition"},
		Interval:      4 * time.Second,
		FaultDuration: 6 * time.Second,
		Seed:          11,
		OutDir:        t.TempDir(),
	}, lt)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Error != "" || !sum.Verdict.Passed() {
		t.Fatalf("os-partition run: error=%q linearizable=%s lost=%d diverged=%v", sum.Error, sum.Verdict.Linearizable, len(sum.Verdict.LostWrites), sum.Verdict.Diverged)
	}
	cuts := 0
	for _, f := range sum.Faults {
		if f.Nemesis == "os-partition" {
			cuts++
		}
	}
	if cuts == 0 {
		t.Fatal("no OS-level partition happened")
	}
}
