package actors

import (
	"context"
	"sync"
	"time"
)

// readBatcher lets the linearizable reads a follower serves share the
// read-index requests it sends the leader: while one request is in flight,
// reads that arrive wait for the next one, which then serves them all. A
// read only ever uses an index obtained by a request that started after
// the read did — that is what keeps it linearizable.
type readBatcher struct {
	fetch   func(ctx context.Context, addr string) (uint64, error)
	timeout time.Duration

	mu       sync.Mutex
	next     *readBatch // collecting waiters, not started yet
	inflight bool
}

type readBatch struct {
	addr  string
	done  chan struct{}
	index uint64
	err   error
}

// get returns a read index from the leader at addr that was obtained after
// the call began.
func (b *readBatcher) get(ctx context.Context, addr string) (uint64, error) {
	b.mu.Lock()
	r := b.next
	if r == nil {
		r = &readBatch{addr: addr, done: make(chan struct{})}
		b.next = r
	}
	if !b.inflight {
		b.inflight = true
		b.next = nil
		go b.run(r)
	}
	b.mu.Unlock()
	select {
	case <-r.done:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run fetches for one batch, then starts the batch that gathered meanwhile.
func (b *readBatcher) run(r *readBatch) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		r.index, r.err = b.fetch(ctx, r.addr)
		cancel()
		close(r.done)
		b.mu.Lock()
		r = b.next
		b.next = nil
		if r == nil {
			b.inflight = false
		}
		b.mu.Unlock()
	}
}
