// Package faultnet is the one layer every inter-node connection of a node
// goes through (Raft RPCs, leader forwarding, failure-detector pings), so
// that tests and the chaos suite can make the network misbehave on purpose:
// cut a link both ways or one way, lose, delay and reorder messages, and
// throttle bandwidth. With no rules it adds nothing but a small handshake
// that tells the receiver which peer is calling.
//
// A "message" is one write on a connection (Raft flushes one or more RPCs
// per write). TCP never loses a message quietly: a lost packet is resent,
// and if resending fails the connection breaks. faultnet's drop takes that
// harsher end: the message vanishes and its connection breaks, so both
// sides see errors and must reconnect and retry, as Raft and the forwarder
// do.
//
// Random choices (loss, jitter) are deterministic given the rule set's
// seed: the k-th message on the n-th connection to a peer since the rules
// were installed meets the same fate in every run.
//
// Rules are local to the node that holds them: "out" governs what this node
// sends to a peer, "in" what it accepts from that peer. Isolating a node
// therefore needs only a rule on that node ({"peer":"*","direction":"both",
// "cut":true}).
package faultnet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Direction says which way a rule acts, seen from the node holding it.
type Direction string

// Directions of a rule.
const (
	Out  Direction = "out"  // messages this node sends to the peer
	In   Direction = "in"   // messages this node receives from the peer
	Both Direction = "both" // either way
)

// AnyPeer in a rule's Peer field matches every peer.
const AnyPeer = "*"

// Rule is one fault on the links to one peer (or all peers).
type Rule struct {
	Peer      string    `json:"peer"`
	Direction Direction `json:"direction"`
	// Cut stops all messages: senders block until the rule is lifted or
	// their deadline passes, as on a link that silently drops everything.
	Cut bool `json:"cut,omitempty"`
	// Delay and Jitter hold each message back for Delay ± Jitter. Each
	// connection is delayed on its own, so messages reorder across
	// connections (never within one: TCP keeps order).
	Delay  Duration `json:"delay,omitempty"`
	Jitter Duration `json:"jitter,omitempty"`
	// Drop is the probability (0..1) that a message is lost, breaking its
	// connection.
	Drop float64 `json:"drop,omitempty"`
	// Bandwidth caps each link at this many bytes per second (0: no cap).
	Bandwidth int64 `json:"bandwidth,omitempty"`
}

// Rules is a node's whole fault set. Seed makes the random choices (jitter)
// repeatable, so a failing run can be replayed.
type Rules struct {
	Seed  uint64 `json:"seed"`
	Rules []Rule `json:"rules"`
}

// Duration is a time.Duration that reads and writes JSON as "50ms".
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON accepts "50ms", a number of nanoseconds, or null (zero).
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*d = 0
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("bad duration %q", s)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration must be a string like \"50ms\"")
	}
	*d = Duration(n)
	return nil
}

// Validate checks a rule set before it is installed.
func (rs Rules) Validate() error {
	for i, r := range rs.Rules {
		if r.Peer == "" {
			return fmt.Errorf("rule %d: peer is required (a node id or %q)", i, AnyPeer)
		}
		switch r.Direction {
		case Out, In, Both:
		default:
			return fmt.Errorf("rule %d: direction %q must be in, out or both", i, r.Direction)
		}
		if r.Delay < 0 || r.Jitter < 0 {
			return fmt.Errorf("rule %d: delay and jitter must not be negative", i)
		}
		if r.Jitter > r.Delay {
			return fmt.Errorf("rule %d: jitter %s must not exceed delay %s", i, time.Duration(r.Jitter), time.Duration(r.Delay))
		}
		if time.Duration(r.Delay) > time.Minute {
			return fmt.Errorf("rule %d: delay %s is above the 1m limit", i, time.Duration(r.Delay))
		}
		if r.Drop < 0 || r.Drop > 1 || r.Drop != r.Drop {
			return fmt.Errorf("rule %d: drop %v must be a probability from 0 to 1", i, r.Drop)
		}
		if r.Bandwidth < 0 {
			return fmt.Errorf("rule %d: bandwidth must not be negative", i)
		}
		if r.Bandwidth > 0 && r.Bandwidth < 1024 {
			return fmt.Errorf("rule %d: bandwidth %d B/s is below the 1024 B/s floor", i, r.Bandwidth)
		}
		if !r.Cut && r.Delay == 0 && r.Drop == 0 && r.Bandwidth == 0 {
			return fmt.Errorf("rule %d: does nothing (set cut, delay, drop or bandwidth)", i)
		}
	}
	return nil
}

// effect is what the rules say about one direction of one link.
type effect struct {
	cut           bool
	delay, jitter time.Duration
	drop          float64
	bandwidth     int64 // bytes/s, 0 = no cap
	limiter       *rate.Limiter
}

// Network applies one node's rules to its connections. A Network made by
// Plain has no fault layer at all: its connections are the operating
// system's, and it only introduces the caller to the listener.
type Network struct {
	self   string
	faults bool

	mu       sync.Mutex
	rules    Rules
	changed  chan struct{} // closed and replaced when rules change
	conns    map[*conn]struct{}
	byAddr   map[string]string        // peer address (raft or http) -> node id
	seq      map[string]uint64        // connections per peer since the rules changed
	limiters map[string]*rate.Limiter // per peer and direction
}

// ErrDisabled is returned when rules are set on a Network made by Plain.
var ErrDisabled = errors.New("faultnet: fault injection is off on this node (start it with chaos enabled)")

// New returns a Network for node self that can inject faults; it has no
// rules yet.
func New(self string) *Network {
	return &Network{
		self:     self,
		faults:   true,
		changed:  make(chan struct{}),
		conns:    map[*conn]struct{}{},
		byAddr:   map[string]string{},
		seq:      map[string]uint64{},
		limiters: map[string]*rate.Limiter{},
	}
}

// Plain returns a Network for node self without a fault layer, for nodes
// that run without chaos: dials and accepted connections are plain TCP but
// for the preamble, so the same listener serves both kinds of caller and a
// stray client is still refused.
func Plain(self string) *Network {
	n := New(self)
	n.faults = false
	return n
}

// Faults reports whether this Network can inject faults (see Plain).
func (n *Network) Faults() bool { return n.faults }

// linkRand is the random source for one connection: a function of the
// seed, the peer, the direction and the connection's number only.
func (n *Network) linkRand(peer string, d Direction, seq uint64) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(peer))
	h.Write([]byte{0})
	h.Write([]byte(d))
	return rand.New(rand.NewPCG(n.rules.Seed, h.Sum64()^(seq*0x9e3779b97f4a7c15)))
}

// Self is the node id this network belongs to.
func (n *Network) Self() string { return n.self }

// SetPeerAddr records that addr belongs to node id, so dials to addr obey
// the rules for id.
func (n *Network) SetPeerAddr(addr, id string) {
	if addr == "" || id == "" {
		return
	}
	n.mu.Lock()
	n.byAddr[addr] = id
	n.mu.Unlock()
}

// PeerOf names the node at addr, or "" if unknown.
func (n *Network) PeerOf(addr string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byAddr[addr]
}

// Rules returns the installed rule set.
func (n *Network) Rules() Rules {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rules
}

// SetRules installs a rule set (an empty one heals everything). Existing
// connections to every peer the old or new rules mention are closed, so
// each link starts over under the new rules, as after a network flap.
func (n *Network) SetRules(rs Rules) error {
	if !n.faults {
		if len(rs.Rules) == 0 {
			return nil
		}
		return ErrDisabled
	}
	if err := rs.Validate(); err != nil {
		return err
	}
	n.mu.Lock()
	affected := map[string]bool{}
	for _, r := range append(append([]Rule(nil), n.rules.Rules...), rs.Rules...) {
		affected[r.Peer] = true
	}
	n.rules = rs
	n.seq = map[string]uint64{}
	n.limiters = map[string]*rate.Limiter{}
	var doomed []*conn
	for c := range n.conns {
		if affected[AnyPeer] || affected[c.peer] {
			doomed = append(doomed, c)
			delete(n.conns, c)
		}
	}
	n.mu.Unlock()
	// Sever first, then wake the waiters: a message held by the old rules
	// must not slip out on a connection the new rules are about to close.
	for _, c := range doomed {
		c.Close()
	}
	n.mu.Lock()
	close(n.changed)
	n.changed = make(chan struct{})
	n.mu.Unlock()
	return nil
}

// Changed returns a channel that is closed at the next change of the
// rules, after the connections that change severs have been closed.
func (n *Network) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// effectFor merges the rules that apply to peer in direction d.
func (n *Network) effectFor(peer string, d Direction) (effect, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var e effect
	for _, r := range n.rules.Rules {
		if r.Peer != AnyPeer && r.Peer != peer {
			continue
		}
		if r.Direction != Both && r.Direction != d {
			continue
		}
		e.cut = e.cut || r.Cut
		e.delay = max(e.delay, time.Duration(r.Delay))
		e.jitter = max(e.jitter, time.Duration(r.Jitter))
		e.drop = max(e.drop, r.Drop)
		if r.Bandwidth > 0 && (e.bandwidth == 0 || r.Bandwidth < e.bandwidth) {
			e.bandwidth = r.Bandwidth
		}
	}
	if e.bandwidth > 0 {
		// One bucket per peer and direction, shared by its connections:
		// the cap is on the link, not on each connection.
		key := peer + "\x00" + string(d)
		l := n.limiters[key]
		if l == nil || int64(l.Limit()) != e.bandwidth {
			l = rate.NewLimiter(rate.Limit(e.bandwidth), burst(e.bandwidth))
			n.limiters[key] = l
		}
		e.limiter = l
	}
	return e, n.changed
}

// burst is a token bucket's depth: a tenth of a second of traffic, at least
// 1 KiB, so a capped link still moves data smoothly.
func burst(bw int64) int { return int(max(bw/10, 1024)) }

// pause returns how long to hold one message back, drawing jitter from rng.
func pause(e effect, rng *rand.Rand) time.Duration {
	if e.delay == 0 {
		return 0
	}
	if e.jitter == 0 {
		return e.delay
	}
	return e.delay - e.jitter + time.Duration(rng.Int64N(int64(2*e.jitter)+1))
}

// ErrCut is returned when a cut link makes an operation give up at its
// deadline.
var ErrCut = errors.New("faultnet: link is cut")

// waitWhileCut blocks while the link is cut in direction d, until the rules
// change to let it through, deadline passes (zero = no deadline) or done
// closes.
func (n *Network) waitWhileCut(done <-chan struct{}, peer string, d Direction, deadline time.Time) (effect, error) {
	for {
		e, changed := n.effectFor(peer, d)
		if !e.cut {
			return e, nil
		}
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-timeout:
			return e, &net.OpError{Op: string(d), Net: "tcp", Err: timeoutError{}}
		case <-done:
			return e, net.ErrClosed
		}
	}
}

// timeoutError is a net.Error timeout, so callers treat a cut link like a
// silent network rather than a refused connection.
type timeoutError struct{}

func (timeoutError) Error() string   { return ErrCut.Error() + ": i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(err error) bool {
	return err == ErrCut || err == os.ErrDeadlineExceeded
}

// Dial connects to addr (a peer's raft or HTTP address) under the rules for
// that peer. preamble, when true, sends this node's id first so the
// receiving Listener knows who is calling (Raft connections).
func (n *Network) Dial(ctx context.Context, addr string, preamble bool) (net.Conn, error) {
	if !n.faults {
		return n.dialPlain(ctx, addr, preamble)
	}
	peer := n.PeerOf(addr)
	// The context alone bounds the wait, so a cut dial always ends with the
	// context's own error.
	if _, err := n.waitWhileCut(ctx.Done(), peer, Out, time.Time{}); err != nil {
		return nil, ctx.Err()
	}
	raw, err := n.dialPlain(ctx, addr, preamble)
	if err != nil {
		return nil, err
	}
	c := newConn(raw, n, peer, false)
	n.register(c)
	return c, nil
}

// dialPlain connects and introduces this node, without a fault layer.
func (n *Network) dialPlain(ctx context.Context, addr string, preamble bool) (net.Conn, error) {
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if preamble {
		if err := writePreamble(raw, n.self); err != nil {
			raw.Close()
			return nil, err
		}
	}
	return raw, nil
}

// register tracks a live conn so a rule change can sever it, and gives it
// its own random sources.
func (n *Network) register(c *conn) {
	n.mu.Lock()
	seq := n.seq[c.peer]
	n.seq[c.peer] = seq + 1
	c.rngOut, c.rngIn = n.linkRand(c.peer, Out, seq), n.linkRand(c.peer, In, seq)
	n.conns[c] = struct{}{}
	n.mu.Unlock()
}

func (n *Network) unregister(c *conn) {
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
}

// Listen wraps a listener whose callers send a preamble (see Dial).
func (n *Network) Listen(ln net.Listener) net.Listener { return &listener{Listener: ln, net: n} }
