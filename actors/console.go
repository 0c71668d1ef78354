package actors

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/timeline"
)

// What the web console is given of a node's recent past (see
// cluster/timeline): the newest timelineEvents events, and phi sampled
// every phiSampleEvery for phiSamples readings (five minutes).
const (
	timelineEvents = 512
	phiSampleEvery = time.Second
	phiSamples     = 300
)

// console is the node's timeline and phi history. It is fed from the
// actor system's event stream (peer verdicts, supervision), from Client's
// chaos calls, and by a sampler that reads what has no event of its own
// (the leader, integrity, alarms, phi).
type console struct {
	events *timeline.Log
	phi    *timeline.PhiHistory
}

func newConsole(node string) *console {
	return &console{events: timeline.NewLog(node, timelineEvents), phi: timeline.NewPhiHistory(phiSamples)}
}

// watchTimeline starts feeding the console; it stops with the tree.
func (t *Tree) watchTimeline() {
	t.console.events.Add(timeline.Event{Kind: timeline.KindNode, Detail: "node started (version " + t.cfg.Build.Version + ")"})
	sub := t.system.EventStream.Subscribe(func(evt any) {
		switch e := evt.(type) {
		case *cluster.PeerStateChanged:
			t.console.events.Add(timeline.Event{At: e.At, Kind: timeline.KindPeer, Subject: e.Peer, From: string(e.From), To: string(e.To),
				Detail: fmt.Sprintf("phi %.2f", e.Phi)})
			t.console.phi.Add(e.Peer, e.At, math.Round(e.Phi*100)/100, string(e.To))
		case *actor.SupervisorEvent:
			t.console.events.Add(timeline.Event{Kind: timeline.KindActor, Subject: strings.TrimPrefix(e.Child.Id, "app/node/"),
				To: directiveDone[e.Directive], Detail: fmt.Sprint(e.Reason)})
		}
	})
	go func() {
		t.sampleTimeline()
		t.system.EventStream.Unsubscribe(sub)
	}()
}

// directiveDone says what a supervisor did, as the timeline shows it.
var directiveDone = map[actor.Directive]string{
	actor.RestartDirective:  "restarted",
	actor.StopDirective:     "stopped",
	actor.ResumeDirective:   "resumed",
	actor.EscalateDirective: "escalated",
}

// sampleTimeline reads every phiSampleEvery (and at once on a leader
// change) what no event announces, and records what changed.
func (t *Tree) sampleTimeline() {
	tick := time.NewTicker(phiSampleEvery)
	defer tick.Stop()
	var leader, integrity string
	alarms := map[string]bool{}
	for {
		var changed <-chan struct{}
		if v := t.view.Load(); v != nil {
			changed = v.LeaderChanged()
		}
		select {
		case <-t.stopped:
			return
		case <-tick.C:
		case <-changed:
			// Let Raft settle the new leader's address before reading it;
			// a closed channel of a Raft instance closed since must not
			// spin this loop either.
			time.Sleep(20 * time.Millisecond)
		}
		if li := t.client.Leader(); li.ID != leader {
			detail := "no leader"
			if li.ID != "" {
				detail = "new leader"
				if st, err := t.client.Status(); err == nil {
					detail = fmt.Sprintf("term %d", st.Term)
				}
			}
			t.console.events.Add(timeline.Event{Kind: timeline.KindLeader, Subject: "leader", From: leader, To: li.ID, Detail: detail})
			leader = li.ID
		}
		if v := t.integrity.get(); v.State != integrity {
			if integrity != "" || v.State != cluster.StateUnchecked {
				t.console.events.Add(timeline.Event{Kind: timeline.KindIntegrity, Subject: "state", From: integrity, To: v.State, Detail: v.Reason})
			}
			integrity = v.State
		}
		now := map[string]bool{}
		for _, a := range t.client.Alarms() {
			key := a.Type + "@" + a.Member
			now[key] = true
			if !alarms[key] {
				t.console.events.Add(timeline.Event{Kind: timeline.KindAlarm, Subject: key, To: "raised", Detail: a.Reason})
			}
		}
		for key := range alarms {
			if !now[key] {
				t.console.events.Add(timeline.Event{Kind: timeline.KindAlarm, Subject: key, To: "cleared"})
			}
		}
		alarms = now
		t.samplePhi()
	}
}

func (t *Tree) samplePhi() {
	ctx, cancel := context.WithTimeout(context.Background(), phiSampleEvery)
	defer cancel()
	h, err := t.client.Health(ctx)
	if err != nil {
		return
	}
	phi, state := map[string]float64{}, map[string]string{}
	for _, p := range h.Peers {
		phi[p.ID], state[p.ID] = p.Phi, string(p.State)
	}
	t.console.phi.Record(time.Now(), phi, state)
}

// recordFaults puts a change of this node's fault rules on the timeline.
func (t *Tree) recordFaults(rs faultnet.Rules) {
	if len(rs.Rules) == 0 {
		t.console.events.Add(timeline.Event{Kind: timeline.KindFault, Subject: "rules", To: "healed", Detail: "fault rules cleared"})
		return
	}
	var parts []string
	for _, r := range rs.Rules {
		parts = append(parts, ruleSummary(r))
	}
	t.console.events.Add(timeline.Event{Kind: timeline.KindFault, Subject: "rules", To: "applied", Detail: strings.Join(parts, "; ")})
}

// ruleSummary is one rule in a few words: "cut to/from n2", "delay 50ms
// drop 10% to *".
func ruleSummary(r faultnet.Rule) string {
	var w []string
	if r.Cut {
		w = append(w, "cut")
	}
	if r.Delay > 0 {
		w = append(w, "delay "+time.Duration(r.Delay).String())
	}
	if r.Jitter > 0 {
		w = append(w, "jitter "+time.Duration(r.Jitter).String())
	}
	if r.Drop > 0 {
		w = append(w, fmt.Sprintf("drop %g%%", math.Round(r.Drop*1000)/10))
	}
	if r.Bandwidth > 0 {
		w = append(w, fmt.Sprintf("bandwidth %dB/s", r.Bandwidth))
	}
	way := map[faultnet.Direction]string{faultnet.In: "from", faultnet.Out: "to"}[r.Direction]
	if way == "" {
		way = "to/from"
	}
	return strings.Join(append(w, way, cmp.Or(r.Peer, faultnet.AnyPeer)), " ")
}

// Events answers the console's timeline: the events after index, the
// newest index, waiting (as a blocking query) until ctx ends when there
// is nothing newer.
func (c *Client) Events(ctx context.Context, index uint64) ([]timeline.Event, uint64) {
	return c.tree.console.events.Wait(ctx, index)
}

// PhiHistory is the recent phi of every peer, as this node's failure
// detector read it.
func (c *Client) PhiHistory() map[string][]timeline.Sample { return c.tree.console.phi.Series() }
