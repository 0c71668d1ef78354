// Command kvnode runs one Troupe node: a supervised actor tree around Raft
// and a bbolt state machine, serving a Consul-compatible HTTP API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/troupe-kv/troupe/actors"
	"github.com/troupe-kv/troupe/api"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/internal/procstat"
	"github.com/troupe-kv/troupe/storage"
)

// exitConfig is sysexits' EX_CONFIG: distinct from a crash (1) and from a
// Go panic (2), so a service manager can refuse to restart a node whose
// configuration is wrong (systemd: RestartPreventExitStatus=78).
const exitConfig = 78

func main() {
	cfg, err := loadConfig(os.Args[1:])
	if errors.Is(err, errHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "kvnode: %v\n", err)
		os.Exit(exitConfig)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "kvnode: %v\n", err)
		os.Exit(1)
	}
}

func run(cfg *Config) error {
	logger := newLogger(cfg, os.Stderr)
	if err := claimDataDir(cfg.DataDir, cfg.NodeID); err != nil {
		return err
	}
	store, err := storage.Open(filepath.Join(cfg.DataDir, "kv.db"))
	if err != nil {
		return err
	}
	if store.Discarded() {
		logger.Warn("the state file was not flushed before the machine restarted; rebuilding it from the newest snapshot and the Raft log")
	}

	tree := actors.New(actors.Config{
		Raft: cluster.Config{
			NodeID:         cfg.NodeID,
			DataDir:        cfg.DataDir,
			RaftBind:       cfg.RaftAddr,
			RaftAdvertise:  cfg.AdvertiseRaft,
			InitialCluster: cfg.InitialCluster,
			Timing:         cfg.Timing,
			Logger:         newRaftLogger(cfg, os.Stderr),
			LogSegmentSize: cfg.LogSegmentSize,
		},
		Store:          store,
		HTTPAddr:       cfg.HTTPAddr,
		AdvertiseHTTP:  cfg.AdvertiseHTTP,
		Join:           cfg.Join,
		RequestTimeout: cfg.RequestTimeout,
		MaxInFlight:    cfg.MaxInFlight,
		MaxRestarts:    cfg.MaxRestarts,
		RestartWindow:  cfg.RestartWindow,
		Detector:       cfg.Detector,
		Logger:         logger,
	})
	handler := api.New(tree.Gateway(), api.Options{
		Datacenter:     cfg.Datacenter,
		MaxValueSize:   cfg.MaxValueSize,
		RequestTimeout: cfg.RequestTimeout,
		Chaos:          cfg.Chaos,
		Metrics:        tree.Metrics(),
		UnsafeReads:    cfg.UnsafeReads,
		Pprof:          cfg.Pprof,
		Logger:         logger,
	})
	if err := tree.Start(handler); err != nil {
		return err
	}
	logger.Info("kvnode starting", "node_id", cfg.NodeID, "http", cfg.AdvertiseHTTP, "raft", cfg.AdvertiseRaft, "data_dir", cfg.DataDir, "chaos", cfg.Chaos)
	if cfg.Chaos {
		logger.Warn("chaos endpoints are enabled: never run this in production")
	}
	if cfg.UnsafeReads {
		logger.Warn("unsafe_local_reads is on: reads may return stale data; this setting exists only to test the chaos checker")
	}

	trimDone := make(chan struct{})
	defer close(trimDone)
	go trimMappedMemory(store, trimDone)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := tree.Stop(ctx); err != nil {
			// Raft may still be applying entries: leave the state file to
			// the OS (bbolt is crash-safe) rather than close it under Raft.
			return fmt.Errorf("shutdown: %w", err)
		}
		if err := store.Close(); err != nil {
			return fmt.Errorf("closing the state file: %w", err)
		}
		logger.Info("stopped")
		return nil
	case err := <-tree.Done():
		logger.Error("node failed", "err", err)
		return err
	}
}

// claimDataDir records which node a data directory belongs to and refuses
// to start another node on it: Raft state under the wrong id would corrupt
// the cluster's view of its members.
func claimDataDir(dir, nodeID string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	idFile := filepath.Join(dir, "node_id")
	b, err := os.ReadFile(idFile)
	switch {
	case err == nil:
		if owner := strings.TrimSpace(string(b)); owner != nodeID {
			return fmt.Errorf("data_dir: %s belongs to node %q, not %q", dir, owner, nodeID)
		}
		return nil
	case errors.Is(err, os.ErrNotExist):
		return os.WriteFile(idFile, []byte(nodeID+"\n"), 0o600)
	default:
		return fmt.Errorf("data_dir: %w", err)
	}
}

func slogLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s))
	return l
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slogLevel(cfg.LogLevel)}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("node", cfg.NodeID)
}

// newRaftLogger gives hashicorp/raft an hclog logger with the same level and
// format as the rest of the node.
func newRaftLogger(cfg *Config, w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogFormat == "json",
		Output:     w,
	}).With("node", cfg.NodeID)
}

// Resident memory budget for file-backed pages (the binary's text and the
// state file's mapping), and how often it is checked.
const (
	mappedMemoryBudget = 48 << 20
	mappedMemoryCheck  = time.Second
)

// trimMappedMemory hands back the state file's mapped pages whenever the
// process's file-backed resident memory passes mappedMemoryBudget, so
// resident memory tracks the working set rather than the size of the data.
// Checking is one read of /proc/self/status; trimming costs minor faults
// when hot pages are read again, so it happens only past the budget.
func trimMappedMemory(store *storage.Store, done <-chan struct{}) {
	t := time.NewTicker(mappedMemoryCheck)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if procstat.Status(0)["RssFile"] > mappedMemoryBudget {
				store.TrimMemory()
			}
		case <-done:
			return
		}
	}
}
