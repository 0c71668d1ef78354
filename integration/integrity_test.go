package integration

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestFlippedStateFileValue is the first case of issue 12: bytes written
// into the middle of a stopped follower's kv.db, right over a value.
// Before values were sealed, the node started and served the wrong value
// with 200. Now it refuses to start with one line naming the file, the
// bucket and the key; with repair_state_file it rebuilds the file from its
// log and serves the committed value.
func TestFlippedStateFileValue(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	const committed = "postgres://db-primary.internal:5432/app"
	if code, body := put(t, leader, "config/db", committed); code != 200 || body != "true" {
		t.Fatalf("PUT: %d %q", code, body)
	}
	victim := c.Followers(leader)[0]
	waitCaughtUp(t, leader, victim)
	victim.Stop()

	path := filepath.Join(victim.DataDir, "kv.db")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(committed))
	if i < 0 {
		t.Fatal("the value is not in kv.db")
	}
	copy(data[i+11:], "evil-replica") // same length, mid-value
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	victim.Start()
	if exit := victim.WaitExit(20 * time.Second); exit == nil {
		t.Fatal("a node with a damaged value in its state file kept running")
	}
	log := victim.Log()
	if !strings.Contains(log, `is damaged: bucket "kv", key "config/db": the value fails its checksum`) || strings.Contains(log, "goroutine ") {
		t.Fatalf("the refusal does not name the damaged value in one line:\n%s", victim.Tail(3000))
	}

	victim.SetFlags("--repair-state-file")
	victim.Start()
	victim.WaitHTTP(20 * time.Second)
	waitValue(t, victim, "config/db", "?stale", committed)
}

// TestDivergedNodeIsFenced: a stopped follower's kv.db is edited so that
// one value differs but every checksum holds (what a bug or a hand edit
// would leave: nothing local can tell). At the next checkpoint its state
// hash differs from the one the other two hold, so it fences itself off:
// unready, and every request, stale reads included, answers 503 instead
// of the value. Rebuilt from its log, it agrees again and serves.
func TestDivergedNodeIsFenced(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--state-check-interval=1s"}})
	leader := c.WaitLeader(20 * time.Second)
	for i := 0; i < 20; i++ {
		if code, body := put(t, leader, fmt.Sprintf("app/%02d", i), "committed"); code != 200 || body != "true" {
			t.Fatalf("PUT: %d %q", code, body)
		}
	}
	for _, n := range c.Nodes {
		waitIntegrity(t, n, "agrees")
	}
	victim := c.Followers(leader)[0]
	waitCaughtUp(t, leader, victim)
	victim.Stop()
	rewriteSealed(t, filepath.Join(victim.DataDir, "kv.db"), "app/07", "tampered")
	victim.Start()
	victim.WaitHTTP(20 * time.Second)

	h := waitIntegrity(t, victim, "diverged")
	if !strings.Contains(h.Reason, "voters") {
		t.Fatalf("the verdict does not say who disagrees: %+v", h)
	}
	for _, q := range []string{"", "?stale"} {
		code, body, _, err := victim.Do(http.MethodGet, "/v1/kv/app/07"+q, nil)
		if err != nil || code != http.StatusServiceUnavailable || strings.Contains(string(body), "tampered") {
			t.Fatalf("GET%s from the fenced node: %d %q %v", q, code, body, err)
		}
	}
	if code, _, _, _ := victim.Do(http.MethodGet, "/readyz", nil); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz of the fenced node: %d", code)
	}
	if code, _, _, _ := victim.Do(http.MethodPut, "/v1/kv/app/new", []byte("x")); code != http.StatusServiceUnavailable {
		t.Fatalf("PUT through the fenced node: %d", code)
	}
	for _, n := range c.Nodes {
		if n != victim {
			if h := integrityOf(t, n); h.State != "agrees" {
				t.Fatalf("%s: %+v", n.ID, h)
			}
		}
	}

	// The documented repair: rebuild the state file from the log.
	victim.Stop()
	if err := os.Remove(filepath.Join(victim.DataDir, "kv.db")); err != nil {
		t.Fatal(err)
	}
	victim.Start()
	victim.WaitHTTP(20 * time.Second)
	waitIntegrity(t, victim, "agrees")
	waitValue(t, victim, "app/07", "?stale", "committed")
}

type integrityView struct {
	State  string
	Index  uint64
	Reason string
}

func integrityOf(t *testing.T, n *testcluster.Node) integrityView {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/cluster/health", nil)
	if err != nil || code != 200 {
		return integrityView{}
	}
	var h struct{ Integrity integrityView }
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("health: %v %q", err, body)
	}
	return h.Integrity
}

func waitIntegrity(t *testing.T, n *testcluster.Node, state string) integrityView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := integrityOf(t, n)
		if h.State == state {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: integrity %+v, want %s", n.ID, h, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitValue(t *testing.T, n *testcluster.Node, key, query, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, p := get(t, n, key, query)
		if code == 200 && string(p.Value) == want {
			return
		}
		if code == 200 && p != nil && string(p.Value) != want {
			t.Fatalf("%s served %s = %q, want %q", n.ID, key, p.Value, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s: %d", n.ID, key, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rewriteSealed replaces key's value in a stopped node's state file,
// keeping its indexes, and seals it as the store does (storage/seal.go:
// CRC-32C of bucket, uvarint key length, key and value, big-endian after
// the value; storage/entry.go's layout), so the file passes every local
// check.
func rewriteSealed(t *testing.T, path, key, value string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("kv"))
		old := b.Get([]byte(key))
		if old == nil {
			return fmt.Errorf("%s is not in %s", key, path)
		}
		// version(1) create modify lock flags (uvarints) len(session) session value
		body := old[:len(old)-4]
		p := 1
		for range 5 {
			_, n := binary.Uvarint(body[p:])
			p += n
		}
		entry := append(append([]byte(nil), body[:p]...), value...)
		table := crc32.MakeTable(crc32.Castagnoli)
		var n [binary.MaxVarintLen64]byte
		h := crc32.Update(0, table, []byte("kv"))
		h = crc32.Update(h, table, n[:binary.PutUvarint(n[:], uint64(len(key)))])
		h = crc32.Update(h, table, []byte(key))
		h = crc32.Update(h, table, entry)
		return b.Put([]byte(key), binary.BigEndian.AppendUint32(entry, h))
	})
	if err != nil {
		t.Fatal(err)
	}
}
