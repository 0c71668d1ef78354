// Package timeline keeps what the web console shows of one node's recent
// past: a bounded log of events (leader changes, peer verdicts, actor
// restarts, fault rules, integrity and alarm changes) that a client can
// follow with Consul-style blocking queries, and a bounded history of the
// failure detector's phi for every peer. Both live in memory only: a
// restarted node starts both afresh, which a reader sees as its index
// going backwards (and reads everything again, as Consul's clients do
// when X-Consul-Index goes down).
package timeline

import (
	"context"
	"math"
	"sync"
	"time"
)

// The kinds of events.
const (
	KindLeader    = "leader"    // the leader this node follows changed
	KindPeer      = "peer"      // the failure detector's verdict on a peer changed
	KindActor     = "actor"     // a supervisor restarted or stopped an actor
	KindFault     = "fault"     // this node's fault rules changed, or a crash was injected
	KindIntegrity = "integrity" // this node's verdict on its own state changed
	KindAlarm     = "alarm"     // an alarm was raised or cleared
	KindNode      = "node"      // this node started recording
)

// Event is one thing that happened, as the node that recorded it saw it.
type Event struct {
	// Index orders the events of one node; it starts at 1 when the node
	// starts.
	Index uint64    `json:"index"`
	At    time.Time `json:"at"`
	// Node is the node that recorded the event.
	Node string `json:"node"`
	Kind string `json:"kind"`
	// Subject is what the event is about: a peer, an actor, an alarm.
	Subject string `json:"subject,omitempty"`
	From    string `json:"from,omitempty"`
	To      string `json:"to,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// Log is a bounded log of events: past its capacity the oldest go.
type Log struct {
	node string

	mu      sync.Mutex
	ring    []Event // ring[(first+i)%cap] is the i-th oldest kept
	first   int
	n       int
	last    uint64
	changed chan struct{} // closed and replaced at each Add
}

// NewLog returns an empty log of events recorded by node, keeping the
// newest capacity of them (at least 1).
func NewLog(node string, capacity int) *Log {
	return &Log{node: node, ring: make([]Event, max(capacity, 1)), changed: make(chan struct{})}
}

// Add records e, stamping its index, its node and (if unset) its time,
// and wakes every waiter.
func (l *Log) Add(e Event) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.Node = l.node
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last++
	e.Index = l.last
	if l.n < len(l.ring) {
		l.ring[(l.first+l.n)%len(l.ring)] = e
		l.n++
	} else {
		l.ring[l.first] = e
		l.first = (l.first + 1) % len(l.ring)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// Since returns the kept events after index, oldest first, and the index
// of the newest event. An index beyond the newest (a client that knew
// this node before it restarted) gets every kept event.
func (l *Log) Since(index uint64) ([]Event, uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	evs, last, _ := l.sinceLocked(index)
	return evs, last
}

func (l *Log) sinceLocked(index uint64) ([]Event, uint64, <-chan struct{}) {
	if index > l.last {
		index = 0
	}
	out := []Event{}
	for i := 0; i < l.n; i++ {
		e := l.ring[(l.first+i)%len(l.ring)]
		if e.Index > index {
			out = append(out, e)
		}
	}
	return out, l.last, l.changed
}

// Wait is Since as a blocking query: when nothing is newer than index it
// waits for an event, or until ctx ends, and then answers as Since.
// index 0 never waits.
func (l *Log) Wait(ctx context.Context, index uint64) ([]Event, uint64) {
	l.mu.Lock()
	evs, last, changed := l.sinceLocked(index)
	l.mu.Unlock()
	if index == 0 || len(evs) > 0 {
		return evs, last
	}
	select {
	case <-changed:
	case <-ctx.Done():
	}
	return l.Since(index)
}

// Sample is one reading of the failure detector's phi for a peer, and its
// verdict then. T is milliseconds since the Unix epoch, to keep a history
// of hundreds of samples small on the wire.
type Sample struct {
	T     int64   `json:"t"`
	Phi   float64 `json:"phi"`
	State string  `json:"state"`
}

// PhiHistory keeps the newest samples of every peer's phi, at most
// capacity per peer. Peers not sampled for a whole capacity of readings
// (removed members) are dropped.
type PhiHistory struct {
	capacity int

	mu    sync.Mutex
	peers map[string][]Sample
	seen  map[string]int // readings since the peer was last in one
}

// NewPhiHistory returns an empty history keeping capacity samples (at
// least 1) per peer.
func NewPhiHistory(capacity int) *PhiHistory {
	return &PhiHistory{capacity: max(capacity, 1), peers: map[string][]Sample{}, seen: map[string]int{}}
}

// Record adds one reading of every peer, taken at at.
func (h *PhiHistory) Record(at time.Time, phi map[string]float64, state map[string]string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for id, p := range phi {
		h.addLocked(id, at, p, state[id])
	}
	for id := range h.peers {
		if _, ok := phi[id]; ok {
			continue
		}
		if h.seen[id]++; h.seen[id] >= h.capacity {
			delete(h.peers, id)
			delete(h.seen, id)
		}
	}
}

// Add adds one reading of one peer, between the regular ones: a change
// of verdict, so that a spell shorter than the sampling interval still
// shows.
func (h *PhiHistory) Add(id string, at time.Time, phi float64, state string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addLocked(id, at, phi, state)
}

func (h *PhiHistory) addLocked(id string, at time.Time, p float64, state string) {
	if math.IsNaN(p) || math.IsInf(p, 0) {
		// JSON has no infinity; the detector's ceiling will do.
		p = math.MaxFloat32
	}
	s := append(h.peers[id], Sample{T: at.UnixMilli(), Phi: p, State: state})
	if len(s) > h.capacity {
		s = append(s[:0:0], s[len(s)-h.capacity:]...)
	}
	h.peers[id] = s
	h.seen[id] = 0
}

// Series returns a copy of every peer's samples, oldest first.
func (h *PhiHistory) Series() map[string][]Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]Sample, len(h.peers))
	for id, s := range h.peers {
		out[id] = append([]Sample(nil), s...)
	}
	return out
}
