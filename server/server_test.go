package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/localcluster"
)

func TestClaimDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")

	// A new directory is created and claimed.
	if err := claimDataDir(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_id"))
	if err != nil || strings.TrimSpace(string(b)) != "n1" {
		t.Fatalf("node_id file %q (%v)", b, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir mode %v (%v), want private", fi.Mode(), err)
	}

	// The same node may come back.
	if err := claimDataDir(dir, "n1"); err != nil {
		t.Errorf("reclaiming by the owner: %v", err)
	}

	// Another node may not.
	err = claimDataDir(dir, "n2")
	if err == nil {
		t.Fatal("a directory owned by n1 was claimed by n2")
	}
	for _, want := range []string{"data_dir", `"n1"`, `"n2"`, dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// The refusal leaves the claim as it was.
	if b, _ := os.ReadFile(filepath.Join(dir, "node_id")); strings.TrimSpace(string(b)) != "n1" {
		t.Errorf("node_id rewritten to %q", b)
	}

	// An existing directory with data but no claim yet (an older release) is
	// claimed.
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, "kv.db"), []byte("x"), 0o600)
	if err := claimDataDir(old, "n3"); err != nil {
		t.Errorf("unclaimed directory: %v", err)
	}

	// An unreadable claim is an error, not a silent takeover.
	weird := t.TempDir()
	if err := os.Mkdir(filepath.Join(weird, "node_id"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := claimDataDir(weird, "n1"); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("node_id is a directory: %v", err)
	}

	// A data_dir that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := claimDataDir(filepath.Join(file, "sub"), "n1"); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("data_dir under a file: %v", err)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8500": true, "[::1]:8500": true, "localhost:8500": true, "127.1.2.3:1": true,
		"0.0.0.0:8500": false, ":8500": false, "[::]:8500": false, "10.0.0.1:8500": false, "node1.example:8500": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// A node with ACLs off that listens beyond loopback says what is open; one
// with ACLs on, or on loopback, does not.
func TestOpenAPIWarning(t *testing.T) {
	for _, c := range []struct {
		name     string
		host     string
		acl      bool
		wantWarn bool
	}{
		{"wildcard, ACLs off", "0.0.0.0", false, true},
		{"wildcard, ACLs on", "0.0.0.0", true, false},
		{"loopback, ACLs off", "127.0.0.1", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ports, err := localcluster.FreePorts(2)
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			var mu sync.Mutex
			raft := fmt.Sprintf("127.0.0.1:%d", ports[1])
			n, err := Start(Config{
				NodeID: "n1", DataDir: t.TempDir(),
				HTTPAddr: fmt.Sprintf("%s:%d", c.host, ports[0]), RaftAddr: raft,
				AdvertiseHTTP:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
				InitialCluster: []cluster.Server{{ID: "n1", Addr: raft}},
				Timing:         cluster.DefaultTiming(), RequestTimeout: time.Second, MaxInFlight: 16, MaxRestarts: 1, RestartWindow: time.Minute,
				ACLEnabled: c.acl,
				Logger:     slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer n.Stop(ctx)
			mu.Lock()
			out := logs.String()
			mu.Unlock()
			warned := strings.Contains(out, "ACLs are off") && strings.Contains(out, "read, write and delete every key")
			if warned != c.wantWarn {
				t.Fatalf("warned %v, want %v; log:\n%s", warned, c.wantWarn, out)
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
