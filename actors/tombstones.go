package actors

import (
	"time"
)

// DefaultTombstoneTTL is how long a deleted key's tombstone is kept before
// the leader has it reaped, as Consul's tombstone_ttl.
const DefaultTombstoneTTL = 15 * time.Minute

// tombstoneBatch bounds the tombstones one reap command removes, so one
// entry never holds the state machine for long; a reap that stops at it
// is proposed again at the next tick.
const tombstoneBatch = 20000

// tombstoneClock is the leader's clock for tombstones, kept by the raft
// actor: tombstones carry only the index of their delete, and how old an
// index is only this node can tell, on its own monotonic clock. It notes
// the KV-wide index every so often; a note taken at least ttl ago says
// that every delete up to its index happened at least ttl ago, so those
// tombstones may go. A node that becomes leader starts with no notes,
// so after a change of leader tombstones live up to one ttl longer, never
// less.
type tombstoneClock struct {
	ttl   time.Duration
	every time.Duration // how often a note is taken
	notes []tombstoneNote
	// reaped is the highest index every tombstone up to which is gone
	// (as far as this leader knows); busy while a reap is on its way.
	reaped uint64
	busy   bool
}

type tombstoneNote struct {
	at    time.Time
	index uint64
}

func newTombstoneClock(ttl time.Duration) *tombstoneClock {
	return &tombstoneClock{ttl: ttl, every: min(30*time.Second, max(ttl/8, time.Second))}
}

// reset forgets every note: this node stopped leading.
func (c *tombstoneClock) reset() {
	c.notes, c.reaped, c.busy = nil, 0, false
}

// tick notes kvIndex when a note is due and returns the index up to which
// tombstones are old enough to reap, 0 when there is nothing new to reap.
func (c *tombstoneClock) tick(now time.Time, kvIndex uint64) uint64 {
	if c.ttl <= 0 {
		return 0
	}
	if n := len(c.notes); n == 0 || now.Sub(c.notes[n-1].at) >= c.every {
		c.notes = append(c.notes, tombstoneNote{now, kvIndex})
	}
	// The newest note at least ttl old; older ones are of no more use.
	old := -1
	for i, n := range c.notes {
		if now.Sub(n.at) >= c.ttl {
			old = i
		}
	}
	if old < 0 {
		return 0
	}
	upTo := c.notes[old].index
	c.notes = c.notes[old:]
	if upTo <= c.reaped || c.busy {
		return 0
	}
	return upTo
}

// done records a reap's answer: complete (every tombstone up to upTo is
// gone) or stopped at its batch, to be proposed again.
func (c *tombstoneClock) done(upTo uint64, complete bool) {
	c.busy = false
	if complete {
		c.reaped = max(c.reaped, upTo)
	}
}
