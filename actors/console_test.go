package actors_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/timeline"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// waitEvent follows n's timeline after index from (as the console does,
// with blocking reads) until an event matches, and returns it.
func waitEvent(t *testing.T, nd *inproc.Node, from uint64, what string, match func(timeline.Event) bool) timeline.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	index := from
	for {
		evs, last := nd.Client().Events(ctx, index)
		for _, e := range evs {
			if match(e) {
				return e
			}
		}
		if ctx.Err() != nil {
			all, _ := nd.Client().Events(context.Background(), 0)
			t.Fatalf("%s: no %s on the timeline; it holds %+v", nd.ID, what, all)
		}
		index = last
	}
}

// The timeline is fed from each of its sources on a real 3-node cluster:
// the leader, the failure detector's verdicts, fault rules, injected
// crashes and the supervisor's restarts; and phi is sampled per peer.
func TestTimelineRecordsWhatHappens(t *testing.T) {
	nodes := inproc.Start(t, 3, inproc.Options{Chaos: true})
	leader := inproc.Leader(t, nodes)
	n := nodes[0]
	waitEvent(t, n, 0, "leader event", func(e timeline.Event) bool {
		return e.Kind == timeline.KindLeader && e.To == leader.ID && strings.HasPrefix(e.Detail, "term ")
	})
	waitEvent(t, n, 0, "peer alive", func(e timeline.Event) bool {
		return e.Kind == timeline.KindPeer && e.Subject == nodes[1].ID && e.To == "alive"
	})

	// Cutting n off from nodes[1] turns it Dead on n's timeline, with the
	// rule itself recorded first.
	if err := n.Client().SetFaults(faultnet.Rules{Rules: []faultnet.Rule{{Peer: nodes[1].ID, Direction: faultnet.Both, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	rule := waitEvent(t, n, 0, "fault applied", func(e timeline.Event) bool { return e.Kind == timeline.KindFault && e.To == "applied" })
	if rule.Detail != "cut to/from "+nodes[1].ID {
		t.Errorf("rule summed up as %q", rule.Detail)
	}
	dead := waitEvent(t, n, rule.Index, "peer dead after the rule", func(e timeline.Event) bool {
		return e.Kind == timeline.KindPeer && e.Subject == nodes[1].ID && e.To == "dead"
	})
	if dead.Node != n.ID {
		t.Errorf("dead event %+v recorded by another node", dead)
	}
	if err := n.Client().SetFaults(faultnet.Rules{}); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, n, dead.Index, "fault healed", func(e timeline.Event) bool { return e.Kind == timeline.KindFault && e.To == "healed" })

	// An injected crash, then the supervisor's restart with the panic.
	if err := n.Client().Crash("quota", "", "test crash"); err != nil {
		t.Fatal(err)
	}
	crash := waitEvent(t, n, 0, "crash injected", func(e timeline.Event) bool {
		return e.Kind == timeline.KindFault && e.Subject == "quota" && e.To == "crash"
	})
	restart := waitEvent(t, n, crash.Index, "actor restarted", func(e timeline.Event) bool { return e.Kind == timeline.KindActor && e.Subject == "quota" })
	if restart.To != "restarted" || !strings.Contains(restart.Detail, "test crash") {
		t.Errorf("restart event %+v", restart)
	}

	// Phi history: one series per peer, a sample a second, with the
	// dead spell in it.
	h := n.Client().PhiHistory()
	s := h[nodes[1].ID]
	if len(h) != 2 || len(s) < 2 {
		t.Fatalf("phi history %+v", h)
	}
	sawDead := false
	for _, x := range s {
		sawDead = sawDead || x.State == "dead"
	}
	if !sawDead {
		t.Errorf("the history of %s never says dead: %+v", nodes[1].ID, s)
	}
}
