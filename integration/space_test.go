package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

type alarmView struct {
	Type   string `json:"type"`
	Member string `json:"member"`
	Reason string `json:"reason"`
}

type spaceView struct {
	Alarms []alarmView `json:"alarms"`
	Space  *struct {
		StateUsedBytes   int64     `json:"state_used_bytes"`
		QuotaBytes       int64     `json:"quota_bytes"`
		DataDirFreeBytes int64     `json:"data_dir_free_bytes"`
		MeasuredAt       time.Time `json:"measured_at"`
	} `json:"space"`
	Peers []struct {
		ID        string `json:"id"`
		DiskError string `json:"disk_error"`
	} `json:"peers"`
}

// healthSpace reads n's alarms and own disk use from its health.
func healthSpace(t *testing.T, n *testcluster.Node) spaceView {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/cluster/health", nil)
	var v spaceView
	if err != nil || code != 200 || json.Unmarshal(body, &v) != nil {
		t.Fatalf("health of %s: %d %s %v", n.ID, code, body, err)
	}
	return v
}

// refusedEverywhere checks that a write through every node is refused with
// 507, not applied, naming the alarm, while a linearizable read of key
// still answers want and every node stays ready.
func refusedEverywhere(t *testing.T, c *testcluster.Cluster, key, want string) {
	t.Helper()
	for _, n := range c.Nodes {
		code, body, hdr, err := n.Do(http.MethodPut, "/v1/kv/refused", []byte("x"))
		if err != nil || code != http.StatusInsufficientStorage || hdr.Get("X-Troupe-Outcome") != "not-applied" || !strings.Contains(string(body), "database space exceeded: the NOSPACE alarm is raised") {
			t.Fatalf("PUT through %s under the alarm: %d %q %v", n.ID, code, body, err)
		}
		if code, p := get(t, n, key, ""); code != 200 || string(p.Value) != want {
			t.Fatalf("linearizable read through %s under the alarm: %d", n.ID, code)
		}
		if code, body, _, _ := n.Do(http.MethodGet, "/readyz", nil); code != 200 {
			t.Fatalf("%s unready under the alarm: %d %s", n.ID, code, body)
		}
	}
}

// disarm clears every alarm through n and waits until no node holds one,
// and writes work through every node.
func disarm(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) {
	t.Helper()
	if code, body, _, err := n.Do(http.MethodDelete, "/v1/cluster/alarms", nil); err != nil || code != 200 || !strings.Contains(string(body), `"disarmed":true`) {
		t.Fatalf("disarm through %s: %d %s %v", n.ID, code, body, err)
	}
	for _, m := range c.Nodes {
		eventually(t, 10*time.Second, m.ID+" still holds an alarm", func() bool { return len(healthSpace(t, m).Alarms) == 0 })
		if code, body := put(t, m, "after-disarm/"+m.ID, "ok"); code != 200 || body != "true" {
			t.Fatalf("PUT through %s after the disarm: %d %q", m.ID, code, body)
		}
	}
}

// TestNoSpaceAlarmAcrossTheCluster: nodes with a 1 MiB quota_bytes, filled
// past it, raise the NOSPACE alarm through Raft; every node then refuses
// writes with 507 while reads and deletes work and the nodes stay ready.
// After a delete-tree brings the live data under the quota, a disarm holds
// and writes work again.
func TestNoSpaceAlarmAcrossTheCluster(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--quota-bytes", fmt.Sprint(1 << 20)}})
	c.WaitLeader(20 * time.Second)
	value := strings.Repeat("v", 64<<10)
	for i := range 24 {
		if code, body := put(t, c.Nodes[i%3], fmt.Sprintf("big/%02d", i), value); code != 200 || body != "true" {
			// The alarm may come before the last writes: they are the
			// refused ones.
			if code == http.StatusInsufficientStorage {
				break
			}
			t.Fatalf("PUT big/%02d: %d %q", i, code, body)
		}
	}
	for _, n := range c.Nodes {
		eventually(t, 10*time.Second, n.ID+" holds no NOSPACE alarm", func() bool { return len(healthSpace(t, n).Alarms) > 0 })
	}
	a := healthSpace(t, c.Nodes[0]).Alarms[0]
	if a.Type != "nospace" || !strings.Contains(a.Reason, "over quota_bytes (1.0 MiB)") {
		t.Fatalf("alarm %+v", a)
	}
	refusedEverywhere(t, c, "big/00", value)

	if code, body, _, err := c.Nodes[1].Do(http.MethodDelete, "/v1/kv/big/?recurse", nil); err != nil || code != 200 {
		t.Fatalf("delete-tree under the alarm: %d %s %v", code, body, err)
	}
	for _, n := range c.Nodes {
		eventually(t, 10*time.Second, n.ID+"'s live data stayed over its quota after the delete", func() bool {
			s := healthSpace(t, n).Space
			return s != nil && s.StateUsedBytes < s.QuotaBytes && time.Since(s.MeasuredAt) < time.Second
		})
	}
	disarm(t, c, c.Nodes[2])
	time.Sleep(2 * time.Second) // two more measurements: nobody raises it again
	if v := healthSpace(t, c.Nodes[0]); len(v.Alarms) != 0 {
		t.Fatalf("alarm raised again under the quota: %+v", v.Alarms)
	}
}

// TestDataDirFillsUp: n2's data directory is a 64 MiB tmpfs.
//
// With min_free_bytes at 16 MiB, filling the disk to 8 MiB free makes n2
// raise the NOSPACE alarm before its disk is full: every node refuses
// writes (the others' disks are fine, but they hold the same data), reads
// work. Space back and the alarm disarmed, writes work again.
//
// Without min_free_bytes the disk fills up for real: n2 cannot write its
// Raft log, says so (unready, 503 naming the disk on a linearizable read,
// not "no quorum"; its peers show disk_error) while the others commit.
// With space back it catches up and serves every write made meanwhile.
func TestDataDirFillsUp(t *testing.T) {
	dir := t.TempDir()
	disk := testcluster.SmallDiskAt(t, filepath.Join(dir, "n2"), 64<<20)
	c := testcluster.Start(t, 3, testcluster.Options{Dir: dir, Args: []string{
		"--raft-log-segment-size", fmt.Sprint(64 << 10),
		"--min-free-bytes", fmt.Sprint(16 << 20),
	}})
	leader := c.WaitLeader(20 * time.Second)
	n2 := c.Node("n2")
	// Pages freed in kv.db stay allocated on the disk: what the state
	// file takes later reuses them, so a full disk stops the Raft log
	// first, which is what this test is about.
	value := strings.Repeat("v", 4<<10)
	for i := range 1000 {
		put(t, c.Nodes[i%3], fmt.Sprintf("warm/%04d", i), value)
	}
	if code, _, _, err := leader.Do(http.MethodDelete, "/v1/kv/warm/?recurse", nil); err != nil || code != 200 {
		t.Fatalf("delete-tree: %d %v", code, err)
	}
	put(t, leader, "before", "1")

	// The alarm, before the disk is full.
	disk.Fill(8 << 20)
	eventually(t, 10*time.Second, "n2 did not raise the alarm at 8 MiB free", func() bool {
		al := healthSpace(t, leader).Alarms
		return len(al) == 1 && al[0].Member == "n2" && strings.Contains(al[0].Reason, "below min_free_bytes (16.0 MiB)")
	})
	refusedEverywhere(t, c, "before", "1")
	disk.Free()
	disarm(t, c, leader)

	// The disk full for real, the alarm off on n2.
	n2.Stop()
	n2.SetFlags("--min-free-bytes", "0")
	n2.Start()
	n2.WaitHTTP(20 * time.Second)
	leader = c.WaitLeader(20 * time.Second)
	waitCaughtUp(t, leader, n2)
	disk.Fill(0)
	writer := leader
	if writer == n2 {
		writer = c.Followers(n2)[0]
	}
	for i := range 200 {
		if code, body := put(t, writer, fmt.Sprintf("during/%03d", i), value); code != 200 || body != "true" {
			t.Fatalf("PUT during/%03d through %s while n2's disk is full: %d %q", i, writer.ID, code, body)
		}
	}
	eventually(t, 20*time.Second, "n2 still calls itself ready with a full disk", func() bool {
		code, body, _, _ := n2.Do(http.MethodGet, "/readyz", nil)
		return code == 503 && strings.Contains(string(body), "cannot write its Raft log")
	})
	code, body, _, err := n2.Do(http.MethodGet, "/v1/kv/during/000", nil)
	if err != nil || code != 503 || !strings.Contains(string(body), "cannot write its Raft log") || strings.Contains(string(body), "quorum") {
		t.Fatalf("linearizable read through n2 with a full disk: %d %q %v", code, body, err)
	}
	other := c.Followers(n2)[0]
	eventually(t, 10*time.Second, "n2's peers do not show its disk error", func() bool {
		for _, p := range healthSpace(t, other).Peers {
			if p.ID == "n2" && strings.Contains(p.DiskError, "no space left on device") {
				return true
			}
		}
		return false
	})

	disk.Free()
	eventually(t, 30*time.Second, "n2 did not recover with space back", func() bool {
		code, _, _, _ := n2.Do(http.MethodGet, "/readyz", nil)
		return code == 200
	})
	for _, i := range []int{0, 99, 199} {
		if code, p := get(t, n2, fmt.Sprintf("during/%03d", i), ""); code != 200 || string(p.Value) != value {
			t.Fatalf("during/%03d through the recovered n2: %d", i, code)
		}
	}
}
