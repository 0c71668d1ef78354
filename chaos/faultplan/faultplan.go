// Package faultplan works out which fault rules each node must hold for one
// network fault: a node isolated, the cluster partitioned, a link cut one
// way, links degraded, everything healed. faultnet rules act only on the
// node that holds them, so a fault between nodes is spread over several
// rule sets; building them here keeps kvctl, the chaos nemeses and the
// tests agreeing on what each fault means.
//
// A builder only computes. The caller installs each step on its node
// (client.SetFaults, or client.ClearFaults for a step without rules): kvctl
// and the nemeses reach nodes and report failures in their own ways.
package faultplan

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// Step is one node's part of a plan.
type Step struct {
	// Node is the member id the step is for.
	Node string
	// Rules replaces the node's whole rule set; nil clears it.
	Rules *faultnet.Rules
}

// Plan is the steps to install, in order, at most one per node. A node the
// plan does not name keeps the rules it has.
type Plan []Step

// UnknownNodeError reports a node id that is not a member. It is kept apart
// from the other errors, which are mistakes in the request itself, because
// it may only mean the caller's member list is stale.
type UnknownNodeError struct {
	ID      string
	Members []string
}

// Error names the id and the members it was looked for among.
func (e *UnknownNodeError) Error() string {
	return fmt.Sprintf("no member with id %q (members: %s)", e.ID, strings.Join(e.Members, ", "))
}

// Must returns p, and panics on err: for plans whose ids the caller
// controls (tests), where an error is a bug.
func Must(p Plan, err error) Plan {
	if err != nil {
		panic("faultplan: " + err.Error())
	}
	return p
}

// Isolate cuts each node off from every peer, both ways, with one rule on
// that node alone.
func Isolate(members []string, nodes ...string) (Plan, error) {
	if len(nodes) == 0 {
		return nil, errors.New("isolate needs a node")
	}
	if err := check(members, nodes); err != nil {
		return nil, err
	}
	var p Plan
	for _, id := range nodes {
		p = append(p, step(id, 0, cut(faultnet.AnyPeer, faultnet.Both)))
	}
	return p, nil
}

// Partition cuts every link between side a and side b, both ways: each
// node of a side gets a cut rule for every node of the other side. Members
// on neither side keep their rules and still reach both sides, a bridge.
func Partition(members, a, b []string) (Plan, error) {
	if len(a) == 0 || len(b) == 0 {
		return nil, errors.New("a partition needs a node on each side")
	}
	if err := distinct(a); err != nil {
		return nil, err
	}
	if err := distinct(b); err != nil {
		return nil, err
	}
	for _, id := range a {
		if slices.Contains(b, id) {
			return nil, fmt.Errorf("%s is on both sides of the partition", id)
		}
	}
	if err := known(members, append(slices.Clip(a), b...)); err != nil {
		return nil, err
	}
	var p Plan
	for _, side := range [][2][]string{{a, b}, {b, a}} {
		for _, id := range side[0] {
			var rules []faultnet.Rule
			for _, peer := range side[1] {
				rules = append(rules, cut(peer, faultnet.Both))
			}
			p = append(p, step(id, 0, rules...))
		}
	}
	return p, nil
}

// OneWay loses every message from one node to another, while the other
// still reaches the first. The rule sits on from ("out"), or, when from is
// faultnet.AnyPeer (every node's messages to `to`), on `to` ("in"); to may
// be AnyPeer too, which mutes from entirely.
func OneWay(members []string, from, to string) (Plan, error) {
	if from == to {
		return nil, errors.New("a one-way cut needs two different nodes")
	}
	var named []string
	for _, id := range []string{from, to} {
		if id != faultnet.AnyPeer {
			named = append(named, id)
		}
	}
	if err := check(members, named); err != nil {
		return nil, err
	}
	if from == faultnet.AnyPeer {
		return Plan{step(to, 0, cut(faultnet.AnyPeer, faultnet.In))}, nil
	}
	return Plan{step(from, 0, cut(to, faultnet.Out))}, nil
}

// Degrade applies effect's delay, jitter, drop and bandwidth (its Peer and
// Direction are set here) to the links of nodes, every member if none is
// named, with seed for the random choices. Each message is degraded once,
// not once per end: a degraded node's rules cover what it sends to anyone
// and what it receives from members that are not degraded. So with every
// member degraded each gets one "out" rule for every peer, and a node
// degraded alone gets one "both" rule.
func Degrade(members, nodes []string, effect faultnet.Rule, seed uint64) (Plan, error) {
	if effect.Cut {
		return nil, errors.New("degrading does not cut links (isolate, partition or cut one way instead)")
	}
	if effect.Delay == 0 && effect.Drop == 0 && effect.Bandwidth == 0 {
		return nil, errors.New("degrading needs a delay, a drop rate or a bandwidth cap")
	}
	if len(nodes) == 0 {
		nodes = members
	}
	if err := check(members, nodes); err != nil {
		return nil, err
	}
	with := func(peer string, d faultnet.Direction) faultnet.Rule {
		r := effect
		r.Peer, r.Direction = peer, d
		return r
	}
	var p Plan
	for _, id := range nodes {
		// Peers left alone: their messages to id are degraded here.
		var spared []string
		for _, m := range members {
			if m != id && !slices.Contains(nodes, m) {
				spared = append(spared, m)
			}
		}
		if len(spared) == len(members)-1 {
			p = append(p, step(id, seed, with(faultnet.AnyPeer, faultnet.Both)))
			continue
		}
		rules := []faultnet.Rule{with(faultnet.AnyPeer, faultnet.Out)}
		for _, peer := range spared {
			rules = append(rules, with(peer, faultnet.In))
		}
		p = append(p, step(id, seed, rules...))
	}
	return p, nil
}

// Heal clears the rules of every member.
func Heal(members []string) Plan {
	p := make(Plan, len(members))
	for i, id := range members {
		p[i] = Step{Node: id}
	}
	return p
}

func step(node string, seed uint64, rules ...faultnet.Rule) Step {
	return Step{Node: node, Rules: &faultnet.Rules{Seed: seed, Rules: rules}}
}

func cut(peer string, d faultnet.Direction) faultnet.Rule {
	return faultnet.Rule{Peer: peer, Direction: d, Cut: true}
}

// check rejects empty, repeated and unknown ids.
func check(members, ids []string) error {
	if err := distinct(ids); err != nil {
		return err
	}
	return known(members, ids)
}

func distinct(ids []string) error {
	for i, id := range ids {
		switch {
		case id == "":
			return errors.New("empty node id")
		case slices.Contains(ids[:i], id):
			return fmt.Errorf("node %s is named twice", id)
		}
	}
	return nil
}

func known(members, ids []string) error {
	for _, id := range ids {
		if !slices.Contains(members, id) {
			return &UnknownNodeError{ID: id, Members: members}
		}
	}
	return nil
}
