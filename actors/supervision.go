package actors

import (
	"fmt"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// appActor sits above node only to learn when node is gone: protoactor
// applies a root actor's own supervisor to its children, never to itself, so
// a trivial parent is how main hears that the node stopped for good.
type appActor struct {
	tree    *Tree
	handler http.Handler
	node    *actor.PID
}

func (a *appActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		props := actor.PropsFromProducer(
			func() actor.Actor { return &nodeActor{tree: a.tree, handler: a.handler} },
			actor.WithSupervisor(a.tree.childStrategy()),
		)
		pid, err := ctx.SpawnNamed(props, "node")
		if err != nil {
			a.tree.fail(fmt.Errorf("spawn node actor: %w", err))
			return
		}
		a.node = pid
	case *actor.Terminated:
		if m.Who.Equal(a.node) && !a.tree.stopping.Load() {
			a.tree.fail(fmt.Errorf("node actor stopped"))
		}
	case *actor.Stopped:
		close(a.tree.stopped)
	}
}

// nodeActor supervises the node's service actors one-for-one: a crashed
// child is restarted alone, from durable state. A child that keeps crashing
// is stopped by the strategy; the node then stops too, and the process exits
// non-zero so the OS supervisor (systemd, Kubernetes) takes over.
type nodeActor struct {
	tree    *Tree
	handler http.Handler
	http    *actor.PID
	// leaving is set while this incarnation restarts or stops: the
	// Terminated messages its children send then are expected.
	leaving bool
}

func (a *nodeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.tree.spawning.Lock()
		defer a.tree.spawning.Unlock()
		a.spawn(ctx, "forward", func() actor.Actor { return newForwardActor(a.tree.link, a.tree.cfg.RequestTimeout) })
		a.spawn(ctx, "peers", func() actor.Actor { return &peersActor{tree: a.tree} })
		a.spawn(ctx, "raft", func() actor.Actor { return &raftActor{tree: a.tree} })
		a.spawn(ctx, "sessions", func() actor.Actor { return &sessionsActor{tree: a.tree} })
		a.spawn(ctx, "quota", func() actor.Actor { return &quotaActor{tree: a.tree} })
		a.http = a.spawn(ctx, "http", func() actor.Actor { return &httpActor{tree: a.tree, handler: a.handler} })
	case *actor.Restarting:
		a.leaving = true
	case *actor.Stopping:
		a.leaving = true
		// Drain HTTP before Raft closes, so in-flight requests get answers.
		if a.http != nil {
			_ = ctx.PoisonFuture(a.http).Wait()
		}
	case *actor.Terminated:
		if a.leaving || a.tree.stopping.Load() {
			return
		}
		err := fmt.Errorf("actor %s crashed more than %d times within %s; giving up (last failure: %s)",
			m.Who.Id, a.tree.cfg.MaxRestarts, a.tree.cfg.RestartWindow, a.tree.lastFailure(m.Who.Id))
		a.stop(ctx, err)
	case *giveUp:
		a.stop(ctx, m.err)
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// stop ends the node for good: main hears err through Tree.Done and exits
// non-zero, so the OS supervisor (systemd, Kubernetes) takes over.
func (a *nodeActor) stop(ctx actor.Context, err error) {
	a.tree.cfg.Logger.Error("node is stopping", "err", err)
	a.tree.fail(err)
	a.leaving = true
	ctx.Stop(ctx.Self())
}

func (a *nodeActor) spawn(ctx actor.Context, name string, producer actor.Producer) *actor.PID {
	// Children that supervise children of their own (peers) get the same
	// bounded, backed-off restarts.
	pid, err := ctx.SpawnNamed(actor.PropsFromProducer(producer, actor.WithSupervisor(a.tree.childStrategy())), name)
	if err != nil {
		panic(fmt.Sprintf("spawn %s: %v", name, err))
	}
	return pid
}

// childStrategy restarts a crashed child after a growing pause, at most
// MaxRestarts times within RestartWindow; past that the child is stopped.
func (t *Tree) childStrategy() actor.SupervisorStrategy {
	return &backoffStrategy{max: t.cfg.MaxRestarts, within: t.cfg.RestartWindow, first: 100 * time.Millisecond, cap: 5 * time.Second}
}

// backoffStrategy is one-for-one supervision with a bounded number of
// restarts and an exponential pause before each one. Without the pause a
// crash with a lasting cause (a port taken by another process, a full disk)
// burns the whole budget in a millisecond; with it the cause has seconds to
// clear. The crashed child's mailbox stays suspended during the pause, so
// its queued messages wait for the new incarnation.
type backoffStrategy struct {
	max        int
	within     time.Duration
	first, cap time.Duration
}

// HandleFailure implements actor.SupervisorStrategy.
func (s *backoffStrategy) HandleFailure(system *actor.ActorSystem, supervisor actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	rs.Fail()
	failures := rs.NumberOfFailures(s.within)
	if failures > s.max {
		rs.Reset()
		system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.StopDirective})
		supervisor.StopChildren(child)
		return
	}
	system.EventStream.Publish(&actor.SupervisorEvent{Child: child, Reason: reason, Directive: actor.RestartDirective})
	pause := s.first << (failures - 1)
	if pause > s.cap || pause <= 0 {
		pause = s.cap
	}
	time.AfterFunc(pause, func() { supervisor.RestartChildren(child) })
}
