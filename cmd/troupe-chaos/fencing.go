package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/chaos"
)

const fencingHelp = `Usage: troupe-chaos fencing [flags]

Play the fencing-token story against a running cluster (docs/fault-model.md,
"Locks and fencing tokens"): holder A, a process of its own, takes the lock
--key and writes to a resource with its fencing token (the key's LockIndex);
A is frozen with SIGSTOP past 2×TTL; its session expires and holder B takes
the lock with a higher token and writes; A is resumed, still believing it
holds the lock, writes with its old token, and the resource refuses it.
chaos/fencing.sh calls this.

The sessions' --ttl must be at least the cluster's session_ttl_min (10s by
default; a cluster started with --session-ttl-min=1s runs the story in
seconds). B waits 2×TTL plus the lock-delay for the lock.

Exit status: 0 the stale write was refused; 1 the resource accepted a stale
write, or the story did not unfold; 2 an error.

Flags:
`

// runFencing is 'troupe-chaos fencing'.
func runFencing(args []string) int {
	fs := pflag.NewFlagSet("troupe-chaos fencing", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, fencingHelp)
		fs.PrintDefaults()
	}
	endpoints := fs.String("endpoints", "127.0.0.1:8500,127.0.0.1:8501,127.0.0.1:8502", "the cluster's HTTP addresses, host:port,...")
	key := fs.String("key", "chaos/fencing/.lock", "the lock key")
	ttl := fs.Duration("ttl", 10*time.Second, "the holders' session TTL (at least the cluster's session_ttl_min)")
	lockDelay := fs.Duration("lock-delay", time.Second, "the holders' sessions' lock-delay")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "troupe-chaos fencing:", err)
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	res, err := chaos.RunFencing(ctx, chaos.FencingConfig{Endpoints: strings.Split(*endpoints, ","), Key: *key, TTL: *ttl, LockDelay: *lockDelay, Logf: logf})
	if err != nil {
		fmt.Fprintln(os.Stderr, "troupe-chaos fencing:", err)
		if res != nil {
			for _, w := range res.Writes {
				fmt.Fprintf(os.Stderr, "  write by %s with token %d: accepted %v\n", w.Client, w.Token, w.Accepted)
			}
		}
		return 1
	}
	logf("fenced: A (token %d) was refused after B (token %d) wrote; %d writes, none accepted out of order", res.TokenA, res.TokenB, len(res.Writes))
	return 0
}

// runFencingHolder is holder A of 'troupe-chaos fencing', started by it.
func runFencingHolder() int {
	if !chaos.IsFencingHolder(os.Getenv) {
		fmt.Fprintln(os.Stderr, "troupe-chaos fencing-holder: started by 'troupe-chaos fencing' only")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := chaos.FencingHolder(ctx, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "troupe-chaos fencing-holder:", err)
		return 1
	}
	return 0
}
