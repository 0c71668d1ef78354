package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// faultsOf reads nd's fault rules straight from the chaos endpoint, so the
// tests check what kvctl installed, not what it says it did.
func faultsOf(t *testing.T, nd *inproc.Node) faultnet.Rules {
	t.Helper()
	resp, err := http.Get("http://" + nd.HTTPAddr + "/v1/chaos/faults")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var rs faultnet.Rules
	if resp.StatusCode != 200 || json.Unmarshal(body, &rs) != nil {
		t.Fatalf("GET faults of %s: %d %s", nd.ID, resp.StatusCode, body)
	}
	return rs
}

// expectRules checks every node's rules; a node missing from want must
// have none.
func expectRules(t *testing.T, nodes []*inproc.Node, want map[string]faultnet.Rules) {
	t.Helper()
	for _, nd := range nodes {
		got, w := faultsOf(t, nd), want[nd.ID]
		gotJSON, _ := json.Marshal(nonNil(got))
		wantJSON, _ := json.Marshal(nonNil(w))
		if string(gotJSON) != string(wantJSON) {
			t.Fatalf("%s has rules %s, want %s", nd.ID, gotJSON, wantJSON)
		}
	}
}

func cutRule(peer string, d faultnet.Direction) faultnet.Rule {
	return faultnet.Rule{Peer: peer, Direction: d, Cut: true}
}

func rules(seed uint64, rs ...faultnet.Rule) faultnet.Rules {
	return faultnet.Rules{Seed: seed, Rules: rs}
}

// jsonOf is a rule set as 'kvctl chaos set' reads it.
func jsonOf(rs faultnet.Rules) string {
	b, err := json.Marshal(rs)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// eventually runs kvctl until check accepts the result.
func eventually(t *testing.T, what string, check func(result) bool, nodes []*inproc.Node, args ...string) result {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := on(t, nodes, args...)
		if check(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never happened; last: exit %d\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHealthCommand: health tables and JSON from a real cluster, and
// --check following a node being cut off and healed with the chaos
// builders.
func TestHealthCommand(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Chaos: true})
	leader := inproc.Leader(t, nodes)
	n1, n3 := nodes[0], nodes[2]
	ok := func(r result) bool { return r.code == 0 }
	eventually(t, "every node seeing every peer alive", ok, nodes, "health", "--all", "--check")

	leaderLine := func(nd *inproc.Node, at string) string {
		if at != "" {
			at = " at " + at
		}
		if nd == leader {
			return fmt.Sprintf("%s%s: leader %s (this node, raft %s)", nd.ID, at, leader.ID, leader.RaftAddr)
		}
		return fmt.Sprintf("%s%s: leader %s (raft %s)", nd.ID, at, leader.ID, leader.RaftAddr)
	}
	// A loaded machine may make a peer suspect for a moment: the tables'
	// shape is what is checked here, the states further down.
	const anyState = "(alive|suspect)"
	header := regexp.MustCompile(`^ID +STATE +PHI +LAST HEARD +RTT +PROBES +FAILURES$`)
	row := func(id, state string) *regexp.Regexp {
		return regexp.MustCompile(`^` + id + ` +` + state + ` +\d+\.\d\d +(\d+(\.\d+)?(ms|s)|0s) ago +\d+\.\d\d±\d+\.\d\dms +\d+ +\d+$`)
	}

	t.Run("text", func(t *testing.T) {
		r := on(t, nodes, "health")
		lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
		if r.code != 0 || r.stderr != "" || len(lines) != 4 || lines[0] != leaderLine(n1, "") || !header.MatchString(lines[1]) ||
			!row("n2", anyState).MatchString(lines[2]) || !row("n3", anyState).MatchString(lines[3]) {
			t.Fatalf("health: %+v", r)
		}
		r = on(t, nodes, "health", "--all")
		blocks := strings.Split(r.stdout, "\n\n")
		if r.code != 0 || len(blocks) != 3 {
			t.Fatalf("health --all: %+v", r)
		}
		for i, nd := range nodes {
			lines := strings.Split(strings.TrimSuffix(blocks[i], "\n"), "\n")
			if len(lines) != 4 || lines[0] != leaderLine(nd, nd.HTTPAddr) || !header.MatchString(lines[1]) {
				t.Fatalf("health --all, %s's view:\n%s", nd.ID, blocks[i])
			}
			for _, peer := range []string{"n1", "n2", "n3"} {
				if peer != nd.ID && !strings.Contains(blocks[i], "\n"+peer+" ") {
					t.Fatalf("health --all, %s's view lacks %s:\n%s", nd.ID, peer, blocks[i])
				}
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		var h client.Health
		decodeJSON(t, on(t, nodes, "-o", "json", "health"), &h)
		if h.Node != n1.ID || h.LeaderID != leader.ID || h.LeaderRaftAddr != leader.RaftAddr || len(h.Peers) != 2 ||
			h.Peers[0].ID != "n2" || h.Peers[0].HTTPAddr != nodes[1].HTTPAddr || h.Peers[0].State == "" || h.Peers[0].Probes == 0 {
			t.Fatalf("health -o json = %+v", h)
		}
		var raw map[string]any
		decodeJSON(t, on(t, nodes, "-o", "json", "health"), &raw)
		peer := raw["peers"].([]any)[0].(map[string]any)
		for _, k := range []string{"id", "http_addr", "state", "phi", "last_heard", "rtt_mean_ms", "rtt_stddev_ms", "probes", "failures", "raft_heartbeat_failures", "state_since"} {
			if _, ok := peer[k]; !ok {
				t.Fatalf("health -o json: peer lacks %q: %v", k, peer)
			}
		}
		var views []healthView
		decodeJSON(t, on(t, nodes, "-o", "json", "health", "--all"), &views)
		if len(views) != 3 {
			t.Fatalf("health --all -o json = %+v", views)
		}
		for i, v := range views {
			if v.Endpoint != nodes[i].HTTPAddr || v.Health == nil || v.Health.Node != nodes[i].ID || v.Error != "" || len(v.Health.Peers) != 2 {
				t.Fatalf("health --all -o json [%d] = %+v", i, v)
			}
		}
	})

	t.Run("check follows isolation and healing", func(t *testing.T) {
		r := on(t, nodes, "chaos", "isolate", n3.ID)
		r.expect(t, 0, fmt.Sprintf("n3 (%s): installed cut to and from every peer\n", n3.HTTPAddr))
		expectRules(t, nodes, map[string]faultnet.Rules{"n3": rules(0, cutRule("*", faultnet.Both))})

		// n1 and n2 both declare n3 dead; health itself still exits 0.
		others := nodes[:2]
		r = eventually(t, "n1 and n2 seeing n3 dead", func(r result) bool {
			return r.code == 1 && strings.Contains(r.stderr, "n1 sees n3 dead") && strings.Contains(r.stderr, "n2 sees n3 dead")
		}, others, "health", "--all", "--check")
		if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "kvctl: not every peer is alive: ") ||
			!regexp.MustCompile(`\nn3 +dead +\d+\.\d\d `).MatchString(r.stdout) {
			t.Fatalf("health --check with n3 cut off: %+v", r)
		}
		r = on(t, others, "health", "--all")
		if r.code != 0 || strings.Count(r.stdout, "\nn3 ") != 2 || !regexp.MustCompile(`\nn3 +dead `).MatchString(r.stdout) {
			t.Fatalf("health without --check: %+v", r)
		}
		// JSON and --check combine: the JSON is printed, the exit says no.
		var h client.Health
		r = on(t, others, "-o", "json", "health", "--check")
		decodeJSON(t, r, &h)
		if r.code != 1 || h.Node != n1.ID {
			t.Fatalf("health --check -o json: %+v", r)
		}

		r = on(t, nodes, "chaos", "heal")
		r.expect(t, 0, fmt.Sprintf("n1 (%s): no rules to clear\nn2 (%s): no rules to clear\nn3 (%s): cleared cut to and from every peer\n",
			n1.HTTPAddr, nodes[1].HTTPAddr, n3.HTTPAddr))
		expectRules(t, nodes, nil)
		eventually(t, "every peer alive again", ok, nodes, "health", "--all", "--check")
	})

	t.Run("an unreachable node", func(t *testing.T) {
		dead := deadAddr(t)
		r := kvctl(t, "", nil, "--addr", n1.HTTPAddr+","+dead, "health", "--all", "--check")
		if r.code != 2 || !strings.Contains(r.stdout, "\n\n"+dead+": unreachable\n") || strings.Count(r.stderr, "\n") != 1 ||
			!strings.Contains(r.stderr, "kvctl: health: 1 of 2 nodes did not answer: "+dead+": dial tcp") {
			t.Fatalf("health --all with a dead node: %+v", r)
		}
	})
}

// TestChaosCommands checks that every chaos command installs the expected
// rules on the expected nodes, reading them back from each node.
func TestChaosCommands(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Chaos: true})
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	heal := func(t *testing.T) {
		t.Helper()
		on(t, nodes, "chaos", "heal").succeeds(t)
		expectRules(t, nodes, nil)
	}

	t.Run("faults", func(t *testing.T) {
		on(t, nodes, "chaos", "faults").expect(t, 0, n1.HTTPAddr+": no rules\n")
		on(t, nodes, "chaos", "faults", "--node", "n2").expect(t, 0, "n2 ("+n2.HTTPAddr+"): no rules\n")
		on(t, nodes, "-o", "json", "chaos", "faults", "--node", n3.HTTPAddr).expect(t, 0, "{\n  \"seed\": 0,\n  \"rules\": []\n}\n")
		on(t, nodes, "chaos", "faults", "--node", "n9").expectErr(t, 2, `kvctl: chaos faults: no member with id "n9" (members: n1, n2, n3)`)
		on(t, nodes, "chaos", "faults", "--node", "n1", "--all").expectErr(t, 2, "mutually exclusive")
		dead := deadAddr(t)
		on(t, nodes, "chaos", "faults", "--node", dead).expectErr(t, 2, "kvctl: chaos faults: "+dead+": dial tcp")
	})

	t.Run("set and clear", func(t *testing.T) {
		want := rules(9,
			faultnet.Rule{Peer: "n1", Direction: faultnet.Out, Delay: faultnet.Duration(30 * time.Millisecond), Jitter: faultnet.Duration(10 * time.Millisecond)},
			faultnet.Rule{Peer: "*", Direction: faultnet.In, Drop: 0.25, Bandwidth: 2048})
		r := on(t, nodes, "chaos", "set", "--node", "n2", jsonOf(want))
		r.expect(t, 0, "n2 ("+n2.HTTPAddr+"): installed delay 30ms±10ms to n1; drop 0.25, bandwidth 2048 B/s from every peer (seed 9)\n")
		expectRules(t, nodes, map[string]faultnet.Rules{"n2": want})
		r = on(t, nodes, "chaos", "faults", "--node", "n2")
		r.expect(t, 0, "n2 ("+n2.HTTPAddr+"): 2 rules, seed 9\n"+table(
			[]string{"PEER", "DIRECTION", "CUT", "DELAY", "JITTER", "DROP", "BANDWIDTH"},
			[]string{"n1", "out", "-", "30ms", "10ms", "-", "-"},
			[]string{"*", "in", "-", "-", "-", "0.25", "2048 B/s"}))

		// From stdin, by address; -o json prints the installed set.
		var got faultnet.Rules
		r = kvctl(t, jsonOf(rules(0, cutRule("n2", faultnet.Both))), nil, "--addr", n1.HTTPAddr, "-o", "json", "chaos", "set", "--node", n3.HTTPAddr, "-")
		decodeJSON(t, r, &got)
		if r.code != 0 || !sameRules(got, rules(0, cutRule("n2", faultnet.Both))) {
			t.Fatalf("set - -o json: %+v", r)
		}
		expectRules(t, nodes, map[string]faultnet.Rules{"n2": want, "n3": rules(0, cutRule("n2", faultnet.Both))})

		// The server's reasons, one line, nothing changed: malformed and
		// invalid rule sets, as a user may type them.
		for body, reason := range map[string]string{
			`{"rules":[`:   "HTTP 400: bad fault rules: unexpected EOF",
			`not json`:     "HTTP 400: bad fault rules: invalid character 'o' in literal null (expecting 'u')",
			`{"rulez":[]}`: `HTTP 400: bad fault rules: json: unknown field "rulez"`,
			`{"rules":[{"peer":"n1","direction":"in","delay":"10ms","jitter":"1s"}]}`: "HTTP 400: rule 0: jitter 1s must not exceed delay 10ms",
			`{"rules":[{"peer":"n1","direction":"up","cut":true}]}`:                   `HTTP 400: rule 0: direction "up" must be in, out or both`,
			`{"rules":[{"peer":"n1","direction":"in","bandwidth":10}]}`:               "HTTP 400: rule 0: bandwidth 10 B/s is below the 1024 B/s floor",
		} {
			on(t, nodes, "chaos", "set", "--node", "n2", body).expectErr(t, 2, "kvctl: chaos set: n2 ("+n2.HTTPAddr+"): "+reason+"\n")
		}
		expectRules(t, nodes, map[string]faultnet.Rules{"n2": want, "n3": rules(0, cutRule("n2", faultnet.Both))})
		on(t, nodes, "chaos", "set", "{}").expectErr(t, 2, "chaos set needs --node")
		on(t, nodes, "chaos", "set", "--node", "n2").expectErr(t, 2, "chaos set expects <json|-> [flags], got 0 argument(s)")

		on(t, nodes, "chaos", "clear", "--node", "n2").expect(t, 0,
			"n2 ("+n2.HTTPAddr+"): cleared delay 30ms±10ms to n1; drop 0.25, bandwidth 2048 B/s from every peer (seed 9)\n")
		expectRules(t, nodes, map[string]faultnet.Rules{"n3": rules(0, cutRule("n2", faultnet.Both))})
		// Without --node: the first --addr.
		on(t, []*inproc.Node{n3, n1}, "chaos", "clear").expect(t, 0, n3.HTTPAddr+": cleared cut to and from n2\n")
		expectRules(t, nodes, nil)
		on(t, nodes, "chaos", "clear", "--node", "n1").expect(t, 0, "n1 ("+n1.HTTPAddr+"): no rules to clear\n")
	})

	t.Run("isolate", func(t *testing.T) {
		on(t, nodes, "chaos", "isolate", "n1", "n3").expect(t, 0, fmt.Sprintf(
			"n1 (%s): installed cut to and from every peer\nn3 (%s): installed cut to and from every peer\n", n1.HTTPAddr, n3.HTTPAddr))
		isolated := rules(0, cutRule("*", faultnet.Both))
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": isolated, "n3": isolated})
		on(t, nodes, "chaos", "faults", "--all").expect(t, 0, fmt.Sprintf("n1 (%s): 1 rule, seed 0\n%s\nn2 (%s): no rules\n\nn3 (%s): 1 rule, seed 0\n%s",
			n1.HTTPAddr, table([]string{"PEER", "DIRECTION", "CUT", "DELAY", "JITTER", "DROP", "BANDWIDTH"}, []string{"*", "both", "yes", "-", "-", "-", "-"}),
			n2.HTTPAddr, n3.HTTPAddr, table([]string{"PEER", "DIRECTION", "CUT", "DELAY", "JITTER", "DROP", "BANDWIDTH"}, []string{"*", "both", "yes", "-", "-", "-", "-"})))
		var all []nodeResult
		decodeJSON(t, on(t, nodes, "-o", "json", "chaos", "faults", "--all"), &all)
		if len(all) != 3 || all[1].ID != "n2" || all[1].Endpoint != n2.HTTPAddr || all[1].Rules == nil || len(all[1].Rules.Rules) != 0 ||
			all[2].Rules == nil || !sameRules(*all[2].Rules, isolated) {
			t.Fatalf("faults --all -o json = %+v", all)
		}
		// The member list is still readable through an isolated node.
		r := on(t, nodes, "chaos", "isolate", "n2")
		r.expect(t, 0, fmt.Sprintf("n2 (%s): installed cut to and from every peer\n", n2.HTTPAddr))
		on(t, nodes, "chaos", "isolate", "n7").expectErr(t, 2, `no member with id "n7"`)
		on(t, nodes, "chaos", "isolate", "n1", "n1").expectErr(t, 2, "node n1 is named twice")
		heal(t)
	})

	t.Run("partition", func(t *testing.T) {
		r := on(t, nodes, "chaos", "partition", "n1", "n2,n3")
		r.expect(t, 0, fmt.Sprintf("n1 (%s): installed cut to and from n2; cut to and from n3\nn2 (%s): installed cut to and from n1\nn3 (%s): installed cut to and from n1\n",
			n1.HTTPAddr, n2.HTTPAddr, n3.HTTPAddr))
		expectRules(t, nodes, map[string]faultnet.Rules{
			"n1": rules(0, cutRule("n2", faultnet.Both), cutRule("n3", faultnet.Both)),
			"n2": rules(0, cutRule("n1", faultnet.Both)),
			"n3": rules(0, cutRule("n1", faultnet.Both)),
		})
		heal(t)

		// A bridge: n2 is on neither side and keeps its (empty) rules.
		var res []nodeResult
		r = on(t, nodes, "-o", "json", "chaos", "partition", "n3", "n1")
		decodeJSON(t, r, &res)
		if r.code != 0 || len(res) != 2 || res[0].ID != "n3" || res[1].ID != "n1" || res[0].Endpoint != n3.HTTPAddr ||
			!sameRules(*res[0].Rules, rules(0, cutRule("n1", faultnet.Both))) {
			t.Fatalf("partition -o json: %+v", r)
		}
		expectRules(t, nodes, map[string]faultnet.Rules{
			"n1": rules(0, cutRule("n3", faultnet.Both)),
			"n3": rules(0, cutRule("n1", faultnet.Both)),
		})
		r = on(t, nodes, "chaos", "partition", "n1", "n3")
		if r.code != 0 || !strings.HasSuffix(r.stdout, "\nn2: left alone\n") {
			t.Fatalf("partition with a bridge: %+v", r)
		}
		on(t, nodes, "chaos", "partition", "n1,n2", "n2,n3").expectErr(t, 2, "n2 is on both sides of the partition")
		on(t, nodes, "chaos", "partition", "n1", "n4").expectErr(t, 2, `no member with id "n4"`)
		on(t, nodes, "chaos", "partition", "n1,", "n2").expectErr(t, 2, "empty node id")
		on(t, nodes, "chaos", "partition", "n1").expectErr(t, 2, "chaos partition expects <id,id,...> <id,id,...> [flags], got 1 argument(s)")
		heal(t)
	})

	t.Run("oneway", func(t *testing.T) {
		on(t, nodes, "chaos", "set", "--node", "n1", jsonOf(rules(0, cutRule("n3", faultnet.In)))).succeeds(t)
		on(t, nodes, "chaos", "oneway", "n1", "n2").expect(t, 0, "n1 ("+n1.HTTPAddr+"): installed cut to n2 (replacing cut from n3)\n")
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": rules(0, cutRule("n2", faultnet.Out))})
		on(t, nodes, "chaos", "oneway", "n2", "n2").expectErr(t, 2, "two different nodes")
		// * is every node; a node may be named by its HTTP address.
		on(t, nodes, "chaos", "oneway", "*", n3.HTTPAddr).expect(t, 0, "n3 ("+n3.HTTPAddr+"): installed cut from every peer\n")
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": rules(0, cutRule("n2", faultnet.Out)), "n3": rules(0, cutRule("*", faultnet.In))})
		heal(t)
	})

	t.Run("netem", func(t *testing.T) {
		effects := faultnet.Rule{Delay: faultnet.Duration(50 * time.Millisecond), Jitter: faultnet.Duration(20 * time.Millisecond), Drop: 0.05, Bandwidth: 1048576}
		with := func(peer string, d faultnet.Direction) faultnet.Rule {
			r := effects
			r.Peer, r.Direction = peer, d
			return r
		}
		args := []string{"chaos", "netem", "--delay", "50ms", "--jitter", "20ms", "--drop", "0.05", "--bandwidth", "1048576"}
		desc := "delay 50ms±20ms, drop 0.05, bandwidth 1048576 B/s"

		// Every node: each one's outgoing messages.
		r := on(t, nodes, append(args, "--seed", "7")...)
		r.expect(t, 0, fmt.Sprintf("n1 (%[1]s): installed %[4]s to every peer (seed 7)\nn2 (%[2]s): installed %[4]s to every peer (seed 7)\nn3 (%[3]s): installed %[4]s to every peer (seed 7)\n",
			n1.HTTPAddr, n2.HTTPAddr, n3.HTTPAddr, desc))
		out := rules(7, with("*", faultnet.Out))
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": out, "n2": out, "n3": out})
		on(t, nodes, append(args, "--all", "--seed", "7")...).succeeds(t)
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": out, "n2": out, "n3": out})
		heal(t)

		// One node: both ways, the others untouched.
		on(t, nodes, append(args, "--node", "n2")...).expect(t, 0, fmt.Sprintf("n2 (%s): installed %s to and from every peer\n", n2.HTTPAddr, desc))
		expectRules(t, nodes, map[string]faultnet.Rules{"n2": rules(0, with("*", faultnet.Both))})
		heal(t)

		// Two of three: out to everyone, in from the one left alone.
		on(t, nodes, append(args, "--node", "n1", "--node", "n3")...).succeeds(t)
		two := rules(0, with("*", faultnet.Out), with("n2", faultnet.In))
		expectRules(t, nodes, map[string]faultnet.Rules{"n1": two, "n3": two})
		heal(t)

		on(t, nodes, "chaos", "netem", "--jitter", "5ms").expectErr(t, 2, "netem needs at least one of --delay, --drop and --bandwidth")
		on(t, nodes, "chaos", "netem", "--delay", "1ms", "--node", "n1", "--all").expectErr(t, 2, "mutually exclusive")
		// A refused rule set stops at the first node: nothing changes.
		on(t, nodes, "chaos", "netem", "--delay", "10ms", "--jitter", "1s").expectErr(t, 2,
			"kvctl: chaos netem: n1 ("+n1.HTTPAddr+"): HTTP 400: rule 0: jitter 1s must not exceed delay 10ms; nothing changed\n")
		on(t, nodes, "chaos", "netem", "--drop", "1.5", "--node", "n2").expectErr(t, 2, "rule 0: drop 1.5 must be a probability from 0 to 1")
		expectRules(t, nodes, nil)
	})

	t.Run("crash", func(t *testing.T) {
		on(t, nodes, "chaos", "crash", "--node", "n2", "peers").expect(t, 0, "n2 ("+n2.HTTPAddr+"): crashed peers\n")
		on(t, nodes, "-o", "json", "chaos", "crash", "--node", n3.HTTPAddr, "peer/n1").expect(t, 0,
			fmt.Sprintf("{\n  \"endpoint\": %q,\n  \"crashed\": \"peer/n1\"\n}\n", n3.HTTPAddr))
		on(t, nodes, "chaos", "crash", "--node", "n2", "bogus").expectErr(t, 2,
			`kvctl: chaos crash: n2 (`+n2.HTTPAddr+`): HTTP 400: unknown actor "bogus" (want one of raft, forward, http, peers, peer/<id>, sessions, quota, node)`)
		on(t, nodes, "chaos", "crash", "--node", "n2", "peer/n2").expectErr(t, 2, `no monitor for "n2"`)
		on(t, nodes, "chaos", "crash", "raft").expectErr(t, 2, "chaos crash needs --node")
		// The crashed detectors come back and see everyone alive.
		eventually(t, "the crashed monitors recovering", func(r result) bool { return r.code == 0 }, nodes, "health", "--all", "--check")
	})

	t.Run("a node that does not answer", func(t *testing.T) {
		n3.Stop()
		r := on(t, nodes, "chaos", "partition", "n1", "n2,n3")
		r.expectErr(t, 2, "kvctl: chaos partition: nothing changed, 1 of 3 nodes did not answer: n3 ("+n3.HTTPAddr+"): dial tcp")
		expectRules(t, nodes[:2], nil)
		on(t, nodes[:2], "chaos", "set", "--node", "n1", jsonOf(rules(0, cutRule("n3", faultnet.Both)))).succeeds(t)
		// heal does what it can.
		r = on(t, nodes[:2], "chaos", "heal")
		if r.code != 2 || r.stdout != fmt.Sprintf("n1 (%s): cleared cut to and from n3\nn2 (%s): no rules to clear\n", n1.HTTPAddr, n2.HTTPAddr) ||
			!strings.HasPrefix(r.stderr, "kvctl: chaos heal: 1 of 3 nodes failed: n3 ("+n3.HTTPAddr+"): dial tcp") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("heal with a node down: %+v", r)
		}
		expectRules(t, nodes[:2], nil)
	})
}

// TestChaosDisabled: every chaos command refuses in one line, before
// changing anything, when a node runs without --chaos.
func TestChaosDisabled(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	nd := nodes[0]
	byAddr := "kvctl: chaos is not enabled on " + nd.HTTPAddr + ": start kvnode with --chaos\n"
	byID := "kvctl: chaos is not enabled on n1 (" + nd.HTTPAddr + "): start kvnode with --chaos\n"
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"chaos", "faults"}, byAddr},
		{[]string{"chaos", "faults", "--node", "n1"}, byID},
		{[]string{"chaos", "faults", "--all"}, byID},
		{[]string{"chaos", "set", "--node", nd.HTTPAddr, "{}"}, byAddr},
		{[]string{"chaos", "clear"}, byAddr},
		{[]string{"chaos", "clear", "--all"}, byID},
		{[]string{"chaos", "crash", "--node", "n1", "raft"}, byID},
		{[]string{"chaos", "isolate", "n1"}, byID},
		{[]string{"chaos", "netem", "--delay", "5ms"}, byID},
		{[]string{"chaos", "heal"}, byID},
		{[]string{"-o", "json", "chaos", "heal"}, byID},
	} {
		r := on(t, nodes, tc.args...)
		if r.code != 2 || r.stderr != tc.msg || r.stdout != "" {
			t.Fatalf("%v without --chaos: %+v", tc.args, r)
		}
	}
	// Health needs no chaos; a single node has no peers, which --check
	// accepts.
	on(t, nodes, "health", "--check").expect(t, 0, "n1: leader n1 (this node, raft "+nd.RaftAddr+")\nno peers\n")
}

func TestLastHeardAndRTT(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		p    client.PeerHealth
		last string
		rtt  string
	}{
		{client.PeerHealth{State: client.PeerAlive, LastHeard: now.Add(-123456 * time.Microsecond), Probes: 5, RTTMeanMS: 0.5, RTTStdDevMS: 0.25}, "123ms ago", "0.50±0.25ms"},
		{client.PeerHealth{State: client.PeerDead, LastHeard: now.Add(-12345 * time.Millisecond), Probes: 9, Failures: 4, RTTMeanMS: 1.234}, "12.35s ago", "1.23±0.00ms"},
		{client.PeerHealth{State: client.PeerDead, LastHeard: now.Add(-95 * time.Minute), Probes: 9, Failures: 4, RTTMeanMS: 1}, "1h35m0s ago", "1.00±0.00ms"},
		{client.PeerHealth{State: client.PeerAlive, LastHeard: now.Add(time.Second), Probes: 1, RTTMeanMS: 1}, "0s ago", "1.00±0.00ms"},
		{client.PeerHealth{State: client.PeerUnknown, LastHeard: now.Add(-time.Second), Probes: 3, Failures: 3}, "never", "-"},
		{client.PeerHealth{State: client.PeerUnknown}, "never", "-"},
	} {
		if got := lastHeard(tc.p, now); got != tc.last {
			t.Errorf("lastHeard(%+v) = %q, want %q", tc.p, got, tc.last)
		}
		if got := rtt(tc.p); got != tc.rtt {
			t.Errorf("rtt(%+v) = %q, want %q", tc.p, got, tc.rtt)
		}
	}
}

func TestChaosHelp(t *testing.T) {
	for _, sub := range chaosCommand.subs {
		for _, args := range [][]string{{"help", "chaos", sub.name}, {"chaos", sub.name, "--help"}} {
			r := kvctl(t, "", nil, args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: kvctl chaos "+sub.name+" ") || !strings.Contains(r.stdout, "Examples:\n"+sub.example+"\n") ||
				!strings.Contains(sub.example, "kvctl chaos "+sub.name) || !strings.Contains(r.stdout, "--timeout") {
				t.Fatalf("%v: %+v", args, r)
			}
		}
		if r := kvctl(t, "", nil, "help"); !strings.Contains(r.stdout, "\n  chaos "+sub.name+" ") {
			t.Fatalf("kvctl help does not list chaos %s:\n%s", sub.name, r.stdout)
		}
	}
	for _, args := range [][]string{{"help", "chaos"}, {"chaos", "--help"}, {"chaos", "-h"}, {"--help", "chaos"}} {
		if r := kvctl(t, "", nil, args...); r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: kvctl chaos <subcommand>") || !strings.Contains(r.stdout, "\nSubcommands:\n  faults ") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	kvctl(t, "", nil, "chaos").expectErr(t, 2, "kvctl: chaos needs a subcommand first, one of faults, set, clear, crash, isolate, partition, oneway, netem, heal (see 'kvctl help chaos')")
	kvctl(t, "", nil, "chaos", "--node", "n1", "faults").expectErr(t, 2, "chaos needs a subcommand first")
	kvctl(t, "", nil, "chaos", "explode").expectErr(t, 2, `unknown chaos subcommand "explode"`)
	kvctl(t, "", nil, "help", "chaos", "explode").expectErr(t, 2, `unknown chaos subcommand "explode"`)
	kvctl(t, "", nil, "help", "get", "more").expectErr(t, 2, `get has no subcommands, got "more"`)
	if r := kvctl(t, "", nil, "help", "health"); r.code != 0 || !strings.Contains(r.stdout, "--check") || !strings.Contains(r.stdout, "exits with status 1 if any peer") {
		t.Fatalf("help health: %+v", r)
	}
}
