package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/storage"
)

// ackedWrite is a write the cluster acknowledged, with its index.
type ackedWrite struct {
	key, value string
	index      uint64
}

// allPairs lists every key with its value and ModifyIndex, on n, stale.
func allPairs(t *testing.T, n *testcluster.Node) map[string]pair {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/kv/?recurse&stale", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]pair{}
	if code == http.StatusNotFound {
		return out
	}
	var ps []pair
	if code != http.StatusOK || json.Unmarshal(body, &ps) != nil {
		t.Fatalf("list on %s: %d %q", n.ID, code, body)
	}
	for _, p := range ps {
		out[p.Key] = p
	}
	return out
}

// TestBackupSaveUnderLoadWipeRestore: a snapshot saved through a
// follower with the official Consul client, while a writer runs, holds
// every write acknowledged up to its index and none after. The cluster
// is then wiped (stopped, data directories deleted, started fresh) and
// given other data; a damaged or cut snapshot is refused and changes
// nothing; the real one, restored through a follower, replaces all of
// the data on every node, and indexes go on from above everything the
// fresh cluster had handed out: a watcher wakes, and a CAS prepared
// before the restore fails.
func TestBackupSaveUnderLoadWipeRestore(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	for i := 0; i < 200; i++ {
		if code, body := put(t, leader, fmt.Sprintf("pre/%03d", i), fmt.Sprintf("v%d", i)); code != 200 || body != "true" {
			t.Fatalf("preload: %d %s", code, body)
		}
	}

	// A writer of distinct keys, recording each acknowledged write's index.
	var mu sync.Mutex
	var acked []ackedWrite
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key, value := fmt.Sprintf("load/%05d", i), strconv.Itoa(i)
			code, _, h, err := leader.Do(http.MethodPut, "/v1/kv/"+key, []byte(value))
			if err != nil || code != http.StatusOK {
				continue
			}
			idx, _ := strconv.ParseUint(h.Get("X-Consul-Index"), 10, 64)
			mu.Lock()
			acked = append(acked, ackedWrite{key, value, idx})
			mu.Unlock()
		}
	})
	waitAcked := func(n int) {
		eventually(t, 20*time.Second, "writes acknowledged", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= n
		})
	}
	waitAcked(100)
	mu.Lock()
	before := len(acked) // acknowledged before the save began
	mu.Unlock()
	rc, meta, err := consulClient(t, follower).Snapshot().Save(nil)
	if err != nil {
		t.Fatalf("Snapshot().Save: %v", err)
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	f.Close()
	waitAcked(before + 100) // and some after it
	close(stop)
	wg.Wait()

	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	info, err := storage.ReadBackup(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatalf("the saved snapshot does not read back: %v", err)
	}
	if info.Index != meta.LastIndex || meta.LastIndex == 0 {
		t.Fatalf("snapshot index %d, X-Consul-Index %d", info.Index, meta.LastIndex)
	}
	want := map[string]string{}
	for i := 0; i < 200; i++ {
		want[fmt.Sprintf("pre/%03d", i)] = fmt.Sprintf("v%d", i)
	}
	var after []string
	for i, w := range acked {
		switch {
		case w.index <= info.Index:
			want[w.key] = w.value
		case i < before:
			t.Fatalf("%s was acknowledged at %d before the save began, past the snapshot's index %d", w.key, w.index, info.Index)
		default:
			after = append(after, w.key)
		}
	}
	if len(after) == 0 {
		t.Fatal("no write was acknowledged after the snapshot: the test shows nothing")
	}
	t.Logf("snapshot at index %d: %d keys expected, %d acknowledged writes after it, %d bytes", info.Index, len(want), len(after), len(data))

	// Wipe: stop every node, delete its data, start a fresh cluster.
	for _, n := range c.Nodes {
		n.Stop()
		n.Wipe()
	}
	for _, n := range c.Nodes {
		n.Start()
	}
	leader = c.WaitLeader(30 * time.Second)
	follower = c.Followers(leader)[0]
	if got := allPairs(t, leader); len(got) != 0 {
		t.Fatalf("the wiped cluster still holds %d keys", len(got))
	}

	// Other data, a watcher on it, and a CAS prepared against it.
	for i := 0; i < 50; i++ {
		if code, body := put(t, leader, fmt.Sprintf("other/%02d", i), "x"); code != 200 || body != "true" {
			t.Fatalf("other data: %d %s", code, body)
		}
	}
	_, old := get(t, leader, "other/00", "")
	kv := consulClient(t, follower).KV()
	_, wmeta, err := kv.List("other/", nil)
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan uint64, 1)
	go func() {
		_, m, err := kv.List("other/", &consul.QueryOptions{WaitIndex: wmeta.LastIndex, WaitTime: time.Minute})
		if err != nil {
			watched <- 0
			return
		}
		watched <- m.LastIndex
	}()

	// Damaged and cut snapshots are refused with a 400 and change nothing.
	snap := consulClient(t, follower).Snapshot()
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x01
	for name, bad := range map[string][]byte{"a flipped byte": flipped, "a cut file": data[:len(data)*2/3], "not a snapshot": []byte("hello")} {
		err := snap.Restore(nil, bytes.NewReader(bad))
		if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("restoring %s: %v, want a 400 saying nothing changed", name, err)
		}
	}
	if got := allPairs(t, leader); len(got) != 50 {
		t.Fatalf("after refused restores the cluster holds %d keys, want its 50", len(got))
	}

	// The real restore, through a follower, with the Consul client.
	if err := snap.Restore(nil, bytes.NewReader(data)); err != nil {
		t.Fatalf("Snapshot().Restore: %v", err)
	}
	select {
	case idx := <-watched:
		if idx <= wmeta.LastIndex {
			t.Fatalf("the watcher woke with index %d, not past %d", idx, wmeta.LastIndex)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the watcher did not wake at the restore")
	}
	st, err := leader.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes {
		n.WaitApplied(st.CommitIndex, 30*time.Second)
		got := allPairs(t, n)
		if len(got) != len(want) {
			t.Fatalf("%s holds %d keys after the restore, want %d", n.ID, len(got), len(want))
		}
		for k, v := range want {
			p, ok := got[k]
			if !ok || string(p.Value) != v {
				t.Fatalf("%s: %s = %q (present %v), want %q", n.ID, k, p.Value, ok, v)
			}
			if p.ModifyIndex <= old.ModifyIndex {
				t.Fatalf("%s: %s has ModifyIndex %d, not past %d handed out before the restore", n.ID, k, p.ModifyIndex, old.ModifyIndex)
			}
		}
	}
	ok, _, err := kv.CAS(&consul.KVPair{Key: "other/00", Value: []byte("y"), ModifyIndex: old.ModifyIndex}, nil)
	if err != nil || ok {
		t.Fatalf("a CAS prepared before the restore: ok=%v err=%v, want false", ok, err)
	}
	// Writes go on, at indexes past the restore.
	if code, body := put(t, follower, "pre/000", "after"); code != 200 || body != "true" {
		t.Fatalf("write after the restore: %d %s", code, body)
	}
	if _, p := get(t, leader, "pre/000", ""); string(p.Value) != "after" {
		t.Fatalf("read after the restore: %+v", p)
	}
}

// TestBackupNeedsManagementToken: with ACLs on, saving and restoring a
// snapshot take a management token, as in Consul.
func TestBackupNeedsManagementToken(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{Args: []string{"--acl-enabled"}})
	n := c.Nodes[0]
	n.WaitHTTP(20 * time.Second)
	var code int
	var body string
	eventually(t, 30*time.Second, "the ACL bootstrap", func() bool {
		code, body = rawCall(t, n, "PUT", "/v1/acl/bootstrap", "", "")
		return code == 200
	})
	var boot struct{ SecretID string }
	if err := json.Unmarshal([]byte(body), &boot); err != nil {
		t.Fatal(err)
	}
	mgmt := boot.SecretID
	code, body = rawCall(t, n, "PUT", "/v1/acl/policy", mgmt, `{"Name":"rw","Rules":"key_prefix \"\" { policy = \"write\" }"}`)
	if code != 200 {
		t.Fatalf("policy: %d %s", code, body)
	}
	code, body = rawCall(t, n, "PUT", "/v1/acl/token", mgmt, `{"Policies":[{"Name":"rw"}]}`)
	if code != 200 {
		t.Fatalf("token: %d %s", code, body)
	}
	var tok struct{ SecretID string }
	if err := json.Unmarshal([]byte(body), &tok); err != nil {
		t.Fatal(err)
	}
	if code, _ := rawCall(t, n, "PUT", "/v1/kv/a", mgmt, "1"); code != 200 {
		t.Fatal("write with the management token")
	}

	for _, who := range []struct{ name, token string }{{"no token", ""}, {"a key-write token", tok.SecretID}} {
		if code, body := rawCall(t, n, "GET", "/v1/snapshot", who.token, ""); code != 401 && code != 403 {
			t.Fatalf("save with %s: %d %s", who.name, code, body)
		}
		_, _, err := consulWithToken(t, n, who.token).Snapshot().Save(nil)
		if err == nil {
			t.Fatalf("Snapshot().Save with %s succeeded", who.name)
		}
	}
	rc, _, err := consulWithToken(t, n, mgmt).Snapshot().Save(nil)
	if err != nil {
		t.Fatalf("save with the management token: %v", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if code, _ := rawCall(t, n, "PUT", "/v1/kv/a", mgmt, "2"); code != 200 {
		t.Fatal("write with the management token")
	}
	if err := consulWithToken(t, n, tok.SecretID).Snapshot().Restore(nil, bytes.NewReader(buf.Bytes())); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("restore with a key-write token: %v, want 403", err)
	}
	if err := consulWithToken(t, n, mgmt).Snapshot().Restore(nil, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore with the management token: %v", err)
	}
	// The snapshot's ACLs came back with it: the management token still
	// works, and the key holds its value at the save.
	if code, body := rawCall(t, n, "GET", "/v1/kv/a?raw", mgmt, ""); code != 200 || body != "1" {
		t.Fatalf("after the restore: %d %q, want 1", code, body)
	}
}
