package integration

import (
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// TestConsulClientTxn drives /v1/txn with the official Consul client
// through a follower of a 3-node cluster: a transaction that applies, one
// that rolls back (nothing of it anywhere), a read-only one, and every
// node reads back the same entries at the transaction's index.
func TestConsulClientTxn(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	txn := consulClient(t, follower).Txn()
	kv := consulClient(t, follower).KV()

	if _, err := kv.Put(&consul.KVPair{Key: "txn/old", Value: []byte("o")}, nil); err != nil {
		t.Fatal(err)
	}
	old, _, err := kv.Get("txn/old", nil)
	if err != nil || old == nil {
		t.Fatalf("Get: %v %v", old, err)
	}

	ok, resp, _, err := txn.Txn(consul.TxnOps{
		{KV: &consul.KVTxnOp{Verb: consul.KVSet, Key: "txn/a", Value: []byte("1"), Flags: 7}},
		{KV: &consul.KVTxnOp{Verb: consul.KVCAS, Key: "txn/old", Value: []byte("o2"), Index: old.ModifyIndex}},
		{KV: &consul.KVTxnOp{Verb: consul.KVCheckNotExists, Key: "txn/none"}},
		{KV: &consul.KVTxnOp{Verb: consul.KVGet, Key: "txn/a"}},
	}, nil)
	if err != nil || !ok || len(resp.Errors) != 0 || len(resp.Results) != 3 {
		t.Fatalf("Txn: ok=%v err=%v resp=%+v", ok, err, resp)
	}
	idx := resp.Results[0].KV.ModifyIndex
	if resp.Results[1].KV.ModifyIndex != idx || idx <= old.ModifyIndex || string(resp.Results[2].KV.Value) != "1" || resp.Results[0].KV.Value != nil {
		t.Fatalf("results %+v %+v %+v", resp.Results[0].KV, resp.Results[1].KV, resp.Results[2].KV)
	}

	// Rolled back: the set must not appear on any node.
	ok, resp, _, err = txn.Txn(consul.TxnOps{
		{KV: &consul.KVTxnOp{Verb: consul.KVSet, Key: "txn/ghost", Value: []byte("g")}},
		{KV: &consul.KVTxnOp{Verb: consul.KVCheckIndex, Key: "txn/old", Index: old.ModifyIndex}}, // stale now
		{KV: &consul.KVTxnOp{Verb: consul.KVLock, Key: "txn/l", Session: "adf4238a-882b-9ddc-4a9d-5b6758e4159e"}},
	}, nil)
	if err != nil || ok || len(resp.Errors) != 2 || resp.Errors[0].OpIndex != 1 || resp.Errors[1].OpIndex != 2 ||
		!strings.Contains(resp.Errors[1].What, "invalid session") {
		t.Fatalf("rollback: ok=%v err=%v resp=%+v", ok, err, resp)
	}

	// Read-only, stale and linearizable, through the deprecated KV().Txn
	// wrapper too.
	for _, q := range []*consul.QueryOptions{nil, {AllowStale: true}} {
		ok, kvResp, _, err := kv.Txn(consul.KVTxnOps{{Verb: consul.KVGetTree, Key: "txn/"}}, q)
		if err != nil || !ok || len(kvResp.Results) != 2 {
			t.Fatalf("read-only Txn %+v: %v %v %+v", q, ok, err, kvResp)
		}
	}

	for _, n := range c.Nodes {
		n.WaitApplied(idx, 10*time.Second)
		nkv := consulClient(t, n).KV()
		for key, want := range map[string]string{"txn/a": "1", "txn/old": "o2"} {
			p, _, err := nkv.Get(key, &consul.QueryOptions{AllowStale: true})
			if err != nil || p == nil || string(p.Value) != want || p.ModifyIndex != idx {
				t.Fatalf("%s on %s: %+v %v; want %q at %d", key, n.ID, p, err, want, idx)
			}
		}
		for _, key := range []string{"txn/ghost", "txn/l"} {
			if p, _, err := nkv.Get(key, &consul.QueryOptions{AllowStale: true}); err != nil || p != nil {
				t.Fatalf("%s of a rolled-back txn on %s: %+v %v", key, n.ID, p, err)
			}
		}
	}
}
