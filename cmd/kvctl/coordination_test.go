package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// syncBuffer is an io.Writer tests can read while kvctl still writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// background runs kvctl in a goroutine with readable output; the result
// arrives on the channel.
func background(ctx context.Context, args ...string) (stdout, stderr *syncBuffer, done <-chan int) {
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ch := make(chan int, 1)
	c := &cli{ctx: ctx, stdin: strings.NewReader(""), stdout: stdout, stderr: stderr, getenv: func(string) string { return "" }}
	go func() { ch <- c.run(args) }()
	return stdout, stderr, ch
}

func waitOutput(t *testing.T, b *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the output within 20s:\n%s", want, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func awaitExit(t *testing.T, done <-chan int, stderr *syncBuffer) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(60 * time.Second):
		t.Fatalf("kvctl did not exit; stderr:\n%s", stderr.String())
	}
	return 0
}

func TestSessionCommands(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	run := func(args ...string) result { t.Helper(); return on(t, nodes, args...) }

	r := run("session", "create", "--ttl", "30s", "--name", "deploy", "--behavior", "delete", "--lock-delay", "2s")
	if r.code != 0 || len(strings.TrimSpace(r.stdout)) != 36 {
		t.Fatalf("create: %+v", r)
	}
	id := strings.TrimSpace(r.stdout)
	var got client.Session
	decodeJSON(t, run("-o", "json", "session", "info", id), &got)
	if got.ID != id || got.Name != "deploy" || got.TTL != "30s" || got.Behavior != "delete" || got.LockDelay != 2*time.Second || got.Node != "n1" ||
		len(got.NodeChecks) != 1 || got.NodeChecks[0] != "serfHealth" {
		t.Fatalf("info: %+v", got)
	}
	if r := run("session", "list"); r.code != 0 || !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, "deploy") {
		t.Fatalf("list: %+v", r)
	}
	run("session", "list", "--node", "n9").expect(t, 0, "")
	run("session", "renew", id).expect(t, 0, "renewed "+id+" (TTL 30s)\n")

	// A lock through put, with the session: LockIndex is the token.
	run("put", "--acquire", id, "locks/a", "me").succeeds(t)
	other := strings.TrimSpace(run("session", "create", "--no-checks").stdout)
	run("put", "--acquire", other, "locks/a", "them").expectErr(t, 1, "not acquired")
	var p client.KVPair
	decodeJSON(t, run("-o", "json", "get", "locks/a"), &p)
	if p.Session != id || p.LockIndex != 1 || string(p.Value) != "me" {
		t.Fatalf("locked key: %+v", p)
	}
	run("put", "--release", other, "locks/a", "x").expectErr(t, 1, "not released")

	// Destroy: behaviour delete removes the key; the session is gone.
	run("session", "destroy", id).expect(t, 0, "destroyed "+id+"\n")
	run("get", "locks/a").expectErr(t, 1, "key not found")
	run("session", "info", id).expectErr(t, 1, "no such session")
	run("session", "renew", id).expectErr(t, 1, "no such session")
	run("session", "create", "--ttl", "1s").expectErr(t, 2, "Invalid Session TTL")
}

func TestWatchCommand(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	c := client.New(inproc.Addrs(nodes))
	if _, _, err := c.Put(timeout(t), "w/k", []byte("one"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, done := background(context.Background(), "--addr", nodes[0].HTTPAddr, "watch", "--count", "3", "w/k")
	waitOutput(t, out, " one\n")
	if _, _, err := c.Put(timeout(t), "w/k", []byte("two"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, " two\n")
	// A write elsewhere wakes nothing; the delete does.
	if _, _, err := c.Put(timeout(t), "w/other", []byte("x"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Delete(timeout(t), "w/k"); err != nil {
		t.Fatal(err)
	}
	if code := awaitExit(t, done, errOut); code != 0 {
		t.Fatalf("watch exited %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " one") || !strings.HasSuffix(lines[1], " two") || !strings.HasSuffix(lines[2], " (absent)") {
		t.Fatalf("watch printed %q", lines)
	}

	// A prefix, as JSON lines.
	out, errOut, done = background(context.Background(), "--addr", nodes[0].HTTPAddr, "-o", "json", "watch", "--recurse", "--count", "2", "w/")
	waitOutput(t, out, "\n")
	if _, _, err := c.Put(timeout(t), "w/new", []byte("n"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if code := awaitExit(t, done, errOut); code != 0 {
		t.Fatalf("watch --recurse exited %d: %s", code, errOut.String())
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	var last struct {
		Index uint64
		Pairs []client.KVPair
	}
	if len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &last) != nil || len(last.Pairs) != 2 || last.Index == 0 {
		t.Fatalf("watch --recurse printed %q", lines)
	}
}

// kvctl lock runs the command under the lock, with the fencing token in
// its environment, and exits with its status; a second locker waits, and
// gives up after --wait.
func TestLockCommand(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	addr := nodes[0].HTTPAddr
	r := kvctl(t, "", nil, "--addr", addr, "lock", "jobs/a", "--", "sh", "-c", `echo "token=$TROUPE_LOCK_INDEX key=$TROUPE_LOCK_KEY"; exit 3`)
	if r.code != 3 || r.stdout != "token=1 key=jobs/a/.lock\n" || !strings.Contains(r.stderr, "holding lock jobs/a/.lock (LockIndex 1") {
		t.Fatalf("first lock: %+v", r)
	}
	// Released on exit: the next holder gets the next token at once.
	r = kvctl(t, "", nil, "--addr", addr, "lock", "jobs/a", "--", "sh", "-c", `echo "token=$TROUPE_LOCK_INDEX"`)
	if r.code != 0 || r.stdout != "token=2\n" {
		t.Fatalf("second lock: %+v", r)
	}

	// A holder that runs until told; a second locker waits, then gives up.
	out, errOut, done := background(context.Background(), "--addr", addr, "lock", "jobs/b", "--", "sh", "-c",
		`trap 'echo got-hup; exit 5' HUP; echo ready; while :; do sleep 0.05; done`)
	waitOutput(t, out, "ready\n")
	r = kvctl(t, "", nil, "--addr", addr, "lock", "--wait", "1s", "jobs/b", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "not acquired within 1s") {
		t.Fatalf("second locker: %+v", r)
	}
	// A signal to kvctl reaches the command; kvctl exits with its status
	// and releases the lock.
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if code := awaitExit(t, done, errOut); code != 5 || !strings.Contains(out.String(), "got-hup") {
		t.Fatalf("after SIGHUP: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
	c := client.New([]string{addr})
	if p, _, err := c.Get(timeout(t), "jobs/b/.lock", client.ReadOptions{}); err != nil || p == nil || p.Session != "" {
		t.Fatalf("the lock after kvctl exited: %+v %v", p, err)
	}
}

// A lock lost while the command runs: the command gets SIGTERM and kvctl
// says so, exiting 2.
func TestLockCommandLost(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	addr := nodes[0].HTTPAddr
	out, errOut, done := background(context.Background(), "--addr", addr, "lock", "--no-lock-delay", "jobs/c", "--", "sh", "-c",
		`trap 'echo got-term; exit 0' TERM; echo "$TROUPE_LOCK_SESSION"; while :; do sleep 0.05; done`)
	waitOutput(t, out, "\n")
	session := strings.TrimSpace(out.String())
	c := client.New([]string{addr})
	if err := c.DestroySession(timeout(t), session); err != nil {
		t.Fatal(err)
	}
	code := awaitExit(t, done, errOut)
	if code != 2 || !strings.Contains(out.String(), "got-term") || !strings.Contains(errOut.String(), "was lost while the command ran") {
		t.Fatalf("lost lock: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
