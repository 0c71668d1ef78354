package main

import (
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/inproc"
)

// TestAlarmCommands: a one-node cluster whose quota its own state file
// exceeds raises the NOSPACE alarm; kvctl lists it (--check exits 1),
// a put fails with the 507 and its reason, a delete works, and disarm
// clears the alarm (which the node, still over its quota, raises again).
func TestAlarmCommands(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{QuotaBytes: func(string) int64 { return 1 }})
	deadline := time.Now().Add(10 * time.Second)
	for !nodes[0].Store.NoSpace() {
		if time.Now().After(deadline) {
			t.Fatal("the alarm was never raised")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := on(t, nodes, "alarm", "list")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "TYPE     MEMBER  INDEX  REASON\nnospace  n1") || !strings.Contains(r.stdout, "over quota_bytes (1 B)") {
		t.Fatalf("alarm list: %+v", r)
	}
	if r := on(t, nodes, "alarm", "list", "--check"); r.code != 1 || !strings.Contains(r.stderr, "1 alarm(s) raised") {
		t.Fatalf("alarm list --check: %+v", r)
	}
	if r := on(t, nodes, "-o", "json", "alarm", "list"); r.code != 0 || !strings.Contains(r.stdout, `"type": "nospace"`) || !strings.Contains(r.stdout, `"member": "n1"`) {
		t.Fatalf("alarm list -o json: %+v", r)
	}
	if r := on(t, nodes, "health"); r.code != 0 || !strings.Contains(r.stdout, "alarm nospace raised by n1 at index ") {
		t.Fatalf("health under the alarm: %+v", r)
	}
	on(t, nodes, "put", "k2", "v").expectErr(t, 2, "HTTP 507: database space exceeded: the NOSPACE alarm is raised (n1: the state file holds")
	if r := on(t, nodes, "delete", "k2"); r.code != 0 {
		t.Fatalf("delete under the alarm: %+v", r)
	}
	on(t, nodes, "alarm", "disarm", "--type", "bogus").expectErr(t, 2, `unknown alarm type "bogus"`)
	on(t, nodes, "alarm", "disarm", "--member", "n9").expect(t, 0, "no such alarm was raised\n")
	if r := on(t, nodes, "alarm", "disarm"); r.code != 0 || !strings.HasPrefix(r.stdout, "disarmed;") {
		t.Fatalf("alarm disarm: %+v", r)
	}
}
