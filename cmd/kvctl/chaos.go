package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// The chaos commands drive /v1/chaos/*. Fault rules are local to the node
// holding them, so every request goes to one node, never failing over. The
// builders (isolate, partition, oneway, netem, heal) take their plans from
// chaos/faultplan, which the nemeses share; this file only resolves nodes,
// checks that every node concerned answers and has chaos enabled before
// changing anything, installs the plan node by node and reports.

var chaosCommand = &command{
	name: "chaos", group: chaosGroup, args: "<subcommand> [arguments]",
	summary: "inject network faults and actor crashes",
	long: `Break the cluster on purpose, to watch it cope: cut, delay, lose or throttle
the messages between nodes, or crash one of a node's actors. The nodes must
run with --chaos (never in production); a node without it answers 404, and
kvctl stops with status 2 before changing anything.

Fault rules belong to the node that holds them: "out" acts on what it sends
to a peer, "in" on what it accepts from a peer, "both" on either. Installing
rules on a node replaces its whole rule set. Rules act on node-to-node
traffic only (Raft, leader forwarding, failure-detector pings), never on
kvctl's own requests, so a cut-off node can still be inspected and healed.

--node takes a node id (looked up in the cluster's member list through
--addr) or a node's HTTP address (host:port or URL). Builders name nodes by
id. "--all" means every member of the cluster.`,
	example: `  kvctl chaos isolate n3
  kvctl health --all
  kvctl chaos heal`,
	subs: []*command{
		chaosFaultsCommand, chaosSetCommand, chaosClearCommand, chaosCrashCommand,
		chaosIsolateCommand, chaosPartitionCommand, chaosOnewayCommand, chaosNetemCommand, chaosHealCommand,
	},
}

var chaosFaultsCommand = &command{
	name: "faults", group: chaosGroup, maxArgs: 0,
	summary: "show a node's fault rules (--all: every member's)",
	long: `Show the fault rules installed on one node: the one --node names, else the
first --addr. --all shows every member's rules. With -o json, print the rule
set as the node reports it (with --all, one entry per member), ready to be
edited and fed back to 'kvctl chaos set'.`,
	example: `  kvctl chaos faults
  kvctl chaos faults --node n2
  kvctl chaos faults --all
  kvctl -o json chaos faults --node n2 > rules.json`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "the node to ask: an id or an HTTP address (default: the first --addr)")
		all := fs.BoolP("all", "a", false, "show the rules of every member")
		return func(inv *invocation, args []string) error {
			r := &chaosRun{inv: inv}
			if *all {
				if *node != "" {
					return usagef("--node and --all are mutually exclusive")
				}
				return r.showAll()
			}
			t, err := r.nodeOrFirst(*node)
			if err != nil {
				return err
			}
			rs, err := inv.client.Faults(inv.ctx, t.Endpoint)
			if err != nil {
				return r.nodeErr(t, err)
			}
			if inv.json {
				return inv.printJSON(nonNil(rs))
			}
			return printFaults(inv.stdout, t, rs)
		}
	},
}

var chaosSetCommand = &command{
	name: "set", group: chaosGroup, args: "<json|->", minArgs: 1, maxArgs: 1,
	summary: "install a rule set on one node, from JSON",
	long: `Replace the fault rules of the node --node names with the rule set given as
JSON, or read from standard input with "-". The node judges the rules; if it
refuses them, its reason is printed and nothing changes.

A rule set is {"seed":N,"rules":[RULE,...]}, each rule
  {"peer":"<node id>|*", "direction":"in|out|both", "cut":true,
   "delay":"50ms", "jitter":"10ms", "drop":0.05, "bandwidth":1048576}
where every rule needs a peer, a direction and at least one of cut, delay,
drop or bandwidth (bytes per second, at least 1024); jitter must not exceed
delay, delay is at most 1m, drop is a probability from 0 to 1. The seed
makes loss and jitter repeatable.`,
	example: `  kvctl chaos set --node n1 '{"rules":[{"peer":"n2","direction":"out","cut":true}]}'
  kvctl chaos set --node 10.0.0.1:8500 - < rules.json`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "the node to change: an id or an HTTP address; required")
		return func(inv *invocation, args []string) error {
			if *node == "" {
				return usagef("chaos set needs --node: rules are per node")
			}
			body, err := inv.value(args[0])
			if err != nil {
				return err
			}
			r := &chaosRun{inv: inv}
			t, err := r.node(*node)
			if err != nil {
				return err
			}
			rs, err := inv.client.SetFaultsJSON(inv.ctx, t.Endpoint, body)
			if err != nil {
				return r.nodeErr(t, err)
			}
			if inv.json {
				return inv.printJSON(nonNil(rs))
			}
			fmt.Fprintf(inv.stdout, "%s: installed %s\n", t, describe(rs))
			return nil
		}
	},
}

var chaosClearCommand = &command{
	name: "clear", group: chaosGroup, maxArgs: 0,
	summary: "remove a node's fault rules (--all: every member's)",
	long: `Remove every fault rule from one node (--node, else the first --addr),
healing its links, or from every member with --all (the same as
'kvctl chaos heal').`,
	example: `  kvctl chaos clear --node n2
  kvctl chaos clear --all`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "the node to heal: an id or an HTTP address (default: the first --addr)")
		all := fs.BoolP("all", "a", false, "clear the rules of every member")
		return func(inv *invocation, args []string) error {
			r := &chaosRun{inv: inv}
			if *all {
				if *node != "" {
					return usagef("--node and --all are mutually exclusive")
				}
				return r.heal()
			}
			t, err := r.nodeOrFirst(*node)
			if err != nil {
				return err
			}
			return r.apply([]change{{target: t}}, nil, false)
		}
	},
}

var chaosCrashCommand = &command{
	name: "crash", group: chaosGroup, args: "<actor>", minArgs: 1, maxArgs: 1,
	summary: "make one of a node's actors crash",
	long: `Make an actor of the node --node names panic, to watch its supervisor restart
it. Actors: ` + strings.Join(client.CrashActors, ", ") + `. "peer/<id>" is the
failure detector's monitor of one peer; "node" restarts the node's whole
actor tree. Every crash counts against the node's restart budget; past it
the process exits.

--fault fails the actor another way than a panic: "raft-shutdown" stops
Raft underneath the raft actor (as an internal fatal error would), and
"listener" closes the raft or http actor's listener (as a failed socket
would); the actor notices and its supervisor restarts it.

The node answers before the actor crashes. A crashed "http" (or "node")
actor closes the listener, which may cut that answer off; kvctl then says
the outcome is unknown although the crash most likely happened.`,
	example: `  kvctl chaos crash --node n2 raft
  kvctl chaos crash --node n2 --fault listener raft
  kvctl chaos crash --node n1 peer/n3`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "the node whose actor crashes: an id or an HTTP address; required")
		fault := fs.String("fault", "", "how it fails: a panic (default), or "+strings.Join(client.CrashFaults, " or "))
		return func(inv *invocation, args []string) error {
			if *node == "" {
				return usagef("chaos crash needs --node")
			}
			r := &chaosRun{inv: inv}
			t, err := r.node(*node)
			if err != nil {
				return err
			}
			if err := inv.client.Crash(inv.ctx, t.Endpoint, args[0], *fault); err != nil {
				return r.nodeErr(t, err)
			}
			if inv.json {
				return inv.printJSON(struct {
					target
					Crashed string `json:"crashed"`
				}{t, args[0]})
			}
			fmt.Fprintf(inv.stdout, "%s: crashed %s\n", t, args[0])
			return nil
		}
	},
}

var chaosIsolateCommand = &command{
	name: "isolate", group: chaosGroup, args: "<node-id>...", minArgs: 1, maxArgs: 1 << 10,
	summary: "cut nodes off from every peer, both ways",
	long: `Cut each named node off from every other node, both ways, with one rule on
that node (cut, both ways, to every peer), replacing its rules. The other
nodes keep theirs. 'kvctl chaos heal' undoes it.`,
	example: `  kvctl chaos isolate n3
  kvctl chaos isolate n1 n2      # each alone: no quorum anywhere`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			r := &chaosRun{inv: inv}
			return r.plan(false, func(members []string) (faultplan.Plan, error) {
				return faultplan.Isolate(members, r.ids(args)...)
			})
		}
	},
}

var chaosPartitionCommand = &command{
	name: "partition", group: chaosGroup, args: "<id,id,...> <id,id,...>", minArgs: 2, maxArgs: 2,
	summary: "split the cluster in two sides that cannot talk to each other",
	long: `Cut every link between the two sides, both ways: each node of one side gets a
cut rule for every node of the other side (its rule set is replaced). Nodes
named on neither side keep their rules and still talk to both sides, which
makes a bridge: "partition n1 n3" on a 3-node cluster leaves n2 in touch
with both.`,
	example: `  kvctl chaos partition n1 n2,n3    # n1 alone, n2 and n3 keep a quorum
  kvctl chaos partition n1,n2 n3,n4,n5`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			r := &chaosRun{inv: inv}
			return r.plan(true, func(members []string) (faultplan.Plan, error) {
				return faultplan.Partition(members, r.ids(strings.Split(args[0], ",")), r.ids(strings.Split(args[1], ",")))
			})
		}
	},
}

var chaosOnewayCommand = &command{
	name: "oneway", group: chaosGroup, args: "<from-id> <to-id>", minArgs: 2, maxArgs: 2,
	summary: "lose every message one node sends to another",
	long: `Lose every message from the first node to the second, while the second still
reaches the first: one rule on the first node (cut, out, to the second),
replacing its rules. Either id may be * for every node: "oneway n1 '*'"
leaves n1 unheard, "oneway '*' n1" leaves it deaf (the rule then sits on
n1, cut, in, from every peer).`,
	example: `  kvctl chaos oneway n1 n2    # n2 no longer hears n1; n1 still hears n2
  kvctl chaos oneway '*' n1   # n1 hears nobody; everyone still hears n1`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			r := &chaosRun{inv: inv}
			return r.plan(false, func(members []string) (faultplan.Plan, error) {
				ids := r.ids(args)
				return faultplan.OneWay(members, ids[0], ids[1])
			})
		}
	},
}

var chaosNetemCommand = &command{
	name: "netem", group: chaosGroup, maxArgs: 0,
	summary: "degrade links: delay, jitter, loss, bandwidth caps",
	long: `Degrade the links of the nodes --node names (every member by default, or with
--all): hold each message back for --delay ± --jitter, lose it with
probability --drop (its connection breaks, as on a bad network), and cap
each link at --bandwidth bytes per second. Each node's rule set is replaced.
--seed makes loss and jitter repeatable.

Each message is degraded once, not once per end: a degraded node's rules
cover what it sends to anyone and what it receives from nodes that are not
degraded. So with every node degraded each node gets one "out" rule for
every peer, and a node degraded alone gets one "both" rule.`,
	example: `  kvctl chaos netem --delay 50ms --jitter 20ms
  kvctl chaos netem --node n3 --drop 0.05 --seed 7
  kvctl chaos netem --node n1,n2 --bandwidth 1048576`,
	setup: func(fs *pflag.FlagSet) action {
		var nodes addrList
		fs.Var(&nodes, "node", "degrade only these nodes (`ids`, comma-separated or repeated; default: every member)")
		all := fs.BoolP("all", "a", false, "degrade every member (the default)")
		delay := fs.Duration("delay", 0, "hold each message back this long")
		jitter := fs.Duration("jitter", 0, "vary the delay by up to this much either way (at most --delay)")
		drop := fs.Float64("drop", 0, "probability from 0 to 1 that a message is lost")
		bandwidth := fs.Int64("bandwidth", 0, "cap each link at this many bytes per second (at least 1024)")
		seed := fs.Uint64("seed", 0, "seed for loss and jitter, to replay a run")
		return func(inv *invocation, args []string) error {
			if *all && len(nodes) > 0 {
				return usagef("--node and --all are mutually exclusive")
			}
			if *delay == 0 && *drop == 0 && *bandwidth == 0 {
				return usagef("netem needs at least one of --delay, --drop and --bandwidth")
			}
			effect := faultnet.Rule{Delay: faultnet.Duration(*delay), Jitter: faultnet.Duration(*jitter), Drop: *drop, Bandwidth: *bandwidth}
			r := &chaosRun{inv: inv}
			return r.plan(false, func(members []string) (faultplan.Plan, error) {
				return faultplan.Degrade(members, r.ids(nodes), effect, *seed)
			})
		}
	},
}

var chaosHealCommand = &command{
	name: "heal", group: chaosGroup, maxArgs: 0,
	summary: "remove the fault rules of every member",
	long: `Remove every fault rule from every member of the cluster. Unlike the other
builders it does not stop at a node that does not answer: it heals every
node it can, then reports the others (status 2).`,
	example: `  kvctl chaos heal`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			return (&chaosRun{inv: inv}).heal()
		}
	},
}

// target is one node a chaos request goes to.
type target struct {
	ID       string `json:"id,omitempty"`
	Endpoint string `json:"endpoint"`
}

func (t target) String() string {
	addr := strings.TrimPrefix(t.Endpoint, "http://")
	if t.ID == "" {
		return addr
	}
	return t.ID + " (" + addr + ")"
}

// chaosRun resolves nodes for one chaos command, reading the member list
// at most once.
type chaosRun struct {
	inv     *invocation
	members []client.Member
	loaded  bool
}

func (r *chaosRun) loadMembers() error {
	if r.loaded {
		return nil
	}
	ms, err := r.inv.client.Members(r.inv.ctx)
	if err != nil {
		return fmt.Errorf("reading the member list: %w", err)
	}
	r.members, r.loaded = ms, true
	return nil
}

// endpointOf turns a member's registered host:port into an endpoint with
// the scheme of the first --addr, so an https cluster stays https.
func (r *chaosRun) endpointOf(m client.Member) string {
	if first, err := client.ParseEndpoint(r.inv.addrs[0]); err == nil && strings.HasPrefix(first, "https://") {
		return "https://" + m.HTTPAddr
	}
	return m.HTTPAddr
}

// member resolves a member id.
func (r *chaosRun) member(id string) (target, error) {
	if err := r.loadMembers(); err != nil {
		return target{}, err
	}
	for _, m := range r.members {
		if m.ID == id {
			if m.HTTPAddr == "" {
				return target{}, fmt.Errorf("member %s has no HTTP address registered yet", m.ID)
			}
			return target{ID: m.ID, Endpoint: r.endpointOf(m)}, nil
		}
	}
	return target{}, &faultplan.UnknownNodeError{ID: id, Members: r.memberIDs()}
}

func (r *chaosRun) memberIDs() []string {
	ids := make([]string, len(r.members))
	for i, m := range r.members {
		ids[i] = m.ID
	}
	return ids
}

// ids trims the node ids given to a builder and turns a member's HTTP
// address into its id: builders have always accepted either.
func (r *chaosRun) ids(vs []string) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = strings.TrimSpace(v)
		for _, m := range r.members {
			if m.HTTPAddr != "" && sameEndpoint(m.HTTPAddr, out[i]) {
				out[i] = m.ID
			}
		}
	}
	return out
}

// node resolves --node: an HTTP address is used as is (the node need not
// be reachable through --addr), anything else is a member id.
func (r *chaosRun) node(v string) (target, error) {
	if !strings.Contains(v, ":") {
		return r.member(v)
	}
	if _, err := client.ParseEndpoint(v); err != nil {
		return target{}, usagef("--node: %v", err)
	}
	return target{Endpoint: v}, nil
}

func (r *chaosRun) nodeOrFirst(v string) (target, error) {
	if v == "" {
		return target{Endpoint: r.inv.addrs[0]}, nil
	}
	return r.node(v)
}

func sameEndpoint(a, b string) bool {
	na, ea := client.ParseEndpoint(a)
	nb, eb := client.ParseEndpoint(b)
	return ea == nil && eb == nil && na == nb
}

// change is what one node is to get: a rule set, or nil to clear it.
type change struct {
	target target
	rules  *faultnet.Rules
}

// nodeResult is one node's line of a chaos command's outcome.
type nodeResult struct {
	target
	// Rules is the set installed now, as the node reports it.
	Rules *faultnet.Rules `json:"rules,omitempty"`
	Error string          `json:"error,omitempty"`
}

// nodeError names the node (id and address) in a client error.
type nodeError struct {
	t   target
	err error
}

func (e *nodeError) Error() string {
	var ce *client.Error
	if errors.As(e.err, &ce) {
		named := *ce
		named.Endpoint = e.t.String()
		return named.Error()
	}
	return e.t.String() + ": " + e.err.Error()
}

func (e *nodeError) Unwrap() error { return e.err }

// nodeErr explains a failed chaos request: a node without --chaos gets the
// one-line refusal, anything else names the node.
func (r *chaosRun) nodeErr(t target, err error) error {
	if errors.Is(err, client.ErrChaosDisabled) {
		return &exitErr{code: exitError, msg: fmt.Sprintf("chaos is not enabled on %s: start kvnode with --chaos", t)}
	}
	return &nodeError{t, err}
}

// multiError keeps every node's error reachable for errors.Is while
// printing as one line.
type multiError struct {
	prefix string
	errs   []error
}

func (e *multiError) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return e.prefix + strings.Join(msgs, "; ")
}

func (e *multiError) Unwrap() []error { return e.errs }

// fetch reads every target's rules concurrently. A target without an
// endpoint is a member with no HTTP address registered yet.
func (r *chaosRun) fetch(ts []target) ([]faultnet.Rules, []error) {
	rules := make([]faultnet.Rules, len(ts))
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		if t.Endpoint == "" {
			errs[i] = errors.New(t.ID + ": no HTTP address registered")
			continue
		}
		wg.Go(func() {
			rs, err := r.inv.client.Faults(r.inv.ctx, t.Endpoint)
			rules[i] = nonNil(rs)
			if err != nil {
				errs[i] = r.nodeErr(t, err)
			}
		})
	}
	wg.Wait()
	return rules, errs
}

// preflight proves each target answers and has chaos enabled before
// anything changes, and gives the rules a change replaces.
func (r *chaosRun) preflight(ts []target) ([]faultnet.Rules, []error) {
	before, errs := r.fetch(ts)
	for _, err := range errs {
		var ee *exitErr
		if errors.As(err, &ee) {
			return nil, []error{err}
		}
	}
	return before, errs
}

// apply makes the changes node by node and reports each. Unless
// bestEffort, every node must pass the preflight or nothing changes. A
// node refusing the rules (4xx) stops the run: the next nodes would refuse
// them too. untouched lists member ids a builder leaves alone, for the
// record.
func (r *chaosRun) apply(changes []change, untouched []string, bestEffort bool) error {
	ts := make([]target, len(changes))
	for i, c := range changes {
		ts[i] = c.target
	}
	before, errs := r.preflight(ts)
	if before == nil {
		return errs[0]
	}
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 && !bestEffort {
		prefix := "nothing changed: "
		if len(ts) > 1 {
			prefix = fmt.Sprintf("nothing changed, %d of %d nodes did not answer: ", len(failed), len(ts))
		}
		return &multiError{prefix: prefix, errs: failed}
	}

	var results []nodeResult
	var lines []string
	var stopped []string
	for i, c := range changes {
		if stopped != nil {
			stopped = append(stopped, c.target.String())
			continue
		}
		res := nodeResult{target: c.target}
		if errs[i] != nil {
			res.Error = errs[i].Error()
			results = append(results, res)
			continue
		}
		var installed faultnet.Rules
		var err error
		if c.rules == nil {
			err = r.inv.client.ClearFaults(r.inv.ctx, c.target.Endpoint)
		} else {
			installed, err = r.inv.client.SetFaults(r.inv.ctx, c.target.Endpoint, *c.rules)
		}
		if err != nil {
			err = r.nodeErr(c.target, err)
			failed = append(failed, err)
			res.Error = err.Error()
			results = append(results, res)
			if s := client.StatusCode(err); s >= 400 && s < 500 {
				stopped = []string{}
			}
			continue
		}
		installed = nonNil(installed)
		res.Rules = &installed
		results = append(results, res)
		switch {
		case c.rules == nil && len(before[i].Rules) == 0:
			lines = append(lines, fmt.Sprintf("%s: no rules to clear", c.target))
		case c.rules == nil:
			lines = append(lines, fmt.Sprintf("%s: cleared %s", c.target, describe(before[i])))
		case len(before[i].Rules) > 0 && !sameRules(before[i], installed):
			lines = append(lines, fmt.Sprintf("%s: installed %s (replacing %s)", c.target, describe(installed), describe(before[i])))
		default:
			lines = append(lines, fmt.Sprintf("%s: installed %s", c.target, describe(installed)))
		}
	}
	for _, id := range untouched {
		lines = append(lines, fmt.Sprintf("%s: left alone", id))
	}
	if len(changes) == 1 && len(failed) == 1 {
		// One node, one failure: the error says it all.
		return failed[0]
	}
	var err error
	if r.inv.json {
		err = r.inv.printJSON(results)
	} else {
		for _, l := range lines {
			fmt.Fprintln(r.inv.stdout, l)
		}
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		prefix := fmt.Sprintf("%d of %d nodes failed: ", len(failed), len(changes))
		switch {
		case stopped != nil && len(failed) == len(results):
			// The first node refused the rules: nobody has them.
			prefix = ""
			failed = append(failed, errors.New("nothing changed"))
		case len(stopped) > 0:
			failed = append(failed, fmt.Errorf("stopped there, not tried: %s", strings.Join(stopped, ", ")))
		}
		return &multiError{prefix: prefix, errs: failed}
	}
	return nil
}

// plan builds a fault plan for the current members and installs it. A
// builder's refusal is a usage error, except an unknown id, which may be a
// typo against the live member list. bridge reports the members the plan
// leaves alone (a partition's bridge).
func (r *chaosRun) plan(bridge bool, build func(members []string) (faultplan.Plan, error)) error {
	if err := r.loadMembers(); err != nil {
		return err
	}
	p, err := build(r.memberIDs())
	var unknown *faultplan.UnknownNodeError
	switch {
	case errors.As(err, &unknown):
		return err
	case err != nil:
		return usagef("%v", err)
	}
	var untouched []string
	for _, id := range r.memberIDs() {
		if bridge && !slices.ContainsFunc(p, func(s faultplan.Step) bool { return s.Node == id }) {
			untouched = append(untouched, id)
		}
	}
	return r.install(p, untouched, false)
}

// heal clears the rules of every member, as many as answer.
func (r *chaosRun) heal() error {
	if err := r.loadMembers(); err != nil {
		return err
	}
	return r.install(faultplan.Heal(r.memberIDs()), nil, true)
}

// install resolves each step's node and applies the plan. With
// bestEffort, a member with no HTTP address yet fails alone, in apply.
func (r *chaosRun) install(p faultplan.Plan, untouched []string, bestEffort bool) error {
	changes := make([]change, len(p))
	for i, s := range p {
		t, err := r.member(s.Node)
		if err != nil && !bestEffort {
			return err
		}
		changes[i] = change{target: target{ID: s.Node, Endpoint: t.Endpoint}, rules: s.Rules}
	}
	return r.apply(changes, untouched, bestEffort)
}

// showAll prints every member's rules.
func (r *chaosRun) showAll() error {
	if err := r.loadMembers(); err != nil {
		return err
	}
	ts := make([]target, len(r.members))
	for i, m := range r.members {
		ts[i] = target{ID: m.ID}
		if m.HTTPAddr != "" {
			ts[i].Endpoint = r.endpointOf(m)
		}
	}
	rules, errs := r.fetch(ts)
	results := make([]nodeResult, len(ts))
	var failed []string
	for i, t := range ts {
		results[i] = nodeResult{target: t, Rules: &rules[i]}
		if errs[i] != nil {
			results[i] = nodeResult{target: t, Error: errs[i].Error()}
			failed = append(failed, errs[i].Error())
		}
	}
	if len(failed) == len(results) && len(results) > 0 && strings.HasPrefix(failed[0], "chaos is not enabled") {
		return &exitErr{code: exitError, msg: failed[0]}
	}
	if r.inv.json {
		if err := r.inv.printJSON(results); err != nil {
			return err
		}
	} else {
		for i, res := range results {
			if i > 0 {
				fmt.Fprintln(r.inv.stdout)
			}
			if res.Rules == nil {
				fmt.Fprintf(r.inv.stdout, "%s: unavailable\n", res.target)
				continue
			}
			if err := printFaults(r.inv.stdout, res.target, *res.Rules); err != nil {
				return err
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d nodes did not answer: %s", len(failed), len(results), strings.Join(failed, "; "))
	}
	return nil
}

// nonNil makes an empty rule list print as [] rather than null.
func nonNil(rs faultnet.Rules) faultnet.Rules {
	if rs.Rules == nil {
		rs.Rules = []faultnet.Rule{}
	}
	return rs
}

func sameRules(a, b faultnet.Rules) bool {
	return a.Seed == b.Seed && slices.Equal(a.Rules, b.Rules)
}

// describe renders a rule set in one line: "cut to and from every peer;
// delay 50ms±10ms to n2 (seed 7)".
func describe(rs faultnet.Rules) string {
	if len(rs.Rules) == 0 {
		return "no rules"
	}
	parts := make([]string, len(rs.Rules))
	for i, r := range rs.Rules {
		parts[i] = ruleText(r)
	}
	s := strings.Join(parts, "; ")
	if rs.Seed != 0 {
		s += fmt.Sprintf(" (seed %d)", rs.Seed)
	}
	return s
}

func ruleText(r faultnet.Rule) string {
	var effects []string
	if r.Cut {
		effects = append(effects, "cut")
	}
	if r.Delay != 0 || r.Jitter != 0 {
		d := "delay " + time.Duration(r.Delay).String()
		if r.Jitter != 0 {
			d += "±" + time.Duration(r.Jitter).String()
		}
		effects = append(effects, d)
	}
	if r.Drop != 0 {
		effects = append(effects, "drop "+strconv.FormatFloat(r.Drop, 'g', -1, 64))
	}
	if r.Bandwidth != 0 {
		effects = append(effects, fmt.Sprintf("bandwidth %d B/s", r.Bandwidth))
	}
	peer := r.Peer
	if peer == faultnet.AnyPeer {
		peer = "every peer"
	}
	var way string
	switch r.Direction {
	case faultnet.Out:
		way = "to " + peer
	case faultnet.In:
		way = "from " + peer
	case faultnet.Both:
		way = "to and from " + peer
	default:
		way = string(r.Direction) + " " + peer
	}
	return strings.Join(effects, ", ") + " " + way
}

// printFaults shows one node's rules as a table.
func printFaults(w io.Writer, t target, rs faultnet.Rules) error {
	if len(rs.Rules) == 0 {
		fmt.Fprintf(w, "%s: no rules\n", t)
		return nil
	}
	noun := "rules"
	if len(rs.Rules) == 1 {
		noun = "rule"
	}
	fmt.Fprintf(w, "%s: %d %s, seed %d\n", t, len(rs.Rules), noun, rs.Seed)
	tw := newTable(w)
	fmt.Fprintln(tw, "PEER\tDIRECTION\tCUT\tDELAY\tJITTER\tDROP\tBANDWIDTH")
	for _, r := range rs.Rules {
		cut := "-"
		if r.Cut {
			cut = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Peer, r.Direction, cut,
			zeroDash(r.Delay != 0, time.Duration(r.Delay).String()), zeroDash(r.Jitter != 0, time.Duration(r.Jitter).String()),
			zeroDash(r.Drop != 0, strconv.FormatFloat(r.Drop, 'g', -1, 64)),
			zeroDash(r.Bandwidth != 0, strconv.FormatInt(r.Bandwidth, 10)+" B/s"))
	}
	return tw.Flush()
}

func zeroDash(set bool, s string) string {
	if !set {
		return "-"
	}
	return s
}
