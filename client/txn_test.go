package client_test

import (
	"testing"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// TestTxn: a transaction applies or rolls back (ok false, no error); a
// read-only one fails over like a read, and one with a write is never
// sent again after a failure that may have applied it.
func TestTxn(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	live := nodes[0]
	c := newClient([]string{live.HTTPAddr})

	ok, resp, meta, err := c.Txn(ctx(t), []client.TxnOp{
		{Verb: "set", Key: "tx/a", Value: []byte("1"), Flags: semaphoreFlags},
		{Verb: "get", Key: "tx/a"},
	}, client.ReadOptions{})
	if err != nil || !ok || len(resp.Results) != 2 || string(resp.Results[1].KV.Value) != "1" || resp.Results[1].KV.Flags != semaphoreFlags || meta.Index == 0 {
		t.Fatalf("Txn = %v %+v %+v %v", ok, resp, meta, err)
	}
	ok, resp, _, err = c.Txn(ctx(t), []client.TxnOp{{Verb: "delete", Key: "tx/a"}, {Verb: "check-index", Key: "tx/a", Index: meta.Index + 1}}, client.ReadOptions{})
	if err != nil || ok || len(resp.Errors) != 1 || resp.Errors[0].OpIndex != 1 {
		t.Fatalf("rollback = %v %+v %v", ok, resp, err)
	}
	if p, _, err := c.Get(ctx(t), "tx/a", client.ReadOptions{}); err != nil || p == nil {
		t.Fatalf("the rolled-back delete happened: %+v %v", p, err)
	}

	broken := canned(t, 500, textPlain, "boom\n")
	rec, opt := recording()
	ok, resp, meta, err = newClient([]string{broken.URL, live.HTTPAddr}, opt).Txn(ctx(t), []client.TxnOp{{Verb: "get", Key: "tx/a"}}, client.ReadOptions{Stale: true})
	if err != nil || !ok || len(resp.Results) != 1 || meta.Endpoint != urlOf(live) {
		t.Fatalf("read-only Txn after a 500 = %v %+v %+v %v", ok, resp, meta, err)
	}
	sent := len(rec.requests(live.HTTPAddr))
	ok, _, _, err = newClient([]string{broken.URL, live.HTTPAddr}, opt).Txn(ctx(t), []client.TxnOp{{Verb: "get", Key: "tx/a"}, {Verb: "set", Key: "tx/b", Value: []byte("2")}}, client.ReadOptions{})
	if ok || err == nil || !client.IsUnknownOutcome(err) {
		t.Fatalf("write Txn after a 500 = %v %v; want an unknown outcome", ok, err)
	}
	if n := len(rec.requests(live.HTTPAddr)); n != sent {
		t.Fatalf("the write transaction was resent to another node (%d requests)", n-sent)
	}
	if p, _, err := c.Get(ctx(t), "tx/b", client.ReadOptions{}); err != nil || p != nil {
		t.Fatalf("tx/b = %+v %v", p, err)
	}
}
