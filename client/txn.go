package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// TxnOp is one operation of a transaction, Consul's TxnKVOp: Verb is one
// of set, cas, lock, unlock, get, get-or-empty, get-tree, check-index,
// check-session, check-not-exists, delete, delete-tree, delete-cas.
type TxnOp struct {
	Verb    string
	Key     string
	Value   []byte // base64 on the wire
	Flags   uint64
	Index   uint64
	Session string
}

// TxnError names an operation that made a transaction roll back.
type TxnError struct {
	OpIndex int
	What    string
}

// TxnResponse is a transaction's outcome: Results (in operation order, only
// for the operations that report an entry) when it was applied, Errors
// when it was rolled back.
type TxnResponse struct {
	Results []TxnResult
	Errors  []TxnError
}

// TxnResult is one entry a transaction reports.
type TxnResult struct {
	KV *KVPair
}

// txnWrites lists Consul's verbs that change state; a transaction without
// one is a read the server answers without Raft, safe to retry anywhere.
var txnWrites = map[string]bool{"set": true, "cas": true, "lock": true, "unlock": true, "delete": true, "delete-tree": true, "delete-cas": true}

// Txn runs ops atomically. ok reports whether the transaction was applied
// (200); a rollback (409) is ok false with the failed operations in
// resp.Errors and no error. opts apply to read-only transactions only (a
// write always goes through the leader). A transaction with a write is
// never retried after it may have reached the cluster.
func (c *Client) Txn(ctx context.Context, ops []TxnOp, opts ReadOptions) (ok bool, resp *TxnResponse, meta Meta, err error) {
	body := make([]struct{ KV TxnOp }, len(ops))
	read := true
	for i, op := range ops {
		body[i].KV = op
		read = read && !txnWrites[op.Verb]
	}
	data, err := json.Marshal(body)
	if err != nil {
		return false, nil, Meta{}, fmt.Errorf("encoding the transaction: %w", err)
	}
	q := opts.query()
	q.Del("index")
	q.Del("wait")
	r, err := c.do(ctx, &request{method: http.MethodPut, path: "/v1/txn", query: q, body: data,
		contentType: "application/json", read: read, accept: []int{http.StatusOK, http.StatusConflict}})
	if err != nil {
		return false, nil, Meta{}, err
	}
	meta = readMeta(r)
	var out TxnResponse
	if err := decode(r, &out); err != nil {
		return false, nil, meta, err
	}
	return r.status == http.StatusOK, &out, meta, nil
}
