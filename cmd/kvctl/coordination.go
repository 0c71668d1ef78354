package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

const coordGroup = "Coordination commands (sessions, locks, watches)"

// lockFlag marks a key as a kvctl lock, as Consul's lock helper marks
// its keys with a flag value of its own (api.LockFlagValue), so another
// tool's key under the same name is not taken for one.
const lockFlag uint64 = 0x2ddccbc058a50c18

// requestContext bounds one request of an unbounded command by
// --timeout.
func (inv *invocation) requestContext() (context.Context, context.CancelFunc) {
	if inv.timeout <= 0 {
		return context.WithCancel(inv.ctx)
	}
	return context.WithTimeout(inv.ctx, inv.timeout)
}

var lockCommand = &command{
	name: "lock", group: coordGroup, args: "<prefix> -- <command> [args...]", minArgs: 2, maxArgs: 1 << 16, unbounded: true,
	summary: "run a command while holding a lock (like consul lock)",
	long: `Take the lock <prefix>/.lock, run the command while holding it, and release
it when the command exits; kvctl exits with the command's status (128+N if
a signal N ended it). Only one holder at a time: others wait until it is
released. The command is run as given, without a shell (use sh -c '...' for
pipes and variables). SIGINT, SIGTERM and SIGHUP sent to kvctl are passed on
to the command.

The lock is held with a session of its own (TTL --ttl, renewed every half of
it). If the lock is lost while the command runs (the session could not be
renewed in time, its node was declared dead, someone destroyed it), the
command gets SIGTERM, a message says so, and kvctl exits with status 2.

A lock cannot promise that two commands never overlap: a paused or
partitioned holder learns it lost the lock only later. The command gets the
lock's fencing token in TROUPE_LOCK_INDEX (the key's LockIndex, which rises
with every acquisition): a resource that refuses any token below the highest
it has seen stays safe (docs/fault-model.md). TROUPE_LOCK_KEY and
TROUPE_LOCK_SESSION name the key and the session.`,
	example: `  kvctl lock jobs/backup -- /usr/local/bin/backup --full
  kvctl lock --wait 30s deploy -- sh -c 'deploy.sh "$TROUPE_LOCK_INDEX"'`,
	setup: func(fs *pflag.FlagSet) action {
		ttl := fs.Duration("ttl", 15*time.Second, "TTL of the lock's session: a holder that stops renewing loses the lock after 2×TTL")
		lockDelay := fs.Duration("lock-delay", 0, "after the lock is lost without a release, nobody may take it for this long (default the server's 15s; 0s in the flag keeps that default, use --no-lock-delay for none)")
		noDelay := fs.Bool("no-lock-delay", false, "no lock-delay at all")
		wait := fs.Duration("wait", 0, "give up (status 1) if the lock is not acquired within this long; 0 waits for ever")
		value := fs.String("value", "", "value written to the lock key (default: host name and process id)")
		name := fs.String("name", "", "name of the lock's session (default \"kvctl lock <prefix>\")")
		return func(inv *invocation, args []string) error {
			prefix, argv := args[0], args[1:]
			key := strings.TrimSuffix(prefix, "/") + "/.lock"
			opts := client.LockOptions{Value: []byte(*value), SessionTTL: *ttl, LockDelay: *lockDelay, SessionName: *name, RequestTimeout: inv.timeout, Flags: lockFlag}
			if *value == "" {
				host, _ := os.Hostname()
				opts.Value = []byte(fmt.Sprintf("%s pid %d", host, os.Getpid()))
			}
			if opts.SessionName == "" {
				opts.SessionName = "kvctl lock " + prefix
			}
			if *noDelay {
				opts.LockDelay = -1
			}
			return inv.runLocked(key, argv, opts, *wait)
		}
	},
}

// runLocked acquires key, runs argv under it and releases it.
func (inv *invocation) runLocked(key string, argv []string, opts client.LockOptions, wait time.Duration) error {
	// Signals while waiting end the wait; once the command runs, they go
	// to it (main's context would otherwise cut the release short).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	waitCtx, cancel := context.WithCancel(inv.ctx)
	defer cancel()
	if wait > 0 {
		waitCtx, cancel = context.WithTimeout(waitCtx, wait)
		defer cancel()
	}
	acquired := make(chan struct{})
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-acquired:
		}
	}()
	if p, _, err := inv.client.Get(waitCtx, key, client.ReadOptions{}); err == nil && p != nil && p.Flags != lockFlag && p.Flags != 0 {
		return fmt.Errorf("%s exists with flags %d: it is not a kvctl lock, refusing to use it", key, p.Flags)
	}
	held, err := inv.client.Lock(waitCtx, key, opts)
	close(acquired)
	if err != nil {
		if waitCtx.Err() != nil && inv.ctx.Err() == nil && errors.Is(waitCtx.Err(), context.DeadlineExceeded) {
			return no("lock %s not acquired within %v", key, wait)
		}
		return err
	}
	bg := context.WithoutCancel(inv.ctx)
	defer func() {
		ctx, cancel := context.WithTimeout(bg, max(inv.timeout, 10*time.Second))
		defer cancel()
		if err := held.Unlock(ctx); err != nil {
			fmt.Fprintf(inv.stderr, "kvctl: lock: releasing %s: %v (its session ends by itself within 2×TTL)\n", key, err)
		}
	}()
	fmt.Fprintf(inv.stderr, "kvctl: holding lock %s (LockIndex %d, session %s)\n", key, held.LockIndex, held.Session())

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inv.stdin, inv.stdout, inv.stderr
	cmd.Env = append(os.Environ(),
		"TROUPE_LOCK_KEY="+key,
		"TROUPE_LOCK_INDEX="+strconv.FormatUint(held.LockIndex, 10),
		"TROUPE_LOCK_SESSION="+held.Session())
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	lost := false
	for {
		select {
		case sig := <-sigs:
			_ = cmd.Process.Signal(sig)
			continue
		case <-held.Lost():
			if !lost {
				lost = true
				fmt.Fprintf(inv.stderr, "kvctl: lock %s was lost while the command ran: sending it SIGTERM\n", key)
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			continue
		case err = <-exited:
		}
		break
	}
	if lost {
		return fmt.Errorf("the lock %s was lost while the command ran", key)
	}
	return exitStatusOf(err)
}

// exitStatusOf turns a finished command's error into kvctl's exit: the
// command's own status, 128+N for a signal N.
func exitStatusOf(err error) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err
	}
	code := ee.ExitCode()
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	return &exitErr{code: code, msg: fmt.Sprintf("the command exited with status %d", code)}
}

var watchCommand = &command{
	name: "watch", group: coordGroup, args: "<key|prefix>", minArgs: 1, maxArgs: 1, unbounded: true,
	summary: "print a key (or every key under a prefix) each time it changes",
	long: `Print the key's value now, then again every time it changes, until stopped
(SIGINT) or --count changes have been printed. With --recurse, watch every
key under the prefix and print what changed: "set <key> <value>" and
"delete <key>" lines. Each line starts with the index of the write.

Watching uses blocking queries (?index), so it sees the latest state, not
every intermediate one: several writes between two answers show as one
change. With -o json each change is one JSON line: {"Index":N,"Pairs":[...]}
with the whole key or listing.`,
	example: `  kvctl watch config/color
  kvctl watch --recurse config/
  kvctl -o json watch --count 1 jobs/status`,
	setup: func(fs *pflag.FlagSet) action {
		recurse := fs.BoolP("recurse", "r", false, "watch every key under the prefix")
		count := fs.Int("count", 0, "stop after this many changes have been printed (the first print counts); 0: never")
		stale := fs.Bool("stale", false, "let any node answer from its local copy (keeps working without a leader)")
		wait := fs.Duration("wait", 5*time.Minute, "longest one blocking query waits before it is asked again")
		return func(inv *invocation, args []string) error {
			return inv.watch(args[0], *recurse, *count, client.ReadOptions{Stale: *stale, WaitTime: *wait})
		}
	},
}

// watch is the loop behind kvctl watch.
func (inv *invocation) watch(key string, recurse bool, count int, opts client.ReadOptions) error {
	var last map[string]*client.KVPair
	printed := 0
	for {
		ctx := inv.ctx
		var cancel context.CancelFunc = func() {}
		if inv.timeout > 0 {
			// A blocking query is allowed its wait on top of --timeout.
			ctx, cancel = context.WithTimeout(ctx, opts.WaitTime+inv.timeout)
		}
		var pairs []*client.KVPair
		var meta client.Meta
		var err error
		if recurse {
			pairs, meta, err = inv.client.List(ctx, key, opts)
		} else {
			var p *client.KVPair
			if p, meta, err = inv.client.Get(ctx, key, opts); p != nil {
				pairs = []*client.KVPair{p}
			}
		}
		cancel()
		if err != nil {
			if inv.ctx.Err() != nil {
				return nil // stopped
			}
			fmt.Fprintf(inv.stderr, "kvctl: watch: %v (retrying)\n", err)
			opts.WaitIndex = 0
			select {
			case <-time.After(time.Second):
			case <-inv.ctx.Done():
				return nil
			}
			continue
		}
		// An index that went backwards (a restored snapshot) starts over.
		if meta.Index < opts.WaitIndex {
			meta.Index = 0
		}
		opts.WaitIndex = meta.Index
		now := map[string]*client.KVPair{}
		for _, p := range pairs {
			now[p.Key] = p
		}
		if last != nil && samePairs(last, now) {
			continue // woken without a change
		}
		if err := inv.printChange(key, meta.Index, pairs, last, now, recurse); err != nil {
			return err
		}
		last = now
		if printed++; count > 0 && printed >= count {
			return nil
		}
	}
}

func samePairs(a, b map[string]*client.KVPair) bool {
	if len(a) != len(b) {
		return false
	}
	for k, p := range a {
		q, ok := b[k]
		if !ok || p.ModifyIndex != q.ModifyIndex || !bytes.Equal(p.Value, q.Value) || p.Session != q.Session {
			return false
		}
	}
	return true
}

func (inv *invocation) printChange(key string, index uint64, pairs []*client.KVPair, last, now map[string]*client.KVPair, recurse bool) error {
	if inv.json {
		if pairs == nil {
			pairs = []*client.KVPair{}
		}
		return inv.printJSONLine(struct {
			Index uint64
			Pairs []*client.KVPair
		}{index, pairs})
	}
	if !recurse {
		if p := now[key]; p != nil {
			fmt.Fprintf(inv.stdout, "%d %s\n", index, cell(p.Value))
		} else {
			fmt.Fprintf(inv.stdout, "%d (absent)\n", index)
		}
		return nil
	}
	keys := make([]string, 0, len(now)+len(last))
	for k := range now {
		keys = append(keys, k)
	}
	for k := range last {
		if now[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		p, was := now[k], last[k]
		switch {
		case p == nil:
			fmt.Fprintf(inv.stdout, "%d delete %s\n", index, cell([]byte(k)))
		case was == nil || was.ModifyIndex != p.ModifyIndex:
			fmt.Fprintf(inv.stdout, "%d set %s %s\n", index, cell([]byte(k)), cell(p.Value))
		}
	}
	if last == nil && len(now) == 0 {
		fmt.Fprintf(inv.stdout, "%d (no keys)\n", index)
	}
	return nil
}

// printJSONLine writes v as one line: a stream of changes is read line by
// line (jq -c, a loop in a script).
func (inv *invocation) printJSONLine(v any) error {
	enc := json.NewEncoder(inv.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

var sessionCommand = &command{
	name: "session", group: coordGroup, args: "<subcommand> [arguments]",
	summary: "create, list, inspect, renew and destroy sessions",
	long: `Sessions are what locks are held with (Consul's sessions). A session ends
when it is destroyed, when it is not renewed for 2×TTL (if it has a TTL), or
when the leader's failure detector declares its node dead (unless created
with --no-checks). When it ends, the keys it holds are released (behavior
release) or deleted (behavior delete: Consul's ephemeral keys), and nobody
may acquire them for its lock-delay.`,
	example: `  id=$(kvctl session create --ttl 30s --name deploy)
  kvctl put --acquire "$id" locks/deploy "$(hostname)"
  kvctl session renew "$id"
  kvctl session destroy "$id"`,
	subs: []*command{sessionCreate, sessionList, sessionInfo, sessionRenew, sessionDestroy},
}

var sessionCreate = &command{
	name: "create", group: coordGroup, maxArgs: 0,
	summary: "create a session and print its id",
	long: `Create a session and print its id. Without --ttl it lives until destroyed or
until its node dies; with one, renew it at least every TTL ('kvctl session
renew') or it ends 2×TTL after the last renewal.`,
	example: `  kvctl session create --ttl 15s --behavior delete --name ephemeral`,
	setup: func(fs *pflag.FlagSet) action {
		name := fs.String("name", "", "a name for people")
		ttl := fs.Duration("ttl", 0, "time to live between renewals (10s to 24h; 0: none)")
		lockDelay := fs.Duration("lock-delay", 0, "how long its keys stay unacquirable after it ends (default the server's 15s)")
		noDelay := fs.Bool("no-lock-delay", false, "no lock-delay at all")
		behavior := fs.String("behavior", "release", "what its end does to the keys it holds: release or delete")
		node := fs.String("node", "", "the member whose death ends it (default the node that creates it)")
		noChecks := fs.Bool("no-checks", false, "do not end it when its node dies")
		return func(inv *invocation, args []string) error {
			opts := client.SessionOptions{Name: *name, TTL: *ttl, LockDelay: *lockDelay, Behavior: *behavior, Node: *node, NoChecks: *noChecks}
			if *noDelay {
				opts.LockDelay = -1
			}
			id, err := inv.client.CreateSession(inv.ctx, opts)
			if err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(map[string]string{"ID": id})
			}
			fmt.Fprintln(inv.stdout, id)
			return nil
		}
	},
}

var sessionList = &command{
	name: "list", aliases: []string{"ls"}, group: coordGroup, maxArgs: 0,
	summary: "list sessions",
	long:    `List every session, or those of one node with --node.`,
	example: `  kvctl session list
  kvctl session list --node n2`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "only the sessions of this node")
		stale := fs.Bool("stale", false, "let any node answer from its local copy")
		return func(inv *invocation, args []string) error {
			list, _, err := inv.client.Sessions(inv.ctx, *node, client.ReadOptions{Stale: *stale})
			if err != nil {
				return err
			}
			if inv.json {
				if list == nil {
					list = []client.Session{}
				}
				return inv.printJSON(list)
			}
			return printSessions(inv, list)
		}
	},
}

func printSessions(inv *invocation, list []client.Session) error {
	if len(list) == 0 {
		return nil
	}
	tw := newTable(inv.stdout)
	fmt.Fprintln(tw, "ID\tNAME\tNODE\tTTL\tBEHAVIOR\tLOCK-DELAY\tCHECKS")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", s.ID, orDash(cell([]byte(s.Name))), s.Node, orDash(s.TTL), s.Behavior, s.LockDelay, orDash(strings.Join(s.NodeChecks, ",")))
	}
	return tw.Flush()
}

var sessionInfo = &command{
	name: "info", group: coordGroup, args: "<id>", minArgs: 1, maxArgs: 1,
	summary: "show one session",
	long:    `Show one session. A session that does not exist (any more) exits with status 1.`,
	example: `  kvctl session info 0a2b4c6d-1111-2222-3333-444455556666`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			s, _, err := inv.client.SessionInfo(inv.ctx, args[0], client.ReadOptions{})
			if err != nil {
				return err
			}
			if s == nil {
				return no("no such session: %s", args[0])
			}
			if inv.json {
				return inv.printJSON(s)
			}
			return printSessions(inv, []client.Session{*s})
		}
	},
}

var sessionRenew = &command{
	name: "renew", group: coordGroup, args: "<id>", minArgs: 1, maxArgs: 1,
	summary: "renew a session's TTL",
	long: `Renew a session: it now ends 2×TTL from now at the earliest. A session that
does not exist (it expired, or was destroyed) exits with status 1.`,
	example: `  while kvctl session renew "$id" >/dev/null; do sleep 5; done`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			s, err := inv.client.RenewSession(inv.ctx, args[0])
			if err != nil {
				return err
			}
			if s == nil {
				return no("no such session: %s (it expired or was destroyed)", args[0])
			}
			if inv.json {
				return inv.printJSON(s)
			}
			fmt.Fprintf(inv.stdout, "renewed %s (TTL %s)\n", s.ID, orDash(s.TTL))
			return nil
		}
	},
}

var sessionDestroy = &command{
	name: "destroy", group: coordGroup, args: "<id>", minArgs: 1, maxArgs: 1,
	summary: "end a session now",
	long: `End a session now: the keys it holds are released (or deleted, with behavior
delete) and their lock-delay starts. Destroying a session that does not
exist succeeds.`,
	example: `  kvctl session destroy 0a2b4c6d-1111-2222-3333-444455556666`,
	setup: func(fs *pflag.FlagSet) action {
		return func(inv *invocation, args []string) error {
			if err := inv.client.DestroySession(inv.ctx, args[0]); err != nil {
				return err
			}
			if inv.json {
				return inv.printJSON(map[string]string{"destroyed": args[0]})
			}
			fmt.Fprintf(inv.stdout, "destroyed %s\n", args[0])
			return nil
		}
	},
}
