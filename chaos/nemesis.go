package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"time"
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
}

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

func (e *Env) send(ctx context.Context, method, addr, path string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s on %s: %d %s", method, path, addr, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}

// setFaults installs a fault rule set on one node (chaos mode).
func (e *Env) setFaults(ctx context.Context, n Node, rules string) error {
	return e.send(ctx, http.MethodPut, n.HTTPAddr, "/v1/chaos/faults", []byte(rules))
}

// clearFaults removes every node's fault rules (nodes that are down are
// skipped: they start without rules).
func (e *Env) clearFaults(ctx context.Context) error {
	var first error
	for _, n := range e.Target.Nodes() {
		if !e.Target.Running(n.ID) {
			continue
		}
		if err := e.send(ctx, http.MethodDelete, n.HTTPAddr, "/v1/chaos/faults", nil); err != nil && first == nil {
			first = err
		}
	}
	return first
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

// groups splits the nodes for the mode: each pair of groups listed is cut
// apart.
func (p *partitionNemesis) groups(ctx context.Context, e *Env) ([][2][]Node, string, error) {
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
		return [][2][]Node{{lead, rest}}, fmt.Sprintf("%s | %s", ids(lead), ids(rest)), nil
	case "bridge":
		if len(nodes) < 5 {
			return nil, "", fmt.Errorf("a bridge needs 5 nodes")
		}
		// a,b | c | d,e: c hears both sides, the sides do not hear each
		// other.
		left, bridge, right := nodes[:2], nodes[2:3], nodes[3:5]
		return [][2][]Node{{left, right}}, fmt.Sprintf("%s | %s | %s", ids(left), ids(bridge), ids(right)), nil
	default:
		minority := len(nodes) / 2
		if minority == 0 {
			minority = 1
		}
		small, big := nodes[:minority], nodes[minority:]
		return [][2][]Node{{small, big}}, fmt.Sprintf("%s | %s", ids(small), ids(big)), nil
	}
}

func (p *partitionNemesis) Start(ctx context.Context, e *Env) (string, error) {
	splits, detail, err := p.groups(ctx, e)
	if err != nil {
		return "", err
	}
	rules := map[string][]string{} // node -> peers it is cut from
	for _, s := range splits {
		for _, a := range s[0] {
			for _, b := range s[1] {
				rules[a.ID] = append(rules[a.ID], b.ID)
				rules[b.ID] = append(rules[b.ID], a.ID)
			}
		}
	}
	for _, n := range e.Target.Nodes() {
		peers := rules[n.ID]
		if len(peers) == 0 {
			continue
		}
		var rs []string
		for _, peer := range peers {
			rs = append(rs, fmt.Sprintf(`{"peer":%q,"direction":"both","cut":true}`, peer))
		}
		if err := e.setFaults(ctx, n, `{"rules":[`+strings.Join(rs, ",")+`]}`); err != nil {
			return detail, err
		}
	}
	return detail, nil
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
	rule := fmt.Sprintf(`{"rules":[{"peer":%q,"direction":"out","cut":true}]}`, to.ID)
	return fmt.Sprintf("%s -x-> %s", from.ID, to.ID), e.setFaults(ctx, from, rule)
}

func (onewayNemesis) Stop(ctx context.Context, e *Env) error { return e.clearFaults(ctx) }

// netemNemesis degrades every link: loss plus delay with jitter.
type netemNemesis struct{}

func (netemNemesis) Name() string { return "netem" }

func (netemNemesis) Start(ctx context.Context, e *Env) (string, error) {
	seed := e.Rand.Uint64()
	rule := fmt.Sprintf(`{"seed":%d,"rules":[{"peer":"*","direction":"out","drop":0.2,"delay":"50ms","jitter":"50ms"}]}`, seed)
	for _, n := range e.Target.Nodes() {
		if !e.Target.Running(n.ID) {
			continue
		}
		if err := e.setFaults(ctx, n, rule); err != nil {
			return "", err
		}
	}
	return "20% loss, 50ms±50ms on every link", nil
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

// crashNemesis makes an actor inside a node panic; supervision restarts it.
type crashNemesis struct{}

func (crashNemesis) Name() string { return "crash" }

func (crashNemesis) Start(ctx context.Context, e *Env) (string, error) {
	n, err := e.pick(ctx, false)
	if err != nil {
		return "", err
	}
	actor := []string{"raft", "http", "peers"}[e.Rand.IntN(3)]
	return fmt.Sprintf("panic in %s on %s", actor, n.ID), e.send(ctx, http.MethodPost, n.HTTPAddr, "/v1/chaos/crash?actor="+actor, nil)
}

func (crashNemesis) Stop(context.Context, *Env) error { return nil }

func ids(nodes []Node) string {
	var s []string
	for _, n := range nodes {
		s = append(s, n.ID)
	}
	return strings.Join(s, ",")
}
