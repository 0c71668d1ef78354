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
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/troupe-kv/troupe/internal/procstat"
	"github.com/troupe-kv/troupe/internal/version"
	"github.com/troupe-kv/troupe/server"
	"github.com/troupe-kv/troupe/storage"
)

// exitConfig is sysexits' EX_CONFIG: distinct from a crash (1) and from a
// Go panic (2), so a service manager can refuse to restart a node whose
// configuration is wrong (systemd: RestartPreventExitStatus=78).
const exitConfig = 78

// shutdownTimeout bounds a graceful stop (leadership handed over, HTTP
// drained, Raft and the state file closed), each step bounded on its own
// (actors.HandOverTimeout, DrainTimeout, RaftCloseTimeout); past it
// kvnode exits 1 without waiting further. It is half of Docker's default
// stop timeout (10 s), so a plain `docker stop` never ends a node with
// SIGKILL. The unit file's TimeoutStopSec, the image's documented stop
// timeout and the StatefulSet's terminationGracePeriodSeconds leave room
// above it (their tests read this line).
const shutdownTimeout = 5 * time.Second

func main() {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(runHealthcheck(os.Args[2:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "recover" {
		err := runRecover(os.Args[2:])
		switch {
		case errors.Is(err, errHelp):
			os.Exit(0)
		case err != nil:
			fmt.Fprintf(os.Stderr, "kvnode: %v\n", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := loadConfig(os.Args[1:])
	if errors.Is(err, errHelp) {
		os.Exit(0)
	}
	if errors.Is(err, errVersion) {
		fmt.Println("kvnode", version.Info())
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
	cfg.Logger = newLogger(cfg, os.Stderr)
	cfg.RaftLogger = newRaftLogger(cfg, os.Stderr)
	node, err := server.Start(cfg.Config)
	if err != nil {
		return err
	}
	logger := cfg.Logger

	trimDone := make(chan struct{})
	defer close(trimDone)
	go trimMappedMemory(node.Store(), trimDone)

	// Under systemd (Type=notify) the unit counts as started from here:
	// ports open, state file and Raft up.
	if _, err := sdNotify("READY=1\nSTATUS=serving on " + cfg.AdvertiseHTTP + ", Raft on " + cfg.AdvertiseRaft); err != nil {
		logger.Warn("telling systemd the node is ready failed", "err", err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reloadTLS(node, cfg, logger)
				continue
			}
			logger.Info("shutting down", "signal", sig.String())
			_, _ = sdNotify("STOPPING=1")
			start := time.Now()
			if err := stopWithin(node, shutdownTimeout); err != nil {
				return err
			}
			logger.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
			return nil
		case err := <-node.Done():
			logger.Error("node failed", "err", err)
			return err
		}
	}
}

// stopWithin stops the node, giving up after timeout: the last step,
// closing the state file, syncs it to disk and is bounded by nothing
// else. A node that gives up exits non-zero and leaves the rest to the
// operating system; the log and the state file are crash-safe.
func stopWithin(node *server.Node, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- node.Stop(ctx) }()
	select {
	case err := <-stopped:
		return err
	case <-ctx.Done():
		return fmt.Errorf("shutdown did not finish within %s", timeout)
	}
}

// reloadTLS re-reads the certificate files on SIGHUP: new connections on
// both ports use them. A bad file leaves the old material in use.
func reloadTLS(node *server.Node, cfg *Config, logger *slog.Logger) {
	if cfg.TLS == nil {
		logger.Info("SIGHUP: TLS is off, nothing to reload")
		return
	}
	if err := node.ReloadTLS(); err != nil {
		logger.Error("SIGHUP: certificates not reloaded; the old ones stay in use", "err", err)
		return
	}
	logger.Info("SIGHUP: certificates reloaded", "cert", cfg.TLS.Files().Cert, "not_after", cfg.TLS.NotAfter())
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
// It is measured, not assumed: with 1M keys a node's RSS is 244–256 MiB
// without it (198–212 MiB of it kv.db's mapping) and 77–89 MiB with it
// (docs/performance.md), and a mapped page that is in use counts in the
// working set that Kubernetes and most monitoring judge a process by.
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
