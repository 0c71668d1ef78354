package integration

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestCorruptLogEntry: a byte of a value in a stopped follower's Raft log
// is flipped, its kv.db intact (issue 12: "goes unnoticed ... after the
// documented repair the bad entry is replayed and served as data").
// Started, the node exits with one line naming the segment file, the entry
// and what to do; with repair_state_file (kv.db rebuilt from snapshot and
// log) it refuses the same way and applies nothing. Doing what the line
// says (remove, empty the data directory, start with --join) brings the
// value back as it was written.
func TestCorruptLogEntry(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	const value = "the-value-as-written"
	for i, v := range []string{"before", value, "after"} {
		if code, body := put(t, c.Nodes[i%3], "k/"+v, v); code != 200 || body != "true" {
			t.Fatalf("PUT %s: %d %q", v, code, body)
		}
	}
	victim := c.Followers(leader)[0]
	waitCaughtUp(t, leader, victim)
	victim.Stop()

	files, _ := filepath.Glob(filepath.Join(victim.DataDir, "wal", "*.wal"))
	var file string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The command: the key, an empty session (one zero byte), the value.
		if i := bytes.Index(b, []byte("k/"+value+"\x00"+value)); i >= 0 {
			b[i+len("k/"+value)+1+4] ^= 0x20 // "the-Value-as-written"
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
			file = f
		}
	}
	if file == "" {
		t.Fatalf("the value is in none of %v", files)
	}

	refused := func(when string) {
		t.Helper()
		if exit := victim.WaitExit(20 * time.Second); exit == nil {
			t.Fatalf("%s: a node with a corrupt log entry kept running", when)
		}
		log := victim.Log()
		want := "kvnode: raft log: entry "
		i := strings.LastIndex(log, want)
		if i < 0 || strings.Contains(log, "goroutine ") || strings.Contains(log, "panic:") {
			t.Fatalf("%s: no one-line refusal:\n%s", when, victim.Tail(3000))
		}
		line, _, _ := strings.Cut(log[i:], "\n")
		for _, part := range []string{file, "is corrupt", "kvctl remove " + victim.ID, "--join"} {
			if !strings.Contains(line, part) {
				t.Fatalf("%s: the refusal does not say %q: %s", when, part, line)
			}
		}
	}
	victim.Start()
	refused("kv.db intact")
	victim.SetFlags("--repair-state-file")
	victim.Start()
	refused("with repair_state_file")

	// What the line says to do.
	if code, body, _, err := leader.Do(http.MethodDelete, "/v1/cluster/members/"+victim.ID, nil); err != nil || code != 200 {
		t.Fatalf("remove %s: %d %s %v", victim.ID, code, body, err)
	}
	victim.Wipe()
	victim.SetFlags("--initial-cluster", "", "--join", leader.HTTPAddr)
	victim.Start()
	victim.WaitHTTP(20 * time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, p := get(t, victim, "k/"+value, "")
		if code == 200 && string(p.Value) == value {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k/%s on the rejoined node: %d %+v", value, code, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
