package peerlink

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// accept returns the next connection of ln, or fails after 5 s.
func accept(t *testing.T, ln net.Listener) (net.Conn, error) {
	t.Helper()
	return acceptWithin(t, ln, 5*time.Second)
}

// acceptWithin returns the next connection of ln, or fails after d.
func acceptWithin(t *testing.T, ln net.Listener, d time.Duration) (net.Conn, error) {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-time.After(d):
		return nil, fmt.Errorf("nothing accepted in %s", d)
	}
}

// TestListenerSplitsChannels: each dialled channel arrives on its own
// listener, with the caller's id.
func TestListenerSplitsChannels(t *testing.T) {
	for name, network := range map[string]func(string) *faultnet.Network{"plain": faultnet.Plain, "fault layer": faultnet.New} {
		t.Run(name, func(t *testing.T) { testSplitsChannels(t, network) })
	}
}

func testSplitsChannels(t *testing.T, network func(string) *faultnet.Network) {
	l := listen(t, Config{Network: network("n1")})
	caller := Config{Network: network("n2")}
	for _, tc := range []struct {
		ch Channel
		ln net.Listener
	}{{ChannelRaft, l.Raft()}, {ChannelRPC, l.RPC()}} {
		out, err := Dial(ctxFor(t, 5*time.Second), caller, l.Addr().String(), tc.ch)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		in, err := accept(t, tc.ln)
		if err != nil {
			t.Fatalf("channel %c: %v", tc.ch, err)
		}
		defer in.Close()
		if pc, ok := in.(*Conn); !ok || pc.Peer != "n2" {
			t.Fatalf("channel %c: accepted %T %+v, want a *Conn from n2", tc.ch, in, in)
		}
		// The connection is clean past the handshake, both ways.
		go out.Write([]byte("ping"))
		b := make([]byte, 4)
		if _, err := io.ReadFull(in, b); err != nil || string(b) != "ping" {
			t.Fatalf("channel %c: read %q %v", tc.ch, b, err)
		}
	}
}

// TestListenerRefusesStrangers: a connection that does not open like a
// peer's, or comes from a node Admit refuses, is closed and reaches
// neither channel.
func TestListenerRefusesStrangers(t *testing.T) {
	admitted := map[string]bool{"n2": true}
	l := listen(t, Config{Network: faultnet.Plain("n1"), Admit: func(id string) error {
		if !admitted[id] {
			return fmt.Errorf("%q is not a member", id)
		}
		return nil
	}})
	delivered := make(chan net.Conn, 8)
	for _, ln := range []net.Listener{l.Raft(), l.RPC()} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				delivered <- c
			}
		}()
	}
	raw := func(b []byte) {
		t.Helper()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err == nil || n > 0 {
			t.Fatalf("%q: the port answered instead of closing the connection", b)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("%q: the port held the connection open", b)
		}
	}
	raw([]byte("GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n\r\n"))
	raw([]byte("TRP1\x02n2X\x00"))                  // unknown channel
	raw(append([]byte("TRP1\x02n3"), 'H', 0))       // not a member
	raw(append([]byte("TRP1\x02n3"), 'R', 0, 1, 2)) // not a member, Raft
	raw(append([]byte("TRP1\x02n2"), 'H', 200))     // a cluster id past the limit
	if _, err := Dial(ctxFor(t, 5*time.Second), Config{Network: faultnet.Plain("n9")}, l.Addr().String(), ChannelRPC); err != nil {
		t.Fatal(err) // the refusal comes after the dial, as a closed connection
	}
	select {
	case c := <-delivered:
		t.Fatalf("a stranger's connection reached a channel: %+v", c)
	case <-time.After(300 * time.Millisecond):
	}
	// A member still gets in.
	if _, err := Dial(ctxFor(t, 5*time.Second), Config{Network: faultnet.Plain("n2")}, l.Addr().String(), ChannelRPC); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-delivered:
		if c.(*Conn).Peer != "n2" {
			t.Fatalf("delivered %+v", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a member's connection was not delivered")
	}
}

// TestListenerReportsFailure: a socket that dies underneath is reported
// once, and both channels fail instead of waiting forever.
func TestListenerReportsFailure(t *testing.T) {
	faults := make(chan error, 2)
	l, err := Listen("127.0.0.1:0", Config{Network: faultnet.Plain("n1")}, func(err error) { faults <- err })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.InjectFailure(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-faults:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("fault %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dead socket was not reported")
	}
	for _, ln := range []net.Listener{l.Raft(), l.RPC()} {
		if _, err := accept(t, ln); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept on a dead port: %v", err)
		}
	}
	// Closing on purpose is not a fault.
	l2, err := Listen("127.0.0.1:0", Config{Network: faultnet.Plain("n1")}, func(err error) { faults <- err })
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	select {
	case err := <-faults:
		t.Fatalf("Close reported a fault: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestClusterIDMustMatch: a caller from another cluster is refused; a
// caller or a callee that has no cluster id yet (a new node being added)
// is not.
func TestClusterIDMustMatch(t *testing.T) {
	var ours atomic.Value
	ours.Store("c-ours")
	l := listen(t, Config{Network: faultnet.Plain("n1"), ClusterID: func() string { return ours.Load().(string) }})
	delivered := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.RPC().Accept()
			if err != nil {
				return
			}
			delivered <- c
		}
	}()
	dial := func(id string) bool {
		t.Helper()
		c, err := Dial(ctxFor(t, 5*time.Second), Config{Network: faultnet.Plain("n2"), ClusterID: func() string { return id }}, l.Addr().String(), ChannelRPC)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		select {
		case in := <-delivered:
			in.Close()
			return true
		case <-time.After(time.Second):
			return false
		}
	}
	if dial("c-other") {
		t.Fatal("a caller from another cluster was delivered")
	}
	for _, id := range []string{"c-ours", ""} {
		if !dial(id) {
			t.Fatalf("caller with cluster id %q refused", id)
		}
	}
	ours.Store("")
	if !dial("c-other") {
		t.Fatal("a node without a cluster id refused a caller")
	}
}
