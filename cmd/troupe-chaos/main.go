// Command troupe-chaos runs Troupe's chaos suite: it starts a local cluster
// (or uses a running one), drives a recorded workload while nemeses kill,
// pause and partition nodes, heals, and checks the history for
// linearizability and lost writes. It writes history.json, summary.json
// and report.html to its output directory and exits 0 when the run passed,
// 1 when it found a violation or lost writes, and 2 on errors.
//
// 'troupe-chaos inject NEMESIS' instead applies one fault to a running
// cluster by hand and reports what it did to the leader (inject.go);
// 'troupe-chaos fencing' plays the fencing-token story (fencing.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/chaos"
)

// mixed is the default schedule: every nemesis that works on the chosen
// cluster.
var mixed = []string{"kill", "kill-leader", "pause", "pause-leader", "partition-leader", "partition-half", "oneway", "netem", "crash", "corrupt"}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "inject":
			return runInject(args[1:])
		case "fencing":
			return runFencing(args[1:])
		case "fencing-holder":
			return runFencingHolder()
		}
	}
	fs := pflag.NewFlagSet("troupe-chaos", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: troupe-chaos [flags]\n       troupe-chaos inject NEMESIS [flags]   (one fault by hand; inject --help)\n       troupe-chaos fencing [flags]          (the fencing-token story; fencing --help)\n\n")
		fs.PrintDefaults()
	}
	nodes := fs.Int("nodes", 3, "nodes of the local cluster to start")
	duration := fs.Duration("duration", 5*time.Minute, "how long the load and the faults run")
	nemeses := fs.String("nemesis", "mixed", "comma-separated nemeses, 'mixed' for all that apply, 'none' for a baseline; known: "+strings.Join(chaos.NemesisNames(), ", "))
	seed := fs.Uint64("seed", 0, "seed of the schedule and the workload (0: from the clock); reuse it to replay a run")
	out := fs.String("out", "", "output directory (default chaos-results/<time>)")
	interval := fs.Duration("interval", 10*time.Second, "calm between faults (varies by half with the seed)")
	faultFor := fs.Duration("fault-duration", 8*time.Second, "how long each fault lasts (varies by half)")
	clients := fs.Int("clients", 10, "concurrent clients")
	keys := fs.Int("keys", 8, "keys the clients contend on")
	lockClients := fs.Int("lock-clients", 4, "clients of the lock workload beside the KV one: they contend for one lock and write a fenced resource (0: none)")
	lockTTL := fs.Duration("lock-ttl", 0, "session TTL of the lock clients (default 3s on a local cluster, started with --session-ttl-min 1s; 10s with --endpoints)")
	timeout := fs.Duration("op-timeout", 3*time.Second, "per-operation timeout (past it the outcome is unknown)")
	kvnode := fs.String("kvnode", "", "kvnode binary of the local cluster (default: $TROUPE_KVNODE, else the kvnode beside troupe-chaos)")
	netns := fs.Bool("netns", false, "run the local nodes in network namespaces (root) and add the os-partition nemesis")
	unsafe := fs.Bool("unsafe-local-reads", false, "start the nodes with --unsafe-local-reads (answers reads without asking the leader) to watch the checker catch it")
	nodeArgs := fs.StringSlice("node-arg", nil, "extra kvnode flag for every local node (repeatable), e.g. --node-arg=--request-timeout=2s")
	ext := externalFlags(fs, "")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "troupe-chaos:", err)
		return 2
	}
	for _, n := range selectNemeses(*nemeses, 5, true) {
		if _, ok := chaos.Nemeses[n]; !ok {
			fmt.Fprintf(os.Stderr, "troupe-chaos: unknown nemesis %q (known: %s)\n", n, strings.Join(chaos.NemesisNames(), ", "))
			return 2
		}
	}
	if *out == "" {
		*out = filepath.Join("chaos-results", time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "troupe-chaos:", err)
		return 2
	}
	progress := os.Stdout
	if *quiet {
		progress = nil
	}
	logf := func(format string, a ...any) {
		if progress != nil {
			fmt.Fprintf(progress, format+"\n", a...)
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	var target chaos.Target
	if ext.endpoints != "" {
		et, err := ext.target(ctx, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, "troupe-chaos:", err)
			return 2
		}
		target = et
	} else {
		extra := append([]string{"--log-level", "info"}, *nodeArgs...)
		if !strings.Contains(strings.Join(*nodeArgs, " "), "request-timeout") {
			// Nodes should refuse (503, not applied) before the client
			// gives up (unknown): a request timeout below the op timeout.
			extra = append(extra, "--request-timeout", max(*timeout-time.Second, *timeout/2).String())
		}
		if !strings.Contains(strings.Join(*nodeArgs, " "), "state-check-interval") {
			// Checkpoints often enough that the nodes compare their state
			// hashes many times under the faults of a run.
			extra = append(extra, "--state-check-interval", "10s")
		}
		if !strings.Contains(strings.Join(*nodeArgs, " "), "raft-log-segment-size") {
			// Small Raft log segments, so that segments fill, rotate and
			// are compacted away every few seconds under the load, and
			// kill -9 meets those moments too (64 MiB ones rarely fill in
			// a run).
			extra = append(extra, "--raft-log-segment-size", "262144")
		}
		if !strings.Contains(strings.Join(*nodeArgs, " "), "session-ttl-min") {
			// Short lock sessions, so a frozen lock holder's session ends
			// (and another takes the lock) within seconds.
			extra = append(extra, "--session-ttl-min", "1s")
			if *lockTTL == 0 {
				*lockTTL = 3 * time.Second
			}
		}
		if *unsafe {
			extra = append(extra, "--unsafe-local-reads")
		}
		dataDir, _ := filepath.Abs(filepath.Join(*out, "cluster"))
		logf("starting %d local nodes (data and logs in %s)", *nodes, dataDir)
		lt, err := chaos.StartLocal(chaos.LocalConfig{Nodes: *nodes, Dir: dataDir, KVNode: *kvnode, Args: extra, UseNetNS: *netns}, logf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "troupe-chaos: starting the cluster:", err)
			return 2
		}
		target = lt
	}
	defer target.Close()

	names := selectNemeses(*nemeses, len(target.Nodes()), target.NetNS())
	if et, ok := target.(*chaos.ExternalTarget); ok {
		names = withoutUnsupported(names, et.CanKill(), et.CanPause())
	}
	sum, err := chaos.Run(ctx, chaos.Config{
		Duration:      *duration,
		Nemeses:       names,
		Interval:      *interval,
		FaultDuration: *faultFor,
		Seed:          *seed,
		Workload:      chaos.WorkloadConfig{Clients: *clients, Keys: *keys, Timeout: *timeout},
		Lock:          chaos.LockConfig{Clients: *lockClients, TTL: *lockTTL},
		OutDir:        *out,
		Progress:      progress,
	}, target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "troupe-chaos:", err)
		return 2
	}
	printSummary(sum)
	switch {
	case sum.Verdict.Broken():
		return 1
	case sum.Error != "" || !sum.Verdict.Passed():
		// The run could not decide (the cluster never settled, or the
		// checker timed out): an error, not a verdict.
		return 2
	}
	return 0
}

// withoutUnsupported drops the nemeses an external cluster cannot take:
// kills need a kill and a start command (or members on this machine),
// pauses a pause and a resume command (the same), and OS-level partitions
// a local cluster in namespaces, as the corrupt nemesis needs the nodes'
// files.
func withoutUnsupported(names []string, canKill, canPause bool) []string {
	var keep []string
	for _, n := range names {
		if strings.HasPrefix(n, "kill") && !canKill || strings.HasPrefix(n, "pause") && !canPause || n == "os-partition" || n == "corrupt" {
			continue
		}
		keep = append(keep, n)
	}
	return keep
}

// selectNemeses expands "mixed" to what the cluster allows.
func selectNemeses(spec string, nodes int, netns bool) []string {
	switch spec {
	case "none", "":
		return nil
	case "mixed":
		names := append([]string(nil), mixed...)
		if nodes >= 5 {
			names = append(names, "partition-bridge")
		}
		if netns {
			names = append(names, "os-partition")
		}
		return names
	}
	var names []string
	for _, n := range strings.Split(spec, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	return names
}

func printSummary(s *chaos.Summary) {
	v := s.Verdict
	verdict := "PASS"
	if !v.Passed() || s.Error != "" {
		verdict = "FAIL"
	}
	fmt.Printf("\n==== %s  (seed %d, %d nodes, %s)\n", verdict, s.Seed, s.Nodes, s.Duration)
	fmt.Printf("operations      %d (ok %d, failed %d, unknown %d)\n", s.Operations, v.OK, v.Failed, v.Unknown)
	fmt.Printf("linearizable    %s", v.Linearizable)
	if len(v.ViolatingKeys) > 0 {
		fmt.Printf(" (keys %s)", strings.Join(v.ViolatingKeys, ", "))
	}
	fmt.Printf("\nlost writes     %d\ndiverged        %d\n", len(v.LostWrites), len(v.Diverged))
	if l := s.Lock; l != nil {
		fmt.Printf("lock            %s (%d clients, %d acquisitions, %d unknown acquires, %d holders frozen; fenced writes: %d accepted, %d refused, %d conflicts, %d unknown; highest token %d, final %d)\n",
			l.Verdict, l.Clients, l.Acquisitions, l.AcquireUnknown, l.Pauses, l.Accepted, l.Refused, l.Conflicts, l.WriteUnknown, l.HighestToken, l.FinalToken)
		for _, msg := range l.Violations {
			fmt.Printf("  %s\n", msg)
		}
	}
	fmt.Printf("faults          %d\n", len(s.Faults))
	for _, f := range s.Faults {
		rec := "no write before the end"
		if f.RecoveryMS >= 0 {
			rec = fmt.Sprintf("%.0fms", f.RecoveryMS)
		}
		fmt.Printf("  %-17s %-32s gap %6.0fms  recovered %s\n", f.Nemesis, f.Detail, f.UnavailableMS, rec)
	}
	if s.Error != "" {
		fmt.Printf("error           %s\n", s.Error)
	}
	fmt.Printf("report          %s\n", filepath.Join(s.OutDir, "report.html"))
}
