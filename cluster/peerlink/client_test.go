package peerlink

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

func TestClientSuccess(t *testing.T) {
	c, _ := newTestClient(t, "n2")

	addr, reqs := fakeLeader(t, 200, `{"index":42,"ok":true}`)
	cmd := setCmd("k", "v")
	res, err := c.Apply(ctxFor(t, 5*time.Second), addr, cmd)
	if err != nil || res != (storage.Result{Index: 42, OK: true}) {
		t.Fatalf("Apply: %+v, %v", res, err)
	}
	r := reqs()[0]
	if r.path != pathApply || string(r.body) != string(cmd) || r.from != "n2" {
		t.Fatalf("leader saw %+v", r)
	}

	addr, _ = fakeLeader(t, 200, `{"index":42,"ok":false}`)
	if res, err := c.Apply(ctxFor(t, 5*time.Second), addr, cmd); err != nil || res.OK || res.Index != 42 {
		t.Fatalf("failed CAS: %+v, %v", res, err)
	}

	addr, reqs = fakeLeader(t, 200, `{"index":17}`)
	idx, err := c.ReadIndex(ctxFor(t, 5*time.Second), addr)
	if err != nil || idx != 17 {
		t.Fatalf("ReadIndex: %d, %v", idx, err)
	}
	if r := reqs()[0]; r.path != pathReadIndex || len(r.body) != 0 || r.from != "n2" {
		t.Fatalf("leader saw %+v", r)
	}

	addr, _ = fakeLeader(t, 200, `{"id":"n1"}`)
	if r, err := c.Ping(ctxFor(t, 5*time.Second), addr); err != nil || r.ID != "n1" || r.ClientPortError != "" {
		t.Fatalf("Ping: %+v, %v", r, err)
	}

	addr, reqs = fakeLeader(t, 200, `{}`)
	req := MembershipRequest{Join: &JoinRequest{ID: "n4", RaftAddr: "10.0.0.4:8300"}, Token: "secret"}
	if err := c.Membership(ctxFor(t, 5*time.Second), addr, req); err != nil {
		t.Fatalf("Membership: %v", err)
	}
	var got MembershipRequest
	if r := reqs()[0]; r.path != pathMembership || json.Unmarshal(r.body, &got) != nil || *got.Join != *req.Join || got.Token != "secret" {
		t.Fatalf("leader saw %+v", r)
	}

	addr, _ = fakeLeader(t, 200, `[{"index":5,"ok":true},{"code":"not-leader","error":"x"}]`)
	replies, err := c.ApplyBatch(ctxFor(t, 5*time.Second), addr, [][]byte{cmd, cmd})
	if err != nil || len(replies) != 2 {
		t.Fatalf("ApplyBatch: %v %v", replies, err)
	}
	if _, err := replies[1].Result(); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("second reply: %v", err)
	}
	if _, err := c.ApplyBatch(ctxFor(t, 5*time.Second), addr, [][]byte{cmd}); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("two replies for one command: %v, want ErrUnknownOutcome", err)
	}
}

func TestClientErrorCodes(t *testing.T) {
	c, _ := newTestClient(t, "n2")
	for _, want := range sentinels {
		b, _ := json.Marshal(errorBody{Code: ErrorCode(want), Error: want.Error()})
		addr, _ := fakeLeader(t, http.StatusServiceUnavailable, string(b))
		if _, err := c.Apply(ctxFor(t, 5*time.Second), addr, setCmd("k", "v")); !errors.Is(err, want) {
			t.Errorf("Apply with code %q: %v, want %v", ErrorCode(want), err, want)
		}
		if _, err := c.ReadIndex(ctxFor(t, 5*time.Second), addr); !errors.Is(err, want) {
			t.Errorf("ReadIndex with code %q: %v, want %v", ErrorCode(want), err, want)
		}
		if err := c.Membership(ctxFor(t, 5*time.Second), addr, MembershipRequest{Remove: "n3"}); !errors.Is(err, want) {
			t.Errorf("Membership with code %q: %v, want %v", ErrorCode(want), err, want)
		}
	}

	addr, _ := fakeLeader(t, http.StatusRequestEntityTooLarge, `{"error":"value too large"}`)
	_, err := c.Apply(ctxFor(t, 5*time.Second), addr, setCmd("k", "v"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 413 || re.Message != "value too large" {
		t.Fatalf("413: %T %v", err, err)
	}
}

func TestClientGarbageAnswers(t *testing.T) {
	c, _ := newTestClient(t, "n2")
	// A 200 the follower cannot read: the leader may have applied the
	// write, so the outcome is unknown.
	for _, body := range []string{"", "not json", `{"index":`, `[1,2]`, `{"index":"seven"}`} {
		addr, _ := fakeLeader(t, 200, body)
		if _, err := c.Apply(ctxFor(t, 5*time.Second), addr, setCmd("k", "v")); !errors.Is(err, ErrUnknownOutcome) {
			t.Errorf("200 %q: %v, want ErrUnknownOutcome", body, err)
		}
	}
	// A refusal without a code stays a refusal, with its status.
	for _, body := range []string{"", "<html>bad gateway</html>", "\x00\xff"} {
		addr, _ := fakeLeader(t, 502, body)
		_, err := c.Apply(ctxFor(t, 5*time.Second), addr, setCmd("k", "v"))
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != 502 {
			t.Errorf("502 %q: %T %v, want *RemoteError 502", body, err, err)
		}
	}
}

// TestClientUnreachableLeader: a request that never reached the leader
// cannot have been applied.
func TestClientUnreachableLeader(t *testing.T) {
	c, n := newTestClient(t, "n2")

	l := listen(t, Config{Network: faultnet.Plain("n1")})
	refused := l.Addr().String()
	l.Close()
	_, err := c.Apply(ctxFor(t, 5*time.Second), refused, setCmd("k", "v"))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("refused connection: %v, want ErrNoLeader only", err)
	}
	if _, err := c.ReadIndex(ctxFor(t, 5*time.Second), refused); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ReadIndex, refused connection: %v", err)
	}
	// A probe that was not answered is no statement about leaders.
	if _, err := c.Ping(ctxFor(t, 5*time.Second), refused); err == nil || errors.Is(err, ErrNoLeader) {
		t.Fatalf("Ping, refused connection: %v", err)
	}

	// A cut link holds the dial until the ctx ends: also not applied.
	addr, reqs := fakeLeader(t, 200, `{"index":1,"ok":true}`)
	n.SetPeerAddr(addr, "n1")
	if err := n.SetRules(faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n1", Direction: faultnet.Both, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Apply(ctxFor(t, 200*time.Millisecond), addr, setCmd("k", "v"))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("cut leader: %v, want ErrNoLeader only", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a forward with a 200ms ctx took %v", took)
	}
	if len(reqs()) != 0 {
		t.Fatal("the cut leader received the request")
	}
}

// TestClientLostAnswer: a leader that read the whole request and then
// vanished may have applied it: the outcome is unknown.
func TestClientLostAnswer(t *testing.T) {
	c, _ := newTestClient(t, "n2")
	l := listen(t, Config{Network: faultnet.Plain("n1")})
	got := make(chan []byte, 4)
	go func() {
		for {
			conn, err := l.RPC().Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(conn))
			if err == nil {
				b, _ := io.ReadAll(req.Body)
				got <- b
			}
			conn.Close()
		}
	}()
	cmd := setCmd("k", "v")
	_, err := c.Apply(ctxFor(t, 5*time.Second), l.Addr().String(), cmd)
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrNoLeader) {
		t.Fatalf("leader hung up after reading: %v, want ErrUnknownOutcome only", err)
	}
	select {
	case b := <-got:
		if string(b) != string(cmd) {
			t.Fatalf("leader read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the leader never read the request")
	}
	if err := c.Membership(ctxFor(t, 5*time.Second), l.Addr().String(), MembershipRequest{Remove: "n3"}); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Membership, leader hung up after reading: %v", err)
	}
}
