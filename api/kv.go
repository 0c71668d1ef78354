package api

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// KVPair is Consul's JSON form of an entry. Value is base64 (encoding/json
// does that for []byte) and null when empty; the indexes and flags are full
// uint64s.
type KVPair struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

func toPair(e storage.Entry) KVPair {
	return KVPair{
		LockIndex:   e.LockIndex,
		Key:         e.Key,
		Flags:       e.Flags,
		Value:       e.Value,
		Session:     e.Session,
		CreateIndex: e.CreateIndex,
		ModifyIndex: e.ModifyIndex,
	}
}

// Blocking query limits, as Consul's: the default and maximum wait.
const (
	defaultWait = 5 * time.Minute
	maxWait     = 10 * time.Minute
)

func (s *Server) kv(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/kv"), "/")
	// Parse the query once: every flag below reads it.
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.kvGet(w, r, q, key)
	case http.MethodPut:
		s.kvPut(w, r, q, key)
	case http.MethodDelete:
		s.kvDelete(w, r, q, key)
	case http.MethodOptions:
		w.Header().Set("Allow", "GET, PUT, DELETE, OPTIONS")
		w.WriteHeader(http.StatusOK)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE, OPTIONS")
		httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on /v1/kv/", r.Method))
	}
}

// validateKey enforces the key rules of docs/api.md. A prefix (for recurse,
// keys and delete-tree) may be empty; a key may not.
func validateKey(key string, prefix bool) error {
	if key == "" {
		if prefix {
			return nil
		}
		return errors.New("Missing key name")
	}
	if len(key) > MaxKeySize {
		return fmt.Errorf("key is %d bytes, the limit is %d", len(key), MaxKeySize)
	}
	if !utf8.ValidString(key) {
		return errors.New("key is not valid UTF-8")
	}
	if strings.HasPrefix(key, "/") {
		return errors.New("key must not start with '/'")
	}
	for _, c := range key {
		if unicode.IsControl(c) {
			return fmt.Errorf("key contains the control character %U", c)
		}
	}
	segs := strings.Split(key, "/")
	for i, seg := range segs {
		switch {
		case seg == "." || seg == "..":
			return fmt.Errorf("key must not contain a %q segment", seg)
		case seg == "" && i != len(segs)-1:
			return errors.New("key must not contain an empty segment ('//')")
		}
	}
	return nil
}

func (s *Server) kvGet(w http.ResponseWriter, r *http.Request, q url.Values, key string) {
	stale, consistent := has(q, "stale"), has(q, "consistent")
	if stale && consistent {
		httpError(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
		return
	}
	listKeys, recurse := has(q, "keys"), has(q, "recurse")
	if err := validateKey(key, listKeys || recurse); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	minIndex, wait, release, ok := s.admitBlocking(w, q)
	if !ok {
		return
	}
	defer release()
	sep := q.Get("separator")
	if _, ok := q["separator"]; !ok {
		sep = q.Get("seperator") // Consul still accepts its old misspelling
	}

	a := authzOf(r)
	if a != nil && !listKeys && !recurse && !a.keyRead(key) {
		a.denied(w, "key:read", key)
		return
	}
	query := storage.Query{Kind: storage.QueryGet, Key: key}
	switch {
	case listKeys:
		query = storage.Query{Kind: storage.QueryKeys, Key: key, Separator: sep}
	case recurse:
		query.Kind = storage.QueryList
	}
	// Unsafe reads skip the barrier but still claim to be linearizable:
	// that is the lie the chaos checker must catch.
	res, err := s.b.KV.Read(r.Context(), query, stale || s.opts.UnsafeReads, storage.Block{MinIndex: minIndex, Wait: wait, Drain: s.draining})
	if err != nil {
		if r.Context().Err() == nil {
			writeError(w, err)
		}
		return
	}
	if a != nil && (listKeys || recurse) && filterReadable(a, &res, key, sep) {
		// Consul's header: the listing is what this token may see.
		w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
	}
	var body any
	switch {
	case listKeys:
		body = res.Keys
		if res.Keys == nil {
			body = []string{}
		}
	case recurse || !has(q, "raw"):
		pairs := make([]KVPair, len(res.Entries))
		for i, e := range res.Entries {
			pairs[i] = toPair(e)
		}
		body = pairs
	case res.Found:
		body = rawValue(res.Entries[0].Value)
	}
	s.writeRead(w, r, body, res.Found, res.Index, !stale)
}

// rawValue marks a body to be written as the bare value (?raw).
type rawValue []byte

func (s *Server) writeRead(w http.ResponseWriter, r *http.Request, body any, found bool, index uint64, linearizable bool) {
	// Blocking clients feed this back as ?index; 0 would make them spin.
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	s.setLeaderHeaders(w, linearizable)
	if !found {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if raw, ok := body.(rawValue); ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "sandbox")
		w.Header().Set("Content-Length", strconv.Itoa(len(raw)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(raw)
		}
		return
	}
	writeJSON(w, http.StatusOK, body)
}

// blockingParams parses ?index and ?wait. The wait is clamped to ten
// minutes and gets up to 1/16 of random jitter, so many watchers do not
// wake in lockstep.
func blockingParams(w http.ResponseWriter, q url.Values) (uint64, time.Duration, bool) {
	var index uint64
	if v := q.Get("index"); v != "" {
		var err error
		if index, err = strconv.ParseUint(v, 10, 64); err != nil {
			httpError(w, http.StatusBadRequest, "Invalid index")
			return 0, 0, false
		}
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			httpError(w, http.StatusBadRequest, "Invalid wait time")
			return 0, 0, false
		}
		if d > 0 {
			wait = min(d, maxWait)
		}
	}
	wait += rand.N(wait/16 + 1)
	return index, wait, true
}

func parseUintParam(q url.Values, name string) (uint64, bool, error) {
	if _, ok := q[name]; !ok {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil {
		return 0, true, fmt.Errorf("invalid %s %q: must be an unsigned 64-bit integer", name, q.Get(name))
	}
	return v, true, nil
}

func (s *Server) kvPut(w http.ResponseWriter, r *http.Request, q url.Values, key string) {
	if err := validateKey(key, false); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	flags, _, err := parseUintParam(q, "flags")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	casIndex, isCAS, err := parseUintParam(q, "cas")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	acquire, release := has(q, "acquire"), has(q, "release")
	if n := btoi(isCAS) + btoi(acquire) + btoi(release); n > 1 {
		httpError(w, http.StatusBadRequest, "Conflicting flags: "+r.URL.RawQuery)
		return
	}
	// Before anything that looks at sessions: a token without write
	// learns nothing about locks either.
	if a := authzOf(r); a != nil && !a.keyWrite(key) {
		a.denied(w, "key:write", key)
		return
	}
	value, ok := s.readValue(w, r)
	if !ok {
		return
	}
	if acquire || release {
		s.kvLock(w, r, q, key, value, flags, acquire)
		return
	}
	cmd := &storage.Command{Op: storage.OpSet, Key: key, Value: value, Flags: flags}
	if isCAS {
		cmd.Op, cmd.Index = storage.OpCAS, casIndex
	}
	s.applyKV(w, r, cmd)
}

// kvLock serves ?acquire=<session> and ?release=<session>: a one-operation
// transaction (lock or unlock), so the same rules decide it as in
// /v1/txn, and the leader checks the key's lock-delay before it proposes
// an acquisition. A lock held by another session, a lock-delay, or a
// release by a session that does not hold the key is false; a session
// that does not exist is Consul's 500 ("invalid session").
func (s *Server) kvLock(w http.ResponseWriter, r *http.Request, q url.Values, key string, value []byte, flags uint64, acquire bool) {
	op := storage.TxnOp{Verb: storage.TxnUnlock, Key: key, Value: value, Flags: flags, Session: strings.ToLower(q.Get("release"))}
	if acquire {
		op.Verb, op.Session = storage.TxnLock, strings.ToLower(q.Get("acquire"))
	}
	switch {
	case op.Session == "":
		// Consul's 500; no state could make such a request succeed.
		httpError(w, http.StatusBadRequest, "missing session")
		return
	case len(op.Session) > storage.MaxSessionIDSize:
		httpError(w, http.StatusBadRequest, fmt.Sprintf("session id is %d bytes, the limit is %d", len(op.Session), storage.MaxSessionIDSize))
		return
	}
	if acquire {
		// A session unknown here is looked up once more, linearizably,
		// so an acquisition with a bogus session costs no log entry.
		// The state machine checks again for the one that is proposed.
		if local, err := s.b.KV.Read(r.Context(), storage.Query{Kind: storage.QuerySession, Key: op.Session}, true, storage.Block{}); err == nil && !local.Found {
			if _, found, ok := s.lookupSession(w, r, op.Session); !ok {
				return
			} else if !found {
				w.Header().Set(OutcomeHeader, OutcomeNotApplied)
				httpError(w, http.StatusInternalServerError, fmt.Sprintf("invalid session %q", op.Session))
				return
			}
		}
	}
	res, ok := s.replicate(w, r, &storage.Command{Op: storage.OpTxn, Txn: []storage.TxnOp{op}})
	if !ok {
		return
	}
	if res.Txn == nil {
		writeError(w, fmt.Errorf("%w: the leader returned no transaction result", cluster.ErrUnknownOutcome))
		return
	}
	if len(res.Txn.Errors) > 0 && res.Txn.Errors[0].BadSession() {
		w.Header().Set(OutcomeHeader, OutcomeNotApplied)
		httpError(w, http.StatusInternalServerError, res.Txn.Errors[0].What)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, strconv.FormatBool(len(res.Txn.Errors) == 0))
}

// readValue reads a PUT body, refusing anything over MaxValueSize with 413
// before or while reading it.
func (s *Server) readValue(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	limit := s.opts.MaxValueSize
	tooLarge := func(n int64) {
		if n < 0 { // chunked: the size is unknown
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large (over %d bytes), max size: %d bytes", limit, limit))
			return
		}
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body (%d bytes) too large, max size: %d bytes", n, limit))
	}
	if r.ContentLength > limit {
		tooLarge(r.ContentLength)
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(r.ContentLength)
			return nil, false
		}
		httpError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return nil, false
	}
	return body, true
}

func (s *Server) kvDelete(w http.ResponseWriter, r *http.Request, q url.Values, key string) {
	recurse := has(q, "recurse")
	if err := validateKey(key, recurse); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	casIndex, isCAS, err := parseUintParam(q, "cas")
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if isCAS && recurse {
		httpError(w, http.StatusBadRequest, "Conflicting flags: "+r.URL.RawQuery)
		return
	}
	if a := authzOf(r); a != nil {
		// A recursive delete removes keys that do not exist yet when it is
		// checked, so it needs write on the whole prefix, not on each key
		// present now.
		if recurse && !a.keyWritePrefix(key) {
			a.denied(w, "key:write", key+"* (every key under the prefix)")
			return
		}
		if !recurse && !a.keyWrite(key) {
			a.denied(w, "key:write", key)
			return
		}
	}
	cmd := &storage.Command{Op: storage.OpDelete, Key: key}
	switch {
	case recurse:
		cmd.Op = storage.OpDeleteTree
	case isCAS:
		cmd.Op, cmd.Index = storage.OpDeleteCAS, casIndex
	}
	s.applyKV(w, r, cmd)
}

// applyKV replicates a write and answers Consul's "true"/"false".
func (s *Server) applyKV(w http.ResponseWriter, r *http.Request, cmd *storage.Command) {
	res, ok := s.replicate(w, r, cmd)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if res.OK {
		_, _ = io.WriteString(w, "true")
	} else {
		_, _ = io.WriteString(w, "false")
	}
}

// replicate applies cmd through the leader and sets X-Consul-Index to
// the index it was applied at; on failure it answers the error itself and
// reports false.
func (s *Server) replicate(w http.ResponseWriter, r *http.Request, cmd *storage.Command) (storage.Result, bool) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.b.KV.Apply(ctx, cmd)
	if err != nil {
		writeError(w, err)
		return res, false
	}
	if res.Index > 0 { // 0: refused by the leader before Raft (a lock-delay)
		w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	}
	return res, true
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// filterReadable drops from a listing what a cannot read and reports
// whether it dropped anything. A listing filtered down to nothing is not
// found, as in Consul; the root's key listing always exists.
func filterReadable(a *authz, res *storage.QueryResult, prefix, sep string) bool {
	if a.management {
		return false
	}
	filtered := false
	if res.Entries != nil {
		kept := res.Entries[:0]
		for _, e := range res.Entries {
			if a.keyRead(e.Key) {
				kept = append(kept, e)
			} else {
				filtered = true
			}
		}
		res.Entries = kept
		res.Found = len(kept) > 0
	}
	if res.Keys != nil {
		kept := res.Keys[:0]
		for _, k := range res.Keys {
			// A key ending in the separator may be a folded directory:
			// show it if something inside may be readable.
			if a.keyRead(k) || sep != "" && strings.HasSuffix(k, sep) && a.mayReadUnder(k) {
				kept = append(kept, k)
			} else {
				filtered = true
			}
		}
		res.Keys = kept
		res.Found = len(kept) > 0 || prefix == "" || !filtered && res.Found
	}
	return filtered
}
