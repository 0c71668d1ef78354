package client_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// TestNoSpaceAlarm: a node over its quota raises the NOSPACE alarm; the
// client lists it, sees a write refused as IsNoSpace (not applied, not
// retried on other nodes), deletes still work, and Disarm clears it
// (which the node, still over its one-byte quota, raises again).
func TestNoSpaceAlarm(t *testing.T) {
	nodes := startCluster(t, 2, inproc.Options{QuotaBytes: func(id string) int64 {
		if id == "n2" {
			return 1
		}
		return 0
	}})
	c := client.New([]string{urlOf(nodes[0]), urlOf(nodes[1])})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var alarms []client.Alarm
	for len(alarms) == 0 {
		var err error
		if alarms, err = c.Alarms(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if alarms[0].Type != client.AlarmNoSpace || alarms[0].Member != "n2" || !strings.Contains(alarms[0].Reason, "over quota_bytes") {
		t.Fatalf("alarms %+v", alarms)
	}
	for _, nd := range nodes {
		for !nd.Store.NoSpace() {
			time.Sleep(20 * time.Millisecond) // not applied there yet
		}
	}
	_, _, err := c.Put(ctx, "k", []byte("v"), client.WriteOptions{})
	if !client.IsNoSpace(err) || !client.IsNotApplied(err) || !strings.Contains(err.Error(), "database space exceeded") {
		t.Fatalf("a write under the alarm: %v", err)
	}
	var e *client.Error
	if errors.As(err, &e) && e.Attempts != 1 {
		t.Fatalf("a NOSPACE refusal was retried on %d nodes", e.Attempts)
	}
	if _, err := c.Delete(ctx, "k"); err != nil {
		t.Fatalf("a delete under the alarm: %v", err)
	}
	h, err := client.New([]string{urlOf(nodes[1])}).Health(ctx)
	if err != nil || len(h.Alarms) != 1 || h.Space == nil || h.Space.QuotaBytes != 1 {
		t.Fatalf("health: %+v %v", h, err)
	}
	disarmed, err := c.Disarm(ctx, client.AlarmNoSpace, "n2")
	if err != nil || !disarmed {
		t.Fatalf("disarm: %v %v", disarmed, err)
	}
	if _, err := c.Disarm(ctx, "bogus", ""); client.StatusCode(err) != 400 {
		t.Fatalf("disarm of an unknown type: %v", err)
	}
}
