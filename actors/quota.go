package actors

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// quotaActor watches this node's disk space, as etcd's quota does: every
// quotaEvery it measures kv.db's live bytes against QuotaBytes and the
// data directory's free space against MinFreeBytes, publishes what it
// measured (health, metrics), and when either limit is passed it raises
// the NOSPACE alarm about this node through Raft. From the entry that
// raises it, every node refuses the commands that would grow the state
// (storage.Command.Grows) until an operator disarms it: all members hold
// the same data, so one member short of room is reason enough to stop
// growing it everywhere, before the disks fill up together.
//
// It owns nothing durable: the alarm lives in the replicated state, so a
// restart of this actor, or of the node, only measures again.
type quotaActor struct {
	tree *Tree
	// measuring is set while a measurement runs (off the mailbox: it
	// waits for the state file while a snapshot is restored into it).
	measuring bool
	// raising is set while a raise is on its way through Raft.
	raising bool
	// over is the limit passed at the last measurement ("" within them);
	// alarmed whether the cluster's NOSPACE alarm was raised at the last
	// tick. Both only decide what to log.
	over       string
	alarmed    bool
	cancelTick func()
}

type (
	quotaTick     struct{}
	spaceMeasured struct{ space cluster.Space }
	alarmRaised   struct {
		reason string
		err    error
	}
)

// quotaEvery is how often the quota actor measures.
const quotaEvery = time.Second

func (a *quotaActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.cancelTick = sendEvery(ctx.ActorSystem().Root, quotaEvery/10, quotaEvery, ctx.Self(), quotaTick{})
	case *actor.Restarting, *actor.Stopping:
		if a.cancelTick != nil {
			a.cancelTick()
		}
	case quotaTick:
		if !a.measuring {
			a.measuring = true
			cfg, self, root := a.tree.cfg, ctx.Self(), ctx.ActorSystem().Root
			go func() {
				s := cluster.MeasureSpace(cfg.Store, cfg.Raft.DataDir, cfg.QuotaBytes, cfg.MinFreeBytes)
				root.Send(self, &spaceMeasured{space: s})
			}()
		}
	case *spaceMeasured:
		a.measuring = false
		a.check(ctx, m.space)
	case *alarmRaised:
		a.raising = false
		if m.err != nil {
			a.tree.cfg.Logger.Warn("raising the NOSPACE alarm failed; retrying", "reason", m.reason, "err", m.err)
		}
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// check publishes a measurement, logs what changed, and raises the alarm
// when this node is past a limit and its alarm is not raised yet.
func (a *quotaActor) check(ctx actor.Context, s cluster.Space) {
	cfg := a.tree.cfg
	self := cfg.Raft.NodeID
	a.tree.space.Store(&s)

	alarms := cfg.Store.Alarms()
	raised, mine := false, false
	for _, al := range alarms {
		if al.Type == storage.AlarmNoSpace {
			raised = true
			mine = mine || al.Member == self
		}
	}
	if raised != a.alarmed {
		a.alarmed = raised
		if raised {
			cfg.Logger.Warn("the NOSPACE alarm is raised: writes that would grow the state are refused on every node until it is disarmed (docs/operations.md: disk space)", "alarms", describeAlarms(alarms))
		} else {
			cfg.Logger.Info("the NOSPACE alarm is disarmed: writes are accepted again")
		}
	}

	over := s.Over()
	if over != a.over {
		if over != "" {
			cfg.Logger.Warn("this node is short of disk space", "reason", over)
		}
		a.over = over
	}
	if over == "" || mine || a.raising {
		return
	}
	a.raising = true
	pid, root, client, timeout := ctx.Self(), ctx.ActorSystem().Root, a.tree.client, cfg.RequestTimeout
	go func() {
		c, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := client.Apply(c, &storage.Command{Op: storage.OpAlarmRaise, Key: storage.AlarmKey(storage.AlarmNoSpace, self), Value: []byte(over)})
		root.Send(pid, &alarmRaised{reason: over, err: err})
	}()
}

// describeAlarms lists alarms for a log line: "nospace n2: reason; ...".
func describeAlarms(alarms []storage.Alarm) string {
	var out []string
	for _, a := range alarms {
		out = append(out, fmt.Sprintf("%s %s: %s", a.Type, a.Member, a.Reason))
	}
	return strings.Join(out, "; ")
}
