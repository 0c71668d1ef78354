package actors_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// limitedNode starts a one-node cluster with tight client limits.
func limitedNode(t *testing.T, lim actors.HTTPLimits) *node {
	t.Helper()
	nodes := inproc.Start(t, 1, inproc.Options{HTTPLimits: lim})
	inproc.Leader(t, nodes)
	return nodes[0]
}

// answer reads what the node sends back on c within d: the status line,
// or "" if it closed the connection without a word.
func answer(t *testing.T, c net.Conn, d time.Duration) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil && line == "" {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the node still held the connection after %s", d)
		}
		return ""
	}
	return strings.TrimSpace(line)
}

// TestSlowBodyIsCutOff: a client that sends its body one byte at a time
// cannot hold a connection past http_read_timeout, and nothing it sent is
// stored.
func TestSlowBodyIsCutOff(t *testing.T) {
	nd := limitedNode(t, actors.HTTPLimits{ReadTimeout: 500 * time.Millisecond})
	c, err := net.Dial("tcp", nd.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 0; i < 100; i++ {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	if got := answer(t, c, 10*time.Second); got != "" && !strings.Contains(got, " 400 ") {
		t.Fatalf("slow body answered %q, want 400 or a closed connection", got)
	}
	if _, found, _, _ := nd.Store.Get("slow"); found {
		t.Fatal("a write whose body never arrived in time was stored")
	}
}

// TestSlowHeadersAreCutOff: a client that trickles its headers is
// disconnected after http_read_header_timeout.
func TestSlowHeadersAreCutOff(t *testing.T) {
	nd := limitedNode(t, actors.HTTPLimits{ReadHeaderTimeout: 500 * time.Millisecond})
	c, err := net.Dial("tcp", nd.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n")
	start := time.Now()
	answer(t, c, 10*time.Second)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("slow headers held the connection for %s", waited)
	}
}

// TestOversizedHeadersRefused: a header block over http_max_header_bytes
// gets 431 and nothing else.
func TestOversizedHeadersRefused(t *testing.T) {
	nd := limitedNode(t, actors.HTTPLimits{MaxHeaderBytes: 4096})
	req, _ := http.NewRequest(http.MethodGet, "http://"+nd.HTTPAddr+"/v1/kv/x", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized headers: %d, want 431", resp.StatusCode)
	}
}

// TestConnectionCap: past http_max_conns a new connection is answered 503
// with the reason at once, and served again once a slot is free.
func TestConnectionCap(t *testing.T) {
	nd := limitedNode(t, actors.HTTPLimits{MaxConns: 2})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", nd.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // both accepted
	over, err := net.Dial("tcp", nd.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	_ = over.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(over)
	if !strings.HasPrefix(string(b), "HTTP/1.1 503") || !strings.Contains(string(b), "too many connections") {
		t.Fatalf("connection over the cap got %q, want 503 with the reason", b)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/healthz", "")
		if err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one was freed: %d %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFullClientPortIsReported: a node whose client port turns clients
// away is alive to its peers, but must not look healthy: its /readyz says
// why, and so does every peer's view of it, until it accepts clients
// again.
func TestFullClientPortIsReported(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{HTTPLimits: actors.HTTPLimits{MaxConns: 2}})
	inproc.Leader(t, nodes)
	full, peer := nodes[0], nodes[1]
	peerView := func() string {
		h, err := peer.Client().Health(t.Context())
		if err != nil {
			return ""
		}
		for _, p := range h.Peers {
			if p.ID == full.ID {
				return p.ClientPortError
			}
		}
		return ""
	}
	if err := full.Client().Ready(); err != nil {
		t.Fatalf("ready before: %v", err)
	}
	if v := peerView(); v != "" {
		t.Fatalf("peer view before: %q", v)
	}
	var held []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", full.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.Close()
	}
	if got := answer(t, held[2], 5*time.Second); !strings.Contains(got, "503") {
		t.Fatalf("connection over the cap: %q", got)
	}
	if err := full.Client().Ready(); err == nil || !strings.Contains(err.Error(), "connection limit") {
		t.Fatalf("ready with a full client port: %v", err)
	}
	waitUntil(t, 5*time.Second, "a peer to report the full client port", func() bool {
		return strings.Contains(peerView(), "connection limit")
	})
	held[0].Close()
	held[1].Close()
	waitUntil(t, 5*time.Second, "the port to be healthy again", func() bool {
		code, _, err := httpDo(http.MethodGet, "http://"+full.HTTPAddr+"/readyz", "")
		return err == nil && code == 200
	})
	waitUntil(t, 5*time.Second, "the peer to see it healthy", func() bool { return peerView() == "" })
}

// waitUntil polls cond until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
