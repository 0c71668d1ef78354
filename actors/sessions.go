package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// SessionTTLMultiplier is how many TTLs a session lives without a renewal,
// as in Consul: a session is invalidated 2×TTL after its last renewal (or
// after the leader that times it took over), never sooner.
const SessionTTLMultiplier = 2

// DefaultSessionNodeGrace is how long the leader's failure detector must
// hold a node dead before the sessions bound to it (serfHealth) are
// invalidated.
const DefaultSessionNodeGrace = 5 * time.Second

// sessionSweep is how often the timers are checked: expiries happen up to
// this much after their deadline.
const sessionSweep = 250 * time.Millisecond

// sessionsActor keeps the sessions' TTL timers, and ends the sessions of
// nodes the failure detector declares dead. It acts only while this node
// leads: timers run on the leader alone, with its monotonic clock, and a
// renewal touches only the leader's timer, never the log (Consul's
// design: only a session's create and its end are Raft entries).
//
// A leader that takes over reads the whole session table once it has
// applied everything committed before it, and gives every session with a
// TTL a full 2×TTL from then: it cannot know when the old leader last saw
// a renewal, and clock readings taken on another machine, or before an
// election, mean nothing here. So a session outlives a silent holder by up
// to one more 2×TTL per leader change, never by less (docs/fault-model.md).
// From then on the store's commit hook (storage.SessionChange) tells it of
// every session created and destroyed; should a change be lost, a session
// index that runs ahead of what it saw for a few sweeps makes it read the
// table again.
//
// A node's sessions with serfHealth end once the detector here has held
// that node dead for SessionNodeGrace; a node that comes back within the
// grace keeps them. Every session of a node removed from the cluster ends,
// whatever its checks, once the member list has gone without that node for
// the same grace (Consul ends a node's sessions when the node is
// deregistered): nothing is left to renew them or to judge the node by, and
// the grace spares a node that makes a session for itself just before it
// is added.
//
// Its state is soft: a restart loses the timers, and the next sweep arms
// every session afresh, as a new leader does.
type sessionsActor struct {
	tree   *Tree
	cancel func()
	sub    *eventstream.Subscription

	active  bool // this node leads, and arms timers
	loading bool // the read of the table after taking over is running
	reload  bool // read the table (again) at the next sweep
	epoch   int  // tells a load's answer from one of an earlier term
	behind  int  // sweeps that saw the session index past seen
	seen    uint64

	deadlines map[string]time.Time     // TTL sessions: when each expires
	ttls      map[string]time.Duration // and its TTL
	gone      map[string]bool          // destroyed while a load ran
	ending    map[string]bool          // an invalidation is on its way

	nodeOf map[string]string    // every session's node, to notice removed nodes
	absent map[string]time.Time // nodes holding sessions that are not members, since when
	checks int                  // sweeps since the last look at the member list

	dead    map[string]time.Time // peers held dead, since when (this node's detector)
	reaping map[reapKey]bool     // a node whose sessions are being ended
	reaped  map[reapKey]uint64   // the session index as of the last reaping of a node
}

// reapKey names one reaping of a node's sessions: those bound to its
// health (it is dead) or all of them (it was removed).
type reapKey struct {
	node    string
	removed bool
}

// sessionMemberCheck is how many sweeps pass between looks at the member
// list for nodes that hold sessions but were removed.
const sessionMemberCheck = 4

// Messages of the sessions actor.
type (
	sessionsTick struct{}
	// renewSession asks the leader's sessions actor to renew a session;
	// the reply is a *sessionRenewed.
	renewSession struct {
		asked
		id string
	}
	sessionRenewed struct {
		session       storage.Session
		found         bool
		err           error
		leaderChanged <-chan struct{}
	}
	sessionsLoaded struct {
		epoch    int
		index    uint64
		sessions []storage.Session
		err      error
	}
	sessionEnded struct {
		id  string
		err error
	}
	nodeReaped struct {
		key   reapKey
		index uint64
		err   error
	}
	sessionMembers struct {
		members []cluster.Member
		err     error
	}
)

func (a *sessionsActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.reset()
		a.dead, a.reaping, a.reaped = map[string]time.Time{}, map[reapKey]bool{}, map[reapKey]uint64{}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		a.sub = ctx.ActorSystem().EventStream.Subscribe(func(evt any) {
			if e, ok := evt.(*cluster.PeerStateChanged); ok {
				root.Send(self, e)
			}
		})
		a.cancel = sendEvery(root, sessionSweep, sessionSweep, self, sessionsTick{})
	case *actor.Restarting, *actor.Stopping:
		a.cancel()
		ctx.ActorSystem().EventStream.Unsubscribe(a.sub)
	case sessionsTick:
		a.sweep(ctx)
	case *storage.SessionChange:
		a.changed(m)
	case *sessionsLoaded:
		a.loaded(m)
	case *renewSession:
		a.renew(ctx, m)
	case *sessionEnded:
		delete(a.ending, m.id)
		if m.err == nil {
			a.drop(m.id)
		}
	case *cluster.PeerStateChanged:
		if m.To == cluster.PeerDead {
			a.dead[m.Peer] = m.At
		} else {
			delete(a.dead, m.Peer)
		}
	case *nodeReaped:
		delete(a.reaping, m.key)
		if m.err == nil {
			a.reaped[m.key] = m.index
			if m.key.removed {
				delete(a.dead, m.key.node)
			}
		}
	case *sessionMembers:
		a.checkMembers(ctx, m)
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// reset forgets every timer: this node does not lead (any more).
func (a *sessionsActor) reset() {
	a.active, a.loading, a.reload, a.behind, a.seen = false, false, false, 0, 0
	a.epoch++
	a.deadlines, a.ttls = map[string]time.Time{}, map[string]time.Duration{}
	a.gone, a.ending = map[string]bool{}, map[string]bool{}
	a.nodeOf, a.absent, a.checks = map[string]string{}, map[string]time.Time{}, 0
	a.tree.metrics.sessionsTimed.Set(0)
}

// leads checks whether this node leads, taking over or handing back the
// timers when that changed since the last look.
func (a *sessionsActor) leads(ctx actor.Context) bool {
	v := a.tree.view.Load()
	leader := v != nil && v.IsLeader()
	switch {
	case leader && !a.active:
		a.reset()
		a.active, a.reload = true, true
		a.tree.cfg.Logger.Info("this node leads: session timers start, every session with a full TTL")
	case !leader && a.active:
		a.reset()
	}
	if a.reload && !a.loading {
		a.load(ctx)
	}
	return leader
}

// load reads the session table once every entry committed before now is
// applied here (a read barrier: on a new leader, that includes the
// previous terms' entries), off the mailbox.
func (a *sessionsActor) load(ctx actor.Context) {
	a.loading, a.reload = true, false
	epoch, self, root := a.epoch, ctx.Self(), ctx.ActorSystem().Root
	client, store, timeout := a.tree.client, a.tree.cfg.Store, a.tree.cfg.RequestTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		m := &sessionsLoaded{epoch: epoch}
		if m.err = client.ReadBarrier(c); m.err == nil {
			m.sessions, m.index, m.err = store.Sessions("")
		}
		root.Send(self, m)
	}()
}

func (a *sessionsActor) loaded(m *sessionsLoaded) {
	if m.epoch != a.epoch {
		return // read for an earlier term
	}
	a.loading = false
	if m.err != nil {
		a.reload = true // the next sweep tries again
		return
	}
	now := time.Now()
	present := map[string]bool{}
	for _, s := range m.sessions {
		present[s.ID] = true
		if !a.gone[s.ID] {
			a.nodeOf[s.ID] = s.Node
		}
		if _, armed := a.deadlines[s.ID]; !armed && !a.gone[s.ID] {
			a.arm(s.ID, s.TTLDuration(), now)
		}
	}
	// Armed by a change the table no longer shows: destroyed before
	// the read, its destroy change still on its way or lost.
	for id := range a.nodeOf {
		if !present[id] && a.seen <= m.index {
			a.drop(id)
		}
	}
	a.gone = map[string]bool{}
	a.seen = max(a.seen, m.index)
	a.behind = 0
}

// arm gives session id a full 2×TTL from now; a session without a TTL
// has no timer.
func (a *sessionsActor) arm(id string, ttl time.Duration, now time.Time) {
	if ttl <= 0 {
		return
	}
	a.deadlines[id] = now.Add(SessionTTLMultiplier * ttl)
	a.ttls[id] = ttl
	a.tree.metrics.sessionsTimed.Set(float64(len(a.deadlines)))
}

func (a *sessionsActor) drop(id string) {
	delete(a.nodeOf, id)
	delete(a.deadlines, id)
	delete(a.ttls, id)
	a.tree.metrics.sessionsTimed.Set(float64(len(a.deadlines)))
}

func (a *sessionsActor) changed(c *storage.SessionChange) {
	if !a.active {
		return
	}
	if c.Reset {
		// The table was replaced under us: read it again; the timers
		// of sessions still in it keep running.
		a.reload = true
		return
	}
	now := time.Now()
	for _, s := range c.Created {
		a.nodeOf[s.ID] = s.Node
		a.arm(s.ID, s.TTLDuration(), now)
	}
	for _, id := range c.Destroyed {
		a.drop(id)
		if a.loading {
			a.gone[id] = true
		}
	}
	a.seen = max(a.seen, c.Index)
}

// renew resets a session's timer to a full 2×TTL and answers with the
// session as stored. Only the leader answers: another node's timers are
// not running.
func (a *sessionsActor) renew(ctx actor.Context, m *renewSession) {
	if !a.leads(ctx) {
		var changed <-chan struct{}
		if v := a.tree.view.Load(); v != nil {
			changed = v.LeaderChanged()
		}
		m.answer(&sessionRenewed{err: cluster.ErrNotLeader, leaderChanged: changed})
		return
	}
	s, found, _, err := a.tree.cfg.Store.Session(m.id)
	if err == nil && found {
		a.arm(s.ID, s.TTLDuration(), time.Now())
		a.tree.metrics.sessionRenewals.Inc()
	}
	m.answer(&sessionRenewed{session: s, found: found, err: err})
}

// sweep ends the sessions whose time is up and those of nodes dead past
// the grace, and checks that no change to the table went unseen.
func (a *sessionsActor) sweep(ctx actor.Context) {
	if !a.leads(ctx) {
		return
	}
	now := time.Now()
	for id, dl := range a.deadlines {
		if !now.Before(dl) && !a.ending[id] {
			a.end(ctx, id, "ttl")
		}
	}
	if a.loading {
		return
	}
	grace := a.tree.cfg.SessionNodeGrace
	for node, since := range a.dead {
		if now.Sub(since) >= grace && !a.reaping[reapKey{node: node}] {
			a.reap(ctx, reapKey{node: node})
		}
	}
	if a.checks++; a.checks >= sessionMemberCheck && len(a.nodeOf) > 0 {
		// The member list comes back as a message, so this mailbox never
		// waits on the raft actor.
		a.checks = 0
		self, root, client := ctx.Self(), ctx.ActorSystem().Root, a.tree.client
		go func() {
			ms, err := client.Members()
			root.Send(self, &sessionMembers{members: ms, err: err})
		}()
	}
	if idx, err := a.tree.cfg.Store.SessionIndex(); err != nil || idx <= a.seen {
		a.behind = 0
	} else if a.behind++; a.behind >= 3 {
		// Changes are normally seen within a sweep of their commit.
		a.tree.cfg.Logger.Warn("session changes went unseen; reading the session table again", "seen", a.seen, "index", idx)
		a.reload, a.behind = true, 0
	}
}

// end proposes the invalidation of session id, off the mailbox. If it
// fails (this node lost the lead, no quorum), the timer stays expired and
// the next sweep tries again, unless another leader has taken over.
func (a *sessionsActor) end(ctx actor.Context, id, why string) {
	a.ending[id] = true
	self, root, client, timeout := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, a.tree.cfg.RequestTimeout
	ttl := a.ttls[id]
	a.tree.cfg.Logger.Info("session expired: invalidating it", "session", id, "ttl", ttl, "after", SessionTTLMultiplier*ttl)
	a.tree.metrics.sessionInvalidations.WithLabelValues(why).Inc()
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.Apply(c, &storage.Command{Op: storage.OpSessionDestroy, Key: id})
		root.Send(self, &sessionEnded{id: id, err: err})
	}()
}

// checkMembers starts the end of every session of a node that has not
// been a member for the grace. An unknown member list decides nothing.
func (a *sessionsActor) checkMembers(ctx actor.Context, m *sessionMembers) {
	if !a.active || a.loading || m.err != nil || len(m.members) == 0 {
		return
	}
	member := map[string]bool{}
	for _, mb := range m.members {
		member[mb.ID] = true
	}
	holders := map[string]bool{}
	for _, node := range a.nodeOf {
		holders[node] = true
	}
	now, grace := time.Now(), a.tree.cfg.SessionNodeGrace
	for node := range a.absent {
		if member[node] || !holders[node] {
			delete(a.absent, node)
		}
	}
	for node := range holders {
		if member[node] {
			continue
		}
		since, seen := a.absent[node]
		if !seen {
			a.absent[node] = now
			continue
		}
		if k := (reapKey{node: node, removed: true}); now.Sub(since) >= grace && !a.reaping[k] {
			a.reap(ctx, k)
		}
	}
}

// reap ends the sessions of a node, off the mailbox: those bound to its
// health when it is dead, all of them when it was removed. It runs again
// only when sessions were created or destroyed since, so a node that
// stays dead costs one read of the table.
func (a *sessionsActor) reap(ctx actor.Context, k reapKey) {
	store := a.tree.cfg.Store
	idx, err := store.SessionIndex()
	if err != nil || a.reaped[k] == idx {
		return
	}
	a.reaping[k] = true
	self, root, client, timeout, log := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, a.tree.cfg.RequestTimeout, a.tree.cfg.Logger
	node, grace, since := k.node, a.tree.cfg.SessionNodeGrace, a.dead[k.node]
	why, line := "node", "the node of a session is dead: invalidating the session"
	if k.removed {
		since = a.absent[node]
		why, line = "removed", "the node of a session was removed from the cluster: invalidating the session"
	}
	invalidations := a.tree.metrics.sessionInvalidations.WithLabelValues(why)
	go func() {
		m := &nodeReaped{key: k, index: idx}
		defer func() { root.Send(self, m) }()
		sessions, _, err := store.Sessions(node)
		if err != nil {
			m.err = err
			return
		}
		for _, s := range sessions {
			if !k.removed && !s.HasSerfHealth() {
				continue
			}
			log.Warn(line, "session", s.ID, "node", node, "since", since, "grace", grace)
			invalidations.Inc()
			c, cancel := context.WithTimeout(context.Background(), timeout)
			_, err := client.Apply(c, &storage.Command{Op: storage.OpSessionDestroy, Key: s.ID})
			cancel()
			if err != nil {
				m.err = errors.Join(m.err, err)
			}
		}
	}()
}
