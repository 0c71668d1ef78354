package faultnet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// waitFor is the generous upper bound for anything that should happen "at
// once": it only has to be far below a real hang.
const waitFor = 5 * time.Second

// node is one Network with a real TCP listener wrapped by it.
type node struct {
	net  *Network
	ln   net.Listener
	addr string
}

func newNode(t *testing.T, id string) *node {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := New(id)
	ln := n.Listen(raw)
	t.Cleanup(func() { ln.Close() })
	return &node{net: n, ln: ln, addr: raw.Addr().String()}
}

// know tells each node the other's address, as cluster.Open does with the
// initial cluster.
func know(nodes ...*node) {
	for _, a := range nodes {
		for _, b := range nodes {
			if a != b {
				a.net.SetPeerAddr(b.addr, b.net.Self())
			}
		}
	}
}

// connect dials from a to b (with the preamble) and returns both ends: the
// dialled conn on a and the accepted conn on b. The accepted end has not
// read the preamble yet; it does so on first use.
func connect(t *testing.T, a, b *node) (client, server net.Conn) {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := b.ln.Accept()
		ch <- accepted{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	client, err := a.net.Dial(ctx, b.addr, true)
	if err != nil {
		t.Fatalf("dial %s -> %s: %v", a.net.Self(), b.net.Self(), err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case acc := <-ch:
		if acc.err != nil {
			t.Fatal(acc.err)
		}
		t.Cleanup(func() { acc.c.Close() })
		return client, acc.c
	case <-time.After(waitFor):
		t.Fatal("accept did not return")
	}
	return nil, nil
}

// result of an I/O call made in the background.
type ioResult struct {
	n   int
	err error
}

func goWrite(c net.Conn, b []byte) <-chan ioResult {
	ch := make(chan ioResult, 1)
	go func() {
		n, err := c.Write(b)
		ch <- ioResult{n, err}
	}()
	return ch
}

func goRead(c net.Conn, b []byte) <-chan ioResult {
	ch := make(chan ioResult, 1)
	go func() {
		n, err := io.ReadFull(c, b)
		ch <- ioResult{n, err}
	}()
	return ch
}

// await waits (with the generous bound) for a background call to return.
func await(t *testing.T, ch <-chan ioResult, what string) ioResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatalf("%s did not return within %v", what, waitFor)
	}
	return ioResult{}
}

// stillBlocked checks that a background call has not returned yet. It
// cannot prove a call blocks forever; it catches one that does not block.
func stillBlocked(t *testing.T, ch <-chan ioResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%d, %v) while it should be held", what, r.n, r.err)
	case <-time.After(100 * time.Millisecond):
	}
}

// expectBytes reads exactly len(want) bytes from c and compares them.
func expectBytes(t *testing.T, c net.Conn, want []byte) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	defer c.SetReadDeadline(time.Time{})
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading %q: %v (got %q)", want, err, got)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// expectClosedByPeer checks that the other end of c went away: a read
// returns EOF or a reset, not data and not a timeout.
func expectClosedByPeer(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitFor))
	defer c.SetReadDeadline(time.Time{})
	var buf [64]byte
	n, err := c.Read(buf[:])
	if err == nil {
		t.Fatalf("read %q from a connection that should have been severed", buf[:n])
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection was not severed: read timed out (%v)", err)
	}
}

// expectCutTimeout checks err is what a cut link gives at a deadline.
func expectCutTimeout(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s succeeded through a cut link", what)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("%s: %v (%T) is not a net.Error timeout", what, err, err)
	}
	if !errors.Is(err, ErrCut) {
		t.Fatalf("%s: %v is not ErrCut", what, err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: %v is not os.ErrDeadlineExceeded", what, err)
	}
}

func cut(peer string, d Direction) Rules {
	return Rules{Rules: []Rule{{Peer: peer, Direction: d, Cut: true}}}
}

func mustSetRules(t *testing.T, n *Network, rs Rules) {
	t.Helper()
	if err := n.SetRules(rs); err != nil {
		t.Fatalf("SetRules(%+v): %v", rs, err)
	}
}
