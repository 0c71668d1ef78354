package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// fakeBackend is an api.Backend over a real storage.Store: Apply encodes the
// command (as the Raft log would carry it), decodes it again, gives it the
// next index and applies it, so reads see writes exactly as on a node. Knobs
// make the replication calls fail the way the cluster layer does.
type fakeBackend struct {
	store *storage.Store
	net   *faultnet.Network

	applyMu sync.Mutex // serialises index assignment and apply

	mu         sync.Mutex
	applyErr   error // returned by Apply before anything is applied
	barrierErr error // returned by ReadBarrier
	leader     cluster.LeaderInfo
	status     cluster.Status
	statusErr  error
	members    []cluster.Member
	membersErr error
	peers      []string
	peersErr   error
	readyErr   error
	joinErr    error
	removeErr  error
	snapIndex  uint64
	snapErr    error
	joins      []peerlink.JoinRequest
	removes    []string
	promotes   []string
	promoteErr error
	// staleConfigs counts Configuration calls with stale set.
	staleConfigs int
	crashes      []string

	applyCalls   atomic.Int64
	barrierCalls atomic.Int64
	renewCalls   atomic.Int64
}

func newFakeBackend(t testing.TB, dir string) *fakeBackend {
	t.Helper()
	st, err := storage.Open(filepath.Join(dir, "kv.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &fakeBackend{
		store: st,
		net:   faultnet.New("n1"),
		leader: cluster.LeaderInfo{
			Known: true, ID: "n1", RaftAddr: "127.0.0.1:8300",
		},
		members: []cluster.Member{
			{ID: "n1", RaftAddr: "127.0.0.1:8300", HTTPAddr: "127.0.0.1:8500", Voter: true, Leader: true},
			{ID: "n2", RaftAddr: "127.0.0.1:8301", HTTPAddr: "127.0.0.1:8501", Voter: true},
		},
		peers:     []string{"127.0.0.1:8300", "127.0.0.1:8301"},
		status:    cluster.Status{ID: "n1", State: "Leader", Term: 3, LeaderID: "n1"},
		snapIndex: 42,
	}
}

// set runs fn with the knobs locked.
func (f *fakeBackend) set(fn func(f *fakeBackend)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBackend) get(p *error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *p
}

func (f *fakeBackend) Apply(ctx context.Context, cmd *storage.Command) (storage.Result, error) {
	f.applyCalls.Add(1)
	if err := f.get(&f.applyErr); err != nil {
		return storage.Result{}, err
	}
	return f.replicate(cmd.Encode())
}

func (f *fakeBackend) replicate(data []byte) (storage.Result, error) {
	cmd, err := storage.DecodeCommand(data)
	if err != nil {
		return storage.Result{}, err
	}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	// As the leader does before it proposes (actors' raft actor).
	data, refused, err := f.store.CheckLockDelays(data)
	if err != nil || refused != nil {
		return storage.Result{Txn: refused}, err
	}
	if cmd, err = storage.DecodeCommand(data); err != nil {
		return storage.Result{}, err
	}
	res, err := f.store.Apply(f.store.AppliedIndex()+1, cmd)
	if err == nil && res.NoSpace {
		// What cluster.Node.Apply makes of a refusal.
		return res, &storage.NoSpaceError{Alarms: f.store.Alarms()}
	}
	return res, err
}

func (f *fakeBackend) Alarms() []storage.Alarm { return f.store.Alarms() }

func (f *fakeBackend) Disarm(ctx context.Context, typ, member string) (bool, error) {
	res, err := f.Apply(ctx, &storage.Command{Op: storage.OpAlarmClear, Key: storage.AlarmKey(typ, member)})
	return res.OK, err
}

// RenewSession finds the session in the store, as the leader's sessions
// actor does (there are no timers to reset here).
func (f *fakeBackend) RenewSession(ctx context.Context, id string) (storage.Session, bool, error) {
	f.renewCalls.Add(1)
	if err := f.get(&f.applyErr); err != nil {
		return storage.Session{}, false, err
	}
	s, found, _, err := f.store.Session(id)
	return s, found, err
}

// Read runs the store's own blocking query with the fake's barrier, as the
// node does with its read barrier.
func (f *fakeBackend) Read(ctx context.Context, q storage.Query, stale bool, b storage.Block) (storage.QueryResult, error) {
	var barrier func(context.Context) error
	if !stale {
		barrier = func(context.Context) error {
			f.barrierCalls.Add(1)
			return f.get(&f.barrierErr)
		}
	}
	return f.store.BlockingQuery(ctx, q, b, barrier)
}

func (f *fakeBackend) Leader() cluster.LeaderInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeBackend) Status() (cluster.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, f.statusErr
}

func (f *fakeBackend) Members() ([]cluster.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.membersErr != nil {
		return nil, f.membersErr
	}
	return append([]cluster.Member(nil), f.members...), nil
}

func (f *fakeBackend) Peers() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peers, f.peersErr
}

func (f *fakeBackend) Ready() error { return f.get(&f.readyErr) }

func (f *fakeBackend) ChangeMembership(ctx context.Context, req peerlink.MembershipRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Join != nil {
		if f.joinErr != nil {
			return f.joinErr
		}
		f.joins = append(f.joins, *req.Join)
		return nil
	}
	if req.Promote != "" {
		if f.promoteErr != nil {
			return f.promoteErr
		}
		f.promotes = append(f.promotes, req.Promote)
		return nil
	}
	if f.removeErr != nil {
		return f.removeErr
	}
	f.removes = append(f.removes, req.Remove)
	return nil
}

func (f *fakeBackend) Configuration(ctx context.Context, stale bool) (cluster.Configuration, error) {
	if !stale {
		if err := f.ReadBarrier(ctx); err != nil {
			return cluster.Configuration{}, err
		}
	}
	ms, err := f.Members()
	f.mu.Lock()
	defer f.mu.Unlock()
	if stale {
		f.staleConfigs++
	}
	return cluster.Configuration{Members: ms, Index: 7}, err
}

func (f *fakeBackend) Snapshot(ctx context.Context) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapIndex, f.snapErr
}

func (f *fakeBackend) Health(ctx context.Context) (*cluster.Health, error) {
	return &cluster.Health{Node: "n1", Peers: []cluster.PeerStatus{{ID: "n2", State: cluster.PeerAlive}}}, nil
}

func (f *fakeBackend) Crash(actor, fault, reason string) error {
	switch actor {
	case "raft", "http", "node":
	default:
		return fmt.Errorf("unknown actor %q (want one of raft, http, node)", actor)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.crashes = append(f.crashes, actor)
	return nil
}

func (f *fakeBackend) Faults() faultnet.Rules            { return f.net.Rules() }
func (f *fakeBackend) SetFaults(rs faultnet.Rules) error { return f.net.SetRules(rs) }

var (
	_ KV       = (*fakeBackend)(nil)
	_ Cluster  = (*fakeBackend)(nil)
	_ Chaos    = (*fakeBackend)(nil)
	_ Sessions = (*fakeBackend)(nil)
)

// apiConfig is what newAPI builds a Server from.
type apiConfig struct {
	opts  Options
	chaos bool
}

// newAPI builds a Server over a fresh fake backend.
func newAPI(t testing.TB, opts ...func(*apiConfig)) (*Server, *fakeBackend) {
	t.Helper()
	var c apiConfig
	for _, fn := range opts {
		fn(&c)
	}
	b := newFakeBackend(t, t.TempDir())
	if c.opts.NodeID == "" {
		c.opts.NodeID = "n1"
	}
	backends := Backends{KV: b, Cluster: b, ACL: b, Sessions: b, Console: newFakeConsole(c.opts.NodeID)}
	if c.chaos {
		backends.Chaos = b
	}
	return New(backends, c.opts), b
}

func withChaos(c *apiConfig)                { c.chaos = true }
func withMaxValue(n int64) func(*apiConfig) { return func(c *apiConfig) { c.opts.MaxValueSize = n } }

// call sends one request through the handler and returns the recording.
// target is a request URI (path already percent-encoded, with query).
func call(t testing.TB, h http.Handler, method, target string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// put stores value at key through the API and returns the write's index.
func put(t testing.TB, h http.Handler, key, value string) uint64 {
	t.Helper()
	w := call(t, h, "PUT", "/v1/kv/"+key, []byte(value))
	if w.Code != 200 || w.Body.String() != "true" {
		t.Fatalf("PUT %s: %d %q", key, w.Code, w.Body.String())
	}
	return headerIndex(t, w)
}

func headerIndex(t testing.TB, w *httptest.ResponseRecorder) uint64 {
	t.Helper()
	s := w.Header().Get("X-Consul-Index")
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("X-Consul-Index %q: %v (status %d, body %q)", s, err, w.Code, w.Body.String())
	}
	return n
}

func decodePairs(t testing.TB, w *httptest.ResponseRecorder) []KVPair {
	t.Helper()
	var pairs []KVPair
	if err := json.Unmarshal(w.Body.Bytes(), &pairs); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	return pairs
}

func decodeKeys(t testing.TB, w *httptest.ResponseRecorder) []string {
	t.Helper()
	var keys []string
	if err := json.Unmarshal(w.Body.Bytes(), &keys); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	return keys
}

// storeState is everything a request could change in the store.
type storeState struct {
	applied uint64
	kvIndex uint64
	entries []storage.Entry
}

func snapshotStore(t testing.TB, st *storage.Store) storeState {
	t.Helper()
	entries, _, err := st.List("")
	if err != nil {
		t.Fatal(err)
	}
	kv, err := st.KVIndex()
	if err != nil {
		t.Fatal(err)
	}
	return storeState{applied: st.AppliedIndex(), kvIndex: kv, entries: entries}
}

// unchanged runs fn and fails if it touched the store or called Apply.
func (f *fakeBackend) unchanged(t testing.TB, what string, fn func()) {
	t.Helper()
	calls := f.applyCalls.Load()
	f.storeUnchanged(t, what, fn)
	if n := f.applyCalls.Load() - calls; n != 0 {
		t.Errorf("%s called Apply %d times, want 0", what, n)
	}
}

// storeUnchanged runs fn and fails if the store changed.
func (f *fakeBackend) storeUnchanged(t testing.TB, what string, fn func()) {
	t.Helper()
	before := snapshotStore(t, f.store)
	fn()
	after := snapshotStore(t, f.store)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("%s changed the store:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// wantStatus fails unless w has the status and its body contains every
// substring in want.
func wantStatus(t testing.TB, w *httptest.ResponseRecorder, status int, want ...string) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d (body %q)", w.Code, status, w.Body.String())
	}
	for _, s := range want {
		if !strings.Contains(w.Body.String(), s) {
			t.Errorf("body %q does not contain %q", w.Body.String(), s)
		}
	}
}

// wantPlainError checks a Consul-style plain-text error answer.
func wantPlainError(t testing.TB, w *httptest.ResponseRecorder, status int, want ...string) {
	t.Helper()
	wantStatus(t, w, status, want...)
	if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("error Content-Type %q, want text/plain", ct)
	}
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func entriesEqual(a, b storage.Entry) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.Flags == b.Flags &&
		a.CreateIndex == b.CreateIndex && a.ModifyIndex == b.ModifyIndex &&
		a.LockIndex == b.LockIndex && a.Session == b.Session
}
