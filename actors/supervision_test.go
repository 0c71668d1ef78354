package actors_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/server"
	"github.com/troupe-kv/troupe/storage"
)

// Each test here injects one real failure and checks the decision the
// tree makes for it (docs/architecture.md, "What a failure costs").

func waitLog(t *testing.T, logs *inproc.SyncBuffer, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line containing %q within %s:\n%s", want, within, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func applyEventually(t *testing.T, c *actors.Client, key, value string) storage.Result {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		res, err := c.Apply(ctx, &storage.Command{Op: storage.OpSet, Key: key, Value: []byte(value)})
		cancel()
		if err == nil {
			return res
		}
		if time.Now().After(deadline) {
			t.Fatalf("write %s never succeeded: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUndecodableEntryStopsTheNode: a committed entry no node can apply
// is met again on every replay, so restarting Raft cannot help. A node that
// reaches it stops for good with a message naming the entry; no node
// applies anything past it.
func TestUndecodableEntryStopsTheNode(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	applyEventually(t, leader.Client(), "before", "1")
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The API refuses such bytes; a proposal straight into the tree is
	// the way to commit one.
	if _, err := leader.Client().ProposeRaw(c, []byte{0xff, 0x01}); !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("proposing an undecodable command: %v, want an unknown outcome (committed, not applied)", err)
	}
	var bad uint64
	select {
	case err := <-leader.Done():
		if err == nil || !strings.Contains(err.Error(), "every replay") {
			t.Fatalf("the leader stopped with %v, want the entry named", err)
		}
		if _, scanErr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "log entry"):], "log entry %d", &bad); scanErr != nil {
			t.Fatalf("no entry index in %q: %v", err, scanErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the leader kept running past an entry it cannot apply")
	}
	// The others either stopped the same way or, without a quorum left,
	// never applied the entry; none applied past it.
	time.Sleep(2 * time.Second)
	for _, nd := range nodes {
		if nd == leader {
			continue
		}
		select {
		case err := <-nd.Done():
			if !strings.Contains(err.Error(), fmt.Sprintf("log entry %d", bad)) {
				t.Fatalf("%s stopped with %v, want entry %d named", nd.ID, err, bad)
			}
		default:
			if applied := nd.Store.AppliedIndex(); applied >= bad {
				t.Fatalf("%s applied index %d, at or past the bad entry %d", nd.ID, applied, bad)
			}
		}
	}
}

// TestRaftShutdownUnderneathIsRestarted: Raft stopping on its own (as
// after an internal fatal error) is noticed by the raft actor's
// maintenance tick; the actor crashes, its supervisor reopens Raft from
// disk, and the node serves again with its data.
func TestRaftShutdownUnderneathIsRestarted(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	applyEventually(t, leader.Client(), "before", "1")
	if err := leader.Client().Crash("raft", actors.FaultRaftShutdown, "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, leader.Logs, "raft stopped underneath its actor", 10*time.Second)
	applyEventually(t, leader.Client(), "after", "2")
	if err := leader.Client().ReadBarrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"before", "after"} {
		if _, found, _, _ := leader.Store.Get(key); !found {
			t.Fatalf("%s missing after Raft was reopened", key)
		}
	}
}

// TestRaftListenerFailureIsRestarted: a Raft listener that dies leaves a
// follower deaf (raft's accept loop would retry the dead socket forever).
// The transport reports it, the raft actor crashes, and the restart binds
// the port again: the follower receives new entries.
func TestRaftListenerFailureIsRestarted(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	follower := followerOf(nodes, leader)
	if err := follower.Client().Crash("raft", actors.FaultListener, "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, follower.Logs, "raft listener on", 10*time.Second)
	res := applyEventually(t, leader.Client(), "after-listener", "x")
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := follower.Store.WaitApplied(c, res.Index); err != nil {
		t.Fatalf("the follower did not receive entries after its listener failed: %v", err)
	}
}

// TestHTTPListenerFailureIsRestarted: the API's listener dying makes the
// http actor crash; its restart binds the port again.
func TestHTTPListenerFailureIsRestarted(t *testing.T) {
	nodes := startCluster(t, 1, 5)
	nd := nodes[0]
	leaderOf(t, nodes)
	if err := nd.Client().Crash("http", actors.FaultListener, "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, nd.Logs, "http server stopped", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _, err := httpDo(http.MethodGet, "http://"+nd.HTTPAddr+"/healthz", ""); err == nil && code == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the API did not come back after its listener failed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestForwardActorCrashIsContained: the actor that carries a follower's
// requests to the leader restarts alone; the follower forwards again.
func TestForwardActorCrashIsContained(t *testing.T) {
	nodes := startCluster(t, 3, 5)
	leader := leaderOf(t, nodes)
	follower := followerOf(nodes, leader)
	applyEventually(t, follower.Client(), "before", "1")
	if err := follower.Client().Crash("forward", "", "test"); err != nil {
		t.Fatal(err)
	}
	waitLog(t, follower.Logs, "app/node/forward", 10*time.Second)
	applyEventually(t, follower.Client(), "after", "2")
	if err := follower.Client().ReadBarrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// followerOf returns a node other than leader.
func followerOf(nodes []*node, leader *node) *node {
	for _, nd := range nodes {
		if nd != leader {
			return nd
		}
	}
	return nil
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// smallDisk mounts a tmpfs of size bytes (see testcluster.SmallDisk);
// fill fills it up, free gives the space back.
func smallDisk(t *testing.T, size int) (dir string, fill func(), free func()) {
	t.Helper()
	d := testcluster.SmallDisk(t, size)
	return d.Dir, func() { d.Fill(0) }, d.Free
}

// startOnSmallDisk starts a one-node cluster whose state file lives on a
// small tmpfs (its Raft log stays on the ordinary disk, so only commits of
// the state file fail).
func startOnSmallDisk(t *testing.T, maxRestarts int) (*server.Node, *inproc.SyncBuffer, func(), func()) {
	t.Helper()
	disk, fill, free := smallDisk(t, 8<<20)
	dataDir := t.TempDir()
	if err := os.Symlink(filepath.Join(disk, server.StateFileName), filepath.Join(dataDir, server.StateFileName)); err != nil {
		t.Fatal(err)
	}
	ports := testcluster.FreePorts(t, 2)
	logs := &inproc.SyncBuffer{}
	raftAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
	nd, err := server.Start(server.Config{
		NodeID: "n1", DataDir: dataDir,
		HTTPAddr:       fmt.Sprintf("127.0.0.1:%d", ports[0]),
		RaftAddr:       raftAddr,
		InitialCluster: []cluster.Server{{ID: "n1", Addr: raftAddr}},
		Timing:         inproc.FastTiming(),
		RequestTimeout: 2 * time.Second,
		MaxRestarts:    maxRestarts,
		RestartWindow:  time.Minute,
		Logger:         slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = nd.Stop(c)
	})
	return nd, logs, fill, free
}

// TestFailedStateFileCommitReplaysAfterRestart: a commit of the state file
// that fails (the disk is full) stops the state machine at that entry; the
// raft actor crashes and reopens Raft, which replays the log from the
// file's applied index once there is room again. The write that hit the
// full disk was committed to the log, so it is there after the replay.
func TestFailedStateFileCommitReplaysAfterRestart(t *testing.T) {
	nd, logs, fill, free := startOnSmallDisk(t, 5)
	c := nd.Client()
	applyEventually(t, c, "before", "1")
	fill()
	big := strings.Repeat("v", 256<<10)
	go func() {
		cx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = c.Apply(cx, &storage.Command{Op: storage.OpSet, Key: "big", Value: []byte(big)})
	}()
	waitLog(t, logs, "commit of the state file failed", 10*time.Second)
	free()
	applyEventually(t, c, "after", "2")
	if err := c.ReadBarrier(ctx(t)); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"before": "1", "big": big, "after": "2"} {
		e, found, _, err := nd.Store().Get(key)
		if err != nil || !found || string(e.Value) != want {
			t.Fatalf("%s after the replay: found %v, %d bytes, %v", key, found, len(e.Value), err)
		}
	}
	if !strings.Contains(logs.String(), "RestartDirective") {
		t.Fatalf("the raft actor was not restarted:\n%s", logs.String())
	}
}

// TestFullDiskPastRestartBudgetStopsTheNode: when the state file keeps
// refusing commits, each restart replays into the same wall; past the
// restart budget the node stops for good, saying why.
func TestFullDiskPastRestartBudgetStopsTheNode(t *testing.T) {
	nd, _, fill, _ := startOnSmallDisk(t, 2)
	c := nd.Client()
	applyEventually(t, c, "before", "1")
	fill()
	go func() {
		cx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, _ = c.Apply(cx, &storage.Command{Op: storage.OpSet, Key: "big", Value: []byte(strings.Repeat("v", 256<<10))})
	}()
	select {
	case err := <-nd.Done():
		if err == nil || !strings.Contains(err.Error(), "giving up") || !strings.Contains(err.Error(), "commit of the state file failed") {
			t.Fatalf("node stopped with %v, want the give-up naming the failed commit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the node kept restarting against a full disk past its budget")
	}
}

// TestFollowerWithFullDisk: a follower whose Raft log sits on a full disk
// cannot take new entries. It says so instead of looking healthy: /readyz
// and a linearizable read through it name the disk (not the quorum), its
// peers' view of it shows the disk error, and the metric drops to 0. The
// others keep committing. With room again it catches up and serves.
func TestFollowerWithFullDisk(t *testing.T) {
	disk, fill, free := smallDisk(t, 16<<20)
	nodes := inproc.Start(t, 3, inproc.Options{
		LogSegmentSize: 64 << 10,
		DataDir: func(id string) string {
			dir := filepath.Join(t.TempDir(), id)
			if id == "n2" {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(disk, filepath.Join(dir, "wal")); err != nil {
					t.Fatal(err)
				}
			}
			return dir
		},
	})
	leaderOf(t, nodes)
	small, other := nodes[1], nodes[0]
	// If the node with the full disk leads, its first failed append makes
	// it step down, and with a log that falls behind it cannot win again.
	fill()
	value := strings.Repeat("x", 4<<10)
	for i := 0; i < 100; i++ {
		applyEventually(t, other.Client(), fmt.Sprintf("k%03d", i), value)
	}
	leader := leaderOf(t, nodes)
	if leader == small {
		t.Fatal("the node that cannot write its log leads")
	}
	deadline := time.Now().Add(20 * time.Second)
	for small.Client().Ready() == nil {
		if time.Now().After(deadline) {
			st, _ := small.Client().Status()
			lst, _ := leader.Client().Status()
			out, _ := exec.Command("sh", "-c", "df -k "+disk+"; ls -la "+disk).CombinedOutput()
			t.Fatalf("the follower with a full disk still calls itself ready: %+v leader %+v\n%s", st, lst, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := small.Client().Ready(); !errors.Is(err, cluster.ErrDisk) {
		t.Fatalf("ready: %v, want the disk named", err)
	}
	code, body, err := httpDo(http.MethodGet, "http://"+small.HTTPAddr+"/v1/kv/k000", "")
	if err != nil || code != 503 || !strings.Contains(body, "cannot write its Raft log") || strings.Contains(body, "quorum") {
		t.Fatalf("linearizable read through the full follower: %d %q %v", code, body, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		h, err := leader.Client().Health(t.Context())
		seen := false
		for _, p := range h.Peers {
			seen = seen || err == nil && p.ID == small.ID && strings.Contains(p.DiskError, "cannot write its Raft log")
		}
		if seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the leader's view of %s shows no disk error: %+v", small.ID, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, metrics, _ := httpDo(http.MethodGet, "http://"+small.HTTPAddr+"/metrics", ""); !strings.Contains(metrics, "troupe_raft_log_writable 0") {
		t.Fatal("the metric does not show the unwritable log")
	}

	free()
	deadline = time.Now().Add(30 * time.Second)
	for small.Client().Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the follower did not recover: %v", small.Client().Ready())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := 0; i < 100; i += 33 {
		code, body, err := httpDo(http.MethodGet, "http://"+small.HTTPAddr+fmt.Sprintf("/v1/kv/k%03d?raw", i), "")
		if err != nil || code != 200 || body != value {
			t.Fatalf("k%03d through the recovered follower: %d %v", i, code, err)
		}
	}
}

// TestStopLeavesAHungRaftBehind: a node whose Raft shutdown hangs (an
// apply stuck on a disk that does not answer) still stops, once
// RaftCloseTimeout has passed, and says so with ErrRaftLeftOpen; the state
// file is left open under Raft, which may still write to it. When Raft
// comes unstuck it finishes closing: its port is freed.
func TestStopLeavesAHungRaftBehind(t *testing.T) {
	stalled := make(chan struct{})
	release := make(chan struct{})
	undo := actors.StallRaftClose(func() {
		close(stalled)
		<-release
	})
	defer undo()
	nodes := inproc.Start(t, 1, inproc.Options{})
	nd := nodes[0]
	applyEventually(t, nd.Client(), "k", "v")

	stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := nd.Node.Stop(stopCtx)
	select {
	case <-stalled:
	default:
		t.Fatal("Raft's close never began")
	}
	// Stop returned while Raft's close is still hung: release is open.
	if !errors.Is(err, actors.ErrRaftLeftOpen) {
		t.Fatalf("Stop with a hung Raft: %v, want ErrRaftLeftOpen", err)
	}
	if e, found, _, gerr := nd.Store.Get("k"); gerr != nil || !found || string(e.Value) != "v" {
		t.Fatalf("the state file was closed under a Raft still open: %v %v", gerr, found)
	}

	close(release)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, derr := net.DialTimeout("tcp", nd.RaftAddr, time.Second)
		if derr != nil {
			break // the port is free: Raft closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("Raft never closed once it came unstuck: its port still answers")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := nd.Store.Close(); err != nil {
		t.Fatal(err)
	}
}
