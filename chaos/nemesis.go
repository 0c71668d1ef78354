package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// Env is what nemeses act through.
type Env struct {
	Target Target
	Rand   *rand.Rand
	HTTP   *http.Client
	Logf   func(string, ...any)
}

// Nemesis is one kind of fault: Start injects it, Stop heals it.
type Nemesis interface {
	Name() string
	Start(ctx context.Context, env *Env) (detail string, err error)
	Stop(ctx context.Context, env *Env) error
}

// Nemeses lists every nemesis by name, for --nemesis.
var Nemeses = map[string]func() Nemesis{
	"kill":             func() Nemesis { return &killNemesis{} },
	"kill-leader":      func() Nemesis { return &killNemesis{leader: true} },
	"pause":            func() Nemesis { return &pauseNemesis{} },
	"pause-leader":     func() Nemesis { return &pauseNemesis{leader: true} },
	"partition-leader": func() Nemesis { return &partitionNemesis{mode: "leader"} },
	"partition-half":   func() Nemesis { return &partitionNemesis{mode: "half"} },
	"partition-bridge": func() Nemesis { return &partitionNemesis{mode: "bridge"} },
	"oneway":           func() Nemesis { return &onewayNemesis{} },
	"netem":            func() Nemesis { return &netemNemesis{} },
	"os-partition":     func() Nemesis { return &osPartitionNemesis{} },
	"crash":            func() Nemesis { return &crashNemesis{} },
	"corrupt":          func() Nemesis { return &corruptNemesis{} },
}

// stepper is a nemesis that records what it did step by step (the corrupt
// nemesis's recovery); the steps go into the fault's record.
type stepper interface{ Steps() []string }

// NemesisNames is the sorted list of nemesis names.
func NemesisNames() []string {
	var out []string
	for n := range Nemeses {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// leader asks the nodes who leads; "" when none answers.
func (e *Env) leader(ctx context.Context) string {
	for _, n := range e.Target.Nodes() {
		var st struct {
			LeaderID string `json:"leader_id"`
		}
		if e.getJSON(ctx, n.HTTPAddr, "/v1/cluster/status", &st) == nil && st.LeaderID != "" {
			return st.LeaderID
		}
	}
	return ""
}

// pick returns the leader (when wanted and known) or a random running node.
func (e *Env) pick(ctx context.Context, leader bool) (Node, error) {
	nodes := e.Target.Nodes()
	if leader {
		if id := e.leader(ctx); id != "" {
			for _, n := range nodes {
				if n.ID == id {
					return n, nil
				}
			}
		}
	}
	var up []Node
	for _, n := range nodes {
		if e.Target.Running(n.ID) {
			up = append(up, n)
		}
	}
	if len(up) == 0 {
		return Node{}, fmt.Errorf("no running node")
	}
	return up[e.Rand.IntN(len(up))], nil
}

func (e *Env) getJSON(ctx context.Context, addr, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s%s: %d", addr, path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// install applies a fault plan through the nodes' chaos endpoints. Nodes
// that are down are skipped: they start again without rules. A rule set a
// node refuses stops the plan; clearing carries on past a failure, so a
// heal reaches every node it can, and returns the first error.
func (e *Env) install(ctx context.Context, p faultplan.Plan) error {
	c := e.chaosClient()
	addrs := map[string]string{}
	for _, n := range e.Target.Nodes() {
		addrs[n.ID] = n.HTTPAddr
	}
	var first error
	for _, s := range p {
		if !e.Target.Running(s.Node) {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if s.Rules == nil {
			err = c.ClearFaults(ctx, addrs[s.Node])
		} else {
			_, err = c.SetFaults(ctx, addrs[s.Node], *s.Rules)
		}
		cancel()
		switch {
		case err != nil && s.Rules != nil:
			return err
		case err != nil && first == nil:
			first = err
		}
	}
	return first
}

// chaosClient sends chaos requests; each call names the one node it is
// for, so the client's own endpoints do not matter.
func (e *Env) chaosClient() *client.Client { return client.New(nil, client.WithHTTPClient(e.HTTP)) }

// members lists the ids of the cluster's members, for fault plans.
func (e *Env) members() []string { return idList(e.Target.Nodes()) }

// clearFaults removes every node's fault rules.
func (e *Env) clearFaults(ctx context.Context) error {
	return e.install(ctx, faultplan.Heal(e.members()))
}

// killNemesis kills a node with SIGKILL and restarts it at the end.
type killNemesis struct {
	leader bool
	victim string
}

func (k *killNemesis) Name() string {
	if k.leader {
		return "kill-leader"
	}
	return "kill"
}

func (k *killNemesis) Start(ctx context.Context, e *Env) (string, error) {
	n, err := e.pick(ctx, k.leader)
	if err != nil {
		return "", err
	}
	k.victim = n.ID
	return "kill -9 " + n.ID, e.Target.Kill(n.ID)
}

func (k *killNemesis) Stop(ctx context.Context, e *Env) error { return e.Target.Restart(k.victim) }

// pauseNemesis freezes a node with SIGSTOP and resumes it with SIGCONT: it
// wakes up believing stale things.
type pauseNemesis struct {
	leader bool
	victim string
}

func (p *pauseNemesis) Name() string {
	if p.leader {
		return "pause-leader"
	}
	return "pause"
}

func (p *pauseNemesis) Start(ctx context.Context, e *Env) (string, error) {
	n, err := e.pick(ctx, p.leader)
	if err != nil {
		return "", err
	}
	p.victim = n.ID
	return "SIGSTOP " + n.ID, e.Target.Pause(n.ID)
}

func (p *pauseNemesis) Stop(ctx context.Context, e *Env) error { return e.Target.Resume(p.victim) }

// partitionNemesis splits the cluster through the fault injector.
type partitionNemesis struct {
	mode string // leader | half | bridge
}

func (p *partitionNemesis) Name() string { return "partition-" + p.mode }

// sides splits the nodes for the mode into two sides to cut apart; nodes
// on neither side (the bridge) keep talking to both.
func (p *partitionNemesis) sides(ctx context.Context, e *Env) (a, b []Node, detail string, err error) {
	nodes := e.Target.Nodes()
	e.Rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	switch p.mode {
	case "leader":
		id := e.leader(ctx)
		var lead, rest []Node
		for _, n := range nodes {
			if n.ID == id {
				lead = append(lead, n)
			} else {
				rest = append(rest, n)
			}
		}
		if len(lead) == 0 {
			lead, rest = nodes[:1], nodes[1:]
		}
		return lead, rest, fmt.Sprintf("%s | %s", ids(lead), ids(rest)), nil
	case "bridge":
		if len(nodes) < 5 {
			return nil, nil, "", fmt.Errorf("a bridge needs 5 nodes")
		}
		// a,b | c | d,e: c hears both sides, the sides do not hear each
		// other.
		left, bridge, right := nodes[:2], nodes[2:3], nodes[3:5]
		return left, right, fmt.Sprintf("%s | %s | %s", ids(left), ids(bridge), ids(right)), nil
	default:
		minority := max(len(nodes)/2, 1)
		small, big := nodes[:minority], nodes[minority:]
		return small, big, fmt.Sprintf("%s | %s", ids(small), ids(big)), nil
	}
}

func (p *partitionNemesis) Start(ctx context.Context, e *Env) (string, error) {
	a, b, detail, err := p.sides(ctx, e)
	if err != nil {
		return "", err
	}
	plan, err := faultplan.Partition(e.members(), idList(a), idList(b))
	if err != nil {
		return detail, err
	}
	return detail, e.install(ctx, plan)
}

func (p *partitionNemesis) Stop(ctx context.Context, e *Env) error { return e.clearFaults(ctx) }

// onewayNemesis loses every message from one node to another, but not the
// other way round.
type onewayNemesis struct{}

func (onewayNemesis) Name() string { return "oneway" }

func (onewayNemesis) Start(ctx context.Context, e *Env) (string, error) {
	nodes := e.Target.Nodes()
	e.Rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	from, to := nodes[0], nodes[1]
	// Half the time, make the leader one end of the cut.
	if id := e.leader(ctx); id != "" && e.Rand.IntN(2) == 0 {
		for i, n := range nodes {
			if n.ID == id {
				from, to = n, nodes[(i+1)%len(nodes)]
			}
		}
	}
	detail := fmt.Sprintf("%s -x-> %s", from.ID, to.ID)
	plan, err := faultplan.OneWay(e.members(), from.ID, to.ID)
	if err != nil {
		return detail, err
	}
	return detail, e.install(ctx, plan)
}

func (onewayNemesis) Stop(ctx context.Context, e *Env) error { return e.clearFaults(ctx) }

// netemNemesis degrades every link: loss plus delay with jitter.
type netemNemesis struct{}

func (netemNemesis) Name() string { return "netem" }

func (netemNemesis) Start(ctx context.Context, e *Env) (string, error) {
	effect := faultnet.Rule{Drop: 0.2, Delay: faultnet.Duration(50 * time.Millisecond), Jitter: faultnet.Duration(50 * time.Millisecond)}
	plan, err := faultplan.Degrade(e.members(), nil, effect, e.Rand.Uint64())
	if err == nil {
		err = e.install(ctx, plan)
	}
	return "20% loss, 50ms±50ms on every link", err
}

func (netemNemesis) Stop(ctx context.Context, e *Env) error { return e.clearFaults(ctx) }

// osPartitionNemesis cuts the network below Troupe: iptables rules in the
// nodes' network namespaces, so it tests the real TCP stack's behaviour and
// not Troupe's own injector.
type osPartitionNemesis struct{}

func (osPartitionNemesis) Name() string { return "os-partition" }

func (osPartitionNemesis) Start(ctx context.Context, e *Env) (string, error) {
	lt, ok := e.Target.(*LocalTarget)
	if !ok || !lt.NetNS() {
		return "", fmt.Errorf("os-partition needs a local cluster in network namespaces (--netns)")
	}
	nodes := e.Target.Nodes()
	e.Rand.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	small, big := nodes[:len(nodes)/2], nodes[len(nodes)/2:]
	return fmt.Sprintf("iptables %s | %s", ids(small), ids(big)), lt.Partition(small, big)
}

func (osPartitionNemesis) Stop(ctx context.Context, e *Env) error {
	if lt, ok := e.Target.(*LocalTarget); ok {
		return lt.HealOS()
	}
	return nil
}

// crashNemesis makes an actor inside a node fail, each of the ways the
// supervision tree has a decision for; supervision restarts it.
type crashNemesis struct{}

// crashes are the failures the crash nemesis draws from: an actor and a
// fault ("" is a panic).
var crashes = [][2]string{
	{"raft", ""}, {"raft", "raft-shutdown"}, {"raft", "listener"},
	{"http", ""}, {"http", "listener"}, {"forward", ""}, {"peers", ""},
}

func (crashNemesis) Name() string { return "crash" }

func (crashNemesis) Start(ctx context.Context, e *Env) (string, error) {
	n, err := e.pick(ctx, false)
	if err != nil {
		return "", err
	}
	c := crashes[e.Rand.IntN(len(crashes))]
	how := "panic"
	if c[1] != "" {
		how = c[1]
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return fmt.Sprintf("%s in %s on %s", how, c[0], n.ID), e.chaosClient().Crash(ctx, n.HTTPAddr, c[0], c[1])
}

func (crashNemesis) Stop(context.Context, *Env) error { return nil }

func ids(nodes []Node) string { return strings.Join(idList(nodes), ",") }

func idList(nodes []Node) []string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.ID)
	}
	return s
}
