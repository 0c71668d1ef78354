package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/localcluster"
	"github.com/troupe-kv/troupe/storage"
)

// TestScheduledBackups: a node with backup_dir and backup_interval writes
// whole, checkable snapshot files, named after itself, never leaves a
// temporary file behind, and keeps only backup_retain of them, the newest.
// A new file is renamed into place before the oldest is deleted (a crash
// in between must not leave fewer than retain), so while the node runs
// retain+1 files may show for a moment; once it has stopped, retain.
func TestScheduledBackups(t *testing.T) {
	ports, err := localcluster.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "backups")
	// Another node's file in the same directory is none of this node's
	// business.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "troupe-n2-20000101T000000.000Z-1.snap")
	if err := os.WriteFile(foreign, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	raft := fmt.Sprintf("127.0.0.1:%d", ports[1])
	n, err := Start(Config{
		NodeID: "n1", DataDir: t.TempDir(),
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]), RaftAddr: raft,
		AdvertiseHTTP:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		InitialCluster: []cluster.Server{{ID: "n1", Addr: raft}},
		Timing:         cluster.DefaultTiming(), RequestTimeout: 2 * time.Second, MaxInFlight: 16, MaxRestarts: 1, RestartWindow: time.Minute,
		Backups: Backups{Dir: dir, Interval: 150 * time.Millisecond, Retain: 2},
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Stop(ctx)
	}()

	own := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "troupe-n1-*.snap"))
		sort.Strings(m)
		return m
	}
	var first string
	var key uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		files := own()
		if len(files) > 3 {
			t.Fatalf("%d files kept, retain is 2 (3 only between a new file and the prune after it): %v", len(files), files)
		}
		if first == "" && len(files) > 0 {
			first = files[0]
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			res, err := n.Client().Apply(ctx, &storage.Command{Op: storage.OpSet, Key: "after-first", Value: []byte("v")})
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			key = res.Index
		}
		if first != "" && len(files) == 2 && files[0] > first {
			// The first is gone: pruned. The newest must hold the key
			// written after it.
			f, err := os.Open(files[1])
			if err != nil {
				t.Fatal(err)
			}
			info, err := storage.ReadBackup(f, nil)
			f.Close()
			if err != nil {
				t.Fatalf("%s: %v", files[1], err)
			}
			if info.Index >= key && info.Keys == 1 && info.Node == "n1" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pruned pair of backups holding the key at %d: %v", key, own())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if files := own(); len(files) > 2 {
		t.Fatalf("%d files kept after the node stopped, retain is 2: %v", len(files), files)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmp) != 0 {
		t.Fatalf("temporary files left after the node stopped: %v", tmp)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Fatalf("another node's backup was touched: %v", err)
	}
}
