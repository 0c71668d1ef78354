package faultnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// Rules are installed before a connection is made in these tests: SetRules
// severs existing connections to every peer it names, so a rule only ever
// governs connections made (or identified) after it.

func TestOutCutHoldsWriteUntilDeadline(t *testing.T) {
	a, l := newNode(t, "a"), newNode(t, "l")
	know(a, l)
	mustSetRules(t, l.net, cut("a", Out))
	client, server := connect(t, a, l)

	_ = server.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := server.Write([]byte("never"))
	expectCutTimeout(t, err, "write to a over an out cut")
	if n != 0 {
		t.Fatalf("write over a cut reported %d bytes written", n)
	}
	_ = server.SetWriteDeadline(time.Time{})

	// Nothing reached a; a is not cut, so its read times out plainly.
	_ = client.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := client.Read(make([]byte, 8)); err == nil || errors.Is(err, ErrCut) {
		t.Fatalf("a read %d bytes / %v; want a plain timeout", n, err)
	}
	_ = client.SetReadDeadline(time.Time{})

	// "out" only: what a sends still arrives.
	if _, err := client.Write([]byte("inbound ok")); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, server, []byte("inbound ok"))
}

func TestInCutHoldsReadUntilDeadline(t *testing.T) {
	a, l := newNode(t, "a"), newNode(t, "l")
	know(a, l)
	// An "in" cut does not stop a from dialling l, only from hearing it.
	mustSetRules(t, a.net, cut("l", In))
	client, server := connect(t, a, l)

	if _, err := server.Write([]byte("unheard")); err != nil {
		t.Fatal(err)
	}
	_ = client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := client.Read(make([]byte, 8))
	expectCutTimeout(t, err, "read from l over an in cut")
	_ = client.SetReadDeadline(time.Time{})

	if _, err := client.Write([]byte("outbound ok")); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, server, []byte("outbound ok"))
}

func TestBothCutHoldsEverything(t *testing.T) {
	a, l := newNode(t, "a"), newNode(t, "l")
	know(a, l)
	mustSetRules(t, l.net, cut("a", Both))
	_, server := connect(t, a, l)

	_ = server.SetDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := server.Read(make([]byte, 1))
	expectCutTimeout(t, err, "read")
	_, err = server.Write([]byte("x"))
	expectCutTimeout(t, err, "write")

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if c, err := l.net.Dial(ctx, a.addr, true); err == nil {
		c.Close()
		t.Fatal("l dialled a through a both-ways cut")
	}
}

// TestAnyPeerMatchesUnknownPeers: "*" isolates a node from everyone,
// including addresses it has no node id for (e.g. a joiner's).
func TestAnyPeerMatchesUnknownPeers(t *testing.T) {
	a, b, stranger := newNode(t, "a"), newNode(t, "b"), newNode(t, "s")
	know(a, b) // a has no id for stranger's address
	mustSetRules(t, a.net, cut(AnyPeer, Out))
	for _, addr := range []string{b.addr, stranger.addr} {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		c, err := a.net.Dial(ctx, addr, true)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("dial to %s (peer %q) went through a * cut", addr, a.net.PeerOf(addr))
		}
	}

	// "*" also holds inbound traffic from callers a knows nothing about.
	mustSetRules(t, a.net, cut(AnyPeer, In))
	_, server := connect(t, stranger, a)
	_ = server.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := server.Read(make([]byte, 1))
	expectCutTimeout(t, err, "read from a stranger under a * cut")
}

func TestRuleForOnePeerSparesOthers(t *testing.T) {
	a, x, y, stranger := newNode(t, "a"), newNode(t, "x"), newNode(t, "y"), newNode(t, "s")
	know(a, x, y)
	mustSetRules(t, a.net, cut("x", Both))

	for _, other := range []*node{y, stranger} {
		client, server := connect(t, a, other)
		if _, err := client.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		expectBytes(t, server, []byte("ping"))
		if _, err := server.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		expectBytes(t, client, []byte("pong"))
	}
	// y calling a is not held either.
	client, server := connect(t, y, a)
	if _, err := client.Write([]byte("hi a")); err != nil {
		t.Fatal(err)
	}
	expectBytes(t, server, []byte("hi a"))

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if c, err := a.net.Dial(ctx, x.addr, true); err == nil {
		c.Close()
		t.Fatal("dial to x went through its cut")
	}
}

// TestDialToCutPeerReturnsCtxError: a dial held by a cut gives up when its
// context does, and says so with the context's error, as net.Dialer does.
//
// BUG: Dial waits on its own timer for the ctx deadline and returns the
// cut's net.OpError when that timer wins the race against the context's
// (about half the time), so errors.Is(err, context.DeadlineExceeded) fails.
// Many short dials make the race show deterministically.
func TestDialToCutPeerReturnsCtxError(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	mustSetRules(t, a.net, cut("b", Out))

	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() {
		_, err := a.net.Dial(ctx, b.addr, true)
		ch <- err
	}()
	select {
	case err := <-ch:
		t.Fatalf("dial returned %v before its ctx ended", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-ch:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled dial: %v, want context.Canceled", err)
		}
	case <-time.After(waitFor):
		t.Fatal("cancelling the ctx did not end the dial")
	}

	start := time.Now()
	var wrong []string
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		c, err := a.net.Dial(ctx, b.addr, true)
		cancel()
		if err == nil {
			c.Close()
			t.Fatal("dial went through a cut")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			wrong = append(wrong, fmt.Sprintf("%T %v", err, err))
		}
	}
	if time.Since(start) > waitFor {
		t.Fatalf("200 dials with 1ms deadlines took %v", time.Since(start))
	}
	if len(wrong) > 0 {
		t.Fatalf("%d of 200 dials that hit their ctx deadline did not return the ctx error; first: %s", len(wrong), wrong[0])
	}
}

// TestDialToCutPeerProceedsWhenHealed: a held dial goes through once the
// cut is lifted, and the link then carries data intact and in order.
func TestDialToCutPeerProceedsWhenHealed(t *testing.T) {
	a, b := newNode(t, "a"), newNode(t, "b")
	know(a, b)
	mustSetRules(t, a.net, cut("b", Both))

	ctx, cancel := context.WithTimeout(context.Background(), 2*waitFor)
	defer cancel()
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := a.net.Dial(ctx, b.addr, true)
		ch <- dialed{c, err}
	}()
	select {
	case d := <-ch:
		t.Fatalf("dial through a cut returned %v, %v", d.c, d.err)
	case <-time.After(100 * time.Millisecond):
	}
	mustSetRules(t, a.net, Rules{})
	var client net.Conn
	select {
	case d := <-ch:
		if d.err != nil {
			t.Fatalf("dial after heal: %v", d.err)
		}
		client = d.c
		defer client.Close()
	case <-time.After(waitFor):
		t.Fatal("healing did not release the held dial")
	}
	server, err := b.ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()

	done := make(chan error, 1)
	go func() {
		for i := 0; i < 500; i++ {
			if _, err := fmt.Fprintf(client, "m%04d;", i); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 500; i++ {
		expectBytes(t, server, fmt.Appendf(nil, "m%04d;", i))
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHealReleasesHeldWrite: lifting a cut wakes a Write it held, and the
// link is severed as SetRules documents ("as after a network flap"). The
// held bytes are either delivered whole before the sever or not at all;
// nothing partial or reordered reaches the peer.
func TestHealReleasesHeldWrite(t *testing.T) {
	delivered := 0
	defer func() { t.Logf("held write delivered before the sever in %d of 10 runs", delivered) }()
	for i := 0; i < 10; i++ {
		a, l := newNode(t, "a"), newNode(t, "l")
		know(a, l)
		mustSetRules(t, l.net, cut("a", Out))
		client, server := connect(t, a, l)

		msg := []byte("held-message")
		w := goWrite(server, msg)
		stillBlocked(t, w, "write over a cut")
		mustSetRules(t, l.net, Rules{})
		r := await(t, w, "held write after heal")

		_ = client.SetReadDeadline(time.Now().Add(waitFor))
		got, err := io.ReadAll(client)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("a's link to l was not severed by the heal (read %q)", got)
		}
		switch {
		case r.err == nil && r.n == len(msg):
			if string(got) != string(msg) {
				t.Fatalf("write reported success; a read %q, want %q", got, msg)
			}
			delivered++
		case r.err != nil:
			if len(got) != 0 && string(got) != string(msg) {
				t.Fatalf("write failed (%v) but a read partial data %q", r.err, got)
			}
		default:
			t.Fatalf("held write returned %d, %v", r.n, r.err)
		}
	}
}

// TestSetRulesSeversAffectedConnsOnly: a rule change closes the links to
// the peers named in the old or new rules (the other end sees the stream
// end) and leaves the others alone.
func TestSetRulesSeversAffectedConnsOnly(t *testing.T) {
	a, b, c, d := newNode(t, "a"), newNode(t, "b"), newNode(t, "c"), newNode(t, "d")
	know(a, b, c, d)
	ab, ba := connect(t, a, b) // dialled by a
	ac, ca := connect(t, a, c) // dialled by a
	da, ad := connect(t, d, a) // accepted by a
	roundTrip := func(x, y net.Conn, what string) {
		t.Helper()
		msg := []byte("still up: " + what)
		if _, err := x.Write(msg); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		expectBytes(t, y, msg)
	}
	roundTrip(ab, ba, "a->b")
	roundTrip(ac, ca, "a->c")
	roundTrip(da, ad, "d->a") // identifies d on a's side
	roundTrip(ad, da, "a->d")

	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "b", Direction: Out, Delay: Duration(time.Millisecond)}}})
	expectClosedByPeer(t, ba)
	if _, err := ab.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a's severed conn: %v, want net.ErrClosed", err)
	}
	roundTrip(ac, ca, "a->c after b's rule")
	roundTrip(da, ad, "d->a after b's rule")

	// d is named by the new rules: its accepted conn goes. c stays.
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "d", Direction: In, Delay: Duration(time.Millisecond)}}})
	expectClosedByPeer(t, da)
	roundTrip(ac, ca, "a->c after d's rule")

	// "*" names everyone.
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: AnyPeer, Direction: Out, Delay: Duration(time.Millisecond)}}})
	expectClosedByPeer(t, ca)

	// Rules that keep naming only other peers leave a link alone.
	_, ea := connect(t, a, newNodeKnown(t, "e", a))
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "b", Direction: Out, Cut: true}}}) // old "*": severs all
	expectClosedByPeer(t, ea)
	af, fa := connect(t, a, newNodeKnown(t, "f", a))
	mustSetRules(t, a.net, Rules{Rules: []Rule{{Peer: "c", Direction: Out, Cut: true}}}) // old b, new c
	roundTrip(af, fa, "a->f after b's and c's rules")
}

// newNodeKnown makes a node whose address a knows.
func newNodeKnown(t *testing.T, id string, a *node) *node {
	n := newNode(t, id)
	know(a, n)
	return n
}

// TestCloseWakesHeldCalls: closing a conn whose Read and Write a cut holds
// (with no deadline) makes both return at once, so nothing leaks.
func TestCloseWakesHeldCalls(t *testing.T) {
	a, l := newNode(t, "a"), newNode(t, "l")
	know(a, l)
	mustSetRules(t, l.net, cut("a", Both))
	_, server := connect(t, a, l)

	r := goRead(server, make([]byte, 4))
	w := goWrite(server, []byte("held"))
	stillBlocked(t, r, "read over a cut")
	stillBlocked(t, w, "write over a cut")
	server.Close()
	for what, ch := range map[string]<-chan ioResult{"read": r, "write": w} {
		res := await(t, ch, what+" after Close")
		if !errors.Is(res.err, net.ErrClosed) {
			t.Fatalf("%s after Close: %v, want net.ErrClosed", what, res.err)
		}
	}
	l.net.mu.Lock()
	left := len(l.net.conns)
	l.net.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d conns still registered after Close", left)
	}
}
