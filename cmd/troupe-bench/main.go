// Command troupe-bench measures a Troupe cluster: it starts three kvnode
// processes on loopback (fsync on) or uses running endpoints, drives HTTP
// load at several client counts, and prints a table of throughput and
// latency for writes, linearizable reads, stale reads, a 90/10 mix and CAS.
// With --stores troupe,troupe-tls it runs a second local cluster with TLS
// on (HTTPS for clients, mutual TLS between nodes) and measures both in
// every row, alternating which goes first.
// It can also measure unavailability after kill -9 of the leader, how fast
// a node that missed many writes catches up, and memory and disk use at a
// given number of keys. Results are written as JSON too.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/bench"
	"github.com/troupe-kv/troupe/localcluster"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := pflag.NewFlagSet("troupe-bench", pflag.ContinueOnError)
	kinds := fs.String("kinds", "writes,reads,stale-reads,mix-90-10,cas", "load shapes to run")
	clientsFlag := fs.String("clients", "1,16,64,256", "client counts")
	duration := fs.Duration("duration", 10*time.Second, "how long each row runs")
	keys := fs.Int("keys", 10000, "key space")
	valueSize := fs.Int("value-size", 100, "value size in bytes")
	endpoints := fs.String("endpoints", "", "benchmark a running cluster (host:port,...) instead of starting one")
	nodes := fs.Int("nodes", 3, "nodes of the local cluster")
	kvnode := fs.String("kvnode", "", "kvnode binary of the local cluster (default: $TROUPE_KVNODE, else the kvnode beside troupe-bench)")
	nodeArgs := fs.StringSlice("node-arg", nil, "extra kvnode flag for every local node (repeatable)")
	failover := fs.Int("failover", 0, "also kill -9 the leader this many times and report write unavailability")
	catchUp := fs.Int("catch-up", 0, "also measure how fast a node that missed this many writes catches up")
	catchUpTries := fs.Int("catch-up-tries", 3, "catch-up measurements to take; the median is reported")
	sessions := fs.Int("sessions", 0, "also measure this many live sessions renewed every TTL/2: leader CPU and memory, and writes at --session-writers clients with and without them")
	sessionTTL := fs.Duration("session-ttl", 10*time.Second, "TTL of the --sessions sessions")
	sessionWriters := fs.Int("session-writers", 64, "clients of the write rows beside --sessions")
	lockHandoffs := fs.Int("lock-handoffs", 0, "also measure this many hand-offs of one lock between --lock-waiters clients (release to next acquire)")
	lockWaiters := fs.Int("lock-waiters", 4, "clients contending for the lock of --lock-handoffs")
	lockHold := fs.Duration("lock-hold", 5*time.Millisecond, "how long each holder keeps the lock of --lock-handoffs")
	footprint := fs.String("footprint", "", "also load up to these key counts (e.g. 100000,1000000) and report RSS and file sizes")
	out := fs.String("out", "", "JSON report path (default bench-results/<time>.json)")
	dir := fs.String("dir", "", "data directory of the local cluster, with a subdirectory per store when --stores names two (default: a temporary one)")
	goBench := fs.String("gobench", "", "also write the table as Go benchmark output to this file, for benchstat")
	etcdBin := fs.String("etcd", "", "also run the load table against a local etcd cluster built from this binary (see bench/build-etcd.sh)")
	storesFlag := fs.String("stores", "troupe", "local clusters to measure side by side, alternating which goes first in each row: troupe (plain HTTP), troupe-tls (HTTPS with client certificates, mutual TLS between nodes), etcd (needs --etcd), e.g. troupe,etcd")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	logf := func(format string, a ...any) { fmt.Fprintf(os.Stderr, format+"\n", a...) }
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	names, err := storeNames(*storesFlag, *endpoints != "")
	if err != nil {
		logf("troupe-bench: --stores: %v", err)
		return 2
	}
	if slices.Contains(names, "etcd") && *etcdBin == "" {
		logf("troupe-bench: --stores etcd needs the etcd binary (--etcd)")
		return 2
	}
	var counts []int
	for _, s := range strings.Split(*clientsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			logf("troupe-bench: --clients: %q is not a positive number", s)
			return 2
		}
		counts = append(counts, n)
	}

	// targets are the stores of the table; clusters their local clusters
	// (none with --endpoints), in the same order. The first cluster is the
	// one the failover, catch-up and footprint measurements use.
	var targets []target
	var clusters []*bench.Cluster
	var etcdSide *bench.EtcdCluster // etcd as one of --stores
	closeClusters := func() {
		for _, c := range clusters {
			c.Close()
		}
		clusters = nil
		if etcdSide != nil {
			etcdSide.Close()
			etcdSide = nil
		}
	}
	if *endpoints != "" {
		targets = append(targets, target{store: bench.Troupe{}, eps: strings.Split(*endpoints, ","), pids: func() []int { return nil }})
	} else {
		bin, err := localcluster.FindKVNode(*kvnode)
		if err != nil {
			logf("troupe-bench: %v", err)
			return 2
		}
		d := *dir
		if d == "" {
			if d, err = os.MkdirTemp("", "troupe-bench-"); err != nil {
				logf("troupe-bench: %v", err)
				return 2
			}
			defer os.RemoveAll(d)
		}
		defer closeClusters() // before the directory goes
		for _, name := range names {
			// One store keeps the layout it always had; side by side,
			// each cluster gets its own subdirectory.
			cd := d
			if len(names) > 1 {
				cd = filepath.Join(d, name)
			}
			if name == "etcd" {
				if err := os.MkdirAll(cd, 0o755); err != nil {
					logf("troupe-bench: %v", err)
					return 2
				}
				if etcdSide, err = bench.StartEtcd(cd, *etcdBin, *nodes); err != nil {
					logf("troupe-bench: starting etcd: %v", err)
					return 2
				}
				targets = append(targets, target{store: bench.Etcd{}, eps: etcdSide.Endpoints(), pids: etcdSide.Pids})
				continue
			}
			c, err := bench.StartCluster(ctx, cd, bin, *nodes, *nodeArgs, name == "troupe-tls")
			if err != nil {
				logf("troupe-bench: starting the %s cluster: %v", name, err)
				return 2
			}
			clusters = append(clusters, c)
			targets = append(targets, target{store: c.Store(), eps: c.Endpoints(), pids: c.Pids})
		}
	}
	rep := &bench.Report{When: time.Now().UTC().Format(time.RFC3339), Machine: fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())}

	for _, t := range targets {
		logf("%s: preloading %d keys", t.store.Name(), *keys)
		if err := bench.Preload(ctx, t.store, t.eps, "bench/", *keys, *valueSize, 16); err != nil {
			logf("troupe-bench: %s preload: %v", t.store.Name(), err)
			return 2
		}
	}
	table := func(targets []target) {
		row := 0
		for _, k := range strings.Split(*kinds, ",") {
			if strings.TrimSpace(k) == "" {
				continue // --kinds "": no table, only the measurements after it
			}
			for _, n := range counts {
				for _, t := range bench.Turn(row, targets) {
					if ctx.Err() != nil {
						return
					}
					// Each row starts with the disk clean of the last
					// one's writes, which would otherwise slow whichever
					// store comes next.
					syscall.Sync()
					before := bench.CPUTime(t.pids())
					r := bench.Run(ctx, bench.Config{Store: t.store, Endpoints: t.eps, Kind: bench.Kind(strings.TrimSpace(k)), Clients: n, Duration: *duration, Keys: *keys, ValueSize: *valueSize})
					if used := bench.CPUTime(t.pids()) - before; used > 0 && r.Ops > 0 {
						r.CPUMicrosPerOp = float64(used.Microseconds()) / float64(r.Ops)
					}
					fmt.Println(r)
					rep.Results = append(rep.Results, r)
				}
				row++
			}
		}
	}
	table(targets)
	if len(names) > 1 {
		fmt.Println()
		fmt.Print(bench.Compare(rep.Results, names[0], names[1]))
	}
	var cl *bench.Cluster
	if len(clusters) > 0 {
		cl = clusters[0]
		// The other clusters are idle from here on, but would still share
		// the machine with the measurements below.
		for _, c := range clusters[1:] {
			c.Close()
		}
		clusters = clusters[:1]
	}
	if etcdSide != nil {
		etcdSide.Close()
		etcdSide = nil
	}
	if cl != nil && *failover > 0 {
		ds, err := cl.Failover(ctx, *failover)
		if err != nil {
			logf("troupe-bench: failover: %v", err)
		}
		for _, d := range ds {
			rep.FailoverMS = append(rep.FailoverMS, float64(d.Microseconds())/1000)
		}
		fmt.Printf("unavailability after kill -9 of the leader: median %s, max %s over %d tries\n", bench.Median(ds).Round(time.Millisecond), bench.Max(ds).Round(time.Millisecond), len(ds))
	}
	if cl != nil && *catchUp > 0 {
		var ds []time.Duration
		for i := 0; i < *catchUpTries; i++ {
			d, err := cl.CatchUp(ctx, *catchUp, fmt.Sprintf("bench/catchup/%d/", i))
			if err != nil {
				logf("troupe-bench: catch-up: %v", err)
				break
			}
			ds = append(ds, d)
		}
		if len(ds) > 0 {
			rep.CatchUp = &bench.CatchUpResult{MissedWrites: *catchUp, Seconds: bench.Median(ds).Seconds()}
			for _, d := range ds {
				rep.CatchUp.EachSeconds = append(rep.CatchUp.EachSeconds, d.Seconds())
			}
			fmt.Printf("a node that missed %d writes caught up in %s (median of %d; max %s)\n", *catchUp, bench.Median(ds).Round(time.Millisecond), len(ds), bench.Max(ds).Round(time.Millisecond))
		}
	}
	if cl != nil && *lockHandoffs > 0 && ctx.Err() == nil {
		syscall.Sync()
		ds, err := bench.LockHandoffs(ctx, cl.Store(), cl.Endpoints(), "bench/lock", *lockWaiters, *lockHandoffs, *lockHold)
		if err != nil {
			logf("troupe-bench: lock hand-offs: %v", err)
		}
		if len(ds) > 0 {
			rep.LockHandoff = &bench.LockHandoffResult{Waiters: *lockWaiters, Handoffs: len(ds),
				P50MS: ms(bench.Percentile(ds, 0.5)), P99MS: ms(bench.Percentile(ds, 0.99)), MaxMS: ms(bench.Max(ds))}
			fmt.Printf("lock hand-off (release sent → next holder's acquire acknowledged), %d waiters: median %.2f ms, p99 %.2f ms, max %.2f ms over %d hand-offs\n",
				*lockWaiters, rep.LockHandoff.P50MS, rep.LockHandoff.P99MS, rep.LockHandoff.MaxMS, len(ds))
		}
	}
	if cl != nil && *sessions > 0 && ctx.Err() == nil {
		logf("sessions: creating %d with TTL %s", *sessions, *sessionTTL)
		sc, err := cl.MeasureSessions(ctx, *sessions, *sessionTTL, *duration, *sessionWriters, *keys, *valueSize)
		if err != nil {
			logf("troupe-bench: sessions: %v", err)
		}
		if sc != nil {
			rep.Sessions = sc
			fmt.Printf("%d sessions, TTL %s, renewed every TTL/2: %.0f renewals/s, %d failed, %d late rounds, %d live at the end\n",
				sc.Sessions, *sessionTTL, sc.RenewalsPerSec, sc.Failures, sc.Late, sc.Live)
			fmt.Printf("  leader CPU %.2f cores idle → %.2f with sessions (cluster %.2f); leader RSS %.1f → %.1f MiB; %d Raft entries in %s of renewals\n",
				sc.LeaderCPUIdle, sc.LeaderCPUWithSessions, sc.ClusterCPUWithSessions, mib(sc.LeaderRSSBefore), mib(sc.LeaderRSSWith), sc.RaftEntries, bench.SessionWindow)
			fmt.Println("  before: " + sc.WritesBefore.String())
			fmt.Printf("  with:   %s (%.0f µs/op net of the renewals' CPU)\n", sc.WritesWith.String(), sc.WritesWithNetCPUMicrosPerOp)
			fmt.Println("  after:  " + sc.WritesAfter.String())
		}
	}
	if cl != nil && *footprint != "" {
		loaded := *keys
		for _, s := range strings.Split(*footprint, ",") {
			target, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || target <= 0 {
				logf("troupe-bench: --footprint: %q is not a key count", s)
				return 2
			}
			if target > loaded {
				logf("loading keys up to %d", target)
				if err := bench.Preload(ctx, cl.Store(), cl.Endpoints(), "bench/fp/", target-loaded, *valueSize, 128); err != nil {
					logf("troupe-bench: footprint load: %v", err)
					return 2
				}
				loaded = target
			}
			time.Sleep(5 * time.Second) // let the heap settle after the load
			fp := cl.Footprint()
			rep.Footprints = append(rep.Footprints, bench.FootprintStep{Keys: target, Nodes: fp})
			for _, n := range fp {
				fmt.Printf("%8d keys  %s  RSS %6.1f MiB (anon %6.1f, files %6.1f)  kv.db %6.1f MiB  wal %6.1f MiB  snapshots %6.1f MiB\n",
					target, n.ID, mib(n.RSSBytes), mib(n.AnonBytes), mib(n.FileBytes), mib(n.KVDB), mib(n.RaftLog), mib(n.Snapshots))
			}
		}
	}
	if *etcdBin != "" && etcdSide == nil && !slices.Contains(names, "etcd") && ctx.Err() == nil {
		// After Troupe's runs, with Troupe stopped, so the two never share
		// the machine.
		closeClusters()
		d, err := os.MkdirTemp("", "troupe-bench-etcd-")
		if err != nil {
			logf("troupe-bench: %v", err)
			return 2
		}
		defer os.RemoveAll(d)
		ec, err := bench.StartEtcd(d, *etcdBin, *nodes)
		if err != nil {
			logf("troupe-bench: starting etcd: %v", err)
			return 2
		}
		defer ec.Close()
		logf("etcd: preloading %d keys", *keys)
		if err := bench.Preload(ctx, bench.Etcd{}, ec.Endpoints(), "bench/", *keys, *valueSize, 16); err != nil {
			logf("troupe-bench: etcd preload: %v", err)
			return 2
		}
		table([]target{{store: bench.Etcd{}, eps: ec.Endpoints(), pids: ec.Pids}})
	}
	path := *out
	if path == "" {
		path = filepath.Join("bench-results", time.Now().Format("20060102-150405")+".json")
	}
	if err := rep.WriteJSON(path); err != nil {
		logf("troupe-bench: %v", err)
		return 2
	}
	logf("report written to %s", path)
	if *goBench != "" {
		var b strings.Builder
		for _, r := range rep.Results {
			b.WriteString(r.GoBenchLine() + "\n")
		}
		if err := os.WriteFile(*goBench, []byte(b.String()), 0o644); err != nil {
			logf("troupe-bench: %v", err)
			return 2
		}
	}
	return 0
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// target is one store of the table and where to reach it.
type target struct {
	store bench.Store
	eps   []string
	pids  func() []int // its server processes, for CPU per request; none if remote
}

// storeNames parses --stores: troupe, troupe-tls and etcd, each at most
// once. A running cluster (--endpoints) is measured as plain troupe only,
// since troupe-bench has no certificate for it.
func storeNames(flag string, remote bool) ([]string, error) {
	var names []string
	for _, s := range strings.Split(flag, ",") {
		name := strings.TrimSpace(s)
		switch {
		case name != "troupe" && name != "troupe-tls" && name != "etcd":
			return nil, fmt.Errorf("%q is not a store (troupe, troupe-tls or etcd)", name)
		case slices.Contains(names, name):
			return nil, fmt.Errorf("%s is named twice", name)
		case remote && name != "troupe":
			return nil, fmt.Errorf("%s needs a local cluster, not --endpoints", name)
		}
		names = append(names, name)
	}
	return names, nil
}
