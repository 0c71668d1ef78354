package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestAllowInbound(t *testing.T) {
	n := New("l")
	mustSetRules(t, n, cut("a", In))

	// Peers the rules do not cut, and cuts of the other direction, pass.
	if err := n.AllowInbound(context.Background(), "b", 0); err != nil {
		t.Fatalf("uncut peer b: %v", err)
	}
	out := New("l2")
	mustSetRules(t, out, cut("a", Out))
	if err := out.AllowInbound(context.Background(), "a", 0); err != nil {
		t.Fatalf("an out cut held an inbound request: %v", err)
	}

	// A cut peer is held until its ctx ends...
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- n.AllowInbound(ctx, "a", 0) }()
	select {
	case err := <-ch:
		t.Fatalf("cut peer a let in: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-ch:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled AllowInbound: %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("cancel did not end AllowInbound")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.AllowInbound(ctx, "a", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AllowInbound past its deadline: %v, want context.DeadlineExceeded", err)
	}

	// ...or until the cut is lifted.
	go func() { ch <- n.AllowInbound(context.Background(), "a", 0) }()
	select {
	case err := <-ch:
		t.Fatalf("cut peer a let in: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	mustSetRules(t, n, Rules{})
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("AllowInbound after heal: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("healing did not release AllowInbound")
	}

	// "*" holds everyone.
	mustSetRules(t, n, cut(AnyPeer, Both))
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if err := n.AllowInbound(ctx2, "anyone", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AllowInbound under a * cut: %v", err)
	}
}

// TestAllowInboundDelay: an "in" delay holds a forwarded request, and its
// ctx still ends the wait.
func TestAllowInboundDelay(t *testing.T) {
	n := New("l")
	const delay = 200 * time.Millisecond
	mustSetRules(t, n, Rules{Rules: []Rule{{Peer: "a", Direction: In, Delay: Duration(delay)}}})
	start := time.Now()
	if err := n.AllowInbound(context.Background(), "a", 0); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("delayed request let in after %v, delay is %v", took, delay)
	}
	mustSetRules(t, n, Rules{Rules: []Rule{{Peer: "a", Direction: In, Delay: Duration(time.Minute)}}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start = time.Now()
	if err := n.AllowInbound(ctx, "a", 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("delayed AllowInbound past its deadline: %v", err)
	}
	if took := time.Since(start); took > waitFor {
		t.Fatalf("AllowInbound waited %v for a 50ms ctx", took)
	}
}

// TestDialContextServesHTTPTransport: an http.Transport dialling through
// the network works, and a cut link makes its requests fail at their ctx
// deadline, including on a previously pooled connection.
func TestDialContextServesHTTPTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	n := New("a")
	n.SetPeerAddr(addr, "leader")
	tr := &http.Transport{DialContext: n.DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	get := func(timeout time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}

	for i := 0; i < 3; i++ { // the second and third reuse the pooled conn
		if body, err := get(waitFor); err != nil || body != "hello /x" {
			t.Fatalf("request %d: %q, %v", i, body, err)
		}
	}

	mustSetRules(t, n, cut("leader", Both))
	start := time.Now()
	body, err := get(300 * time.Millisecond)
	if err == nil {
		t.Fatalf("request through a cut link answered %q", body)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("request through a cut link: %v, want a timeout", err)
	}
	if took := time.Since(start); took > waitFor {
		t.Fatalf("request with a 300ms deadline took %v", took)
	}

	mustSetRules(t, n, Rules{})
	if body, err := get(waitFor); err != nil || body != "hello /x" {
		t.Fatalf("request after heal: %q, %v", body, err)
	}
}
