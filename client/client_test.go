package client_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// These tests run the client against real Troupe nodes (package inproc:
// Raft over TCP, bbolt, the real HTTP API), so every answer they check is
// the server's own. Only what a real node cannot be made to do on demand
// (an unknown outcome, a 429, a 5xx without an outcome header, a dropped
// connection) comes from the few-line canned handlers at the end of this
// file, and those test the client's classification, not server semantics.

// semaphoreFlags is api.Semaphore's flag value, above int64's range: it
// only survives if every layer keeps flags as uint64.
const semaphoreFlags uint64 = 16210313421097356768

// Server error texts (cluster.ErrNoLeader and friends), as clients see them.
const (
	errNoLeader       = "no leader: the cluster has no quorum or is electing one"
	errUnknownOutcome = "outcome unknown: the write may or may not have been applied"
	errBusy           = "node is overloaded, try again"
)

func newClient(addrs []string, opts ...client.Option) *client.Client {
	return client.New(addrs, append([]client.Option{client.WithBackoff(0, 0)}, opts...)...)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func asError(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	return e
}

// startCluster runs n real nodes and waits until one leads and every node
// knows every member's HTTP address (registration is a replicated write
// that lands shortly after the election).
func startCluster(t *testing.T, n int, opts inproc.Options) []*inproc.Node {
	t.Helper()
	nodes := inproc.Start(t, n, opts)
	inproc.Leader(t, nodes)
	deadline := time.Now().Add(15 * time.Second)
	for _, nd := range nodes {
		for {
			ms, err := nd.Client().Members()
			registered := err == nil && len(ms) == n
			for _, m := range ms {
				registered = registered && m.HTTPAddr != ""
			}
			if registered {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: members never all registered: %+v, %v", nd.ID, ms, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

func followers(nodes []*inproc.Node, leader *inproc.Node) []*inproc.Node {
	var out []*inproc.Node
	for _, nd := range nodes {
		if nd != leader {
			out = append(out, nd)
		}
	}
	return out
}

func urlOf(nd *inproc.Node) string { return "http://" + nd.HTTPAddr }

// deadAddr returns a loopback address nothing listens on, so dialling it is
// refused at once: the "node is down" case.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// stored reads key from nd's own state file once nd has applied index.
func stored(t *testing.T, nd *inproc.Node, key string, index uint64) (value []byte, flags uint64, found bool) {
	t.Helper()
	if err := nd.Store.WaitApplied(ctx(t), index); err != nil {
		t.Fatalf("%s did not apply index %d: %v", nd.ID, index, err)
	}
	e, found, _, err := nd.Store.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return e.Value, e.Flags, found
}

// isolate cuts nd off from every peer through the chaos endpoint, then
// waits until it no longer knows a leader.
func isolate(t *testing.T, nd *inproc.Node) {
	t.Helper()
	cut := faultnet.Rules{Rules: []faultnet.Rule{{Peer: faultnet.AnyPeer, Direction: faultnet.Both, Cut: true}}}
	if _, err := newClient([]string{nd.HTTPAddr}).SetFaults(ctx(t), nd.HTTPAddr, cut); err != nil {
		t.Fatalf("cut %s: %v", nd.ID, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := nd.Client().Status(); err == nil && st.LeaderID == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still knows a leader after being cut off", nd.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// recorder is a transport that logs what the client sends where, and the
// last response's headers: the client-side view of the wire.
type recorder struct {
	rt   http.RoundTripper
	mu   sync.Mutex
	sent []string // "host METHOD path?query"
	last http.Header
}

func recording() (*recorder, client.Option) {
	r := &recorder{rt: client.NewTransport()}
	return r, client.WithHTTPClient(&http.Client{Transport: r})
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	line := req.URL.Host + " " + req.Method + " " + req.URL.Path
	if req.URL.RawQuery != "" {
		line += "?" + req.URL.RawQuery
	}
	r.mu.Lock()
	r.sent = append(r.sent, line)
	r.mu.Unlock()
	resp, err := r.rt.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.last = resp.Header.Clone()
		r.mu.Unlock()
	}
	return resp, err
}

// requests lists what was sent to host ("127.0.0.1:port"), as
// "METHOD path?query".
func (r *recorder) requests(host string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, s := range r.sent {
		if h, line, _ := strings.Cut(s, " "); h == host {
			out = append(out, line)
		}
	}
	return out
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sent)
}

func (r *recorder) lastHeader() http.Header {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// TestKV covers every KV operation against a real 3-node cluster. The
// subtests share the cluster and use distinct key prefixes.
func TestKV(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{})
	addrs := inproc.Addrs(nodes)
	leader := inproc.Leader(t, nodes)
	c := newClient(addrs)

	t.Run("round trip of a binary value and uint64 flags", func(t *testing.T) {
		value := []byte{0, 1, 2, 0xff, '\n', 'x'}
		ok, wmeta, err := c.Put(ctx(t), "rt/bin", value, client.WriteOptions{Flags: semaphoreFlags})
		if err != nil || !ok {
			t.Fatalf("Put = %v, %v", ok, err)
		}
		if wmeta.Index == 0 {
			t.Fatal("write Meta.Index is 0")
		}
		p, meta, err := c.Get(ctx(t), "rt/bin", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p == nil || !bytes.Equal(p.Value, value) || p.Flags != semaphoreFlags || p.Key != "rt/bin" {
			t.Fatalf("Get = %+v", p)
		}
		if meta.Index != p.ModifyIndex || p.ModifyIndex != wmeta.Index || p.CreateIndex != wmeta.Index {
			t.Fatalf("indexes: meta %d, pair %d/%d, write %d", meta.Index, p.CreateIndex, p.ModifyIndex, wmeta.Index)
		}
		if !meta.KnownLeader || meta.LastContact != 0 || meta.Endpoint != "http://"+addrs[0] {
			t.Fatalf("meta = %+v", meta)
		}
		for _, nd := range nodes {
			if v, f, found := stored(t, nd, "rt/bin", wmeta.Index); !found || !bytes.Equal(v, value) || f != semaphoreFlags {
				t.Fatalf("%s stored %q, flags %d, found %v", nd.ID, v, f, found)
			}
		}
	})

	// The server's own bytes: Value in base64, flags as a bare uint64. The
	// client must decode exactly those, and read the Consul headers of a
	// stale read on a follower (LastContact, KnownLeader) as sent.
	t.Run("decodes the server's wire format", func(t *testing.T) {
		value := []byte{0, 1, 2, 0xff, '\n', 'x'}
		_, wmeta, err := c.Put(ctx(t), "wire/a b", value, client.WriteOptions{Flags: semaphoreFlags})
		if err != nil {
			t.Fatal(err)
		}
		f := followers(nodes, leader)[0]
		stored(t, f, "wire/a b", wmeta.Index)
		resp, err := http.Get(urlOf(f) + "/v1/kv/wire/a%20b?stale")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`"Key":"wire/a b"`, `"Flags":16210313421097356768`, `"Value":"` + base64.StdEncoding.EncodeToString(value) + `"`} {
			if !strings.Contains(string(raw), want) {
				t.Fatalf("server JSON %s lacks %s", raw, want)
			}
		}
		rec, opt := recording()
		p, meta, err := newClient([]string{f.HTTPAddr}, opt).Get(ctx(t), "wire/a b", client.ReadOptions{Stale: true})
		if err != nil {
			t.Fatal(err)
		}
		if p == nil || p.Key != "wire/a b" || p.Flags != semaphoreFlags || !bytes.Equal(p.Value, value) || p.CreateIndex != wmeta.Index || p.ModifyIndex != wmeta.Index {
			t.Fatalf("Get = %+v", p)
		}
		h := rec.lastHeader()
		idx, _ := strconv.ParseUint(h.Get("X-Consul-Index"), 10, 64)
		contact, err := strconv.ParseInt(h.Get("X-Consul-LastContact"), 10, 64)
		if err != nil || h.Get("X-Consul-KnownLeader") != "true" {
			t.Fatalf("headers of a follower's stale read: %v", h)
		}
		if meta.Index != idx || !meta.KnownLeader || meta.LastContact != time.Duration(contact)*time.Millisecond || meta.Endpoint != urlOf(f) {
			t.Fatalf("meta = %+v, headers %v", meta, h)
		}
	})

	t.Run("a missing key is nil with the KV index", func(t *testing.T) {
		_, wmeta, err := c.Put(ctx(t), "mk/other", []byte("x"), client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p, meta, err := c.Get(ctx(t), "mk/nope", client.ReadOptions{})
		if err != nil || p != nil {
			t.Fatalf("Get(missing) = %+v, %v; want nil, nil", p, err)
		}
		if meta.Index != wmeta.Index {
			t.Fatalf("404 Meta.Index = %d, want the KV index %d", meta.Index, wmeta.Index)
		}
	})

	t.Run("an empty value is nil", func(t *testing.T) {
		if _, _, err := c.Put(ctx(t), "empty", nil, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		p, _, err := c.Get(ctx(t), "empty", client.ReadOptions{})
		if err != nil || p == nil || p.Value != nil {
			t.Fatalf("Get(empty) = %+v, %v", p, err)
		}
	})

	t.Run("keys are escaped in the path", func(t *testing.T) {
		for _, key := range []string{"esc/a b", "esc/q?x=1", "esc/hash#frag", "esc/pct%41", "esc/plus+sign", "esc/ünï/cödé"} {
			_, wmeta, err := c.Put(ctx(t), key, []byte(key), client.WriteOptions{})
			if err != nil {
				t.Fatalf("Put(%q): %v", key, err)
			}
			if v, _, found := stored(t, nodes[0], key, wmeta.Index); !found || string(v) != key {
				t.Fatalf("server stored %q as %q, %v", key, v, found)
			}
			got, _, err := c.Get(ctx(t), key, client.ReadOptions{})
			if err != nil || got == nil || got.Key != key || string(got.Value) != key {
				t.Fatalf("Get(%q) = %+v, %v", key, got, err)
			}
		}
	})

	t.Run("read options are sent as presence flags", func(t *testing.T) {
		rec, opt := recording()
		rc := newClient(addrs, opt)
		_, wmeta, err := rc.Put(ctx(t), "ro/k", []byte("v"), client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// A stale read is only as fresh as the answering node.
		stored(t, nodes[0], "ro/k", wmeta.Index)
		for _, o := range []client.ReadOptions{{Stale: true}, {Consistent: true}} {
			if p, _, err := rc.Get(ctx(t), "ro/k", o); err != nil || p == nil || string(p.Value) != "v" {
				t.Fatalf("Get(%+v) = %+v, %v", o, p, err)
			}
		}
		_, _, err = rc.Get(ctx(t), "ro/k", client.ReadOptions{Stale: true, Consistent: true})
		if e := asError(t, err); e.Status != 400 || !strings.Contains(e.Message, "conflicting semantics") || e.Attempts != 1 || !client.IsNotApplied(err) {
			t.Fatalf("stale+consistent: %+v", e)
		}
		reqs := rec.requests(addrs[0])
		if !slices.Contains(reqs, "GET /v1/kv/ro/k?stale=") || !slices.Contains(reqs, "GET /v1/kv/ro/k?consistent=") {
			t.Fatalf("requests = %q", reqs)
		}
	})

	t.Run("list and keys", func(t *testing.T) {
		for _, k := range []string{"lk/web/a", "lk/web/sub/x", "lk/web/sub/y", "lk/webby", "lk/zzz"} {
			if _, _, err := c.Put(ctx(t), k, []byte("v-"+k), client.WriteOptions{Flags: 7}); err != nil {
				t.Fatal(err)
			}
		}
		pairs, meta, err := c.List(ctx(t), "lk/web/", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range pairs {
			got = append(got, p.Key+"="+string(p.Value))
			if p.Flags != 7 {
				t.Fatalf("List flags: %+v", p)
			}
		}
		if want := []string{"lk/web/a=v-lk/web/a", "lk/web/sub/x=v-lk/web/sub/x", "lk/web/sub/y=v-lk/web/sub/y"}; !slices.Equal(got, want) {
			t.Fatalf("List = %q, want %q", got, want)
		}
		if meta.Index == 0 || meta.Index != pairs[2].ModifyIndex {
			t.Fatalf("List Meta.Index = %d, want the newest entry's %d", meta.Index, pairs[2].ModifyIndex)
		}
		keys, _, err := c.Keys(ctx(t), "lk/web/", "/", client.ReadOptions{})
		if err != nil || !slices.Equal(keys, []string{"lk/web/a", "lk/web/sub/"}) {
			t.Fatalf("Keys(lk/web/, /) = %q, %v", keys, err)
		}
		keys, _, err = c.Keys(ctx(t), "lk/web", "", client.ReadOptions{})
		if err != nil || !slices.Equal(keys, []string{"lk/web/a", "lk/web/sub/x", "lk/web/sub/y", "lk/webby"}) {
			t.Fatalf("Keys(lk/web) = %q, %v", keys, err)
		}
		pairs, _, err = c.List(ctx(t), "lk/missing/", client.ReadOptions{})
		if err != nil || pairs != nil {
			t.Fatalf("List(missing) = %v, %v; want nil, nil", pairs, err)
		}
		keys, _, err = c.Keys(ctx(t), "lk/missing/", "/", client.ReadOptions{})
		if err != nil || keys != nil {
			t.Fatalf("Keys(missing) = %v, %v; want nil, nil", keys, err)
		}
	})

	t.Run("CAS and deletes", func(t *testing.T) {
		rec, opt := recording()
		c := newClient(addrs, opt)
		ok, m1, err := c.CAS(ctx(t), "cas/lock", []byte("a"), 0, 3)
		if err != nil || !ok {
			t.Fatalf("CAS create = %v, %v", ok, err)
		}
		if ok, _, err := c.CAS(ctx(t), "cas/lock", []byte("b"), 0, 0); err != nil || ok {
			t.Fatalf("CAS create over existing = %v, %v; want false", ok, err)
		}
		if ok, _, err := c.CAS(ctx(t), "cas/lock", []byte("b"), m1.Index+100, 0); err != nil || ok {
			t.Fatalf("CAS stale index = %v, %v; want false", ok, err)
		}
		if ok, _, err := c.CAS(ctx(t), "cas/never", []byte("b"), m1.Index, 0); err != nil || ok {
			t.Fatalf("CAS on a missing key with an index = %v, %v; want false", ok, err)
		}
		if p, _, _ := c.Get(ctx(t), "cas/lock", client.ReadOptions{}); p == nil || string(p.Value) != "a" || p.Flags != 3 || p.ModifyIndex != m1.Index {
			t.Fatalf("failed CASes changed the key: %+v", p)
		}
		ok, m2, err := c.CAS(ctx(t), "cas/lock", []byte("b"), m1.Index, semaphoreFlags)
		if err != nil || !ok {
			t.Fatalf("CAS = %v, %v", ok, err)
		}
		if v, f, _ := stored(t, nodes[0], "cas/lock", m2.Index); string(v) != "b" || f != semaphoreFlags {
			t.Fatalf("after CAS: %q flags %d", v, f)
		}
		if ok, _, err := c.DeleteCAS(ctx(t), "cas/lock", m1.Index); err != nil || ok {
			t.Fatalf("DeleteCAS stale = %v, %v; want false", ok, err)
		}
		ok, m3, err := c.DeleteCAS(ctx(t), "cas/lock", m2.Index)
		if err != nil || !ok {
			t.Fatalf("DeleteCAS = %v, %v", ok, err)
		}
		if _, _, found := stored(t, nodes[0], "cas/lock", m3.Index); found {
			t.Fatal("DeleteCAS left the key")
		}
		// As in Consul, a key that is already gone counts as deleted.
		if ok, _, err := c.DeleteCAS(ctx(t), "cas/lock", m2.Index); err != nil || !ok {
			t.Fatalf("DeleteCAS of a missing key = %v, %v; want true", ok, err)
		}
		for _, k := range []string{"cas/tree/a", "cas/tree/b", "cas/treetop"} {
			if _, _, err := c.Put(ctx(t), k, []byte(k), client.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		dm, err := c.DeleteTree(ctx(t), "cas/tree/")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, found := stored(t, nodes[0], "cas/treetop", dm.Index); !found {
			t.Fatal("DeleteTree(cas/tree/) removed cas/treetop")
		}
		dm, err = c.Delete(ctx(t), "cas/treetop")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Delete(ctx(t), "cas/never-was"); err != nil {
			t.Fatalf("Delete(missing): %v", err)
		}
		for _, k := range []string{"cas/tree/a", "cas/tree/b", "cas/treetop"} {
			if _, _, found := stored(t, nodes[0], k, dm.Index); found {
				t.Fatalf("%s survived", k)
			}
		}
		reqs := rec.requests(addrs[0])
		for _, want := range []string{"PUT /v1/kv/cas/lock?cas=0&flags=3", "DELETE /v1/kv/cas/tree/?recurse=", fmt.Sprintf("DELETE /v1/kv/cas/lock?cas=%d", m2.Index)} {
			if !slices.Contains(reqs, want) {
				t.Fatalf("no %q among %q", want, reqs)
			}
		}
	})

	t.Run("blocking queries", func(t *testing.T) {
		type answer struct {
			p    *client.KVPair
			meta client.Meta
			err  error
			took time.Duration
		}
		get := func(key string, o client.ReadOptions) <-chan answer {
			ch := make(chan answer, 1)
			go func() {
				start := time.Now()
				p, meta, err := c.Get(ctx(t), key, o)
				ch <- answer{p, meta, err, time.Since(start)}
			}()
			return ch
		}
		stillBlocked := func(ch <-chan answer, what string) {
			t.Helper()
			select {
			case a := <-ch:
				t.Fatalf("blocking Get returned %s: %+v", what, a)
			case <-time.After(300 * time.Millisecond):
			}
		}
		wait := func(ch <-chan answer) answer {
			t.Helper()
			select {
			case a := <-ch:
				if a.err != nil {
					t.Fatal(a.err)
				}
				return a
			case <-time.After(15 * time.Second):
				t.Fatal("blocking Get did not return")
				return answer{}
			}
		}
		put := func(key, value string) client.Meta {
			t.Helper()
			_, m, err := c.Put(ctx(t), key, []byte(value), client.WriteOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return m
		}

		m0 := put("blk/k", "v1")
		ch := get("blk/k", client.ReadOptions{WaitIndex: m0.Index, WaitTime: time.Minute})
		stillBlocked(ch, "before any write")
		m1 := put("blk/k", "v2")
		a := wait(ch)
		if a.p == nil || string(a.p.Value) != "v2" || a.meta.Index != m1.Index || a.p.ModifyIndex != m1.Index {
			t.Fatalf("woken Get = %+v, %+v; want v2 at %d", a.p, a.meta, m1.Index)
		}

		// Nothing changes: the wait runs out and returns the same state.
		a = wait(get("blk/k", client.ReadOptions{WaitIndex: m1.Index, WaitTime: 300 * time.Millisecond}))
		if a.p == nil || string(a.p.Value) != "v2" || a.meta.Index != m1.Index || a.took < 300*time.Millisecond || a.took > 10*time.Second {
			t.Fatalf("timed-out Get = %+v, %+v after %v", a.p, a.meta, a.took)
		}

		// Waiting on a missing key: unrelated writes do not end the wait,
		// the key's creation does.
		p, mm, err := c.Get(ctx(t), "blk/new", client.ReadOptions{})
		if err != nil || p != nil {
			t.Fatalf("Get(missing) = %+v, %v", p, err)
		}
		ch = get("blk/new", client.ReadOptions{WaitIndex: mm.Index, WaitTime: time.Minute})
		stillBlocked(ch, "before any write")
		put("blk/unrelated", "x")
		stillBlocked(ch, "after an unrelated write")
		mc := put("blk/new", "here")
		a = wait(ch)
		if a.p == nil || string(a.p.Value) != "here" || a.meta.Index != mc.Index {
			t.Fatalf("Get woken by creation = %+v, %+v", a.p, a.meta)
		}

		// Lists block on their prefix.
		lch := make(chan []*client.KVPair, 1)
		_, lm, err := c.List(ctx(t), "blk/", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			pairs, _, err := c.List(ctx(t), "blk/", client.ReadOptions{WaitIndex: lm.Index, WaitTime: time.Minute})
			if err != nil {
				t.Error(err)
			}
			lch <- pairs
		}()
		select {
		case <-lch:
			t.Fatal("blocking List returned before any write")
		case <-time.After(300 * time.Millisecond):
		}
		if _, err := c.Delete(ctx(t), "blk/unrelated"); err != nil {
			t.Fatal(err)
		}
		select {
		case pairs := <-lch:
			if len(pairs) != 2 {
				t.Fatalf("List woken by a delete = %d pairs, want 2", len(pairs))
			}
		case <-time.After(15 * time.Second):
			t.Fatal("blocking List did not return")
		}
	})

	t.Run("value size limit", func(t *testing.T) {
		const limit = 512 << 10 // api.DefaultMaxValueSize
		if ok, _, err := c.Put(ctx(t), "size/max", make([]byte, limit), client.WriteOptions{}); err != nil || !ok {
			t.Fatalf("Put of exactly the limit = %v, %v", ok, err)
		}
		_, _, err := c.Put(ctx(t), "size/big", make([]byte, limit+1), client.WriteOptions{})
		e := asError(t, err)
		if e.Status != 413 || !strings.Contains(e.Message, "too large") || !client.IsNotApplied(err) || e.Attempts != 1 {
			t.Fatalf("oversized value: %+v", e)
		}
		if p, _, err := c.Get(ctx(t), "size/big", client.ReadOptions{}); err != nil || p != nil {
			t.Fatalf("the refused value exists: %+v, %v", p, err)
		}
	})

	t.Run("a refused request is not retried", func(t *testing.T) {
		rec, opt := recording()
		_, _, err := newClient(addrs, opt).Put(ctx(t), "bad//key", []byte("v"), client.WriteOptions{})
		e := asError(t, err)
		if e.Status != 400 || !client.IsNotApplied(err) || e.Attempts != 1 || !strings.Contains(e.Message, "empty segment") {
			t.Fatalf("error = %+v", e)
		}
		if n := rec.total(); n != 1 {
			t.Fatalf("a 400 was retried (%d requests)", n)
		}
		if got := client.StatusCode(err); got != 400 {
			t.Fatalf("StatusCode = %d", got)
		}
	})

	t.Run("endpoints are normalised", func(t *testing.T) {
		addr := addrs[0]
		nc := newClient([]string{"ftp://nope", " " + addr + " ", "http://" + addr + "/"})
		if got := nc.Endpoints(); got[1] != "http://"+addr || got[2] != "http://"+addr {
			t.Fatalf("Endpoints = %q", got)
		}
		// The malformed first endpoint is skipped like a dead one.
		if ok, meta, err := nc.Put(ctx(t), "ep/k", []byte("v"), client.WriteOptions{}); err != nil || !ok || meta.Endpoint != "http://"+addr {
			t.Fatalf("Put = %v, %+v, %v", ok, meta, err)
		}
		for _, bad := range []string{"", "ftp://x", "http://", "http://h:1/?q=1"} {
			if _, err := client.ParseEndpoint(bad); err == nil {
				t.Errorf("ParseEndpoint(%q) accepted", bad)
			}
		}
		if got, err := client.ParseEndpoint("https://h:8501/prefix/"); err != nil || got != "https://h:8501/prefix" {
			t.Fatalf("ParseEndpoint = %q, %v", got, err)
		}
		if got := client.New(nil).Endpoints(); !slices.Equal(got, []string{"http://" + client.DefaultEndpoint}) {
			t.Fatalf("default endpoints = %q", got)
		}
	})

	// A node behind a reverse proxy that mounts it under a path.
	t.Run("endpoint with a path prefix", func(t *testing.T) {
		target, _ := url.Parse(urlOf(nodes[0]))
		mux := http.NewServeMux()
		mux.Handle("/troupe/", http.StripPrefix("/troupe", httputil.NewSingleHostReverseProxy(target)))
		srv := httptest.NewServer(mux)
		defer srv.Close()
		pc := newClient([]string{srv.URL + "/troupe"})
		_, wmeta, err := pc.Put(ctx(t), "prefix/k", []byte("v"), client.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v, _, found := stored(t, nodes[0], "prefix/k", wmeta.Index); !found || string(v) != "v" {
			t.Fatal("write through a path prefix did not land")
		}
		if p, _, err := pc.Get(ctx(t), "prefix/k", client.ReadOptions{}); err != nil || p == nil || string(p.Value) != "v" {
			t.Fatalf("Get through a path prefix = %+v, %v", p, err)
		}
	})
}

// TestCluster_NativeEndpoints checks the /v1/cluster and /v1/status calls
// against a real 3-node cluster, leader first in the endpoint list.
func TestCluster_NativeEndpoints(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{})
	leader := inproc.Leader(t, nodes)
	order := append([]*inproc.Node{leader}, followers(nodes, leader)...)
	c := newClient(inproc.Addrs(order))

	ms, err := c.Members(ctx(t))
	if err != nil || len(ms) != 3 {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	for i, m := range ms {
		nd := nodes[i] // the configuration keeps the bootstrap order
		if m.ID != nd.ID || m.RaftAddr != nd.RaftAddr || m.HTTPAddr != nd.HTTPAddr || !m.Voter || m.Leader != (nd == leader) {
			t.Fatalf("Members[%d] = %+v, want %s", i, m, nd.ID)
		}
	}
	st, err := c.Status(ctx(t))
	if err != nil || st.ID != leader.ID || st.State != "Leader" || st.LeaderID != leader.ID ||
		st.LeaderRaftAddr != leader.RaftAddr || st.LeaderHTTPAddr != leader.HTTPAddr || st.Term == 0 || st.CommitIndex == 0 ||
		st.AppliedIndex == 0 || st.LastLogIndex < st.CommitIndex || st.LastContactMS != 0 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	f := order[1]
	fst, err := newClient([]string{f.HTTPAddr}, client.WithMaxAttempts(1)).Status(ctx(t))
	if err != nil || fst.ID != f.ID || fst.State != "Follower" || fst.LeaderID != leader.ID || fst.LeaderHTTPAddr != leader.HTTPAddr {
		t.Fatalf("follower Status = %+v, %v", fst, err)
	}
	addr, err := c.Leader(ctx(t))
	if err != nil || addr != leader.RaftAddr {
		t.Fatalf("Leader = %q, %v", addr, err)
	}
	peers, err := c.Peers(ctx(t))
	if err != nil || !slices.Equal(peers, []string{nodes[0].RaftAddr, nodes[1].RaftAddr, nodes[2].RaftAddr}) {
		t.Fatalf("Peers = %q, %v", peers, err)
	}

	// A voter that answers probes but never runs Raft: 3 of 4 is still a
	// quorum, so it can be added and removed again.
	n4 := client.JoinRequest{ID: "n4", RaftAddr: inproc.ProbeOnly(t, "n4")}
	if err := c.Join(ctx(t), n4); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx(t), n4); err != nil {
		t.Fatalf("joining a member again: %v", err)
	}
	ms, err = c.Members(ctx(t))
	if err != nil || len(ms) != 4 || ms[3] != (client.Member{ID: "n4", RaftAddr: n4.RaftAddr, Voter: true, Suffrage: "voter"}) {
		t.Fatalf("Members after join = %+v, %v", ms, err)
	}
	if peers, err := c.Peers(ctx(t)); err != nil || len(peers) != 4 {
		t.Fatalf("Peers after join = %q, %v", peers, err)
	}
	if err := c.Remove(ctx(t), "n4"); err != nil {
		t.Fatal(err)
	}
	if ms, err := c.Members(ctx(t)); err != nil || len(ms) != 3 || slices.ContainsFunc(ms, func(m client.Member) bool { return m.ID == "n4" }) {
		t.Fatalf("Members after remove = %+v, %v", ms, err)
	}
	err = c.Remove(ctx(t), "n9")
	if e := asError(t, err); e.Status != 404 || e.Message != `no member with id "n9"` || e.Attempts != 1 || !client.IsNotApplied(err) {
		t.Fatalf("Remove(unknown) = %+v", e)
	}
	err = c.Join(ctx(t), client.JoinRequest{ID: "n5", RaftAddr: "nohost"})
	if e := asError(t, err); e.Status != 400 || !strings.Contains(e.Message, `raft_addr "nohost" must be host:port`) || e.Attempts != 1 || !client.IsNotApplied(err) {
		t.Fatalf("Join(bad address) = %+v", e)
	}
	// A voter that does not answer would cost the quorum: refused, with
	// nothing changed.
	err = c.Join(ctx(t), client.JoinRequest{ID: "n5", RaftAddr: deadAddr(t)})
	if e := asError(t, err); e.Status != 409 || !strings.Contains(e.Message, `cannot reach node "n5"`) || !client.IsNotApplied(err) {
		t.Fatalf("Join(unreachable) = %+v", e)
	}
	if ms, err := c.Members(ctx(t)); err != nil || len(ms) != 3 {
		t.Fatalf("Members after a refused join = %+v, %v", ms, err)
	}
	// Join's and Remove's writes leave something new to snapshot.
	idx, err := c.Snapshot(ctx(t))
	if err != nil || idx == 0 {
		t.Fatalf("Snapshot = %d, %v", idx, err)
	}
	if st, err := c.Status(ctx(t)); err != nil || st.LastSnapshotIndex != idx {
		t.Fatalf("Status after Snapshot = %+v, %v; want last snapshot %d", st, err, idx)
	}
	if err := c.Ready(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestFailover_DeadEndpoint: a node that is down costs one refused dial,
// after which the client sticks to the node that answered.
func TestFailover_DeadEndpoint(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{})
	addrs := inproc.Addrs(nodes)

	sticky := func(t *testing.T, dead string, live []string) {
		var mu sync.Mutex
		dials := map[string]int{}
		tr := client.NewTransport()
		dial := tr.DialContext
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
			return dial(ctx, network, addr)
		}
		c := newClient(append([]string{dead}, live...), client.WithHTTPClient(&http.Client{Transport: tr}))
		key := "dead/" + dead
		ok, meta, err := c.Put(ctx(t), key, []byte("v"), client.WriteOptions{})
		if err != nil || !ok {
			t.Fatalf("Put with the first endpoint dead: %v, %v", ok, err)
		}
		if meta.Endpoint != "http://"+live[0] {
			t.Fatalf("answered by %q", meta.Endpoint)
		}
		for range 5 {
			if p, _, err := c.Get(ctx(t), key, client.ReadOptions{}); err != nil || p == nil {
				t.Fatalf("Get = %+v, %v", p, err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if dials[dead] != 1 {
			t.Fatalf("dead endpoint dialled %d times, want 1 (the live one should become preferred)", dials[dead])
		}
	}
	t.Run("unused port", func(t *testing.T) { sticky(t, deadAddr(t), addrs) })

	// Stop the leader: it hands leadership over, and its address refuses
	// connections from then on.
	old := inproc.Leader(t, nodes)
	old.Stop()
	rest := followers(nodes, old)
	inproc.Leader(t, rest)
	t.Run("stopped leader", func(t *testing.T) { sticky(t, old.HTTPAddr, inproc.Addrs(rest)) })

	t.Run("concurrent callers", func(t *testing.T) {
		c := newClient(append([]string{old.HTTPAddr}, inproc.Addrs(rest)...))
		var wg sync.WaitGroup
		var mu sync.Mutex
		acked := map[string]bool{}
		errs := make(chan error, 32*20)
		for g := range 32 {
			wg.Go(func() {
				for i := range 20 {
					key := fmt.Sprintf("c/%d/%d", g, i)
					if _, _, err := c.Put(ctx(t), key, []byte(key), client.WriteOptions{}); err != nil {
						// On a loaded machine leadership can move mid-write:
						// the client must then say the outcome is unknown,
						// never claim a failure that did or did not happen.
						if !client.IsUnknownOutcome(err) {
							errs <- err
						}
						continue
					}
					mu.Lock()
					acked[key] = true
					mu.Unlock()
					if p, _, err := c.Get(ctx(t), key, client.ReadOptions{}); err != nil || p == nil || string(p.Value) != key {
						errs <- fmt.Errorf("Get(%s) = %v, %v", key, p, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		keys, _, err := c.Keys(ctx(t), "c/", "", client.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		listed := map[string]bool{}
		for _, k := range keys {
			listed[k] = true
		}
		for k := range acked {
			if !listed[k] {
				t.Fatalf("acknowledged %s missing from a linearizable Keys (%d keys, %d acknowledged)", k, len(keys), len(acked))
			}
		}
		if len(acked) < 32*20/2 {
			t.Fatalf("only %d of %d writes acknowledged", len(acked), 32*20)
		}
	})
}

// TestFailover_NoQuorum cuts nodes off with the chaos endpoint. A cut node
// answers linearizable requests with 503 not-applied (after its request
// timeout), and the client must fail over to a healthy node, for reads and
// writes alike; with every node cut, it gives up after its attempt budget.
func TestFailover_NoQuorum(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Chaos: true, RequestTimeout: 500 * time.Millisecond})
	leader := inproc.Leader(t, nodes)
	fs := followers(nodes, leader)
	cut, other := fs[0], fs[1]
	order := []string{cut.HTTPAddr, leader.HTTPAddr, other.HTTPAddr}

	_, wmeta, err := newClient([]string{leader.HTTPAddr}).Put(ctx(t), "nq/k", []byte("v"), client.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stored(t, cut, "nq/k", wmeta.Index)
	isolate(t, cut)

	t.Run("write fails over", func(t *testing.T) {
		rec, opt := recording()
		ok, meta, err := newClient(order, opt).CAS(ctx(t), "nq/cas", []byte("v"), 0, 0)
		if err != nil || !ok {
			t.Fatalf("CAS = %v, %v", ok, err)
		}
		if meta.Endpoint != urlOf(leader) {
			t.Fatalf("answered by %s", meta.Endpoint)
		}
		if n0, n1 := len(rec.requests(cut.HTTPAddr)), len(rec.requests(leader.HTTPAddr)); n0 != 1 || n1 != 1 || rec.total() != 2 {
			t.Fatalf("requests: cut node %d, leader %d, total %d; want 1, 1, 2", n0, n1, rec.total())
		}
		if v, _, found := stored(t, leader, "nq/cas", meta.Index); !found || string(v) != "v" {
			t.Fatalf("stored %q, %v", v, found)
		}
	})

	t.Run("read fails over", func(t *testing.T) {
		rec, opt := recording()
		p, meta, err := newClient(order, opt).Get(ctx(t), "nq/k", client.ReadOptions{})
		if err != nil || p == nil || string(p.Value) != "v" || meta.Endpoint != urlOf(leader) || !meta.KnownLeader {
			t.Fatalf("Get = %+v, %+v, %v", p, meta, err)
		}
		if n := len(rec.requests(cut.HTTPAddr)); n != 1 || rec.total() != 2 {
			t.Fatalf("requests: cut node %d, total %d; want 1, 2", n, rec.total())
		}
	})

	// The native endpoints answer with a JSON code; a refused join did
	// nothing, so it fails over too. Re-joining a member with its own
	// addresses is a no-op that still goes through the leader.
	t.Run("native write fails over", func(t *testing.T) {
		rec, opt := recording()
		err := newClient(order, opt).Join(ctx(t), client.JoinRequest{ID: other.ID, RaftAddr: other.RaftAddr})
		if err != nil {
			t.Fatal(err)
		}
		if n := len(rec.requests(cut.HTTPAddr)); n != 1 || rec.total() != 2 {
			t.Fatalf("requests: cut node %d, total %d; want 1, 2", n, rec.total())
		}
		single := newClient([]string{cut.HTTPAddr}, client.WithMaxAttempts(1))
		err = single.Join(ctx(t), client.JoinRequest{ID: other.ID, RaftAddr: other.RaftAddr})
		if e := asError(t, err); e.Status != 503 || e.Code != "no-leader" || !client.IsNotApplied(err) || !strings.HasPrefix(e.Message, errNoLeader) {
			t.Fatalf("Join on the cut node = %+v", e)
		}
	})

	// The cut node still serves stale reads from its own copy, and says
	// how long it has been out of touch.
	t.Run("stale read on the cut node", func(t *testing.T) {
		rec, opt := recording()
		p, meta, err := newClient([]string{cut.HTTPAddr}, opt, client.WithMaxAttempts(1)).Get(ctx(t), "nq/k", client.ReadOptions{Stale: true})
		if err != nil || p == nil || string(p.Value) != "v" || meta.KnownLeader || meta.Endpoint != urlOf(cut) {
			t.Fatalf("stale Get on the cut node = %+v, %+v, %v", p, meta, err)
		}
		h := rec.lastHeader()
		ms, err := strconv.ParseInt(h.Get("X-Consul-LastContact"), 10, 64)
		if err != nil || h.Get("X-Consul-KnownLeader") != "false" || meta.LastContact != time.Duration(ms)*time.Millisecond ||
			meta.LastContact < inproc.FastTiming().HeartbeatTimeout {
			t.Fatalf("meta %+v from headers %v; want LastContact as sent, at least one heartbeat timeout", meta, h)
		}
	})

	t.Run("no leader anywhere", func(t *testing.T) {
		isolate(t, leader)
		isolate(t, other)
		rec, opt := recording()
		_, _, err := newClient(order, opt, client.WithMaxAttempts(5)).Put(ctx(t), "nq/k", []byte("v2"), client.WriteOptions{})
		e := asError(t, err)
		if e.Status != 503 || !client.IsNotApplied(err) || e.Attempts != 5 || !strings.HasPrefix(e.Message, errNoLeader) {
			t.Fatalf("error = %+v", e)
		}
		if n := rec.total(); n != 5 {
			t.Fatalf("%d requests, want 5", n)
		}
		if n0, n1, n2 := len(rec.requests(order[0])), len(rec.requests(order[1])), len(rec.requests(order[2])); n0 != 2 || n1 != 2 || n2 != 1 {
			t.Fatalf("requests per node %d, %d, %d; want 2, 2, 1 (round robin)", n0, n1, n2)
		}
		// A last attempt that gets no answer does not hide why the
		// earlier ones failed.
		_, _, err = newClient([]string{cut.HTTPAddr, deadAddr(t)}, client.WithMaxAttempts(2)).Put(ctx(t), "nq/k", []byte("v2"), client.WriteOptions{})
		if e := asError(t, err); e.Status != 0 || e.Previous == nil || e.Previous.Status != 503 || !client.IsNotApplied(err) ||
			!strings.Contains(err.Error(), "; before that, "+cut.HTTPAddr+" answered HTTP 503: "+errNoLeader) {
			t.Fatalf("error = %v", err)
		}
		// Stale reads need no leader.
		p, meta, err := newClient(order).Get(ctx(t), "nq/k", client.ReadOptions{Stale: true})
		if err != nil || p == nil || string(p.Value) != "v" || meta.KnownLeader {
			t.Fatalf("stale Get without leader = %+v, %+v, %v", p, meta, err)
		}
	})
}

func TestErrors_DeadClusterIsNotAppliedAndBounded(t *testing.T) {
	c := newClient([]string{deadAddr(t), deadAddr(t)}, client.WithMaxAttempts(5))
	_, _, err := c.Put(ctx(t), "k", []byte("v"), client.WriteOptions{})
	e := asError(t, err)
	if !client.IsNotApplied(err) || client.IsUnknownOutcome(err) || e.Status != 0 || e.Attempts != 5 {
		t.Fatalf("error = %+v", e)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("error %v does not wrap the dial error", err)
	}
	if !strings.HasPrefix(err.Error(), "gave up after 5 attempts, last: 127.0.0.1:") {
		t.Fatalf("message = %q", err.Error())
	}
}

// Canned answers for what a real node cannot be made to produce on demand.
// Each one answers every request the same way; they hold no state.

// canned answers with a fixed status, headers and body.
func canned(t *testing.T, status int, header map[string]string, body string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// hangUp reads the whole request, then drops the connection unanswered, as
// a node that crashes mid-request does.
func hangUp(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	}))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

var (
	textPlain = map[string]string{"Content-Type": "text/plain; charset=utf-8"}
	jsonType  = map[string]string{"Content-Type": "application/json"}
)

func withOutcome(h map[string]string, outcome string) map[string]string {
	out := map[string]string{client.OutcomeHeader: outcome, "Retry-After": "1"}
	for k, v := range h {
		out[k] = v
	}
	return out
}

// TestFailover_Classification puts a canned misbehaving endpoint in front
// of a real node and checks what the client makes of each failure.
func TestFailover_Classification(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	live := nodes[0]

	// Busy is not-applied: the write goes to the next node.
	t.Run("write after 429 busy fails over", func(t *testing.T) {
		busy := canned(t, 429, withOutcome(textPlain, client.OutcomeNotApplied), errBusy+"\n")
		rec, opt := recording()
		ok, meta, err := newClient([]string{busy.URL, live.HTTPAddr}, opt).CAS(ctx(t), "cl/busy", []byte("v"), 0, 0)
		if err != nil || !ok {
			t.Fatalf("CAS = %v, %v", ok, err)
		}
		if meta.Endpoint != urlOf(live) {
			t.Fatalf("answered by %s", meta.Endpoint)
		}
		if n0, n1 := len(rec.requests(hostOf(busy))), len(rec.requests(live.HTTPAddr)); n0 != 1 || n1 != 1 {
			t.Fatalf("requests: busy node %d, real node %d; want 1 and 1", n0, n1)
		}
	})

	t.Run("an unknown write outcome is never retried", func(t *testing.T) {
		cases := map[string]*httptest.Server{
			"503 unknown":         canned(t, 503, withOutcome(textPlain, client.OutcomeUnknown), errUnknownOutcome+"\n"),
			"500 without header":  canned(t, 500, textPlain, "boom\n"),
			"hang up after write": hangUp(t),
		}
		for name, srv := range cases {
			t.Run(name, func(t *testing.T) {
				key := "cl/unknown/" + strings.ReplaceAll(name, " ", "-")
				_, m0, err := newClient([]string{live.HTTPAddr}).Put(ctx(t), key, []byte("old"), client.WriteOptions{})
				if err != nil {
					t.Fatal(err)
				}
				rec, opt := recording()
				c := newClient([]string{srv.URL, live.HTTPAddr}, opt)
				ok, _, err := c.CAS(ctx(t), key, []byte("new"), m0.Index, 0)
				if ok || err == nil {
					t.Fatalf("CAS = %v, %v; want an error", ok, err)
				}
				if !client.IsUnknownOutcome(err) || client.IsNotApplied(err) {
					t.Fatalf("error %v not classified as unknown", err)
				}
				e := asError(t, err)
				if e.Attempts != 1 || e.Endpoint != srv.URL || strings.Count(err.Error(), "may or may not") != 1 {
					t.Fatalf("error = %+v (%v)", e, err)
				}
				if n := len(rec.requests(live.HTTPAddr)); n != 0 {
					t.Fatalf("the write was resent to the real node (%d requests)", n)
				}
				if p, _, err := newClient([]string{live.HTTPAddr}).Get(ctx(t), key, client.ReadOptions{}); err != nil || p == nil || string(p.Value) != "old" {
					t.Fatalf("the real node's copy changed: %+v, %v", p, err)
				}
			})
		}
	})

	t.Run("reads retry on any server or transport failure", func(t *testing.T) {
		if _, _, err := newClient([]string{live.HTTPAddr}).Put(ctx(t), "cl/read", []byte("v"), client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		noLeaderJSON := `{"code":"no-leader","error":"` + errNoLeader + `"}` + "\n"
		cases := map[string]struct {
			srv    *httptest.Server
			native bool
		}{
			"hang up":       {srv: hangUp(t)},
			"500":           {srv: canned(t, 500, textPlain, "internal\n")},
			"503 unknown":   {srv: canned(t, 503, withOutcome(textPlain, client.OutcomeUnknown), "x\n")},
			"429 busy":      {srv: canned(t, 429, withOutcome(textPlain, client.OutcomeNotApplied), errBusy+"\n")},
			"native 503":    {srv: canned(t, 503, jsonType, noLeaderJSON), native: true},
			"native hangup": {srv: hangUp(t), native: true},
		}
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				c := newClient([]string{tc.srv.URL, live.HTTPAddr})
				if tc.native {
					st, err := c.Status(ctx(t))
					if err != nil || st.ID != live.ID {
						t.Fatalf("Status = %+v, %v; want %s's", st, err, live.ID)
					}
					return
				}
				p, meta, err := c.Get(ctx(t), "cl/read", client.ReadOptions{})
				if err != nil || p == nil || string(p.Value) != "v" || meta.Endpoint != urlOf(live) {
					t.Fatalf("Get = %+v, %+v, %v", p, meta, err)
				}
			})
		}
	})

	// The native endpoints may carry only a JSON code, without
	// X-Troupe-Outcome; the client must still see that a refused join did
	// nothing, and that an unknown-outcome code is not to be retried.
	t.Run("native JSON codes", func(t *testing.T) {
		noLeader := canned(t, 503, jsonType, `{"code":"no-leader","error":"`+errNoLeader+`"}`+"\n")
		rec, opt := recording()
		c := newClient([]string{noLeader.URL, live.HTTPAddr}, opt)
		// Re-joining the node itself is a harmless no-op on the real node.
		if err := c.Join(ctx(t), client.JoinRequest{ID: live.ID, RaftAddr: live.RaftAddr}); err != nil {
			t.Fatal(err)
		}
		if n := len(rec.requests(live.HTTPAddr)); n != 1 {
			t.Fatalf("join not failed over (%d requests to the real node)", n)
		}
		lost := canned(t, 503, jsonType, `{"code":"unknown-outcome","error":"lost"}`+"\n")
		rec, opt = recording()
		err := newClient([]string{lost.URL, live.HTTPAddr}, opt).Remove(ctx(t), "n3")
		if e := asError(t, err); !client.IsUnknownOutcome(err) || e.Code != "unknown-outcome" || e.Message != "lost" || e.Attempts != 1 {
			t.Fatalf("Remove with unknown outcome = %+v", e)
		}
		if n := len(rec.requests(live.HTTPAddr)); n != 0 {
			t.Fatalf("a remove with unknown outcome was resent (%d requests)", n)
		}
	})

	// A write whose request was fully sent when the caller gave up may still
	// commit: the outcome is unknown, and the context error stays visible.
	t.Run("canceled after write is unknown", func(t *testing.T) {
		got := make(chan struct{})
		release := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(got)
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer srv.Close()
		defer close(release)
		rec, opt := recording()
		c := newClient([]string{srv.URL, live.HTTPAddr}, opt)
		cctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-got
			cancel()
		}()
		_, _, err := c.Put(cctx, "cl/canceled", []byte("v"), client.WriteOptions{})
		if !errors.Is(err, context.Canceled) || !client.IsUnknownOutcome(err) {
			t.Fatalf("error = %v; want an unknown outcome wrapping context.Canceled", err)
		}
		if n := len(rec.requests(live.HTTPAddr)); n != 0 {
			t.Fatal("a canceled write was resent")
		}
		if p, _, err := newClient([]string{live.HTTPAddr}).Get(ctx(t), "cl/canceled", client.ReadOptions{}); err != nil || p != nil {
			t.Fatalf("the canceled write landed on the real node: %+v, %v", p, err)
		}
	})
}
