package api

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// DefaultTxnMaxOps is Consul's limit on the operations of one
// transaction (raised from 64 in Consul 1.14).
const DefaultTxnMaxOps = 128

// CommandLimit is the largest encoded command a node proposes or takes
// from a peer, for a value limit of maxValueSize: one value with its key
// and framing. A transaction whose encoding is larger is refused with
// 413 before it reaches Raft, so every command a node proposes fits
// through every peer's door.
func CommandLimit(maxValueSize int64) int64 {
	return cmp.Or(maxValueSize, DefaultMaxValueSize) + 2*MaxKeySize + 1024
}

// txnOp is one element of a /v1/txn body. Consul's catalog members are
// decoded only to be refused by name: Troupe stores keys only.
type txnOp struct {
	KV      *txnKVOp
	Node    json.RawMessage
	Service json.RawMessage
	Check   json.RawMessage
}

// txnKVOp is Consul's TxnKVOp: the client always sends every field.
type txnKVOp struct {
	Verb      string
	Key       string
	Value     []byte
	Flags     uint64
	Index     uint64
	Session   string
	Namespace string
	Partition string
}

// TxnResult is one element of a transaction's Results.
type TxnResult struct {
	KV *KVPair
}

// TxnError names a failed operation of a rolled-back transaction.
type TxnError struct {
	OpIndex int
	What    string
}

// TxnResponse is the body of a 200 or 409 answer to /v1/txn: Results on
// success (never null elements: Consul's KV().Txn dereferences each),
// Errors on rollback.
type TxnResponse struct {
	Results []TxnResult
	Errors  []TxnError
}

// present reports a catalog member that is there: the Go client sends
// every member, the unused ones as null.
func present(m json.RawMessage) bool { return len(m) > 0 && string(m) != "null" }

// txnRequestError is a request refused whole, before any operation is
// looked at against the state: a 400 or 413 with its reason.
type txnRequestError struct {
	status int
	msg    string
}

func (e *txnRequestError) Error() string { return e.msg }

// parseTxn decodes and validates a transaction body. Operations that are
// well formed but cannot run here (catalog operations) come back as
// errors of the operation, which fail the transaction with 409 as any
// failed operation does.
func (s *Server) parseTxn(body []byte) ([]storage.TxnOp, []TxnError, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	// Consul decodes strictly: a misspelt field is a mistake to report,
	// not a field to drop.
	dec.DisallowUnknownFields()
	var raw []txnOp
	if err := dec.Decode(&raw); err != nil {
		return nil, nil, &txnRequestError{http.StatusBadRequest, "Failed to parse body: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &txnRequestError{http.StatusBadRequest, "Failed to parse body: data after the list of operations"}
	}
	if raw == nil { // null; [] decodes to an empty list
		return nil, nil, &txnRequestError{http.StatusBadRequest, "Failed to parse body: want a JSON list of operations"}
	}
	if len(raw) > s.opts.TxnMaxOps {
		return nil, nil, &txnRequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("Transaction contains too many operations (%d > %d)", len(raw), s.opts.TxnMaxOps)}
	}
	ops := make([]storage.TxnOp, len(raw))
	var opErrs []TxnError
	for i, r := range raw {
		catalog := ""
		switch {
		case present(r.Node):
			catalog = "Node"
		case present(r.Service):
			catalog = "Service"
		case present(r.Check):
			catalog = "Check"
		}
		if r.KV == nil && catalog == "" {
			return nil, nil, &txnRequestError{http.StatusBadRequest, fmt.Sprintf("operation %d has none of KV, Node, Service and Check", i)}
		}
		if r.KV != nil && catalog != "" {
			return nil, nil, &txnRequestError{http.StatusBadRequest, fmt.Sprintf("operation %d has both KV and %s: an operation has exactly one", i, catalog)}
		}
		if catalog != "" {
			opErrs = append(opErrs, TxnError{OpIndex: i, What: catalog + " operations are not supported: Troupe is a key-value store without a catalog"})
			continue
		}
		kv := r.KV
		verb, ok := storage.ParseTxnVerb(kv.Verb)
		if !ok {
			return nil, nil, &txnRequestError{http.StatusBadRequest, fmt.Sprintf("operation %d: unknown KV operation %q", i, kv.Verb)}
		}
		for _, p := range []struct{ name, v string }{{"Namespace", kv.Namespace}, {"Partition", kv.Partition}} {
			if p.v != "" && p.v != "default" {
				return nil, nil, &txnRequestError{http.StatusBadRequest, fmt.Sprintf("operation %d: %s %q is not supported: this cluster has only the default one", i, p.name, p.v)}
			}
		}
		// Consul's pre-check: a missing key fails the operation (409),
		// it does not make the request malformed. The state machine
		// checks it again for commands from elsewhere.
		if kv.Key == "" && verb != storage.TxnDeleteTree {
			opErrs = append(opErrs, TxnError{OpIndex: i, What: "Must provide key"})
		}
		if kv.Key != "" {
			if err := validateKey(kv.Key, true); err != nil {
				return nil, nil, &txnRequestError{http.StatusBadRequest, fmt.Sprintf("operation %d: %v", i, err)}
			}
		}
		if int64(len(kv.Value)) > s.opts.MaxValueSize {
			return nil, nil, &txnRequestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("Value for key %q is too large (%d > %d bytes)", kv.Key, len(kv.Value), s.opts.MaxValueSize)}
		}
		ops[i] = storage.TxnOp{Verb: verb, Key: kv.Key, Value: kv.Value, Flags: kv.Flags, Index: kv.Index, Session: kv.Session}
	}
	return ops, opErrs, nil
}

// txnDenied is the pre-check of every operation against the token, as
// Consul makes it: each operation needs what the KV endpoint would need
// for it, and each one refused is an error of the transaction.
func txnDenied(a *authz, ops []storage.TxnOp) []TxnError {
	var errs []TxnError
	for i, op := range ops {
		if op.Verb == 0 || op.Key == "" && op.Verb != storage.TxnDeleteTree {
			continue // failed in parseTxn already: one error an operation
		}
		var ok bool
		perm, resource := "key:read", op.Key
		switch {
		case op.Verb == storage.TxnDeleteTree:
			// As a recursive DELETE: keys created later fall under it too.
			perm, resource = "key:write", op.Key+"* (every key under the prefix)"
			ok = a.keyWritePrefix(op.Key)
		case op.Verb.IsWrite():
			perm = "key:write"
			ok = a.keyWrite(op.Key)
		default:
			ok = a.keyRead(op.Key)
		}
		if !ok {
			errs = append(errs, TxnError{OpIndex: i, What: a.deniedMessage(perm, resource)})
		}
	}
	return errs
}

// txn serves PUT /v1/txn: a transaction with a write goes through Raft
// as one command; a read-only one is served like a read.
func (s *Server) txn(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	stale, consistent := has(q, "stale"), has(q, "consistent")
	if stale && consistent {
		httpError(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return
	}
	body, ok := s.readTxnBody(w, r)
	if !ok {
		return
	}
	ops, opErrs, err := s.parseTxn(body)
	if err != nil {
		var re *txnRequestError
		errors.As(err, &re)
		httpError(w, re.status, re.msg)
		return
	}
	a := authzOf(r)
	if a != nil {
		opErrs = append(opErrs, txnDenied(a, ops)...)
	}
	if len(opErrs) > 0 {
		// Refused in the pre-check: nothing reached Raft or the state.
		slices.SortStableFunc(opErrs, func(a, b TxnError) int { return a.OpIndex - b.OpIndex })
		writeRollback(w, opErrs)
		return
	}

	if !storage.HasWrites(ops) {
		res, err := s.b.KV.Read(r.Context(), storage.Query{Kind: storage.QueryTxn, Txn: ops}, stale || s.opts.UnsafeReads, storage.Block{})
		if err != nil {
			if r.Context().Err() == nil {
				writeError(w, err)
			}
			return
		}
		s.setLeaderHeaders(w, !stale)
		s.writeTxn(w, a, res.Txn)
		return
	}

	cmd := &storage.Command{Op: storage.OpTxn, Txn: ops}
	if n, limit := len(cmd.Encode()), CommandLimit(s.opts.MaxValueSize); int64(n) > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Transaction is too large: it encodes to %d bytes, over the %d-byte limit of one replicated command", n, limit))
		return
	}
	if res, ok := s.replicate(w, r, cmd); ok {
		s.writeTxn(w, a, res.Txn)
	}
}

// readTxnBody reads the body up to twice the value limit. Consul's limit
// is the value limit itself, which no transaction carrying a value of
// the largest size can meet (values travel as base64, a third longer);
// the value limit per operation and CommandLimit on the whole bound what
// is stored.
func (s *Server) readTxnBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := 2 * s.opts.MaxValueSize
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body (%d bytes) too large, max size: %d bytes", r.ContentLength, limit))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large (over %d bytes), max size: %d bytes", limit, limit))
			return nil, false
		}
		httpError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, false
	}
	return body, true
}

// writeRollback answers 409: the transaction certainly did not apply, so
// a client may retry it anywhere once it has dealt with the errors.
func writeRollback(w http.ResponseWriter, errs []TxnError) {
	w.Header().Set(OutcomeHeader, OutcomeNotApplied)
	writeJSON(w, http.StatusConflict, TxnResponse{Errors: errs})
}

// writeTxn renders a transaction's outcome: 200 with Results, or 409 with
// Errors. With ACLs on, entries the token may not read are left out, as
// a listing leaves them out (a get-tree may cover keys it cannot see).
func (s *Server) writeTxn(w http.ResponseWriter, a *authz, res *storage.TxnResult) {
	if res == nil {
		// A leader that does not know transactions (an older release
		// mid-upgrade) applied something that was not one.
		writeError(w, fmt.Errorf("%w: the leader returned no transaction result", cluster.ErrUnknownOutcome))
		return
	}
	if len(res.Errors) > 0 {
		errs := make([]TxnError, len(res.Errors))
		for i, e := range res.Errors {
			errs[i] = TxnError{OpIndex: e.OpIndex, What: e.What}
		}
		writeRollback(w, errs)
		return
	}
	results := make([]TxnResult, 0, len(res.Entries))
	for _, e := range res.Entries {
		if a != nil && !a.keyRead(e.Key) {
			w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
			continue
		}
		p := toPair(e)
		results = append(results, TxnResult{KV: &p})
	}
	writeJSON(w, http.StatusOK, TxnResponse{Results: results})
}
