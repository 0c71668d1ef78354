package actors_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/storage"
)

// waitFor polls cond every 50 ms until it holds, failing with what after
// within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNoSpaceAlarmStopsGrowthEverywhere: one member past its quota raises
// the NOSPACE alarm through Raft, and from then on every member refuses
// writes that would grow the state, with ErrNoSpace naming the member;
// reads and deletes go on. Disarmed while the member is still over its
// quota, the alarm comes back by itself; disarmed once deletes have
// brought it under, writes work again.
func TestNoSpaceAlarmStopsGrowthEverywhere(t *testing.T) {
	const quota = 512 << 10
	nodes := inproc.Start(t, 3, inproc.Options{QuotaBytes: func(id string) int64 {
		if id == "n3" {
			return quota
		}
		return 0
	}})
	leaderOf(t, nodes)
	small := nodes[2]
	value := strings.Repeat("v", 64<<10)
	// Past the quota: the alarm may come before the last of these writes,
	// which are then refused.
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 12 && !nodes[0].Store.NoSpace(); {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := nodes[i%3].Client().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: fmt.Sprintf("big/%02d", i), Value: []byte(value)})
		cancel()
		switch {
		case err == nil || errors.Is(err, storage.ErrNoSpace):
			i++
		case time.Now().After(deadline):
			t.Fatalf("write big/%02d: %v", i, err)
		default:
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(t, 10*time.Second, "no node holds the NOSPACE alarm", func() bool {
		for _, nd := range nodes {
			if !nd.Store.NoSpace() {
				return false
			}
		}
		return true
	})
	if a := nodes[0].Client().Alarms(); len(a) != 1 || a[0].Member != "n3" || !strings.Contains(a[0].Reason, "over quota_bytes (512.0 KiB)") {
		t.Fatalf("alarms: %+v", a)
	}
	waitLog(t, small.Logs, "this node is short of disk space", 3*time.Second)
	waitLog(t, nodes[0].Logs, "the NOSPACE alarm is raised", 3*time.Second)

	for _, nd := range nodes {
		c := nd.Client()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := c.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "more", Value: []byte("x")})
		cancel()
		if !errors.Is(err, storage.ErrNoSpace) || !strings.Contains(err.Error(), "n3: the state file holds") {
			t.Fatalf("a write through %s: %v", nd.ID, err)
		}
		code, body, err := httpDo(http.MethodPut, "http://"+nd.HTTPAddr+"/v1/kv/more", "x")
		if err != nil || code != http.StatusInsufficientStorage || !strings.Contains(body, "database space exceeded") {
			t.Fatalf("PUT through %s: %d %q %v", nd.ID, code, body, err)
		}
		code, body, err = httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/v1/kv/big/00?raw", "")
		if err != nil || code != 200 || body != value {
			t.Fatalf("a linearizable read through %s: %d %v", nd.ID, code, err)
		}
		if err := c.Ready(); err != nil {
			t.Fatalf("%s is unready under the alarm: %v", nd.ID, err)
		}
		_, metrics, _ := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/metrics", "")
		if !strings.Contains(metrics, `troupe_alarm{type="nospace"} 1`) {
			t.Fatalf("%s's metrics do not show the alarm", nd.ID)
		}
	}
	h, err := small.Client().Health(t.Context())
	if err != nil || len(h.Alarms) != 1 || h.Space == nil || h.Space.QuotaBytes != quota || h.Space.StateUsedBytes <= quota {
		t.Fatalf("health of n3: %+v %v", h, err)
	}

	// Disarmed while n3 is still over its quota: it raises it again.
	if ok, err := nodes[0].Client().Disarm(t.Context(), storage.AlarmNoSpace, ""); err != nil || !ok {
		t.Fatalf("disarm: %v %v", ok, err)
	}
	waitFor(t, 10*time.Second, "n3 did not raise the alarm again while over its quota", func() bool {
		a := nodes[0].Client().Alarms()
		return len(a) == 1 && a[0].Member == "n3" && a[0].Index > h.Alarms[0].Index
	})

	// Deletes free space; then a disarm holds.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = nodes[1].Client().Apply(ctx, &storage.Command{Op: storage.OpDeleteTree, Key: "big/"})
	cancel()
	if err != nil {
		t.Fatalf("delete-tree under the alarm: %v", err)
	}
	waitFor(t, 10*time.Second, "n3's usage did not drop below its quota after the deletes", func() bool {
		h, err := small.Client().Health(t.Context())
		return err == nil && h.Space != nil && h.Space.StateUsedBytes < quota && h.Space.MeasuredAt.After(time.Now().Add(-time.Second))
	})
	if ok, err := nodes[1].Client().Disarm(t.Context(), "", "n3"); err != nil || !ok {
		t.Fatalf("disarm: %v %v", ok, err)
	}
	applyEventually(t, nodes[2].Client(), "after", "1")
	time.Sleep(2 * time.Second) // two measurements
	for _, nd := range nodes {
		if nd.Store.NoSpace() {
			t.Fatalf("%s holds the alarm again: %+v", nd.ID, nd.Client().Alarms())
		}
	}
}

// TestQuotaActorCrashIsContained: the quota actor holds nothing but its
// latest measurement; restarted after a crash it measures again.
func TestQuotaActorCrashIsContained(t *testing.T) {
	nodes := inproc.Start(t, 1, inproc.Options{Chaos: true, QuotaBytes: func(string) int64 { return 1 << 30 }})
	nd := leaderOf(t, nodes)
	crashed := time.Now()
	if err := nd.Client().Crash("quota", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, nd.Logs, "actor=app/node/quota directive=RestartDirective", 5*time.Second)
	waitFor(t, 5*time.Second, "no measurement after the restart", func() bool {
		h, err := nd.Client().Health(t.Context())
		return err == nil && h.Space != nil && h.Space.MeasuredAt.After(crashed) && h.Space.QuotaBytes == 1<<30
	})
	applyEventually(t, nd.Client(), "after", "1")
}
