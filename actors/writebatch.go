package actors

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// writeBatcher carries a follower's forwarded writes to the leader in
// batches: the first write goes out at once, and writes that arrive while
// maxInFlight batches are on their way gather into the next one. Under load
// one HTTP exchange then carries many writes instead of one, which saves
// both nodes most of the per-request work; at low load nothing waits.
type writeBatcher struct {
	// sendOne carries a lone write (the common case at low load), send a
	// batch of several.
	sendOne     func(ctx context.Context, addr string, cmd []byte) (storage.Result, error)
	send        func(ctx context.Context, addr string, cmds [][]byte) ([]cluster.BatchItemReply, error)
	timeout     time.Duration
	maxInFlight int

	mu       sync.Mutex
	queue    []*pendingWrite
	inflight int
}

type pendingWrite struct {
	addr  string
	data  []byte
	done  chan struct{}
	taken bool // in a batch already (guarded by mu)
	res   storage.Result
	err   error
}

// apply forwards one encoded command to the leader at addr and returns its
// result, with the same outcome rules as a single forward.
func (b *writeBatcher) apply(ctx context.Context, addr string, data []byte) (storage.Result, error) {
	p := &pendingWrite{addr: addr, data: data, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.inflight < b.maxInFlight {
		b.inflight++
		go b.sender()
	}
	b.mu.Unlock()
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !p.taken {
		for i, q := range b.queue {
			if q == p {
				b.queue = append(b.queue[:i], b.queue[i+1:]...)
				break
			}
		}
		return storage.Result{}, fmt.Errorf("%w (still queued for the leader: %v)", cluster.ErrNoLeader, ctx.Err())
	}
	return storage.Result{}, fmt.Errorf("%w (no answer from the leader in time: %v)", cluster.ErrUnknownOutcome, ctx.Err())
}

// sender sends batches until the queue is empty.
func (b *writeBatcher) sender() {
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.inflight--
			b.mu.Unlock()
			return
		}
		// One batch goes to one address: writes queued for an older
		// leader wait for a batch of their own.
		addr := b.queue[0].addr
		var batch, rest []*pendingWrite
		size := 0
		for _, p := range b.queue {
			fits := len(batch) == 0 || len(batch) < cluster.MaxBatch && size+len(p.data) <= cluster.MaxBatchBytes
			if p.addr == addr && fits {
				p.taken = true
				batch = append(batch, p)
				size += len(p.data)
			} else {
				rest = append(rest, p)
			}
		}
		b.queue = rest
		b.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		if len(batch) == 1 && b.sendOne != nil {
			p := batch[0]
			p.res, p.err = b.sendOne(ctx, addr, p.data)
			cancel()
			close(p.done)
			continue
		}
		cmds := make([][]byte, len(batch))
		for i, p := range batch {
			cmds[i] = p.data
		}
		replies, err := b.send(ctx, addr, cmds)
		cancel()
		for i, p := range batch {
			if err != nil {
				p.err = err
			} else {
				p.res, p.err = replies[i].Result()
			}
			close(p.done)
		}
	}
}
