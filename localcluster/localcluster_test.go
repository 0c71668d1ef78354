package localcluster_test

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/localcluster"
)

func TestFindKVNodeOrder(t *testing.T) {
	dir := t.TempDir()
	explicit := filepath.Join(dir, "kvnode-explicit")
	fromEnv := filepath.Join(dir, "kvnode-env")
	for _, p := range []string{explicit, fromEnv} {
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(localcluster.EnvKVNode, fromEnv)
	if got, err := localcluster.FindKVNode(explicit); err != nil || got != explicit {
		t.Fatalf("explicit path: %q, %v", got, err)
	}
	if got, err := localcluster.FindKVNode(""); err != nil || got != fromEnv {
		t.Fatalf("from %s: %q, %v", localcluster.EnvKVNode, got, err)
	}

	// A wrong path is an error that says how to get a binary, never a
	// build.
	t.Setenv(localcluster.EnvKVNode, filepath.Join(dir, "missing"))
	if _, err := localcluster.FindKVNode(""); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("missing binary: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "plain"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := localcluster.FindKVNode(filepath.Join(dir, "plain")); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Fatalf("non-executable file: %v", err)
	}
}

func TestIsLocal(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8500": true,
		"localhost:8500": true,
		"[::1]:8500":     true,
		"0.0.0.0:8500":   true,
		"192.0.2.7:8500": false, // TEST-NET-1: nobody's
	} {
		if got := localcluster.IsLocal(addr); got != want {
			t.Errorf("IsLocal(%s) = %v, want %v", addr, got, want)
		}
	}
}

// FindProcess must find a listener's owner through /proc and refuse it
// when it is not a kvnode: here the owner is the test itself.
func TestFindProcessRefusesOtherPrograms(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = localcluster.FindProcess("n1", l.Addr().String())
	if err == nil || !strings.Contains(err.Error(), "not to a kvnode") {
		t.Fatalf("got %v, want a refusal naming this test's process", err)
	}
	if _, err := localcluster.FindProcess("n1", "192.0.2.7:8500"); err == nil {
		t.Fatal("found a process for a foreign address")
	}
	free := l.Addr().String()
	l.Close()
	if _, err := localcluster.FindProcess("n1", free); err == nil || !strings.Contains(err.Error(), "no process") {
		t.Fatalf("closed port: %v", err)
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// The whole life of a cluster through the package's own API: every
// failure is an error, not a test failure inside the package.
func TestClusterLifecycle(t *testing.T) {
	c, err := localcluster.Start(3, localcluster.Options{Binary: testcluster.Binary(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Kill() })
	leader, err := c.WaitLeader(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _, err := leader.Do(http.MethodPut, "/v1/kv/k", []byte("v")); err != nil || code != 200 {
		t.Fatalf("put: %d %s %v", code, body, err)
	}

	// Crash the leader: another takes over; the old one comes back on
	// its data and catches up.
	if err := leader.Kill(); err != nil {
		t.Fatal(err)
	}
	if leader.Running() || leader.Pid() != 0 || len(c.Pids()) != 2 {
		t.Fatalf("after Kill: running=%v pid=%d pids=%v", leader.Running(), leader.Pid(), c.Pids())
	}
	next, err := c.WaitNewLeader(ctxFor(t, 30*time.Second), leader)
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Start(); err != nil {
		t.Fatal(err)
	}
	if err := leader.Start(); err == nil {
		t.Fatal("a second Start of a running node succeeded")
	}
	st, err := next.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.WaitApplied(ctxFor(t, 30*time.Second), st.CommitIndex); err != nil {
		t.Fatal(err)
	}

	// A paused node is silent but alive; a wait on it ends with the
	// context, as an error.
	f := c.Followers(next)[0]
	if err := f.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitHTTP(ctxFor(t, 300*time.Millisecond)); err == nil || !f.Running() {
		t.Fatalf("paused node: WaitHTTP %v, running %v", err, f.Running())
	}
	if err := f.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := f.WaitHTTP(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}

	if err := f.Wipe(); err == nil {
		t.Fatal("wiped a running node")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if len(c.Pids()) != 0 || !strings.Contains(leader.Log(), "---- start") {
		t.Fatalf("after Stop: pids %v", c.Pids())
	}
	if err := f.Wipe(); err != nil {
		t.Fatal(err)
	}
}

// A node this program did not start (as under 'make run') is found by its
// address, killed, and started again from what /proc said about it.
func TestFindProcessKillAndStartAgain(t *testing.T) {
	c, err := localcluster.Start(1, localcluster.Options{Binary: testcluster.Binary(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	n := c.Nodes[0]
	t.Cleanup(func() {
		_ = c.Kill()
		if p, err := localcluster.FindProcess(n.ID, n.HTTPAddr); err == nil {
			_ = p.Kill(context.Background())
		}
	})
	if err := n.WaitHTTP(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := localcluster.FindProcess("n9", n.HTTPAddr); err == nil || !strings.Contains(err.Error(), "not n9") {
		t.Fatalf("wrong id: %v", err)
	}
	p, err := localcluster.FindProcess(n.ID, n.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid != n.Pid() || p.Stdout != n.LogPath {
		t.Fatalf("found pid %d (output %s), want %d (%s)", p.Pid, p.Stdout, n.Pid(), n.LogPath)
	}
	if err := p.Kill(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitExit(ctxFor(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	before := len(n.Log())
	if !strings.Contains(p.ShellCommand(), "--node-id n1") {
		t.Fatalf("restart hint %q", p.ShellCommand())
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	if err := n.WaitHTTP(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	again, err := localcluster.FindProcess(n.ID, n.HTTPAddr)
	if err != nil || again.Pid != p.Pid {
		t.Fatalf("after the restart: %v, pid %v, want %d", err, again, p.Pid)
	}
	if len(n.Log()) <= before {
		t.Fatal("the restarted node does not log to the old log file")
	}
}
