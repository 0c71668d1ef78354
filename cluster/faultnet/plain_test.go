package faultnet

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
)

// pair dials from one Network to another's listener (with the preamble)
// and returns both ends; mk makes each Network.
func pair(tb testing.TB, mk func(id string) *Network) (client, server net.Conn) {
	tb.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	a, b := mk("a"), mk("b")
	ln := b.Listen(raw)
	tb.Cleanup(func() { ln.Close() })
	a.SetPeerAddr(raw.Addr().String(), "b")
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = a.Dial(context.Background(), raw.Addr().String(), true)
	if err != nil {
		tb.Fatal(err)
	}
	server = <-accepted
	tb.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestPlainNetworkIsPlainTCP: without a fault layer the dialled end is the
// operating system's own connection, the accepted end only strips the
// preamble, and rules cannot be installed.
func TestPlainNetworkIsPlainTCP(t *testing.T) {
	client, server := pair(t, Plain)
	if _, ok := client.(*net.TCPConn); !ok {
		t.Fatalf("dialled conn is a %T, want *net.TCPConn", client)
	}
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v: the preamble was not stripped", buf, err)
	}
	n := Plain("a")
	if err := n.SetRules(Rules{Rules: []Rule{{Peer: "b", Direction: Both, Cut: true}}}); !errors.Is(err, ErrDisabled) {
		t.Fatalf("SetRules on a plain network: %v, want ErrDisabled", err)
	}
	if err := n.SetRules(Rules{}); err != nil {
		t.Fatalf("clearing the rules of a plain network: %v", err)
	}
	if n.Faults() || !New("a").Faults() {
		t.Fatal("Faults() does not tell the two kinds apart")
	}
}

// TestPlainStrayCallerRefused: a caller that does not introduce itself is
// refused by a plain listener too.
func TestPlainStrayCallerRefused(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Plain("b").Listen(raw)
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err == nil {
			c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 16)); err == nil {
		t.Fatal("a stray HTTP request was accepted as a peer")
	}
}

// BenchmarkRoundTrip sends 1 KiB back and forth over loopback: through a
// plain Network (chaos off), and through the fault layer with no rules
// (chaos on, nothing injected), to show what the layer costs and that
// chaos off costs nothing over plain TCP.
func BenchmarkRoundTrip(b *testing.B) {
	for _, kind := range []struct {
		name string
		mk   func(string) *Network
	}{{"plain", Plain}, {"faultnet-no-rules", New}} {
		b.Run(kind.name, func(b *testing.B) {
			client, server := pair(b, kind.mk)
			go func() { _, _ = io.Copy(server, server) }()
			msg, buf := make([]byte, 1024), make([]byte, 1024)
			b.SetBytes(int64(2 * len(msg)))
			b.ResetTimer()
			for range b.N {
				if _, err := client.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
