package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

// command is one subcommand. setup registers its flags on fs and returns
// the action bound to them, so each invocation gets fresh flag values.
type command struct {
	name    string
	aliases []string
	group   string
	args    string
	minArgs int
	maxArgs int
	summary string
	long    string
	example string
	// local marks a command that works on local files only: it gets no
	// client, and the connection settings are not read.
	local bool
	// unbounded marks a command that runs until it is done or stopped
	// (lock, watch): --timeout bounds each of its requests
	// (invocation.timeout), not the whole run.
	unbounded bool
	// setup is nil for a group of subcommands (subs), which is no command
	// of its own.
	setup func(fs *pflag.FlagSet) action
	subs  []*command
	// parent is the group a subcommand belongs to, set by init.
	parent *command
}

func init() {
	var setParents func(cmd *command)
	setParents = func(cmd *command) {
		for _, sub := range cmd.subs {
			sub.parent = cmd
			setParents(sub)
		}
	}
	for _, cmd := range commands {
		setParents(cmd)
	}
}

// runnable lists the commands that run (not the groups), depth first.
func runnable(list []*command) []*command {
	var out []*command
	for _, cmd := range list {
		if cmd.setup != nil {
			out = append(out, cmd)
		}
		out = append(out, runnable(cmd.subs)...)
	}
	return out
}

// fullName is how the command is typed: "get", "chaos isolate" ("" for
// none).
func (cmd *command) fullName() string {
	if cmd == nil {
		return ""
	}
	if cmd.parent != nil {
		return cmd.parent.fullName() + " " + cmd.name
	}
	return cmd.name
}

func (cmd *command) subNames() []string {
	var out []string
	for _, sub := range cmd.subs {
		out = append(out, sub.name)
	}
	return out
}

type action func(inv *invocation, args []string) error

func (cmd *command) argsText() string {
	if cmd.args == "" {
		return "[flags]"
	}
	return cmd.args + " [flags]"
}

// invocation is what an action works with: parsed globals and a client.
type invocation struct {
	*cli
	ctx    context.Context
	addrs  []string
	client *client.Client
	// opts are the client options every client of this invocation gets
	// (TLS, the token).
	opts []client.Option
	json bool
	// timeout is --timeout (0: none); it bounds ctx, except for an
	// unbounded command, whose requests it bounds one by one.
	timeout time.Duration
}

// printJSON writes v indented, with a trailing newline, without HTML
// escaping: output meant for jq and diff, stable across releases.
func (inv *invocation) printJSON(v any) error {
	enc := json.NewEncoder(inv.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeResult is the JSON answer of put, cas and del.
type writeResult struct {
	Key     string `json:"key"`
	Recurse bool   `json:"recurse,omitempty"`
	OK      bool   `json:"ok"`
	Index   uint64 `json:"index"`
}

const (
	kv           = "Key-value commands"
	clusterGroup = "Cluster commands"
	chaosGroup   = "Fault injection (nodes started with --chaos)"
	tlsGroup     = "TLS material (local files; no cluster needed)"
)

var commands = []*command{
	{
		name: "get", group: kv, args: "<key>", minArgs: 1, maxArgs: 1,
		summary: "print a key's value",
		long: `Print the value stored under key, followed by a newline unless it already
ends with one (--raw prints the bytes exactly). With -o json, print the whole
entry as Consul does: Value is base64, Flags and the indexes are integers.
A missing key prints "key not found" on stderr and exits with status 1.

Reads are linearizable by default: they reflect every write acknowledged
before them. --stale lets any node answer from its local copy, which works
without a leader but may lag behind.`,
		example: `  kvctl get config/color
  kvctl get --raw tls/cert > cert.pem
  kvctl -o json get config/color | jq -r .ModifyIndex
  kvctl get --stale config/color     # also answers while there is no quorum`,
		setup: func(fs *pflag.FlagSet) action {
			stale := fs.Bool("stale", false, "let any node answer from its local copy (may lag; works without a leader)")
			consistent := fs.Bool("consistent", false, "strictest consistency (Consul's mode; Troupe's default is already linearizable)")
			raw := fs.Bool("raw", false, "print the value's bytes exactly, without adding a newline")
			return func(inv *invocation, args []string) error {
				if *stale && *consistent {
					return usagef("--stale and --consistent are mutually exclusive")
				}
				p, _, err := inv.client.Get(inv.ctx, args[0], client.ReadOptions{Stale: *stale, Consistent: *consistent})
				if err != nil {
					return err
				}
				if p == nil {
					return no("key not found: %s", args[0])
				}
				if inv.json {
					return inv.printJSON(p)
				}
				v := p.Value
				if !*raw && (len(v) == 0 || v[len(v)-1] != '\n') {
					v = append(v, '\n')
				}
				_, err = inv.stdout.Write(v)
				return err
			}
		},
	},
	{
		name: "put", group: kv, args: "<key> <value|->", minArgs: 2, maxArgs: 2,
		summary: "write a value",
		long: `Write value under key, replacing any previous value. A value of "-" is read
from standard input, byte for byte (values up to 512 KiB by default). Put
resets the key's flags to --flags (0 unless given), as Consul does. To store a
value that starts with "-", put "--" before the arguments.

--acquire <session> writes only by taking the key's lock for that session
(Consul's ?acquire): it fails (status 1) while another session holds the key
or during the lock-delay after a holder's session ended. --release <session>
writes and unlocks. A key's LockIndex counts its acquisitions: it is the
fencing token of the lock (docs/fault-model.md).`,
		example: `  kvctl put config/color blue
  kvctl put --flags 42 config/color blue
  kvctl put tls/cert - < cert.pem
  kvctl put -- config/offset -5`,
		setup: func(fs *pflag.FlagSet) action {
			flags := fs.Uint64("flags", 0, "opaque 64-bit flags stored with the value")
			acquire := fs.String("acquire", "", "write only by taking the key's lock for this `session`; status 1 if another holds it or its lock-delay runs")
			release := fs.String("release", "", "write and release the key's lock held by this `session`; status 1 if it does not hold it")
			return func(inv *invocation, args []string) error {
				value, err := inv.value(args[1])
				if err != nil {
					return err
				}
				var ok bool
				var meta client.Meta
				switch {
				case *acquire != "" && *release != "":
					return usagef("--acquire and --release cannot be combined")
				case *acquire != "":
					ok, meta, err = inv.client.Acquire(inv.ctx, args[0], *acquire, value, *flags)
				case *release != "":
					ok, meta, err = inv.client.Release(inv.ctx, args[0], *release, value, *flags)
				default:
					ok, meta, err = inv.client.Put(inv.ctx, args[0], value, client.WriteOptions{Flags: *flags})
				}
				if err != nil {
					return err
				}
				return inv.wrote("wrote", args[0], false, ok, meta, func() error {
					if *acquire != "" {
						return no("not acquired: %s is held by another session, or its lock-delay runs", args[0])
					}
					return no("not released: %s is not held by session %s", args[0], *release)
				})
			}
		},
	},
	{
		name: "cas", group: kv, args: "<key> <value|->", minArgs: 2, maxArgs: 2,
		summary: "write a value only if the key is unchanged since an index",
		long: `Check-and-set: write value under key only if the key's ModifyIndex is still
--index, i.e. nobody wrote it since you read it. --index 0 means "only if
the key does not exist yet". Get the current index with
'kvctl -o json get <key>' (ModifyIndex). If the key has changed, nothing is
written and kvctl exits with status 1. A value of "-" is read from stdin.`,
		example: `  idx=$(kvctl -o json get config/color | jq .ModifyIndex)
  kvctl cas --index "$idx" config/color green
  kvctl cas --index 0 locks/deploy "$(hostname)"   # create only`,
		setup: func(fs *pflag.FlagSet) action {
			index := fs.Uint64("index", 0, "the ModifyIndex the key must still have (0: the key must not exist); required")
			flags := fs.Uint64("flags", 0, "opaque 64-bit flags stored with the value")
			return func(inv *invocation, args []string) error {
				if !fs.Changed("index") {
					return usagef("cas needs --index (use 0 to create a key that must not exist)")
				}
				value, err := inv.value(args[1])
				if err != nil {
					return err
				}
				ok, meta, err := inv.client.CAS(inv.ctx, args[0], value, *index, *flags)
				if err != nil {
					return err
				}
				return inv.wrote("wrote", args[0], false, ok, meta, func() error { return inv.casFailed(args[0], *index, "cas failed") })
			}
		},
	},
	{
		name: "del", aliases: []string{"delete", "rm"}, group: kv, args: "<key>", minArgs: 1, maxArgs: 1,
		summary: "delete a key, or every key under a prefix",
		long: `Delete key. Deleting a key that does not exist succeeds. --recurse deletes
every key that starts with the given prefix (a plain string prefix: "app"
also matches "apple"); an empty prefix would delete the whole store and
needs --force. --cas deletes only if the key's ModifyIndex is still N and
exits with status 1 otherwise.`,
		example: `  kvctl del config/color
  kvctl del --recurse config/
  kvctl del --cas 42 locks/deploy`,
		setup: func(fs *pflag.FlagSet) action {
			recurse := fs.BoolP("recurse", "r", false, "delete every key starting with the prefix")
			cas := fs.Uint64("cas", 0, "delete only if the key's ModifyIndex is still this")
			force := fs.Bool("force", false, "allow --recurse with an empty prefix (deletes everything)")
			return func(inv *invocation, args []string) error {
				key, withCAS := args[0], fs.Changed("cas")
				switch {
				case *recurse && withCAS:
					return usagef("--recurse and --cas cannot be combined")
				case *recurse && key == "" && !*force:
					return usagef(`refusing to delete every key: an empty prefix with --recurse needs --force`)
				case *recurse:
					meta, err := inv.client.DeleteTree(inv.ctx, key)
					if err != nil {
						return err
					}
					return inv.wrote("deleted", key, true, true, meta, nil)
				case withCAS:
					ok, meta, err := inv.client.DeleteCAS(inv.ctx, key, *cas)
					if err != nil {
						return err
					}
					return inv.wrote("deleted", key, false, ok, meta, func() error { return inv.casFailed(key, *cas, "not deleted") })
				}
				meta, err := inv.client.Delete(inv.ctx, key)
				if err != nil {
					return err
				}
				return inv.wrote("deleted", key, false, true, meta, nil)
			}
		},
	},
	{
		name: "txn", group: kv, args: "[file|-]", minArgs: 0, maxArgs: 1,
		summary: "apply several operations atomically (Consul's /v1/txn)",
		long: `Run a transaction: every operation applies, or none does. The operations are
read from file, or from standard input when it is "-" or absent, in the JSON
form of Consul's /v1/txn body, so the same file works with curl:

  [{"KV": {"Verb": "cas", "Key": "cfg/a", "Value": "<base64>", "Index": 42}},
   {"KV": {"Verb": "get", "Key": "cfg/b"}}]

Verbs: set, cas, get, get-or-empty, get-tree, check-index, check-not-exists,
check-session, delete, delete-tree, delete-cas, lock, unlock (lock and unlock
name a Session, see 'kvctl session create'). Value is base64; Index is what
cas, check-index and delete-cas compare ModifyIndex with. At most 128
operations (the server's txn_max_ops).

On success kvctl prints the entries the operations report (get and get-tree
with their values; set and cas with their new indexes). When the transaction
is rolled back, nothing is applied, the failed operations are named on
stderr and kvctl exits with status 1. A transaction of reads only is served
like a read: linearizable, or from any node's local copy with --stale.`,
		example: `  kvctl txn ops.json
  echo '[{"KV":{"Verb":"check-not-exists","Key":"locks/a"}},{"KV":{"Verb":"set","Key":"locks/a","Value":"aG9zdC0x"}}]' | kvctl txn
  kvctl -o json txn ops.json | jq '.Results[].KV.ModifyIndex'`,
		setup: func(fs *pflag.FlagSet) action {
			stale := fs.Bool("stale", false, "a read-only transaction may be answered from any node's local copy (may lag)")
			return func(inv *invocation, args []string) error {
				ops, err := inv.readTxn(args)
				if err != nil {
					return err
				}
				ok, resp, meta, err := inv.client.Txn(inv.ctx, ops, client.ReadOptions{Stale: *stale})
				if err != nil {
					return err
				}
				if inv.json {
					if err := inv.printJSON(resp); err != nil {
						return err
					}
				}
				if !ok {
					var lines []string
					for _, e := range resp.Errors {
						what := fmt.Sprintf("op %d", e.OpIndex)
						if e.OpIndex >= 0 && e.OpIndex < len(ops) {
							what += fmt.Sprintf(" (%s %s)", ops[e.OpIndex].Verb, ops[e.OpIndex].Key)
						}
						lines = append(lines, what+": "+e.What)
					}
					return no("transaction rolled back, nothing applied: %s", strings.Join(lines, "; "))
				}
				if inv.json {
					return nil
				}
				if meta.Index != 0 {
					plural := "s"
					if len(ops) == 1 {
						plural = ""
					}
					fmt.Fprintf(inv.stdout, "applied %d operation%s (index %d)\n", len(ops), plural, meta.Index)
				}
				pairs := make([]*client.KVPair, 0, len(resp.Results))
				for _, r := range resp.Results {
					if r.KV != nil {
						pairs = append(pairs, r.KV)
					}
				}
				return printPairs(inv.stdout, pairs)
			}
		},
	},
	{
		name: "ls", aliases: []string{"list"}, group: kv, args: "[prefix]", minArgs: 0, maxArgs: 1,
		summary: "list keys under a prefix",
		long: `List the keys that start with prefix (all keys without one). Like a directory
listing, keys are folded at the next "/" after the prefix: "config/" lists
"config/color" and "config/db/" rather than everything below config/db/.
--separator "" lists every key; --recurse lists every key with its value.
An empty listing is not an error.`,
		example: `  kvctl ls
  kvctl ls config/
  kvctl ls --recurse config/
  kvctl ls --separator "" config/
  kvctl -o json ls --recurse config/ | jq -r '.[].Key'`,
		setup: func(fs *pflag.FlagSet) action {
			recurse := fs.BoolP("recurse", "r", false, "list every key under the prefix with its value")
			sep := fs.String("separator", "/", `fold keys at this separator ("" lists every key)`)
			stale := fs.Bool("stale", false, "let any node answer from its local copy (may lag; works without a leader)")
			return func(inv *invocation, args []string) error {
				prefix := ""
				if len(args) > 0 {
					prefix = args[0]
				}
				opts := client.ReadOptions{Stale: *stale}
				if *recurse {
					if fs.Changed("separator") {
						return usagef("--separator has no effect with --recurse")
					}
					pairs, _, err := inv.client.List(inv.ctx, prefix, opts)
					if err != nil {
						return err
					}
					if inv.json {
						if pairs == nil {
							pairs = []*client.KVPair{}
						}
						return inv.printJSON(pairs)
					}
					return printPairs(inv.stdout, pairs)
				}
				keys, _, err := inv.client.Keys(inv.ctx, prefix, *sep, opts)
				if err != nil {
					return err
				}
				if inv.json {
					if keys == nil {
						keys = []string{}
					}
					return inv.printJSON(keys)
				}
				for _, k := range keys {
					fmt.Fprintln(inv.stdout, k)
				}
				return nil
			}
		},
	},
	membersCommand,
	{
		name: "status", group: clusterGroup, maxArgs: 0,
		summary: "show a node's Raft status (--all: every node's)",
		long: `Show the Raft status of the first node that answers: its state, term,
indexes, the leader it follows and how long ago it heard from it. --all asks
every node given with --addr and prints one row each; nodes that do not
answer are listed as unreachable, their errors go to stderr, and kvctl exits
with status 2.`,
		example: `  kvctl status
  kvctl --addr 10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500 status --all
  kvctl -o json status | jq .commit_index`,
		setup: func(fs *pflag.FlagSet) action {
			all := fs.BoolP("all", "a", false, "ask every --addr node and print one row each")
			return func(inv *invocation, args []string) error {
				if *all {
					return inv.statusAll()
				}
				st, err := inv.client.Status(inv.ctx)
				if err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(st)
				}
				return printStatus(inv.stdout, st)
			}
		},
	},
	{
		name: "leader", group: clusterGroup, maxArgs: 0,
		summary: "show the current leader",
		long: `Show the leader's id and addresses, as the answering node knows them. With
no leader (an election, or no quorum) kvctl says so and exits with status 1.`,
		example: `  kvctl leader
  kvctl -o json leader | jq -r .http_addr`,
		setup: func(fs *pflag.FlagSet) action {
			return func(inv *invocation, args []string) error {
				st, err := inv.client.Status(inv.ctx)
				if err != nil {
					return err
				}
				l := struct {
					ID       string `json:"id"`
					RaftAddr string `json:"raft_addr"`
					HTTPAddr string `json:"http_addr"`
				}{st.LeaderID, st.LeaderRaftAddr, st.LeaderHTTPAddr}
				if inv.json {
					if err := inv.printJSON(l); err != nil {
						return err
					}
				} else if l.ID != "" {
					fmt.Fprintf(inv.stdout, "%s  raft %s  http %s\n", l.ID, l.RaftAddr, orDash(l.HTTPAddr))
				}
				if l.ID == "" {
					return no("no leader known to %s (election in progress, or no quorum)", st.ID)
				}
				return nil
			}
		},
	},
	{
		name: "peers", group: clusterGroup, maxArgs: 0,
		summary: "list the voters' Raft addresses",
		long:    `List the Raft addresses of the voting members (Consul's /v1/status/peers).`,
		example: `  kvctl peers`,
		setup: func(fs *pflag.FlagSet) action {
			return func(inv *invocation, args []string) error {
				peers, err := inv.client.Peers(inv.ctx)
				if err != nil {
					return err
				}
				if inv.json {
					if peers == nil {
						peers = []string{}
					}
					return inv.printJSON(peers)
				}
				for _, p := range peers {
					fmt.Fprintln(inv.stdout, p)
				}
				return nil
			}
		},
	},
	{
		name: "join", group: clusterGroup, args: "<id> <raft-addr>", minArgs: 2, maxArgs: 2,
		summary: "add a node to the cluster",
		long: `Add a voting member. Start the new node first (without --initial-cluster):
the leader adds it only once the node answers at its Raft address with its
id (and, with TLS, a certificate for that id). Any existing member accepts
the request and passes it to the leader. Joining a member that is already
there with the same address is a no-op.`,
		example: `  kvctl join n4 10.0.0.4:8300`,
		setup: func(fs *pflag.FlagSet) action {
			force := fs.Bool("force", false, "join even if the voters the leader reaches would be fewer than a quorum afterwards")
			return func(inv *invocation, args []string) error {
				var opts []client.MembershipOption
				if *force {
					opts = append(opts, client.Force())
				}
				if err := inv.client.Join(inv.ctx, client.JoinRequest{ID: args[0], RaftAddr: args[1]}, opts...); err != nil {
					return err
				}
				if inv.json {
					return inv.printJSON(map[string]string{"joined": args[0]})
				}
				fmt.Fprintf(inv.stdout, "joined %s\n", args[0])
				return nil
			}
		},
	},
	{
		name: "remove", group: clusterGroup, args: "<id>", minArgs: 1, maxArgs: 1,
		summary: "remove a node from the cluster",
		long: `Remove a member from the Raft configuration, e.g. a node that is gone for
good, so it no longer counts towards the quorum. Removing the leader makes it
hand leadership over first.`,
		example: `  kvctl remove n3
  kvctl remove --force n2   # even if the leader reckons the rest could not form a quorum`,
		setup: removeAction,
	},
	healthCommand,
	alarmCommand,
	snapshotCommand,
	kvCommand,
	lockCommand,
	watchCommand,
	sessionCommand,
	aclCommand,
	chaosCommand,
	tlsCommand,
}

// value resolves a value argument, "-" meaning standard input.
func (inv *invocation) value(arg string) ([]byte, error) {
	if arg != "-" {
		return []byte(arg), nil
	}
	b, err := io.ReadAll(inv.stdin)
	if err != nil {
		return nil, fmt.Errorf("reading the value from stdin: %w", err)
	}
	return b, nil
}

// readTxn reads a transaction in Consul's /v1/txn form from the file
// named in args, or stdin. It is decoded strictly, so a misspelt field is
// reported here rather than dropped.
func (inv *invocation) readTxn(args []string) ([]client.TxnOp, error) {
	src, name := inv.stdin, "stdin"
	if len(args) == 1 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			return nil, err
		}
		defer f.Close()
		src, name = f, args[0]
	}
	dec := json.NewDecoder(src)
	dec.DisallowUnknownFields()
	var in []struct {
		KV *client.TxnOp
		// Consul's Go client writes the catalog members as null.
		Node, Service, Check json.RawMessage
	}
	if err := dec.Decode(&in); err != nil {
		return nil, usagef("%s: not a transaction in /v1/txn's JSON form ([{\"KV\": {\"Verb\": ..., \"Key\": ...}}, ...]): %v", name, err)
	}
	ops := make([]client.TxnOp, len(in))
	for i, op := range in {
		for _, m := range []json.RawMessage{op.Node, op.Service, op.Check} {
			if len(m) > 0 && string(m) != "null" {
				return nil, usagef("%s: operation %d is a catalog operation; Troupe has key-value operations only", name, i)
			}
		}
		if op.KV == nil {
			return nil, usagef("%s: operation %d has no KV member", name, i)
		}
		ops[i] = *op.KV
	}
	return ops, nil
}

// wrote reports a write: the JSON result, or a line saying what happened.
// failed, called when the server answered false, turns that into the "no"
// exit after the JSON result is out, so scripts get both.
func (inv *invocation) wrote(verb, key string, recurse, ok bool, meta client.Meta, failed func() error) error {
	if inv.json {
		if err := inv.printJSON(writeResult{Key: key, Recurse: recurse, OK: ok, Index: meta.Index}); err != nil {
			return err
		}
	}
	if !ok {
		if failed != nil {
			return failed()
		}
		return fmt.Errorf("the server answered false to a plain %s of %s", verb, key)
	}
	if inv.json {
		return nil
	}
	switch {
	case recurse && key == "":
		fmt.Fprintf(inv.stdout, "%s every key (index %d)\n", verb, meta.Index)
	case recurse:
		fmt.Fprintf(inv.stdout, "%s every key under %q (index %d)\n", verb, key, meta.Index)
	default:
		fmt.Fprintf(inv.stdout, "%s %s (index %d)\n", verb, key, meta.Index)
	}
	return nil
}

// casFailed explains a failed precondition by reading the key's current
// state; the read is best effort, the "no" exit stands either way.
func (inv *invocation) casFailed(key string, index uint64, what string) error {
	p, _, err := inv.client.Get(inv.ctx, key, client.ReadOptions{})
	switch {
	case err != nil:
		return no("%s: %s has changed since index %d", what, key, index)
	case p == nil && index == 0:
		return no("%s: %s was just created by someone else", what, key)
	case p == nil:
		return no("%s: %s does not exist", what, key)
	case index == 0:
		return no("%s: %s already exists (index %d); --index 0 only creates", what, key, p.ModifyIndex)
	default:
		return no("%s: %s is at index %d, not %d", what, key, p.ModifyIndex, index)
	}
}

// nodeStatus is one row of status --all.
type nodeStatus struct {
	Endpoint string         `json:"endpoint"`
	Status   *client.Status `json:"status,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// statusAll asks every node on its own, without failover, because the
// point is to compare the nodes' views.
func (inv *invocation) statusAll() error {
	rows := make([]nodeStatus, len(inv.addrs))
	var wg sync.WaitGroup
	for i, a := range inv.addrs {
		wg.Go(func() {
			one := inv.newClient([]string{a}, client.WithMaxAttempts(1))
			defer one.CloseIdleConnections()
			st, err := one.Status(inv.ctx)
			rows[i] = nodeStatus{Endpoint: a, Status: st}
			if err != nil {
				rows[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	var failed []string
	for _, r := range rows {
		if r.Error != "" {
			failed = append(failed, r.Error)
		}
	}
	var err error
	if inv.json {
		err = inv.printJSON(rows)
	} else {
		err = printStatusTable(inv.stdout, rows)
	}
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d nodes did not answer: %s", len(failed), len(rows), strings.Join(failed, "; "))
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ms(n int64) string {
	return (time.Duration(n) * time.Millisecond).String()
}

// newClient makes a client with the invocation's TLS settings; statusAll
// and healthAll use it to ask nodes one at a time.
func (inv *invocation) newClient(addrs []string, extra ...client.Option) *client.Client {
	return client.New(addrs, append(slices.Clone(inv.opts), extra...)...)
}
