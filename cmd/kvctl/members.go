package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

// membersCommand lists the members (kvctl members) and changes them
// (kvctl members add|remove|promote).
var membersCommand = &command{
	name: "members", group: clusterGroup, maxArgs: 0,
	summary: "list the cluster's members",
	long: `List the servers in the Raft configuration with their addresses and roles
(leader, voter, nonvoter), as the answering node sees them. The subcommands
change the membership: add a node (as a voter or a non-voter), promote a
non-voter once it has caught up, remove a member.`,
	example: `  kvctl members
  kvctl -o json members | jq -r '.[] | select(.leader) | .http_addr'
  kvctl members add n4 10.0.0.4:8300 10.0.0.4:8500 --nonvoter
  kvctl members promote n4 --wait 10m
  kvctl members remove n1`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			ms, err := inv.client.Members(inv.ctx)
			if err != nil {
				return err
			}
			if inv.json {
				if ms == nil {
					ms = []client.Member{}
				}
				return inv.printJSON(ms)
			}
			return printMembers(inv.stdout, ms)
		}
	},
	subs: []*command{membersAdd, membersRemove, membersPromote},
}

var membersAdd = &command{
	name: "add", group: clusterGroup, args: "<id> <raft-addr> <http-addr>", minArgs: 3, maxArgs: 3,
	summary: "add a started node to the cluster (--nonvoter: as a non-voter)",
	long: `Add a node to the cluster by hand: for a node that cannot add itself (it was
started with join but holds no management token while ACLs are on), or to
add a node as a non-voter to promote once it has caught up (the safe way to
replace a node: docs/operations.md, "Replacing a dead node").

The node must be running, started with join (so it waits to be added rather
than form a cluster of its own): kvctl first checks that its HTTP address
answers, the leader then checks that its Raft address answers with its id,
and after the change kvctl waits (within --timeout) until the node has
registered the HTTP address given. A non-voter replicates the log and serves
?stale reads but counts towards no quorum: adding one can never cost the
cluster its quorum, however far behind it starts.`,
	example: `  kvctl members add n4 10.0.0.4:8300 10.0.0.4:8500 --nonvoter
  kvctl members add n4 10.0.0.4:8300 10.0.0.4:8500`,
	setup: func(fs *pflag.FlagSet) action {
		nonvoter := fs.Bool("nonvoter", false, "add it as a non-voter (promote it later with kvctl members promote)")
		force := fs.Bool("force", false, "add a voter even if the voters the leader reaches would be fewer than a quorum afterwards")
		return func(inv *invocation, args []string) error {
			id, raftAddr, httpAddr := args[0], args[1], args[2]
			node := inv.newClient([]string{httpAddr}, client.WithMaxAttempts(1))
			defer node.CloseIdleConnections()
			if err := node.Live(inv.ctx); err != nil {
				return fmt.Errorf("%s does not answer (%v): start node %s first, with join, so that it waits to be added", httpAddr, err, id)
			}
			req := client.JoinRequest{ID: id, RaftAddr: raftAddr, Suffrage: client.SuffrageVoter}
			if *nonvoter {
				req.Suffrage = client.SuffrageNonvoter
			}
			if err := inv.client.Join(inv.ctx, req, membershipOptions(*force)...); err != nil {
				return err
			}
			registered, err := inv.waitRegistered(id)
			if err != nil {
				return fmt.Errorf("added %s, but %v", id, err)
			}
			if registered != httpAddr {
				fmt.Fprintf(inv.stderr, "kvctl: warning: %s registered HTTP address %s, not %s\n", id, registered, httpAddr)
			}
			if inv.json {
				return inv.printJSON(map[string]string{"added": id, "suffrage": req.Suffrage, "http_addr": registered})
			}
			fmt.Fprintf(inv.stdout, "added %s as a %s\n", id, req.Suffrage)
			return nil
		}
	},
}

// waitRegistered waits until member id has registered its HTTP address
// (it does so once it hears from the leader), and returns it. It waits
// within --timeout, and at most registerWait.
func (inv *invocation) waitRegistered(id string) (string, error) {
	ctx, cancel := context.WithTimeout(inv.ctx, registerWait)
	defer cancel()
	for {
		ms, err := inv.client.Members(ctx)
		if err == nil {
			for _, m := range ms {
				if m.ID == id && m.HTTPAddr != "" {
					return m.HTTPAddr, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("it has not registered its HTTP address yet (%v); check kvctl members", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// registerWait bounds how long members add waits for the new node to
// register its HTTP address.
const registerWait = 30 * time.Second

var membersRemove = &command{
	name: "remove", group: clusterGroup, args: "<id>", minArgs: 1, maxArgs: 1,
	summary: "remove a member from the cluster",
	long: `Remove a member from the Raft configuration, e.g. a node that is gone for
good, so it no longer counts towards the quorum (the same as kvctl remove).
Removing the leader makes it hand leadership over first. The leader refuses a
removal after which the voters it reaches would be fewer than a quorum
(--force overrides).`,
	example: `  kvctl members remove n1`,
	setup:   removeAction,
}

// removeAction is kvctl remove and kvctl members remove.
func removeAction(fs *pflag.FlagSet) action {
	force := fs.Bool("force", false, "remove even if the voters the leader reaches would be fewer than a quorum afterwards")
	return func(inv *invocation, args []string) error {
		if err := inv.client.Remove(inv.ctx, args[0], membershipOptions(*force)...); err != nil {
			return err
		}
		if inv.json {
			return inv.printJSON(map[string]string{"removed": args[0]})
		}
		fmt.Fprintf(inv.stdout, "removed %s\n", args[0])
		return nil
	}
}

// membershipOptions are the options of a change made with --force or
// without.
func membershipOptions(force bool) []client.MembershipOption {
	if force {
		return []client.MembershipOption{client.Force()}
	}
	return nil
}

var membersPromote = &command{
	name: "promote", group: clusterGroup, args: "<id>", minArgs: 1, maxArgs: 1,
	summary: "make a non-voter a voter once it has caught up",
	long: `Make a non-voter a voter. The leader promotes it only once it has caught up
(applied all but at most 250 of the entries the leader has committed), as
Consul's autopilot and etcd's learners do; before that it refuses, saying
how far behind the node is, and kvctl exits with status 2. With --wait,
kvctl asks again every second until the node has caught up or the wait runs
out. Promoting a voter is a no-op. --force skips the catch-up check and the
quorum check.`,
	example: `  kvctl members promote n4
  kvctl members promote n4 --wait 10m`,
	unbounded: true,
	setup: func(fs *pflag.FlagSet) action {
		wait := fs.Duration("wait", 0, "keep asking, every second, while the non-voter has not caught up, for at most this long")
		force := fs.Bool("force", false, "promote even if the node lags or the voters the leader reaches would be fewer than a quorum")
		return func(inv *invocation, args []string) error {
			opts := membershipOptions(*force)
			deadline := time.Now().Add(*wait)
			for {
				ctx, cancel := inv.requestContext()
				err := inv.client.Promote(ctx, args[0], opts...)
				cancel()
				if err == nil {
					break
				}
				if !lagging(err) || time.Now().Add(time.Second).After(deadline) {
					return err
				}
				select {
				case <-inv.ctx.Done():
					return err
				case <-time.After(time.Second):
				}
			}
			if inv.json {
				return inv.printJSON(map[string]string{"promoted": args[0]})
			}
			fmt.Fprintf(inv.stdout, "promoted %s\n", args[0])
			return nil
		}
	},
}

// lagging reports the leader's refusal to promote a non-voter that has
// not caught up yet: worth asking again.
func lagging(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Status == http.StatusConflict && strings.Contains(ce.Message, "has not caught up")
}
