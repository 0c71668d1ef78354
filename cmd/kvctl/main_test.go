package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/version"
)

// kvctl runs against real Troupe nodes (package inproc). Canned handlers
// stand in only for failures a real node cannot be made to produce on
// demand (an unknown write outcome, a dropped connection).

const bigFlags = "16210313421097356768" // above int64's range

// Server error text (cluster.ErrUnknownOutcome).
const errUnknownOutcome = "outcome unknown: the write may or may not have been applied"

type result struct {
	stdout, stderr string
	code           int
}

// kvctl runs the command in-process with the given stdin and environment;
// the real environment is not consulted, so TROUPE_ADDR cannot leak in.
func kvctl(t *testing.T, stdin string, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{
		ctx:    context.Background(),
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		getenv: func(k string) string { return env[k] },
	}
	code := c.run(args)
	return result{out.String(), errOut.String(), code}
}

// on runs kvctl against the given nodes, in that order.
func on(t *testing.T, nodes []*inproc.Node, args ...string) result {
	t.Helper()
	return kvctl(t, "", nil, append([]string{"--addr", strings.Join(inproc.Addrs(nodes), ",")}, args...)...)
}

func (r result) expect(t *testing.T, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q", r.code, r.stdout, r.stderr, code, stdout)
	}
}

func (r result) succeeds(t *testing.T) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want success", r.code, r.stdout, r.stderr)
	}
}

func (r result) expectErr(t *testing.T, code int, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stderr, stderr) || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit %d and one stderr line containing %q", r.code, r.stdout, r.stderr, code, stderr)
	}
}

func decodeJSON(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != 0 && r.code != 1 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, r.stdout)
	}
}

func timeout(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// startCluster runs n real nodes and waits until one leads and every node
// knows every member's HTTP address.
func startCluster(t *testing.T, n int, opts inproc.Options) []*inproc.Node {
	t.Helper()
	nodes := inproc.Start(t, n, opts)
	inproc.Leader(t, nodes)
	deadline := time.Now().Add(15 * time.Second)
	for _, nd := range nodes {
		for {
			ms, err := nd.Client().Members()
			registered := err == nil && len(ms) == n
			for _, m := range ms {
				registered = registered && m.HTTPAddr != "" && m.Version != ""
			}
			if registered {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: members never all registered: %+v, %v", nd.ID, ms, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nodes
}

// leaderFirst returns the nodes with the leader first, the followers in
// their order after it.
func leaderFirst(t *testing.T, nodes []*inproc.Node) []*inproc.Node {
	leader := inproc.Leader(t, nodes)
	out := []*inproc.Node{leader}
	for _, nd := range nodes {
		if nd != leader {
			out = append(out, nd)
		}
	}
	return out
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// seed writes a key through the client package and returns its index.
func seed(t *testing.T, nd *inproc.Node, key, value string) uint64 {
	t.Helper()
	ok, meta, err := client.New([]string{nd.HTTPAddr}).Put(timeout(t), key, []byte(value), client.WriteOptions{})
	if err != nil || !ok {
		t.Fatalf("seeding %s: %v, %v", key, ok, err)
	}
	return meta.Index
}

// stored reads key from a one-node cluster's state file. Writes are applied
// there before they are acknowledged.
func stored(t *testing.T, nd *inproc.Node, key string) (value string, flags, modifyIndex uint64, found bool) {
	t.Helper()
	e, found, _, err := nd.Store.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value), e.Flags, e.ModifyIndex, found
}

// isolate cuts nd off from every peer and waits until it knows no leader.
func isolate(t *testing.T, nd *inproc.Node) {
	t.Helper()
	if _, err := client.New(nil).SetFaults(context.Background(), nd.HTTPAddr, rules(0, cutRule(faultnet.AnyPeer, faultnet.Both))); err != nil {
		t.Fatalf("cut %s: %v", nd.ID, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, err := nd.Client().Status(); err == nil && st.LeaderID == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still knows a leader after being cut off", nd.ID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// table renders rows the way kvctl's tabwriter does: every column but the
// last padded to its widest cell plus two spaces.
func table(rows ...[]string) string {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r[:len(r)-1] {
			widths[i] = max(widths[i], len(c))
		}
	}
	var b strings.Builder
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c + "\n")
			} else {
				fmt.Fprintf(&b, "%-*s", widths[i]+2, c)
			}
		}
	}
	return b.String()
}

func TestRun_UsesProcessStreams(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"help"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "Exit status:") {
		t.Fatalf("run(help) = %d, %q", code, out.String())
	}
}

// TestKVCommands runs the key-value commands against one real node; the
// subtests share it with distinct key prefixes, and the ones that need the
// whole store (an empty listing, deleting everything) come first and last.
func TestKVCommands(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	nd := nodes[0]

	t.Run("ls on an empty store", func(t *testing.T) {
		on(t, nodes, "ls").expect(t, 0, "")
		on(t, nodes, "-o", "json", "ls").expect(t, 0, "[]\n")
		on(t, nodes, "-o", "json", "ls", "-r").expect(t, 0, "[]\n")
		on(t, nodes, "ls", "-r").expect(t, 0, "")
	})

	t.Run("put and get, text", func(t *testing.T) {
		r := on(t, nodes, "put", "pg/color", "blue")
		if r.code != 0 || !regexp.MustCompile(`^wrote pg/color \(index \d+\)\n$`).MatchString(r.stdout) {
			t.Fatalf("put: %+v", r)
		}
		if _, _, idx, _ := stored(t, nd, "pg/color"); r.stdout != fmt.Sprintf("wrote pg/color (index %d)\n", idx) {
			t.Fatalf("put printed %q, stored index %d", r.stdout, idx)
		}
		on(t, nodes, "get", "pg/color").expect(t, 0, "blue\n")
		on(t, nodes, "get", "--stale", "pg/color").expect(t, 0, "blue\n")
		on(t, nodes, "get", "--consistent", "pg/color").expect(t, 0, "blue\n")
		on(t, nodes, "get", "--stale", "--consistent", "pg/color").expectErr(t, 2, "mutually exclusive")
		// A value ending in a newline is not given a second one.
		seed(t, nd, "pg/nl", "line\n")
		on(t, nodes, "get", "pg/nl").expect(t, 0, "line\n")
		seed(t, nd, "pg/bare", "x")
		on(t, nodes, "get", "--raw", "pg/bare").expect(t, 0, "x")
		seed(t, nd, "pg/empty", "")
		on(t, nodes, "get", "pg/empty").expect(t, 0, "\n")
		on(t, nodes, "get", "--raw", "pg/empty").expect(t, 0, "")
	})

	t.Run("get -o json", func(t *testing.T) {
		on(t, nodes, "put", "--flags", bigFlags, "gj/k", "hello").succeeds(t)
		r := on(t, nodes, "-o", "json", "get", "gj/k")
		if !strings.Contains(r.stdout, `"Flags": `+bigFlags+",") || !strings.Contains(r.stdout, `"Value": "aGVsbG8=",`) {
			t.Fatalf("flags or base64 value not printed exactly:\n%s", r.stdout)
		}
		var p struct {
			Key         string
			Value       []byte
			Flags       uint64
			CreateIndex uint64
			ModifyIndex uint64
		}
		decodeJSON(t, r, &p)
		if p.Key != "gj/k" || string(p.Value) != "hello" || fmt.Sprint(p.Flags) != bigFlags || p.ModifyIndex == 0 || p.CreateIndex != p.ModifyIndex {
			t.Fatalf("get -o json = %+v", p)
		}
		if _, flags, idx, _ := stored(t, nd, "gj/k"); p.ModifyIndex != idx || fmt.Sprint(flags) != bigFlags {
			t.Fatalf("ModifyIndex %d, stored %d with flags %d", p.ModifyIndex, idx, flags)
		}
	})

	t.Run("a missing key exits 1", func(t *testing.T) {
		for _, args := range [][]string{{"get", "mk/nope"}, {"-o", "json", "get", "mk/nope"}} {
			r := on(t, nodes, args...)
			r.expect(t, 1, "")
			if r.stderr != "kvctl: key not found: mk/nope\n" {
				t.Fatalf("stderr = %q", r.stderr)
			}
		}
	})

	t.Run("put a value from stdin", func(t *testing.T) {
		value := "line one\nline two\x00\xff\n"
		r := kvctl(t, value, nil, "--addr", nd.HTTPAddr, "put", "in/blob", "-")
		if r.code != 0 {
			t.Fatalf("put -: %+v", r)
		}
		if v, _, _, _ := stored(t, nd, "in/blob"); v != value {
			t.Fatalf("stored %q", v)
		}
		on(t, nodes, "get", "--raw", "in/blob").expect(t, 0, value)
		// A value starting with "-" after "--".
		on(t, nodes, "put", "--", "in/neg", "-5").succeeds(t)
		on(t, nodes, "get", "in/neg").expect(t, 0, "-5\n")
	})

	t.Run("put -o json", func(t *testing.T) {
		var w writeResult
		decodeJSON(t, on(t, nodes, "put", "pj/k", "v", "-o", "json"), &w)
		if _, _, idx, _ := stored(t, nd, "pj/k"); w.Key != "pj/k" || !w.OK || w.Index != idx || w.Recurse {
			t.Fatalf("put -o json = %+v", w)
		}
	})

	t.Run("put over the size limit", func(t *testing.T) {
		big := strings.Repeat("x", 512<<10+1)
		r := kvctl(t, big, nil, "--addr", nd.HTTPAddr, "put", "big/k", "-")
		r.expectErr(t, 2, "kvctl: put: "+nd.HTTPAddr+": HTTP 413: Request body (524289 bytes) too large, max size: 524288 bytes")
		if _, _, _, found := stored(t, nd, "big/k"); found {
			t.Fatal("the refused value was stored")
		}
	})

	t.Run("del", func(t *testing.T) {
		seed(t, nd, "del/a", "1")
		r := on(t, nodes, "del", "del/a")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "deleted del/a (index ") {
			t.Fatalf("del: %+v", r)
		}
		if _, _, _, found := stored(t, nd, "del/a"); found {
			t.Fatal("del left the key")
		}
		on(t, nodes, "del", "del/never-was").succeeds(t)
		on(t, nodes, "rm", "del/never-was").succeeds(t)

		seed(t, nd, "del/app/x", "1")
		seed(t, nd, "del/app/y", "2")
		seed(t, nd, "del/apple", "3")
		var w writeResult
		decodeJSON(t, on(t, nodes, "-o", "json", "del", "--recurse", "del/app/"), &w)
		if !w.OK || !w.Recurse || w.Key != "del/app/" || w.Index == 0 {
			t.Fatalf("del --recurse -o json = %+v", w)
		}
		if _, _, _, found := stored(t, nd, "del/app/x"); found {
			t.Fatal("del --recurse left del/app/x")
		}
		if _, _, _, found := stored(t, nd, "del/apple"); !found {
			t.Fatal("del --recurse del/app/ removed del/apple")
		}
		r = on(t, nodes, "del", "-r", "del/app")
		if r.code != 0 || !regexp.MustCompile(`^deleted every key under "del/app" \(index \d+\)\n$`).MatchString(r.stdout) {
			t.Fatalf("del -r del/app: %+v", r)
		}
		if _, _, _, found := stored(t, nd, "del/apple"); found {
			t.Fatal("del -r del/app (a plain string prefix) left del/apple")
		}
		on(t, nodes, "del", "--recurse", "--cas", "1", "del/x").expectErr(t, 2, "cannot be combined")
	})

	t.Run("del --cas", func(t *testing.T) {
		idx := seed(t, nd, "dc/lock", "me")
		on(t, nodes, "del", "--cas", fmt.Sprint(idx+5), "dc/lock").expectErr(t, 1, fmt.Sprintf("not deleted: dc/lock is at index %d, not %d", idx, idx+5))
		var w writeResult
		r := on(t, nodes, "-o", "json", "del", "--cas", fmt.Sprint(idx+5), "dc/lock")
		decodeJSON(t, r, &w)
		if r.code != 1 || w.OK || w.Key != "dc/lock" {
			t.Fatalf("stale del --cas -o json = %+v %+v", r, w)
		}
		r = on(t, nodes, "del", "--cas", fmt.Sprint(idx), "dc/lock")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "deleted dc/lock (index ") {
			t.Fatalf("del --cas: %+v", r)
		}
		if _, _, _, found := stored(t, nd, "dc/lock"); found {
			t.Fatal("del --cas left the key")
		}
		// The key is gone: a DeleteCAS of a missing key counts as done.
		on(t, nodes, "del", "--cas", fmt.Sprint(idx), "dc/lock").succeeds(t)
	})

	t.Run("cas", func(t *testing.T) {
		r := on(t, nodes, "cas", "--index", "0", "cas/lock", "a")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "wrote cas/lock (index ") {
			t.Fatalf("cas create: %+v", r)
		}
		_, _, idx, _ := stored(t, nd, "cas/lock")
		on(t, nodes, "cas", "--index", "0", "cas/lock", "b").expectErr(t, 1, fmt.Sprintf("cas failed: cas/lock already exists (index %d)", idx))
		on(t, nodes, "cas", "--index", fmt.Sprint(idx+1), "cas/lock", "b").expectErr(t, 1, fmt.Sprintf("cas failed: cas/lock is at index %d, not %d", idx, idx+1))
		on(t, nodes, "cas", "--index", "7", "cas/missing", "b").expectErr(t, 1, "cas failed: cas/missing does not exist")
		on(t, nodes, "cas", "cas/lock", "b").expectErr(t, 2, "cas needs --index")

		var w writeResult
		r = on(t, nodes, "-o", "json", "cas", "--index", "1", "cas/lock", "b")
		decodeJSON(t, r, &w)
		if r.code != 1 || w.OK || w.Key != "cas/lock" {
			t.Fatalf("failed cas -o json: %+v %+v", r, w)
		}
		if v, _, _, _ := stored(t, nd, "cas/lock"); v != "a" {
			t.Fatalf("failed cases changed the value to %q", v)
		}
		decodeJSON(t, on(t, nodes, "-o", "json", "cas", "--flags", bigFlags, "--index", fmt.Sprint(idx), "cas/lock", "b"), &w)
		if !w.OK || w.Index <= idx {
			t.Fatalf("cas -o json = %+v", w)
		}
		if v, flags, _, _ := stored(t, nd, "cas/lock"); v != "b" || fmt.Sprint(flags) != bigFlags {
			t.Fatalf("after cas: %q flags %d", v, flags)
		}
		r = kvctl(t, "from stdin", nil, "--addr", nd.HTTPAddr, "cas", "--index", "0", "cas/piped", "-")
		if v, _, _, _ := stored(t, nd, "cas/piped"); r.code != 0 || v != "from stdin" {
			t.Fatalf("cas -: %+v, stored %q", r, v)
		}
	})

	t.Run("ls", func(t *testing.T) {
		for _, kv := range [][2]string{{"ls/web/a", "1"}, {"ls/web/sub/x", "two\nlines"}, {"ls/web/sub/y", "3"}, {"ls/webby", "4"}} {
			seed(t, nd, kv[0], kv[1])
		}
		on(t, nodes, "ls", "ls/").expect(t, 0, "ls/web/\nls/webby\n")
		on(t, nodes, "ls", "ls/web/").expect(t, 0, "ls/web/a\nls/web/sub/\n")
		on(t, nodes, "list", "ls/web/").expect(t, 0, "ls/web/a\nls/web/sub/\n")
		on(t, nodes, "ls", "--separator", "", "ls/web/").expect(t, 0, "ls/web/a\nls/web/sub/x\nls/web/sub/y\n")
		on(t, nodes, "ls", "ls/nothing/").expect(t, 0, "")
		on(t, nodes, "-o", "json", "ls", "ls/nothing/").expect(t, 0, "[]\n")
		on(t, nodes, "-o", "json", "ls", "-r", "ls/nothing/").expect(t, 0, "[]\n")
		on(t, nodes, "ls", "--stale", "ls/web/").expect(t, 0, "ls/web/a\nls/web/sub/\n")
		on(t, nodes, "ls", "-r", "ls/web/").expect(t, 0, "KEY           VALUE\nls/web/a      1\nls/web/sub/x  \"two\\nlines\"\nls/web/sub/y  3\n")
		on(t, nodes, "ls", "-r", "--separator", "/").expectErr(t, 2, "no effect with --recurse")

		var keys []string
		decodeJSON(t, on(t, nodes, "-o", "json", "ls", "ls/web/"), &keys)
		if strings.Join(keys, ",") != "ls/web/a,ls/web/sub/" {
			t.Fatalf("ls -o json = %q", keys)
		}
		var pairs []struct {
			Key   string
			Value []byte
		}
		decodeJSON(t, on(t, nodes, "-o", "json", "ls", "--recurse", "ls/web/sub/"), &pairs)
		if len(pairs) != 2 || pairs[0].Key != "ls/web/sub/x" || string(pairs[0].Value) != "two\nlines" || pairs[1].Key != "ls/web/sub/y" {
			t.Fatalf("ls -r -o json = %+v", pairs)
		}
	})

	t.Run("delete everything", func(t *testing.T) {
		on(t, nodes, "del", "-r", "").expectErr(t, 2, "needs --force")
		if _, _, _, found := stored(t, nd, "ls/webby"); !found {
			t.Fatal("refused delete-all deleted anyway")
		}
		r := on(t, nodes, "del", "-r", "--force", "")
		if r.code != 0 || !regexp.MustCompile(`^deleted every key \(index \d+\)\n$`).MatchString(r.stdout) {
			t.Fatalf("del -r --force '': %+v", r)
		}
		on(t, nodes, "ls").expect(t, 0, "")
		on(t, nodes, "-o", "json", "ls", "-r").expect(t, 0, "[]\n")
		// Without a prefix, keys fold at their first separator.
		for _, k := range []string{"web/a", "web/sub/x", "webby"} {
			seed(t, nd, k, "v")
		}
		on(t, nodes, "ls").expect(t, 0, "web/\nwebby\n")
		on(t, nodes, "ls", "--separator", "").expect(t, 0, "web/a\nweb/sub/x\nwebby\n")
	})
}

// TestClusterCommands runs the cluster commands against a real 3-node
// cluster, leader first in --addr. Stopping a node comes last.
func TestClusterCommands(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Build: func(id string) version.Build {
		return version.Build{Version: "v0.0.0-" + id, Commit: "c" + id, GoVersion: "go-test"}
	}})
	order := leaderFirst(t, nodes)
	leader := order[0]

	t.Run("members", func(t *testing.T) {
		rows := [][]string{{"ID", "RAFT ADDRESS", "HTTP ADDRESS", "ROLE", "VERSION"}}
		for _, nd := range nodes {
			role := "voter"
			if nd == leader {
				role = "leader"
			}
			rows = append(rows, []string{nd.ID, nd.RaftAddr, nd.HTTPAddr, role, "v0.0.0-" + nd.ID})
		}
		on(t, order, "members").expect(t, 0, table(rows...))
		var ms []map[string]any
		decodeJSON(t, on(t, order, "members", "-o", "json"), &ms)
		if len(ms) != 3 {
			t.Fatalf("members -o json = %v", ms)
		}
		for i, m := range ms {
			nd := nodes[i]
			if m["id"] != nd.ID || m["raft_addr"] != nd.RaftAddr || m["http_addr"] != nd.HTTPAddr || m["voter"] != true || m["leader"] != (nd == leader) || m["version"] != "v0.0.0-"+nd.ID {
				t.Fatalf("members -o json [%d] = %v", i, m)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		r := on(t, order, "status")
		for _, line := range []string{
			"Node:                 " + leader.ID + "\n",
			"State:                Leader\n",
			fmt.Sprintf("Leader:               %s (raft %s, http %s)\n", leader.ID, leader.RaftAddr, leader.HTTPAddr),
			"Last contact:         - (this node leads)\n",
			"Version:              v0.0.0-" + leader.ID + " (commit c" + leader.ID + ", go-test)\n",
		} {
			if !strings.Contains(r.stdout, line) {
				t.Fatalf("status lacks %q:\n%s", line, r.stdout)
			}
		}
		if r.code != 0 || strings.Count(r.stdout, "\n") != 10 {
			t.Fatalf("status: %+v", r)
		}
		var st map[string]any
		decodeJSON(t, on(t, order, "-o", "json", "status"), &st)
		if st["id"] != leader.ID || st["state"] != "Leader" || st["leader_http_addr"] != leader.HTTPAddr || st["leader_raft_addr"] != leader.RaftAddr ||
			st["version"] != "v0.0.0-"+leader.ID || st["commit"] != "c"+leader.ID || st["go_version"] != "go-test" {
			t.Fatalf("status -o json = %v", st)
		}
		f := order[1]
		r = on(t, []*inproc.Node{f}, "status")
		if !strings.Contains(r.stdout, "Node:                 "+f.ID+"\n") || !strings.Contains(r.stdout, "State:                Follower\n") ||
			!regexp.MustCompile(`\nLast contact:         \d+(\.\d+)?[µm]?s\n`).MatchString(r.stdout) {
			t.Fatalf("status of a follower:\n%s", r.stdout)
		}
	})

	t.Run("leader and peers", func(t *testing.T) {
		on(t, order, "leader").expect(t, 0, fmt.Sprintf("%s  raft %s  http %s\n", leader.ID, leader.RaftAddr, leader.HTTPAddr))
		on(t, order, "-o", "json", "leader").expect(t, 0, fmt.Sprintf("{\n  \"id\": %q,\n  \"raft_addr\": %q,\n  \"http_addr\": %q\n}\n", leader.ID, leader.RaftAddr, leader.HTTPAddr))
		on(t, order, "peers").expect(t, 0, fmt.Sprintf("%s\n%s\n%s\n", nodes[0].RaftAddr, nodes[1].RaftAddr, nodes[2].RaftAddr))
		on(t, order, "-o", "json", "peers").expect(t, 0, fmt.Sprintf("[\n  %q,\n  %q,\n  %q\n]\n", nodes[0].RaftAddr, nodes[1].RaftAddr, nodes[2].RaftAddr))
	})

	// A voter that answers probes but never runs Raft: 3 of 4 is still a
	// quorum. One that does not answer at all is refused.
	t.Run("join and remove", func(t *testing.T) {
		raft := inproc.ProbeOnly(t, "n4")
		on(t, order, "join", "n4", deadAddr(t)).expectErr(t, 2, `cannot reach node "n4"`)
		on(t, order, "join", "n5", raft).expectErr(t, 2, `the node at `+raft+` is "n4", not "n5"`)
		on(t, order, "join", "n4", raft).expect(t, 0, "joined n4\n")
		on(t, order, "-o", "json", "join", "n4", raft).expect(t, 0, "{\n  \"joined\": \"n4\"\n}\n")
		if r := on(t, order, "members"); !regexp.MustCompile(`\nn4 +` + raft + ` +-? *voter +-\n`).MatchString(r.stdout) {
			t.Fatalf("members after join:\n%s", r.stdout)
		}
		on(t, order, "-o", "json", "remove", "n4").expect(t, 0, "{\n  \"removed\": \"n4\"\n}\n")
		on(t, order, "remove", "n4").expectErr(t, 2, `kvctl: remove: `+leader.HTTPAddr+`: HTTP 404: no member with id "n4"`)
		on(t, order, "join", "n4").expectErr(t, 2, "join expects <id> <raft-addr>")
		on(t, order, "join", "n4", "nohost").expectErr(t, 2, `HTTP 400: bad join request: raft_addr "nohost" must be host:port`)
		if r := on(t, order, "peers"); strings.Count(r.stdout, "\n") != 3 {
			t.Fatalf("peers after remove:\n%s", r.stdout)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		r := on(t, order, "snapshot")
		m := regexp.MustCompile(`^snapshot taken at index (\d+)\n$`).FindStringSubmatch(r.stdout)
		if r.code != 0 || m == nil {
			t.Fatalf("snapshot: %+v", r)
		}
		var st map[string]any
		decodeJSON(t, on(t, order, "-o", "json", "status"), &st)
		if fmt.Sprint(st["last_snapshot_index"]) != m[1] {
			t.Fatalf("status after snapshot at %s: %v", m[1], st)
		}
	})

	t.Run("status --all with a stopped node", func(t *testing.T) {
		down, up := order[1], order[2]
		down.Stop()
		r := on(t, order, "status", "--all")
		if r.code != 2 || !strings.Contains(r.stderr, "1 of 3 nodes did not answer: "+down.HTTPAddr+": dial tcp") || strings.Count(r.stderr, "\n") != 1 {
			t.Fatalf("status --all with a dead node: %+v", r)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 4 || !regexp.MustCompile(`^ENDPOINT +ID +STATE +TERM +COMMIT +APPLIED +LEADER +CONTACT +VERSION$`).MatchString(lines[0]) ||
			!regexp.MustCompile(`^`+leader.HTTPAddr+` +`+leader.ID+` +Leader +\d+ +\d+ +\d+ +`+leader.ID+` +- +v0\.0\.0-`+leader.ID+`$`).MatchString(lines[1]) ||
			!regexp.MustCompile(`^`+down.HTTPAddr+` +- +unreachable +- +- +- +- +- +-$`).MatchString(lines[2]) ||
			!regexp.MustCompile(`^`+up.HTTPAddr+` +`+up.ID+` +Follower +\d+ +\d+ +\d+ +`+leader.ID+` +\S+ +v0\.0\.0-`+up.ID+`$`).MatchString(lines[3]) {
			t.Fatalf("status --all:\n%s", r.stdout)
		}
		var rows []nodeStatus
		decodeJSON(t, kvctl(t, "", nil, "--addr", leader.HTTPAddr, "--addr", up.HTTPAddr, "-o", "json", "status", "--all"), &rows)
		if len(rows) != 2 || rows[0].Status.ID != leader.ID || rows[1].Status.ID != up.ID || rows[1].Status.State != "Follower" || rows[1].Error != "" {
			t.Fatalf("status --all -o json = %+v", rows)
		}
	})
}

// TestNoQuorum cuts one node off with the chaos endpoint: it answers 503
// not-applied, kvctl fails over for reads and writes, and asked alone it
// knows no leader.
func TestNoQuorum(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Chaos: true, RequestTimeout: 500 * time.Millisecond})
	order := leaderFirst(t, nodes)
	cut := order[1]
	seed(t, order[0], "nq/old", "before")
	if err := cut.Store.WaitApplied(timeout(t), order[0].Store.AppliedIndex()); err != nil {
		t.Fatal(err)
	}
	isolate(t, cut)
	failover := []*inproc.Node{cut, order[0], order[2]}

	r := on(t, failover, "put", "nq/k", "v")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "wrote nq/k (index ") {
		t.Fatalf("put through a cut node first: %+v", r)
	}
	on(t, failover, "get", "nq/k").expect(t, 0, "v\n")

	alone := []*inproc.Node{cut}
	// Alone, it is retried (one endpoint plus four attempts) and the
	// last answer is reported.
	on(t, alone, "put", "nq/k2", "v").expectErr(t, 2, "kvctl: put: gave up after 5 attempts, last: "+cut.HTTPAddr+": HTTP 503: no leader: the cluster has no quorum")
	// A linearizable read is refused too; when --timeout ends the retries,
	// the refusal is still what the message explains.
	r = kvctl(t, "", nil, "--addr", cut.HTTPAddr, "--timeout", "1s", "get", "nq/old")
	r.expectErr(t, 2, "kvctl: get: timed out after 1s (raise --timeout?): ")
	if !strings.Contains(r.stderr, "; before that, "+cut.HTTPAddr+" answered HTTP 503: no leader: the cluster has no quorum") {
		t.Fatalf("stderr = %q", r.stderr)
	}
	on(t, alone, "get", "--stale", "nq/old").expect(t, 0, "before\n")
	r = on(t, alone, "leader")
	r.expectErr(t, 1, "no leader known to "+cut.ID)
	if r.stdout != "" {
		t.Fatalf("leader printed %q without a leader", r.stdout)
	}
	var l map[string]string
	r = on(t, alone, "-o", "json", "leader")
	decodeJSON(t, r, &l)
	if r.code != 1 || l["id"] != "" || l["raft_addr"] != "" || l["http_addr"] != "" {
		t.Fatalf("leader -o json without a leader: %+v", r)
	}
	// The cut node holds a linearizable read for its request timeout, so a
	// shorter --timeout runs out first.
	kvctl(t, "", nil, "--addr", cut.HTTPAddr, "--timeout", "100ms", "get", "nq/old").expectErr(t, 2, "timed out after 100ms")
	// The write the cut node refused was not applied.
	if p, _, err := client.New([]string{order[0].HTTPAddr}).Get(timeout(t), "nq/k2", client.ReadOptions{}); err != nil || p != nil {
		t.Fatalf("refused write: %+v, %v", p, err)
	}
}

func TestFailover_FirstEndpointDead(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	dead, live := deadAddr(t), nodes[0].HTTPAddr
	for name, r := range map[string]func(args ...string) result{
		"comma": func(args ...string) result {
			return kvctl(t, "", nil, append([]string{"--addr", dead + "," + live}, args...)...)
		},
		"repeated": func(args ...string) result {
			return kvctl(t, "", nil, append([]string{"--addr", dead, "--addr", live}, args...)...)
		},
		"after": func(args ...string) result { return kvctl(t, "", nil, append(args, "--addr", dead+","+live)...) },
		"env": func(args ...string) result {
			return kvctl(t, "", map[string]string{envAddr: dead + "," + live}, args...)
		},
	} {
		t.Run(name, func(t *testing.T) {
			if res := r("put", "k", name); res.code != 0 {
				t.Fatalf("put: %+v", res)
			}
			r("get", "k").expect(t, 0, name+"\n")
			if res := r("members"); res.code != 0 || !strings.Contains(res.stdout, live) {
				t.Fatalf("members: %+v", res)
			}
		})
	}
	// An explicit --addr wins over the environment.
	r := kvctl(t, "", map[string]string{envAddr: dead}, "--addr", live, "get", "k")
	if r.code != 0 {
		t.Fatalf("--addr did not override %s: %+v", envAddr, r)
	}
	// A stopped node is as dead as an unused port.
	stopped := startCluster(t, 1, inproc.Options{})[0]
	stopped.Stop()
	r = kvctl(t, "", nil, "--addr", stopped.HTTPAddr+","+live, "get", "k")
	if r.code != 0 {
		t.Fatalf("get with a stopped node first: %+v", r)
	}
	// Nobody home: bounded failover, one line.
	r = kvctl(t, "", nil, "--addr", dead+","+stopped.HTTPAddr, "get", "k")
	r.expectErr(t, 2, "kvctl: get: gave up after 6 attempts, last: 127.0.0.1:")
	if !strings.Contains(r.stderr, "connection refused") {
		t.Fatalf("stderr = %q", r.stderr)
	}
}

func TestErrors(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	live := nodes[0]
	kvctl(t, "", nil, "frobnicate").expectErr(t, 2, `unknown command "frobnicate"`)
	on(t, nodes, "-o", "yaml", "get", "k").expectErr(t, 2, "--output must be text or json")
	on(t, nodes, "get").expectErr(t, 2, "get expects <key> [flags], got 0 argument(s)")
	on(t, nodes, "get", "--bogus", "k").expectErr(t, 2, "unknown flag: --bogus")
	kvctl(t, "", nil, "--addr", "ftp://x", "get", "k").expectErr(t, 2, "scheme must be http or https")
	on(t, nodes, "put", "bad//key", "v").expectErr(t, 2, "kvctl: put: "+live.HTTPAddr+": HTTP 400: key must not contain an empty segment ('//')")
	on(t, nodes, "get", "/lead").expectErr(t, 2, "kvctl: get: "+live.HTTPAddr+": HTTP 400: key must not start with '/'")

	// A write that may have happened says so, and is not resent to the
	// next node: canned answers in front of a real node.
	unknown := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Troupe-Outcome", "unknown")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(503)
		io.WriteString(w, errUnknownOutcome+"\n")
	}))
	defer unknown.Close()
	hangUp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	}))
	defer hangUp.Close()
	kvctl(t, "", nil, "--addr", unknown.URL+","+live.HTTPAddr, "put", "err/k", "v").expectErr(t, 2, "HTTP 503: "+errUnknownOutcome+"\n")
	kvctl(t, "", nil, "--addr", hangUp.URL+","+live.HTTPAddr, "put", "err/k", "v").expectErr(t, 2, ": EOF (outcome unknown: the write may or may not have been applied)\n")
	on(t, nodes, "get", "err/k").expectErr(t, 1, "key not found: err/k")
}

// TestVersion: --version prints this binary's build and contacts no node,
// given before or after a command.
func TestVersion(t *testing.T) {
	want := "kvctl " + version.Info().String() + "\n"
	kvctl(t, "", nil, "--version").expect(t, 0, want)
	kvctl(t, "", nil, "--addr", "127.0.0.1:1", "get", "k", "--version").expect(t, 0, want)
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := kvctl(t, "", nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Key-value commands:") || !strings.Contains(r.stdout, "Exit status:") {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	r := kvctl(t, "", nil)
	if r.code != 2 || !strings.Contains(r.stderr, "Usage:") {
		t.Fatalf("no arguments: %+v", r)
	}
	for _, cmd := range commands {
		for _, args := range [][]string{{"help", cmd.name}, {cmd.name, "--help"}} {
			r := kvctl(t, "", nil, args...)
			if r.code != 0 || !strings.Contains(r.stdout, "Usage: kvctl "+cmd.name) || !strings.Contains(r.stdout, "Examples:\n"+cmd.example+"\n") || !strings.Contains(cmd.example, cmd.name) ||
				!strings.Contains(r.stdout, "--timeout") {
				t.Fatalf("%v: %+v", args, r)
			}
		}
	}
	if r := kvctl(t, "", nil, "help", "rm"); r.code != 0 || !strings.Contains(r.stdout, "Usage: kvctl del") {
		t.Fatalf("alias help: %+v", r)
	}
}
