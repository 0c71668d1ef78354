package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// KVPair is an entry as the server reports it. The field names and types
// follow Consul's JSON, so `-o json` output and Consul tooling agree; Flags
// and the indexes are full uint64s (Consul's semaphore flag is above
// int64's range).
type KVPair struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte // base64 on the wire; nil when empty
	Session     string `json:",omitempty"`
	CreateIndex uint64
	ModifyIndex uint64
}

// Meta is what a response says about the cluster besides its body. For a
// single-key read Index is the key's ModifyIndex, which is what CAS wants;
// for a write it is the Raft index of the write.
type Meta struct {
	Index uint64
	// KnownLeader and LastContact say how stale a ?stale read may be.
	KnownLeader bool
	LastContact time.Duration
	// Endpoint is the node that answered, which matters after failover.
	Endpoint string
}

// ReadOptions choose a read's consistency and make it a blocking query.
// The zero value is the server's default: linearizable through a read
// barrier.
type ReadOptions struct {
	// Stale lets any node answer from its local state, without a leader;
	// it keeps working while the cluster has no quorum.
	Stale bool
	// Consistent asks for Consul's strictest mode; on Troupe the default
	// is already linearizable, so it only matters to Consul-minded callers.
	Consistent bool
	// WaitIndex, when non-zero, makes the read block until the index moves
	// past it or WaitTime (server default 5m) passes. The context must
	// outlive the wait.
	WaitIndex uint64
	WaitTime  time.Duration
}

func (o ReadOptions) query() url.Values {
	q := url.Values{}
	if o.Stale {
		q.Set("stale", "")
	}
	if o.Consistent {
		q.Set("consistent", "")
	}
	if o.WaitIndex != 0 {
		q.Set("index", strconv.FormatUint(o.WaitIndex, 10))
		if o.WaitTime > 0 {
			q.Set("wait", strconv.FormatInt(max(o.WaitTime.Milliseconds(), 1), 10)+"ms")
		}
	}
	return q
}

// WriteOptions carry the optional parts of a PUT.
type WriteOptions struct {
	// Flags is stored with the value. Like Consul, a PUT without flags
	// resets them to 0, so a caller that uses flags must always send them.
	Flags uint64
}

func kvPath(key string) string { return "/v1/kv/" + key }

// Get reads one key. A missing key is not an error: the pair is nil and
// Meta.Index is still set, so the caller can block on its creation.
func (c *Client) Get(ctx context.Context, key string, opts ReadOptions) (*KVPair, Meta, error) {
	resp, err := c.do(ctx, &request{method: http.MethodGet, path: kvPath(key), query: opts.query(), read: true, accept: []int{200, 404}})
	if err != nil {
		return nil, Meta{}, err
	}
	meta := readMeta(resp)
	if resp.status == http.StatusNotFound {
		return nil, meta, nil
	}
	var pairs []*KVPair
	if err := decode(resp, &pairs); err != nil {
		return nil, meta, err
	}
	if len(pairs) == 0 {
		return nil, meta, nil
	}
	return pairs[0], meta, nil
}

// List reads every entry whose key starts with prefix (a plain string
// prefix, not path-aware), in byte order. No match gives an empty result,
// not an error.
func (c *Client) List(ctx context.Context, prefix string, opts ReadOptions) ([]*KVPair, Meta, error) {
	q := opts.query()
	q.Set("recurse", "")
	resp, err := c.do(ctx, &request{method: http.MethodGet, path: kvPath(prefix), query: q, read: true, accept: []int{200, 404}})
	if err != nil {
		return nil, Meta{}, err
	}
	meta := readMeta(resp)
	if resp.status == http.StatusNotFound {
		return nil, meta, nil
	}
	var pairs []*KVPair
	if err := decode(resp, &pairs); err != nil {
		return nil, meta, err
	}
	return pairs, meta, nil
}

// Keys lists key names under prefix without their values. With a
// separator, keys that continue past it are folded into one "directory"
// entry ending in the separator, like a one-level ls.
func (c *Client) Keys(ctx context.Context, prefix, separator string, opts ReadOptions) ([]string, Meta, error) {
	q := opts.query()
	q.Set("keys", "")
	if separator != "" {
		q.Set("separator", separator)
	}
	resp, err := c.do(ctx, &request{method: http.MethodGet, path: kvPath(prefix), query: q, read: true, accept: []int{200, 404}})
	if err != nil {
		return nil, Meta{}, err
	}
	meta := readMeta(resp)
	if resp.status == http.StatusNotFound {
		return nil, meta, nil
	}
	var keys []string
	if err := decode(resp, &keys); err != nil {
		return nil, meta, err
	}
	return keys, meta, nil
}

// Put writes value under key. ok is the server's answer, always true for a
// plain write; it is returned so Put and CAS read alike.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts WriteOptions) (bool, Meta, error) {
	q := url.Values{}
	if opts.Flags != 0 {
		q.Set("flags", strconv.FormatUint(opts.Flags, 10))
	}
	return c.write(ctx, http.MethodPut, key, q, value)
}

// CAS writes value only if the key's ModifyIndex is still index (0: only if
// the key does not exist). ok false means someone else won; after an
// unknown-outcome error, read the key to learn whether this write did.
func (c *Client) CAS(ctx context.Context, key string, value []byte, index, flags uint64) (bool, Meta, error) {
	q := url.Values{"cas": {strconv.FormatUint(index, 10)}}
	if flags != 0 {
		q.Set("flags", strconv.FormatUint(flags, 10))
	}
	return c.write(ctx, http.MethodPut, key, q, value)
}

// Delete removes key; deleting a missing key succeeds, as in Consul.
func (c *Client) Delete(ctx context.Context, key string) (Meta, error) {
	_, meta, err := c.write(ctx, http.MethodDelete, key, url.Values{}, nil)
	return meta, err
}

// DeleteCAS removes key only if its ModifyIndex is still index. A key that
// is already gone counts as deleted (ok true), as in Consul.
func (c *Client) DeleteCAS(ctx context.Context, key string, index uint64) (bool, Meta, error) {
	return c.write(ctx, http.MethodDelete, key, url.Values{"cas": {strconv.FormatUint(index, 10)}}, nil)
}

// DeleteTree removes every key starting with prefix. An empty prefix
// deletes the whole store; callers exposing this to people should guard it.
func (c *Client) DeleteTree(ctx context.Context, prefix string) (Meta, error) {
	_, meta, err := c.write(ctx, http.MethodDelete, prefix, url.Values{"recurse": {""}}, nil)
	return meta, err
}

func (c *Client) write(ctx context.Context, method, key string, q url.Values, value []byte) (bool, Meta, error) {
	r := &request{method: method, path: kvPath(key), query: q, accept: []int{200}}
	if method == http.MethodPut {
		r.body = value
		if r.body == nil {
			r.body = []byte{}
		}
		r.contentType = "application/octet-stream"
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return false, Meta{}, err
	}
	meta := readMeta(resp)
	switch strings.TrimSpace(string(resp.body)) {
	case "true":
		return true, meta, nil
	case "false":
		return false, meta, nil
	}
	// The server did process the write; only its verdict is unreadable.
	return false, meta, &Error{Status: resp.status, Endpoint: resp.endpoint, Outcome: OutcomeUnknown,
		Message: fmt.Sprintf("unexpected answer %q (want true or false)", truncate(resp.body))}
}

// readMeta parses Consul's response headers; absent or malformed ones read
// as zero, as the Consul client treats them.
func readMeta(resp *response) Meta {
	m := Meta{Endpoint: resp.endpoint}
	m.Index, _ = strconv.ParseUint(resp.header.Get("X-Consul-Index"), 10, 64)
	m.KnownLeader = resp.header.Get("X-Consul-KnownLeader") == "true"
	if ms, err := strconv.ParseUint(resp.header.Get("X-Consul-LastContact"), 10, 64); err == nil {
		m.LastContact = time.Duration(ms) * time.Millisecond
	}
	return m
}

// decode parses a JSON body; a body that does not parse is reported as the
// server's fault rather than as a generic JSON error, and after a write as
// an unknown outcome, since the server did act on it.
func decode(resp *response, v any) error {
	if err := json.Unmarshal(resp.body, v); err != nil {
		outcome := OutcomeNotApplied
		if !resp.read {
			outcome = OutcomeUnknown
		}
		return &Error{Status: resp.status, Endpoint: resp.endpoint, Outcome: outcome,
			Message: fmt.Sprintf("malformed response %q: %v", truncate(resp.body), err), Err: err}
	}
	return nil
}

func truncate(b []byte) string {
	const max = 200
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
