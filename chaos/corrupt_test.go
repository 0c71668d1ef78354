package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
)

// TestCorruptNemesis runs the corrupt nemesis once for each kind of file
// against a real 3-node cluster with two snapshots on every node, and
// checks what it did: kv.db damage is repaired in place (or was harmless),
// a damaged log segment makes the node refuse to start and the nemesis
// replaces it (remove, wipe, --join), a damaged newest snapshot gives way
// to the older one. After each, the victim serves every write, those made
// while it was down included, from its own state.
func TestCorruptNemesis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and restarts nodes")
	}
	lt := startLocal(t, 3)
	var addrs []string
	for _, n := range lt.Nodes() {
		addrs = append(addrs, n.HTTPAddr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := client.New(addrs)
	want := map[string]string{}
	put := func(key, value string) {
		t.Helper()
		if ok, _, err := c.Put(ctx, key, []byte(value), client.WriteOptions{}); err != nil || !ok {
			t.Fatalf("put %s: %v %v", key, ok, err)
		}
		want[key] = value
	}
	snapshotAll := func() {
		t.Helper()
		for _, a := range addrs {
			if _, err := client.New([]string{a}, client.WithMaxAttempts(1)).Snapshot(ctx); err != nil {
				t.Fatalf("snapshot on %s: %v", a, err)
			}
		}
	}
	for gen := range 2 {
		for i := range 150 {
			put(fmt.Sprintf("k/%d/%03d", gen, i), fmt.Sprintf("value-%d-%03d-%s", gen, i, strings.Repeat("x", 100)))
		}
		snapshotAll()
	}

	e := &Env{Target: lt, Rand: rand.New(rand.NewPCG(20261205, 12)), HTTP: &http.Client{Timeout: 5 * time.Second}, Logf: t.Logf}
	for _, kind := range corruptKinds {
		n := &corruptNemesis{kind: kind}
		detail, err := n.Start(ctx, e)
		if err != nil {
			t.Fatalf("%s: start: %v (%s)", kind, err, detail)
		}
		file := map[string]string{corruptStateFile: "kv.db", corruptLog: "wal" + string(filepath.Separator), corruptSnapshot: "state.bin"}[kind]
		if !strings.HasPrefix(detail, "kill -9 "+n.victim+", 8 bytes flipped in ") || !strings.Contains(detail, file) {
			t.Fatalf("%s: detail %q", kind, detail)
		}
		put("during/"+kind, "written while "+n.victim+" was down")
		if err := n.Stop(ctx, e); err != nil {
			t.Fatalf("%s: stop: %v\nsteps:\n%s\nlog:\n%s", kind, err, strings.Join(n.Steps(), "\n"), lt.LastRun(n.victim))
		}
		steps := strings.Join(n.Steps(), "\n")
		t.Logf("%s:\n%s", kind, steps)
		var expect []string
		switch kind {
		case corruptStateFile:
			// Eight flips almost always hit a page the node reads; one
			// that hit only free pages finds nothing damaged, which is
			// right too.
			if !strings.Contains(steps, "nothing it reads was damaged") {
				expect = []string{"its kv.db was damaged, moved aside and rebuilt"}
			}
		case corruptLog:
			expect = []string{"refused to start (status 1): kvnode: raft log", "removed " + n.victim, "emptied ", "joined again with --join and serves"}
		case corruptSnapshot:
			expect = []string{"its damaged snapshot was moved aside"}
		}
		for _, s := range expect {
			if !strings.Contains(steps, s) {
				t.Fatalf("%s: the steps do not say %q:\n%s\nlog:\n%s", kind, s, steps, lt.LastRun(n.victim))
			}
		}
		// Every acknowledged write, read through the victim (a
		// linearizable read answered from its own state file).
		victim := client.New([]string{nodeByID(e, n.victim).HTTPAddr}, client.WithMaxAttempts(1))
		for key, value := range want {
			p, _, err := victim.Get(ctx, key, client.ReadOptions{})
			if err != nil || p == nil || string(p.Value) != value {
				t.Fatalf("%s: %s through %s: %+v %v", kind, key, n.victim, p, err)
			}
		}
	}
}
