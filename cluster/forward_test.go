package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

var sentinels = []error{ErrNotLeader, ErrNoLeader, ErrUnknownOutcome, ErrBusy}

func TestErrorCodeRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, err := range sentinels {
		for _, e := range []error{err, fmt.Errorf("context: %w", err)} {
			code := ErrorCode(e)
			if code == "" {
				t.Fatalf("%v has no code", e)
			}
			back := ErrorFromCode(code, e.Error())
			if !errors.Is(back, err) {
				t.Fatalf("%v -> %q -> %v, not the same sentinel", e, code, back)
			}
			for _, other := range sentinels {
				if other != err && errors.Is(back, other) {
					t.Fatalf("%q decodes to %v, which is also %v", code, back, other)
				}
			}
		}
		seen[ErrorCode(err)] = true
	}
	if len(seen) != len(sentinels) {
		t.Fatalf("codes are not distinct: %v", seen)
	}
	if c := ErrorCode(io.EOF); c != "" {
		t.Fatalf("ErrorCode(io.EOF) = %q", c)
	}
	if c := ErrorCode(nil); c != "" {
		t.Fatalf("ErrorCode(nil) = %q", c)
	}
	// The leader's message is kept where it adds information.
	if err := ErrorFromCode("unknown-outcome", "leadership lost"); !strings.Contains(err.Error(), "leadership lost") {
		t.Fatalf("unknown-outcome lost the leader's message: %v", err)
	}
	if err := ErrorFromCode("", "disk on fire"); err.Error() != "disk on fire" {
		t.Fatalf("code-less error: %v", err)
	}
}

func TestLeaderError(t *testing.T) {
	jsonBody := func(code, msg string) []byte {
		b, _ := json.Marshal(ForwardedError{Code: code, Error: msg})
		return b
	}
	for _, err := range sentinels {
		got := LeaderError(http.StatusServiceUnavailable, jsonBody(ErrorCode(err), err.Error()))
		if !errors.Is(got, err) {
			t.Errorf("code %q: %v, want %v", ErrorCode(err), got, err)
		}
	}

	var re *RemoteError
	for _, tc := range []struct {
		status int
		body   string
		msg    string
	}{
		{413, `{"error":"value too large: 600000 > 524288"}`, "value too large: 600000 > 524288"},
		{413, "request entity too large\n", "request entity too large"},
		{400, `{"code":"","error":"bad key"}`, "bad key"},
		{500, "<html>oops</html>", "<html>oops</html>"},
		{502, "", ""},
		{500, `{"error":""}`, `{"error":""}`},
		{500, `{"error":`, `{"error":`},
		{500, `["error"]`, `["error"]`},
	} {
		err := LeaderError(tc.status, []byte(tc.body))
		if !errors.As(err, &re) {
			t.Errorf("%d %q: %T %v, want *RemoteError", tc.status, tc.body, err, err)
			continue
		}
		if re.Status != tc.status || re.Message != tc.msg {
			t.Errorf("%d %q: %+v, want status %d message %q", tc.status, tc.body, re, tc.status, tc.msg)
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("%d %q: a code-less answer became %v", tc.status, tc.body, s)
			}
		}
		if !strings.Contains(err.Error(), fmt.Sprint(tc.status)) {
			t.Errorf("RemoteError text %q does not name the status", err)
		}
	}
}

// recorded is what a test leader saw of one request.
type recorded struct {
	method, path, forwardedBy string
	hasForwarded              bool
	body                      []byte
}

// fakeLeader answers every request with status and body, recording it.
func fakeLeader(t *testing.T, status int, body string) (*httptest.Server, func() []recorded) {
	var mu sync.Mutex
	var reqs []recorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, recorded{
			method: r.Method, path: r.URL.Path, body: b,
			forwardedBy: r.Header.Get(ForwardedHeader), hasForwarded: len(r.Header.Values(ForwardedHeader)) > 0,
		})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), reqs...)
	}
}

func hostOf(srv *httptest.Server) string { return srv.Listener.Addr().String() }

func newTestForwarder(t *testing.T, self string) (*Forwarder, *faultnet.Network) {
	n := faultnet.New(self)
	f := NewForwarder(n)
	t.Cleanup(f.Close)
	return f, n
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestForwarderSuccess(t *testing.T) {
	f, _ := newTestForwarder(t, "n2")

	srv, reqs := fakeLeader(t, 200, `{"index":42,"ok":true}`)
	cmd := setCmd("k", "v")
	res, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), cmd)
	if err != nil || res != (storage.Result{Index: 42, OK: true}) {
		t.Fatalf("Apply: %+v, %v", res, err)
	}
	r := reqs()[0]
	if r.method != http.MethodPost || r.path != ApplyPath || string(r.body) != string(cmd) || r.forwardedBy != "n2" {
		t.Fatalf("leader saw %+v", r)
	}

	srv, reqs = fakeLeader(t, 200, `{"index":42,"ok":false}`)
	if res, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), cmd); err != nil || res.OK || res.Index != 42 {
		t.Fatalf("failed CAS: %+v, %v", res, err)
	}

	srv, reqs = fakeLeader(t, 200, `{"index":17}`)
	idx, err := f.ReadIndex(ctxFor(t, 5*time.Second), hostOf(srv))
	if err != nil || idx != 17 {
		t.Fatalf("ReadIndex: %d, %v", idx, err)
	}
	r = reqs()[0]
	if r.method != http.MethodPost || r.path != ReadIndexPath || len(r.body) != 0 || r.forwardedBy != "n2" {
		t.Fatalf("leader saw %+v", r)
	}
}

func TestForwarderErrorCodes(t *testing.T) {
	f, _ := newTestForwarder(t, "n2")
	for _, want := range sentinels {
		b, _ := json.Marshal(ForwardedError{Code: ErrorCode(want), Error: want.Error()})
		srv, _ := fakeLeader(t, http.StatusServiceUnavailable, string(b))
		_, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), setCmd("k", "v"))
		if !errors.Is(err, want) {
			t.Errorf("Apply with code %q: %v, want %v", ErrorCode(want), err, want)
		}
		_, err = f.ReadIndex(ctxFor(t, 5*time.Second), hostOf(srv))
		if !errors.Is(err, want) {
			t.Errorf("ReadIndex with code %q: %v, want %v", ErrorCode(want), err, want)
		}
	}

	srv, _ := fakeLeader(t, http.StatusRequestEntityTooLarge, `{"error":"value too large"}`)
	_, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), setCmd("k", "v"))
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 413 || re.Message != "value too large" {
		t.Fatalf("413: %T %v", err, err)
	}
}

func TestForwarderGarbageAnswers(t *testing.T) {
	f, _ := newTestForwarder(t, "n2")
	// A 200 the follower cannot read: the leader may have applied the
	// write, so the outcome is unknown.
	for _, body := range []string{"", "not json", `{"index":`, `[1,2]`, `{"index":"seven"}`} {
		srv, _ := fakeLeader(t, 200, body)
		_, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), setCmd("k", "v"))
		if !errors.Is(err, ErrUnknownOutcome) {
			t.Errorf("200 %q: %v, want ErrUnknownOutcome", body, err)
		}
	}
	// A refusal without a code stays a refusal, with its status.
	for _, body := range []string{"", "<html>bad gateway</html>", "\x00\xff"} {
		srv, _ := fakeLeader(t, 502, body)
		_, err := f.Apply(ctxFor(t, 5*time.Second), hostOf(srv), setCmd("k", "v"))
		var re *RemoteError
		if !errors.As(err, &re) || re.Status != 502 {
			t.Errorf("502 %q: %T %v, want *RemoteError 502", body, err, err)
		}
	}
}

// TestForwarderUnreachableLeader: a request that never reached the leader
// cannot have been applied.
func TestForwarderUnreachableLeader(t *testing.T) {
	f, n := newTestForwarder(t, "n2")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	_, err = f.Apply(ctxFor(t, 5*time.Second), refused, setCmd("k", "v"))
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("refused connection: %v, want ErrNoLeader only", err)
	}
	if _, err := f.ReadIndex(ctxFor(t, 5*time.Second), refused); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("ReadIndex, refused connection: %v", err)
	}
	if _, _, err := f.Do(ctxFor(t, 5*time.Second), refused, http.MethodPost, JoinPath, nil, false); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("Do, refused connection: %v", err)
	}

	// A cut link holds the dial until the ctx ends: also not applied.
	srv, reqs := fakeLeader(t, 200, `{"index":1,"ok":true}`)
	n.SetPeerAddr(hostOf(srv), "n1")
	if err := n.SetRules(faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n1", Direction: faultnet.Both, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = f.Apply(ctxFor(t, 200*time.Millisecond), hostOf(srv), setCmd("k", "v"))
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

// TestForwarderLostAnswer: a leader that read the whole request and then
// vanished may have applied it: the outcome is unknown.
func TestForwarderLostAnswer(t *testing.T) {
	f, _ := newTestForwarder(t, "n2")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				b, _ := io.ReadAll(req.Body)
				got <- b
			}
			c.Close()
		}
	}()
	cmd := setCmd("k", "v")
	_, err = f.Apply(ctxFor(t, 5*time.Second), ln.Addr().String(), cmd)
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
	if _, _, err := f.Do(ctxFor(t, 5*time.Second), ln.Addr().String(), http.MethodDelete, MembersPath+"n3", nil, true); !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Do, leader hung up after reading: %v", err)
	}
}

// TestForwarderDoHeader: Do marks a request as forwarded only when asked,
// and hands back any status with its body.
func TestForwarderDoHeader(t *testing.T) {
	f, _ := newTestForwarder(t, "n7")
	srv, reqs := fakeLeader(t, http.StatusConflict, `{"error":"raft address taken"}`)
	body := []byte(`{"id":"n4","raft_addr":"127.0.0.1:9","http_addr":"127.0.0.1:10"}`)

	status, b, err := f.Do(ctxFor(t, 5*time.Second), hostOf(srv), http.MethodPost, JoinPath, body, false)
	if err != nil || status != http.StatusConflict || string(b) != `{"error":"raft address taken"}` {
		t.Fatalf("Do: %d %q %v", status, b, err)
	}
	status, _, err = f.Do(ctxFor(t, 5*time.Second), hostOf(srv), http.MethodDelete, MembersPath+"n4", nil, true)
	if err != nil || status != http.StatusConflict {
		t.Fatalf("Do forwarded: %d %v", status, err)
	}

	rs := reqs()
	if len(rs) != 2 {
		t.Fatalf("%d requests", len(rs))
	}
	if rs[0].hasForwarded || rs[0].method != http.MethodPost || rs[0].path != JoinPath || string(rs[0].body) != string(body) {
		t.Fatalf("unforwarded Do: %+v", rs[0])
	}
	if rs[1].forwardedBy != "n7" || rs[1].method != http.MethodDelete || rs[1].path != MembersPath+"n4" {
		t.Fatalf("forwarded Do: %+v", rs[1])
	}
}
