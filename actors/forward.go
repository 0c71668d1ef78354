package actors

import (
	"context"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// leaderLink is how a follower reaches the leader's peer port:
// peerlink.Client in the node, a stand-in in tests.
type leaderLink interface {
	Apply(ctx context.Context, addr string, cmd []byte) (storage.Result, error)
	ApplyBatch(ctx context.Context, addr string, cmds [][]byte) ([]peerlink.BatchItemReply, error)
	ReadIndex(ctx context.Context, addr string) (uint64, error)
	Membership(ctx context.Context, addr string, req peerlink.MembershipRequest) error
	RenewSession(ctx context.Context, addr, id string) (storage.Session, bool, error)
}

// forwardActor carries a follower's requests to the leader and answers the
// requesters. It owns two queues:
//
//   - writes: the first goes out at once, and writes that arrive while
//     maxWriteBatches batches are on their way gather into the next batch,
//     so under load one exchange carries many writes, which saves both
//     nodes most of the per-request work; at low load nothing waits;
//   - reads: linearizable reads share the read-index requests; reads that
//     arrive while one is out wait for the next, which serves them all. A
//     read only ever uses an index fetched by a request that started after
//     it arrived: that is what keeps it linearizable.
//
// The exchanges themselves run off the mailbox and report back. A restart
// of this actor answers everything still queued with "no leader" (nothing
// was sent); exchanges under way answer their requesters themselves.
type forwardActor struct {
	link    leaderLink
	timeout time.Duration

	writes         []*forwardWrite
	writesInFlight int

	reads        []*forwardRead // waiting for the next fetch
	readInFlight bool
}

// maxWriteBatches is how many write batches may be on their way at once.
const maxWriteBatches = 2

// forwardWrite asks for one encoded command to be applied by the leader at
// addr; the original requester gets a *proposeResult.
type forwardWrite struct {
	asked
	addr     string
	data     []byte
	deadline time.Time
}

// forwardRead asks the leader at addr for a read index; the original
// requester gets a *readIndexResult.
type forwardRead struct {
	asked
	addr     string
	deadline time.Time
}

// forwardMembership asks the leader at addr to add or remove a member;
// the original requester gets a *done.
type forwardMembership struct {
	addr string
	req  *membership
}

// answer answers the original request.
func (m *forwardMembership) answer(v any) { m.req.answer(v) }

// forwardRenew asks the leader at addr to renew a session; the original
// requester gets a *sessionRenewed.
type forwardRenew struct {
	asked
	addr, id string
}

// Messages the forward actor sends itself when an exchange ends.
type (
	writeBatchSent struct{}
	readFetched    struct {
		index   uint64
		err     error
		waiters []*forwardRead
	}
)

func newForwardActor(link leaderLink, timeout time.Duration) *forwardActor {
	return &forwardActor{link: link, timeout: timeout}
}

func (a *forwardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Restarting, *actor.Stopping:
		a.dropQueued(ctx)
	case *forwardWrite:
		a.writes = append(a.writes, m)
		if a.writesInFlight < maxWriteBatches {
			a.sendWrites(ctx)
		}
	case writeBatchSent:
		a.writesInFlight--
		if len(a.writes) > 0 {
			a.sendWrites(ctx)
		}
	case *forwardRead:
		a.reads = append(a.reads, m)
		if !a.readInFlight {
			a.fetchReadIndex(ctx)
		}
	case *readFetched:
		for _, w := range m.waiters {
			w.answer(&readIndexResult{index: m.index, err: m.err})
		}
		a.readInFlight = false
		if len(a.reads) > 0 {
			a.fetchReadIndex(ctx)
		}
	case *forwardMembership:
		a.membership(ctx, m)
	case *forwardRenew:
		a.renew(m)
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// dropQueued answers what was never sent: nothing of it was applied.
func (a *forwardActor) dropQueued(ctx actor.Context) {
	for _, w := range a.writes {
		w.answer(&proposeResult{err: fmt.Errorf("%w (the forwarder restarted before sending)", cluster.ErrNoLeader)})
	}
	for _, r := range a.reads {
		r.answer(&readIndexResult{err: fmt.Errorf("%w (the forwarder restarted before asking)", cluster.ErrNoLeader)})
	}
	a.writes, a.reads = nil, nil
}

// sendWrites sends the next batch: writes for the first queued write's
// leader, up to cluster.MaxBatch commands and MaxBatchBytes (a bigger
// command travels alone). Writes queued for another (older) leader wait for
// a batch of their own; writes whose requester has given up are dropped
// unsent.
func (a *forwardActor) sendWrites(ctx actor.Context) {
	now := time.Now()
	var batch, rest []*forwardWrite
	size := 0
	for _, w := range a.writes {
		switch {
		case !now.Before(w.deadline):
			w.answer(&proposeResult{err: fmt.Errorf("%w (still queued for the leader at the deadline)", cluster.ErrNoLeader)})
		case w.addr == a.writes[0].addr && (len(batch) == 0 || len(batch) < peerlink.MaxBatch && size+len(w.data) <= peerlink.MaxBatchBytes):
			batch = append(batch, w)
			size += len(w.data)
		default:
			rest = append(rest, w)
		}
	}
	a.writes = rest
	if len(batch) == 0 {
		return
	}
	a.writesInFlight++
	link, timeout, self, root := a.link, a.timeout, ctx.Self(), ctx.ActorSystem().Root
	go func() {
		defer root.Send(self, writeBatchSent{})
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		addr := batch[0].addr
		if len(batch) == 1 {
			res, err := link.Apply(c, addr, batch[0].data)
			batch[0].answer(&proposeResult{res: res, err: err})
			return
		}
		cmds := make([][]byte, len(batch))
		for i, w := range batch {
			cmds[i] = w.data
		}
		replies, err := link.ApplyBatch(c, addr, cmds)
		for i, w := range batch {
			r := &proposeResult{err: err}
			if err == nil {
				r.res, r.err = replies[i].Result()
			}
			w.answer(r)
		}
	}()
}

// fetchReadIndex asks the leader for one index on behalf of every read
// queued now.
func (a *forwardActor) fetchReadIndex(ctx actor.Context) {
	waiters := a.reads
	a.reads = nil
	a.readInFlight = true
	link, timeout, self, root := a.link, a.timeout, ctx.Self(), ctx.ActorSystem().Root
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		idx, err := link.ReadIndex(c, waiters[0].addr)
		root.Send(self, &readFetched{index: idx, err: err, waiters: waiters})
	}()
}

// renew forwards a session renewal. Renewals are not batched: each is a
// small request, and a client renews a session every TTL/2 at most.
func (a *forwardActor) renew(m *forwardRenew) {
	link, timeout := a.link, a.timeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		s, found, err := link.RenewSession(c, m.addr, m.id)
		m.answer(&sessionRenewed{session: s, found: found, err: err})
	}()
}

// membership forwards a join or a removal; the leader handles it itself.
func (a *forwardActor) membership(ctx actor.Context, m *forwardMembership) {
	link, timeout := a.link, a.timeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := link.Membership(c, m.addr, m.req.req)
		m.req.answer(&done{err: err})
	}()
}
