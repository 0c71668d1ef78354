package faultnet

import (
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fates sends count one-byte messages a -> b, each on a fresh connection,
// and reports which arrived.
func fates(t *testing.T, a, b *node, count int) []bool {
	t.Helper()
	out := make([]bool, count)
	for i := range out {
		client, server := connect(t, a, b)
		if _, err := client.Write([]byte{byte(i)}); err != nil {
			t.Fatalf("a dropped write must look sent: %v", err)
		}
		_ = server.SetReadDeadline(time.Now().Add(waitFor))
		buf := make([]byte, 1)
		_, err := io.ReadFull(server, buf)
		out[i] = err == nil && buf[0] == byte(i)
		client.Close()
		server.Close()
	}
	return out
}

// TestDropLosesMessagesAtTheRateAndBreaksTheConn: with drop 0.3 about 30%
// of messages vanish (the sender is told they went), the receiver sees the
// connection end instead, and the fates repeat exactly under the same seed.
func TestDropLosesMessagesAtTheRateAndBreaksTheConn(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	rules := Rules{Seed: 7, Rules: []Rule{{Peer: "b", Direction: Out, Drop: 0.3}}}
	mustSetRules(t, a.net, rules)
	first := fates(t, a, b, 200)
	lost := 0
	for _, ok := range first {
		if !ok {
			lost++
		}
	}
	if lost < 35 || lost > 85 {
		t.Fatalf("%d of 200 messages lost with drop 0.3", lost)
	}
	mustSetRules(t, a.net, rules)
	if again := fates(t, a, b, 200); !equalBools(again, first) {
		t.Fatal("the same seed gave different fates")
	}
	mustSetRules(t, a.net, Rules{Seed: 8, Rules: rules.Rules})
	if other := fates(t, a, b, 200); equalBools(other, first) {
		t.Fatal("seeds 7 and 8 gave identical fates")
	}

	// After a lost message the sender's conn is broken too.
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "b", Direction: Out, Drop: 1}}})
	client, _ := connect(t, a, b)
	if _, err := client.Write([]byte("gone")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("next")); err == nil {
		t.Fatal("writing after a lost message succeeded")
	}
}

func equalBools(x, y []bool) bool {
	if len(x) != len(y) {
		return false
	}
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

// TestInboundDropResetsTheReader: an "in" drop loses the message on arrival
// and the reader sees a connection reset.
func TestInboundDropResetsTheReader(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	mustSetRules(t, b.net, Rules{Rules: []Rule{{Peer: "a", Direction: In, Drop: 1}}})
	client, server := connect(t, a, b)
	if _, err := client.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	_ = server.SetReadDeadline(time.Now().Add(waitFor))
	buf := make([]byte, 8)
	n, err := server.Read(buf)
	if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after an inbound drop: %d %v", n, err)
	}
}

// TestBandwidthCapsThroughput: 64 KiB through a 32 KiB/s link takes about
// two seconds minus the bucket's initial burst; uncapped it is instant, and
// the bytes arrive intact either way.
func TestBandwidthCapsThroughput(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	payload := []byte(strings.Repeat("0123456789abcdef", 4096)) // 64 KiB
	send := func() time.Duration {
		client, server := connect(t, a, b)
		start := time.Now()
		go func() { _, _ = client.Write(payload) }()
		got := make([]byte, len(payload))
		_ = server.SetReadDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.ReadFull(server, got); err != nil {
			t.Fatal(err)
		}
		if string(got) != string(payload) {
			t.Fatal("throttled bytes arrived corrupted")
		}
		return time.Since(start)
	}
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "b", Direction: Out, Bandwidth: 32 << 10}}})
	// 64 KiB at 32 KiB/s with a 3.2 KiB burst cannot finish in under 1.5 s.
	if d := send(); d < 1500*time.Millisecond {
		t.Fatalf("64 KiB over a 32 KiB/s link took %s", d)
	}
	mustSetRules(t, a.net, Rules{})
	if d := send(); d > waitFor {
		t.Fatalf("uncapped transfer took %s", d)
	}
}

// TestBandwidthWaitEndsOnClose: a write waiting for tokens returns when the
// conn is closed.
func TestBandwidthWaitEndsOnClose(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "b", Direction: Out, Bandwidth: 1024}}})
	client, _ := connect(t, a, b)
	done := make(chan error, 1)
	go func() {
		_, err := client.Write(make([]byte, 64<<10)) // a minute at 1 KiB/s
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	client.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("write finished despite the cap")
		}
	case <-time.After(waitFor):
		t.Fatal("a throttled write ignored Close")
	}
}

func TestValidateLossAndBandwidth(t *testing.T) {
	bad := []Rule{
		{Peer: "*", Direction: Out, Drop: -0.1},
		{Peer: "*", Direction: Out, Drop: 1.5},
		{Peer: "*", Direction: Out, Bandwidth: -1},
		{Peer: "*", Direction: Out, Bandwidth: 100},
	}
	for _, r := range bad {
		if err := (Rules{Rules: []Rule{r}}).Validate(); err == nil {
			t.Errorf("rule %+v accepted", r)
		}
	}
	for _, r := range []Rule{{Peer: "*", Direction: Both, Drop: 0.05}, {Peer: "x", Direction: In, Bandwidth: 1 << 20}} {
		if err := (Rules{Rules: []Rule{r}}).Validate(); err != nil {
			t.Errorf("rule %+v refused: %v", r, err)
		}
	}
	var _ net.Conn = (*conn)(nil)
}
