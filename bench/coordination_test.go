package bench

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// The coordination rows measure what they claim on a real 3-node
// cluster: a txn-4 row writes its four keys atomically, the lock
// hand-offs change hands between clients, and the session load keeps
// every session alive and destroys them when it stops.
func TestCoordinationLoadsOnARealCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, t.TempDir(), testcluster.Binary(t), 3, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	store, eps := c.Store(), c.Endpoints()

	r := Run(ctx, Config{Store: store, Endpoints: eps, Kind: Txn, Clients: 4, Duration: time.Second, Keys: 40, Prefix: "txn/"})
	if r.Ops == 0 || r.Errors != 0 {
		t.Fatalf("txn-4 row: %+v", r)
	}
	// Every transaction sets a group of four keys to one value, so each
	// group's keys hold one value whichever transaction came last. They
	// are read in one recursive read, at one index: a transaction the
	// row's end cut off on the client side may still commit, and a read
	// key by key could straddle it.
	hc := NewClient(1, nil)
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(store.Get(eps[0], "txn/?recurse", false).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var entries []struct {
		Key   string
		Value []byte
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &entries) != nil || len(entries) == 0 {
		t.Fatalf("read txn/: %d %s", resp.StatusCode, body)
	}
	value := map[int]string{}
	for _, e := range entries {
		i, err := strconv.Atoi(e.Key[len("txn/"):])
		if err != nil {
			t.Fatalf("an unexpected key %q", e.Key)
		}
		value[i] = string(e.Value)
	}
	for i, v := range value {
		g := i - i%TxnOps
		if w, ok := value[g]; !ok || w != v {
			t.Fatalf("group %d: txn/%d holds %q, txn/%d holds %q: a transaction was applied in part", g, g, w, i, v)
		}
	}

	ds, err := LockHandoffs(ctx, store, eps, "bench/lock", 3, 10, time.Millisecond)
	if err != nil || len(ds) < 10 {
		t.Fatalf("lock hand-offs: %d measured, %v", len(ds), err)
	}
	for _, d := range ds {
		if d <= 0 {
			t.Fatalf("a hand-off of %s", d)
		}
	}

	l, err := StartSessions(ctx, store, eps, 20, 10*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(6 * time.Second) // one renewal period and a bit
	if st := l.Stats(); st.Renewals < 20 || st.Failures != 0 {
		t.Fatalf("after one period: %+v", st)
	}
	if live, err := l.Live(ctx, eps[1]); err != nil || live != 20 {
		t.Fatalf("%d of 20 sessions live (%v)", live, err)
	}
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if live, err := l.Live(ctx, eps[2]); err != nil || live != 0 {
		t.Fatalf("%d sessions live after Stop (%v)", live, err)
	}
}
