package chaos

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// The checker first: it must catch a stale write that got through.
func TestCheckFencingCatchesAStaleWrite(t *testing.T) {
	good := []FencedWrite{{Client: "A", Token: 1, Accepted: true}, {Client: "B", Token: 2, Accepted: true}, {Client: "A", Token: 1}}
	if err := CheckFencing(good); err != nil {
		t.Fatalf("a fenced history failed: %v", err)
	}
	bad := []FencedWrite{{Client: "A", Token: 1, Accepted: true}, {Client: "B", Token: 2, Accepted: true}, {Client: "A", Token: 1, Accepted: true}}
	if err := CheckFencing(bad); err == nil || !strings.Contains(err.Error(), "token 1 after token 2") {
		t.Fatalf("a stale accepted write passed: %v", err)
	}
	r := &FencedResource{}
	if !r.Write("A", 1, "") || !r.Write("B", 2, "") || r.Write("A", 1, "") || !r.Write("B", 2, "") {
		t.Fatalf("the resource's rule: %+v", r.Writes())
	}
}

// TestFencingUnderAProcessPause is the story of docs/fault-model.md: a
// lock holder is frozen with SIGSTOP past its session's TTL; its session
// expires, another client takes the lock with a higher fencing token and
// writes; the first wakes up, still believing it holds the lock, writes
// with its old token, and the resource refuses it. Sessions have a TTL of
// 1s here (the nodes accept it with --session-ttl-min), so the story takes
// seconds.
func TestFencingUnderAProcessPause(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--session-ttl-min", "1s"}})
	c.WaitLeader(20 * time.Second)
	var endpoints []string
	for _, n := range c.Nodes {
		endpoints = append(endpoints, n.HTTPAddr)
	}
	res, err := RunFencing(context.Background(), FencingConfig{
		Endpoints: endpoints,
		TTL:       time.Second,
		LockDelay: time.Second,
		Holder: func(env []string) *exec.Cmd {
			cmd := exec.Command(os.Args[0], "-test.run=^TestFencingHolderProcess$")
			cmd.Env = append(os.Environ(), env...)
			return cmd
		},
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatalf("%v\nholder A said: %q\nwrites: %+v", err, res.HolderOutput, res.Writes)
	}
	if res.TokenB <= res.TokenA || res.Frozen < 2*time.Second {
		t.Fatalf("tokens A %d, B %d; frozen %v", res.TokenA, res.TokenB, res.Frozen)
	}
}

// TestFencingHolderProcess is holder A when the test above starts this
// binary as it; on its own it has nothing to do.
func TestFencingHolderProcess(t *testing.T) {
	if !IsFencingHolder(os.Getenv) {
		t.Skip("runs only as holder A of TestFencingUnderAProcessPause")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := FencingHolder(ctx, os.Getenv); err != nil {
		t.Fatal(err)
	}
}
