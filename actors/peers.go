package actors

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/cluster"
)

type refreshPeers struct{}

// peersActor supervises one monitor per other member (one-for-one, with
// the node's restart budget), keeps their latest reports, and answers
// health questions.
type peersActor struct {
	tree     *Tree
	monitors map[string]*actor.PID
	status   map[string]cluster.PeerStatus
	// voters is the member list's voters (this node included if it is
	// one), for the majority the state hashes are judged by.
	voters  map[string]bool
	cancel  func()
	leaving bool
}

func (a *peersActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.monitors = map[string]*actor.PID{}
		a.status = map[string]cluster.PeerStatus{}
		a.cancel = sendEvery(ctx.ActorSystem().Root, 0, time.Second, ctx.Self(), &refreshPeers{})
	case *actor.Restarting, *actor.Stopping:
		a.leaving = true
		a.cancel()
	case *refreshPeers:
		// The raft actor owns the member list; the answer comes back as a
		// message, so this mailbox never waits for it.
		self, root, client := ctx.Self(), ctx.ActorSystem().Root, a.tree.client
		go func() {
			if ms, err := client.Members(); err == nil {
				root.Send(self, &membersReply{members: ms})
			}
		}()
	case *membersReply:
		a.reconcile(ctx, m.members)
		a.judgeState()
	case *cluster.PeerStatus:
		if _, ok := a.monitors[m.ID]; ok {
			a.status[m.ID] = *m
			a.tree.metrics.peerStatus(m)
			a.tree.versions.set(m.ID, m.Version)
			a.judgeState()
		}
	case cluster.PeerHeartbeat:
		if pid, ok := a.monitors[m.Peer]; ok {
			ctx.Send(pid, m)
		}
	case *getHealth:
		m.answer(a.health())
	case *actor.Terminated:
		if a.leaving {
			return
		}
		for id, pid := range a.monitors {
			if pid.Equal(m.Who) {
				// Stopped by the strategy after too many crashes: give up
				// on this level too, so the node's budget decides.
				panic(fmt.Sprintf("monitor of %s crashed too often", id))
			}
		}
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// reconcile starts a monitor for each new member and stops those of
// removed ones.
func (a *peersActor) reconcile(ctx actor.Context, members []cluster.Member) {
	self := a.tree.cfg.Raft.NodeID
	seen := map[string]bool{}
	a.voters = map[string]bool{}
	for _, m := range members {
		if m.Voter {
			a.voters[m.ID] = true
		}
		if m.ID == self {
			continue
		}
		seen[m.ID] = true
		if pid, ok := a.monitors[m.ID]; ok {
			ctx.Send(pid, &peerAddr{raft: m.RaftAddr, http: m.HTTPAddr})
			continue
		}
		id, addr, httpAddr := m.ID, m.RaftAddr, m.HTTPAddr
		props := actor.PropsFromProducer(func() actor.Actor {
			return &monitorActor{tree: a.tree, id: id, addr: addr, httpAddr: httpAddr}
		})
		a.tree.spawning.Lock() // Crash sends to monitors by name
		pid, err := ctx.SpawnNamed(props, id)
		a.tree.spawning.Unlock()
		if err != nil {
			panic(fmt.Sprintf("spawn monitor of %s: %v", id, err))
		}
		a.monitors[id] = pid
	}
	for id, pid := range a.monitors {
		if !seen[id] {
			delete(a.monitors, id)
			delete(a.status, id)
			a.tree.metrics.forgetPeer(id)
			a.tree.versions.forget(id)
			ctx.Poison(pid)
		}
	}
}

// judgeState brings this node's verdict on its own state up to date (see
// judgeState and stateIntegrity) from its newest hashes and the peers'.
// A decided verdict stands until a newer checkpoint decides otherwise:
// between checkpoints the peers' newest reports move ahead of this
// node's, and "undecided" then says nothing new.
func (a *peersActor) judgeState() {
	t := a.tree
	own := t.cfg.Store.StateChecks()
	if n := len(own); n > 0 && own[n-1].Err != nil {
		t.corrupted(own[n-1].Err)
		return
	}
	reports := map[string]*cluster.StateCheck{}
	for id, st := range a.status {
		reports[id] = st.StateCheck
	}
	v := judgeState(t.cfg.Raft.NodeID, own, reports, a.voters)
	prev := t.integrity.get()
	if v.State == cluster.StateUndecided && (prev.State == cluster.StateAgrees || prev.State == cluster.StateDiverged) {
		v.State, v.Index, v.Reason = prev.State, prev.Index, prev.Reason
	}
	if t.integrity.set(v) {
		if v.State == cluster.StateDiverged {
			t.cfg.Logger.Error("this node's state diverged from the majority's: it is fenced off and serves nothing", "reason", v.Reason)
		} else {
			t.cfg.Logger.Warn("this node's state agrees with the majority's again: it serves again", "index", v.Index)
		}
	}
}

func (a *peersActor) health() *cluster.Health {
	h := &cluster.Health{Node: a.tree.cfg.Raft.NodeID, Peers: []cluster.PeerStatus{}, Integrity: a.tree.integrity.get()}
	for id := range a.monitors {
		st, ok := a.status[id]
		if !ok {
			st = cluster.PeerStatus{ID: id, State: cluster.PeerUnknown}
		}
		h.Peers = append(h.Peers, st)
	}
	sort.Slice(h.Peers, func(i, j int) bool { return h.Peers[i].ID < h.Peers[j].ID })
	return h
}

type probeTick struct{}

type probeResult struct {
	ok         bool
	rtt        time.Duration
	at         time.Time
	clientPort string // the peer's client-port trouble, as it reported it
	httpAddr   string // the client address the peer advertises
	disk       string // the peer's trouble writing its Raft log
	version    string // the release the peer runs
	stateCheck *cluster.StateCheck
}

// peerAddr tells a monitor where its peer is: the peer port it probes,
// and the client address it reports.
type peerAddr struct{ raft, http string }

// monitorActor watches one peer: it pings it every ProbeInterval (one ping
// in flight at a time, off the mailbox), feeds each answer to a phi-accrual
// detector, and turns phi into Alive/Suspect/Dead with hysteresis. Its
// state is soft: a restarted monitor starts over from Unknown.
type monitorActor struct {
	tree     *Tree
	id       string
	addr     string // the peer port, which probes go to
	httpAddr string

	cfg     cluster.DetectorConfig
	det     *cluster.PhiAccrual
	state   cluster.PeerState
	since   time.Time
	streak  int // answers in a row
	probing bool
	cancel  func()

	rtts                     []time.Duration
	probes, fails, raftFails uint64
	clientPort, disk         string
	version                  string
	stateCheck               *cluster.StateCheck
}

func (a *monitorActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.cfg = a.tree.cfg.Detector
		a.reset(time.Now())
		a.state, a.since = cluster.PeerUnknown, time.Now()
		a.cancel = sendEvery(ctx.ActorSystem().Root, a.cfg.ProbeInterval, a.cfg.ProbeInterval, ctx.Self(), &probeTick{})
	case *actor.Restarting, *actor.Stopping:
		a.cancel()
	case *peerAddr:
		a.addr = m.raft
		if m.http != "" {
			a.httpAddr = m.http
		}
	case *probeTick:
		a.evaluate(ctx, time.Now())
		if !a.probing && a.addr != "" {
			a.probing = true
			a.probe(ctx)
		}
	case *probeResult:
		a.probing = false
		a.probes++
		if m.ok {
			a.det.Heartbeat(m.at)
			a.streak++
			a.clientPort, a.disk, a.stateCheck = m.clientPort, m.disk, m.stateCheck
			if m.version != "" {
				a.version = m.version
			}
			if m.httpAddr != "" {
				// Its own word is fresher than the registry, which lags
				// a new member by a maintenance tick.
				a.httpAddr = m.httpAddr
			}
			a.rtts = append(a.rtts, m.rtt)
			if len(a.rtts) > 100 {
				a.rtts = a.rtts[1:]
			}
		} else {
			a.fails++
			a.streak = 0
		}
		a.evaluate(ctx, time.Now())
	case cluster.PeerHeartbeat:
		// Raft's own heartbeats to this peer (seen when this node leads).
		if m.Failed {
			a.raftFails++
		} else {
			a.det.Heartbeat(time.Now())
		}
	case *crash:
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

// reset starts a fresh arrival history, counting now as the last sign of
// life: silence accrues suspicion from here.
func (a *monitorActor) reset(now time.Time) {
	a.det = cluster.NewPhiAccrual(a.cfg.Window, a.cfg.ProbeInterval, a.cfg.MinStdDev, a.cfg.AcceptablePause)
	a.det.Heartbeat(now)
}

func (a *monitorActor) probe(ctx actor.Context) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	link, addr, id, timeout := a.tree.link, a.addr, a.id, a.cfg.ProbeTimeout
	go func() {
		start := time.Now()
		c, cancel := context.WithTimeout(context.Background(), timeout)
		got, err := link.Ping(c, addr)
		cancel()
		// An answer from a different node at that address is no sign of
		// life of this peer.
		ok := err == nil && got.ID == id
		root.Send(self, &probeResult{ok: ok, rtt: time.Since(start), at: time.Now(), clientPort: got.ClientPortError, disk: got.DiskError, httpAddr: got.HTTPAddr, version: got.Version, stateCheck: got.StateCheck})
	}()
}

// evaluate applies the thresholds: phi decides Alive → Suspect → Dead, and
// only RecoverProbes answers in a row bring a peer back to Alive.
func (a *monitorActor) evaluate(ctx actor.Context, now time.Time) {
	phi := a.det.Phi(now)
	next := a.state
	switch {
	case phi >= a.cfg.DeadPhi:
		next = cluster.PeerDead
	case phi >= a.cfg.SuspectPhi && a.state != cluster.PeerDead:
		next = cluster.PeerSuspect
	case a.state == cluster.PeerAlive:
	case a.streak >= a.cfg.RecoverProbes || a.state == cluster.PeerUnknown && a.streak > 0:
		next = cluster.PeerAlive
	}
	if next != a.state {
		if next == cluster.PeerSuspect || next == cluster.PeerDead {
			// Recovery must be earned with fresh answers, counted from now:
			// a node that was itself frozen must not call every peer alive
			// the instant it wakes.
			a.streak = 0
		}
		if a.state == cluster.PeerDead && next == cluster.PeerAlive {
			// The long silence would otherwise inflate the history and
			// blunt the detector for the next failure.
			a.reset(now)
		}
		ev := &cluster.PeerStateChanged{Peer: a.id, From: a.state, To: next, Phi: phi, At: now}
		a.state, a.since = next, now
		ctx.ActorSystem().EventStream.Publish(ev)
	}
	ctx.Send(ctx.Parent(), a.status(phi))
}

func (a *monitorActor) status(phi float64) *cluster.PeerStatus {
	var mean, dev float64
	for _, r := range a.rtts {
		mean += float64(r)
	}
	if n := float64(len(a.rtts)); n > 0 {
		mean /= n
		for _, r := range a.rtts {
			dev += (float64(r) - mean) * (float64(r) - mean)
		}
		dev = math.Sqrt(dev / n)
	}
	return &cluster.PeerStatus{
		ID: a.id, RaftAddr: a.addr, HTTPAddr: a.httpAddr, State: a.state, Phi: roundPhi(phi),
		LastHeard: a.det.LastHeard(), RTTMeanMS: roundMS(mean), RTTStdDevMS: roundMS(dev),
		Probes: a.probes, Failures: a.fails, RaftFailures: a.raftFails, Since: a.since,
		ClientPortError: a.clientPort, DiskError: a.disk, StateCheck: a.stateCheck, Version: a.version,
	}
}

// roundMS turns nanoseconds into milliseconds with three decimals.
func roundMS(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }

// roundPhi keeps two decimals, and never reports -0 (a tiny negative
// phi rounds to it, and "-0.00" reads like a bug).
func roundPhi(phi float64) float64 {
	r := math.Round(phi*100) / 100
	if r == 0 {
		return 0
	}
	return r
}

// peerVersions is the release each peer last said it runs, kept by the
// peers actor as its monitors report and read by Client.Members without a
// message: it is soft state (a restarted monitor learns it again at its
// first answer), and a member list must not wait on the failure detector.
type peerVersions struct {
	mu sync.Mutex
	m  map[string]string
}

func (v *peerVersions) set(id, version string) {
	if version == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]string{}
	}
	v.m[id] = version
}

func (v *peerVersions) forget(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.m, id)
}

func (v *peerVersions) get(id string) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[id]
}
