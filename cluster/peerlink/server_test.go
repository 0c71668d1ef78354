package peerlink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

// recordingHandler applies nothing; it records what reached it.
type recordingHandler struct {
	mu      sync.Mutex
	applied [][]byte
	members []MembershipRequest
	// restored is token:body of every restore.
	restored []string
}

func (h *recordingHandler) Ping() PingReply {
	return PingReply{ID: "n1", ClientPortError: "accept: too many open files"}
}

func (h *recordingHandler) Apply(ctx context.Context, cmd []byte) (storage.Result, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied = append(h.applied, cmd)
	return storage.Result{Index: uint64(len(h.applied)), OK: true}, nil
}

func (h *recordingHandler) ApplyBatch(ctx context.Context, cmds [][]byte) []BatchItemReply {
	out := make([]BatchItemReply, len(cmds))
	for i, c := range cmds {
		out[i] = ReplyFor(h.Apply(ctx, c))
	}
	return out
}

func (h *recordingHandler) ReadIndex(ctx context.Context) (uint64, error) { return 0, ErrNotLeader }

func (h *recordingHandler) RenewSession(_ context.Context, id string) (storage.Session, bool, error) {
	return storage.Session{ID: id, TTL: "10s"}, id != "gone", nil
}

func (h *recordingHandler) Membership(ctx context.Context, req MembershipRequest) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.members = append(h.members, req)
	return nil
}

// RestoreSnapshot reads the stream as a backup and records the token;
// a body of "fail" reads as a damaged backup.
func (h *recordingHandler) RestoreSnapshot(_ context.Context, token string, r io.Reader) (storage.BackupInfo, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return storage.BackupInfo{}, err
	}
	h.mu.Lock()
	h.restored = append(h.restored, token+":"+string(data))
	h.mu.Unlock()
	if string(data) == "fail" {
		return storage.BackupInfo{}, fmt.Errorf("%w: damaged", storage.ErrBadBackup)
	}
	return storage.BackupInfo{Size: int64(len(data))}, nil
}

// TestRestoreSnapshotStreams: a backup travels whole to the leader with
// the client's token, and a refusal of it comes back as a 400.
func TestRestoreSnapshotStreams(t *testing.T) {
	h, addr := serve(t)
	c, _ := newTestClient(t, "n2")
	ctx := ctxFor(t, 5*time.Second)
	body := strings.Repeat("x", 3<<20) // past MaxCommandBytes: no such limit here
	info, err := c.RestoreSnapshot(ctx, addr, "secret", strings.NewReader(body))
	if err != nil || info.Size != int64(len(body)) {
		t.Fatalf("restore: %+v, %v", info, err)
	}
	var re *RemoteError
	if _, err := c.RestoreSnapshot(ctx, addr, "", strings.NewReader("fail")); !errors.As(err, &re) || re.Status != http.StatusBadRequest || !strings.Contains(re.Message, "damaged") {
		t.Fatalf("a damaged backup: %v, want a 400 naming the damage", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.restored) != 2 || h.restored[0] != "secret:"+body || h.restored[1] != ":fail" {
		t.Fatalf("the handler saw %d restores", len(h.restored))
	}
}

func (h *recordingHandler) seen() (int, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.applied), len(h.members)
}

func serve(t *testing.T) (*recordingHandler, string) {
	h := &recordingHandler{}
	l := listen(t, Config{Network: faultnet.Plain("n1")})
	s := Serve(l.RPC(), h, ServerOptions{MaxCommandBytes: 1024})
	t.Cleanup(func() { s.Close() })
	return h, l.Addr().String()
}

func register(id, addr string) []byte {
	return (&storage.Command{Op: storage.OpRegisterNode, Key: id, Value: []byte(addr)}).Encode()
}

// TestServerChecksSender: a node registers its own client address and no
// other's, and never deregisters anyone; refused commands reach nothing.
func TestServerChecksSender(t *testing.T) {
	h, addr := serve(t)
	c, _ := newTestClient(t, "n2")
	ctx := ctxFor(t, 5*time.Second)

	if _, err := c.Apply(ctx, addr, register("n2", "10.0.0.2:8500")); err != nil {
		t.Fatalf("own registration: %v", err)
	}
	ownAlarm := &storage.Command{Op: storage.OpAlarmRaise, Key: storage.AlarmKey(storage.AlarmNoSpace, "n2"), Value: []byte("full")}
	if _, err := c.Apply(ctx, addr, ownAlarm.Encode()); err != nil {
		t.Fatalf("own alarm: %v", err)
	}
	var re *RemoteError
	for name, cmd := range map[string][]byte{
		"another node's registration": register("n1", "10.6.6.6:8500"),
		"a deregistration":            (&storage.Command{Op: storage.OpDeregisterNode, Key: "n1"}).Encode(),
		"an alarm about another node": (&storage.Command{Op: storage.OpAlarmRaise, Key: storage.AlarmKey(storage.AlarmNoSpace, "n1")}).Encode(),
	} {
		_, err := c.Apply(ctx, addr, cmd)
		if !errors.As(err, &re) || re.Status != http.StatusForbidden {
			t.Errorf("%s: %v, want a 403 refusal", name, err)
		}
	}
	if _, err := c.Apply(ctx, addr, []byte{0xff, 0x00}); !errors.As(err, &re) || re.Status != http.StatusBadRequest {
		t.Errorf("garbage command: %v, want 400", err)
	}
	if _, err := c.Apply(ctx, addr, setCmd("k", strings.Repeat("v", 2048))); !errors.As(err, &re) || re.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized command: %v, want 413", err)
	}
	if n, _ := h.seen(); n != 2 {
		t.Fatalf("%d commands reached the handler, want only the own registration and alarm", n)
	}

	// In a batch, refused commands are answered alone and the rest go on.
	replies, err := c.ApplyBatch(ctx, addr, [][]byte{setCmd("a", "1"), register("n3", "x:1"), setCmd("b", "2"), setCmd("c", strings.Repeat("v", 2048))})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, http.StatusForbidden, 0, http.StatusRequestEntityTooLarge}
	for i, r := range replies {
		_, err := r.Result()
		switch {
		case want[i] == 0 && err != nil:
			t.Errorf("batch item %d: %v", i, err)
		case want[i] != 0 && (!errors.As(err, &re) || re.Status != want[i]):
			t.Errorf("batch item %d: %v, want %d", i, err, want[i])
		}
	}
	if n, _ := h.seen(); n != 4 {
		t.Fatalf("%d commands reached the handler, want 4", n)
	}
}

func TestServerMembershipAndPing(t *testing.T) {
	h, addr := serve(t)
	c, _ := newTestClient(t, "n2")
	ctx := ctxFor(t, 5*time.Second)
	if r, err := c.Ping(ctx, addr); err != nil || r != (PingReply{ID: "n1", ClientPortError: "accept: too many open files"}) {
		t.Fatalf("Ping: %+v %v", r, err)
	}
	if _, err := c.ReadIndex(ctx, addr); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ReadIndex from a follower: %v", err)
	}
	var re *RemoteError
	for _, bad := range []MembershipRequest{{}, {Join: &JoinRequest{ID: "n4", RaftAddr: "x:1"}, Remove: "n3"}} {
		if err := c.Membership(ctx, addr, bad); !errors.As(err, &re) || re.Status != http.StatusBadRequest {
			t.Errorf("membership %+v: %v, want 400", bad, err)
		}
	}
	if err := c.Membership(ctx, addr, MembershipRequest{Remove: "n3"}); err != nil {
		t.Fatal(err)
	}
	if _, m := h.seen(); m != 1 {
		t.Fatalf("%d membership changes reached the handler, want 1", m)
	}
}

// TestAnswerLostAfterApply: the leader applied the write but its answer
// never reached the follower (the leader's link to it is cut one way):
// the follower must report the outcome as unknown, never as "not applied".
func TestAnswerLostAfterApply(t *testing.T) {
	h := &recordingHandler{}
	leaderNet := faultnet.New("n1")
	l := listen(t, Config{Network: leaderNet})
	s := Serve(l.RPC(), h, ServerOptions{MaxCommandBytes: 1024})
	t.Cleanup(func() { s.Close() })
	if err := leaderNet.SetRules(faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n2", Direction: faultnet.Out, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	c, _ := newTestClient(t, "n2")
	_, err := c.Apply(ctxFor(t, 500*time.Millisecond), l.Addr().String(), setCmd("k", "v"))
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNoLeader) {
		t.Fatalf("answer lost after the apply: %v, want ErrUnknownOutcome only", err)
	}
	if n, _ := h.seen(); n != 1 {
		t.Fatalf("the leader applied %d commands, want 1", n)
	}
}

// txnHandler answers every command with a transaction's outcome, as a
// leader's state machine does for an OpTxn.
type txnHandler struct {
	recordingHandler
	res storage.Result
}

func (h *txnHandler) Apply(ctx context.Context, cmd []byte) (storage.Result, error) {
	return h.res, nil
}

func (h *txnHandler) ApplyBatch(ctx context.Context, cmds [][]byte) []BatchItemReply {
	out := make([]BatchItemReply, len(cmds))
	for i := range cmds {
		out[i] = ReplyFor(h.res, nil)
	}
	return out
}

// TestTxnResultSurvivesForwarding: a follower forwarding a transaction
// gets the leader's results and errors back intact, alone or in a batch.
func TestTxnResultSurvivesForwarding(t *testing.T) {
	want := storage.Result{Index: 9, OK: true, Txn: &storage.TxnResult{Entries: []storage.Entry{
		{Key: "a", Value: []byte{0, 0xff, 'v'}, Flags: 16210313421097356768, CreateIndex: 3, ModifyIndex: 9, LockIndex: 2, Session: "s"},
		{Key: "b", ModifyIndex: 9},
	}}}
	failed := storage.Result{Index: 10, Txn: &storage.TxnResult{Errors: []storage.TxnError{{OpIndex: 0, What: "missing session"}, {OpIndex: 3, What: `key "k" doesn't exist`}}}}
	for _, res := range []storage.Result{want, failed} {
		h := &txnHandler{res: res}
		l := listen(t, Config{Network: faultnet.Plain("n1")})
		s := Serve(l.RPC(), h, ServerOptions{MaxCommandBytes: 1024})
		t.Cleanup(func() { s.Close() })
		c, _ := newTestClient(t, "n2")
		cmd := (&storage.Command{Op: storage.OpTxn, Txn: []storage.TxnOp{{Verb: storage.TxnGet, Key: "a"}}}).Encode()
		got, err := c.Apply(ctxFor(t, 5*time.Second), l.Addr().String(), cmd)
		if err != nil || !reflect.DeepEqual(got, res) {
			t.Fatalf("Apply: %+v %v\nwant %+v", got, err, res)
		}
		replies, err := c.ApplyBatch(ctxFor(t, 5*time.Second), l.Addr().String(), [][]byte{cmd, cmd})
		if err != nil || len(replies) != 2 {
			t.Fatalf("ApplyBatch: %v %v", replies, err)
		}
		for _, r := range replies {
			if got, err := r.Result(); err != nil || !reflect.DeepEqual(got, res) {
				t.Fatalf("batch item: %+v %v\nwant %+v", got, err, res)
			}
		}
	}
}

// A renewal reaches the leader's handler with the session id, and its
// answer comes back whole; an empty or oversized id is refused before it.
func TestRenewSession(t *testing.T) {
	_, addr := serve(t)
	c, _ := newTestClient(t, "n2")
	ctx := ctxFor(t, 5*time.Second)
	s, found, err := c.RenewSession(ctx, addr, "abc")
	if err != nil || !found || s.ID != "abc" || s.TTL != "10s" {
		t.Fatalf("renew: %+v %v %v", s, found, err)
	}
	if _, found, err := c.RenewSession(ctx, addr, "gone"); err != nil || found {
		t.Fatalf("renew of a missing session: found %v, %v", found, err)
	}
	var re *RemoteError
	for _, id := range []string{"", strings.Repeat("x", storage.MaxSessionIDSize+1)} {
		if _, _, err := c.RenewSession(ctx, addr, id); !errors.As(err, &re) || re.Status != http.StatusBadRequest {
			t.Fatalf("renew of a %d-byte id: %v", len(id), err)
		}
	}
}
