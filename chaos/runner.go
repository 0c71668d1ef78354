package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Config is one chaos run.
type Config struct {
	Duration time.Duration // how long the load runs (default 5m)
	// Nemeses are the faults to schedule, by name (see Nemeses); empty
	// means none: a baseline run.
	Nemeses []string
	// Interval is the calm between faults and FaultDuration how long each
	// lasts; both vary by up to half with the seed.
	Interval      time.Duration
	FaultDuration time.Duration
	Seed          uint64
	Workload      WorkloadConfig
	// Lock adds the lock workload beside the KV one (Lock.Clients 0:
	// none).
	Lock LockConfig
	// OutDir receives history.json, summary.json and report.html.
	OutDir string
	// Progress gets a line a second while the run goes (nil: quiet).
	Progress io.Writer
	// CheckTimeout bounds the linearizability check (default 5m).
	CheckTimeout time.Duration
	// SettleTimeout bounds the wait for the cluster to converge after the
	// last fault is healed (default 2m).
	SettleTimeout time.Duration
}

func (c *Config) defaults() {
	if c.Duration <= 0 {
		c.Duration = 5 * time.Minute
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	if c.FaultDuration <= 0 {
		c.FaultDuration = 8 * time.Second
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = 5 * time.Minute
	}
	if c.SettleTimeout <= 0 {
		c.SettleTimeout = 2 * time.Minute
	}
	if c.Seed == 0 {
		// Small enough to survive JSON tools that read numbers as doubles.
		c.Seed = uint64(time.Now().UnixNano() % 1e9)
	}
	c.Workload.Seed = c.Seed
}

// Summary is what a run found; it is written to summary.json.
type Summary struct {
	Seed       uint64            `json:"seed"`
	Nodes      int               `json:"nodes"`
	Duration   string            `json:"duration"`
	Nemeses    []string          `json:"nemeses"`
	Operations int               `json:"operations"`
	Verdict    Verdict           `json:"verdict"`
	Faults     []FaultOutcome    `json:"faults"`
	Final      map[string]string `json:"final_values"`
	// Lock is the lock workload's account and verdict (absent without it).
	Lock   *LockSummary `json:"lock,omitempty"`
	Error  string       `json:"error,omitempty"`
	OutDir string       `json:"out_dir"`
}

// Run drives the workload and the nemeses against target for
// cfg.Duration, heals everything, waits for the cluster to converge, reads
// every key back and checks the history.
func Run(ctx context.Context, cfg Config, target Target) (*Summary, error) {
	cfg.defaults()
	for _, n := range cfg.Nemeses {
		if _, ok := Nemeses[n]; !ok {
			return nil, fmt.Errorf("unknown nemesis %q (known: %s)", n, strings.Join(NemesisNames(), ", "))
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", args...)
		}
	}
	rec := NewRecorder()
	var endpoints []string
	for _, n := range target.Nodes() {
		endpoints = append(endpoints, n.HTTPAddr)
	}
	w := NewWorkload(cfg.Workload, func() []string { return endpoints }, rec)
	var lw *LockWorkload
	if cfg.Lock.Clients > 0 {
		lw = NewLockWorkload(cfg.Lock, w)
	}
	env := &Env{
		Target: target,
		Rand:   rand.New(rand.NewPCG(cfg.Seed, 0x5eed)),
		HTTP:   &http.Client{Timeout: 10 * time.Second},
		Logf:   logf,
	}

	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	var (
		mu      sync.Mutex
		windows []FaultWindow
		current string
		wg      sync.WaitGroup
	)
	wg.Add(2)
	go func() { defer wg.Done(); w.Run(loadCtx) }()
	if lw != nil {
		wg.Add(1)
		go func() { defer wg.Done(); lw.Run(loadCtx) }()
	}
	go func() {
		defer wg.Done()
		if len(cfg.Nemeses) == 0 {
			<-loadCtx.Done()
			return
		}
		for i := 0; ; i++ {
			if !sleep(loadCtx, jitter(env.Rand, cfg.Interval)) {
				return
			}
			name := cfg.Nemeses[env.Rand.IntN(len(cfg.Nemeses))]
			n := Nemeses[name]()
			start := rec.Now()
			detail, err := n.Start(ctx, env)
			if err != nil {
				logf("nemesis %s failed to start: %v", name, err)
				_ = n.Stop(context.WithoutCancel(ctx), env)
				continue
			}
			mu.Lock()
			windows = append(windows, FaultWindow{Nemesis: name, Detail: detail, Start: start})
			current = name + ": " + detail
			mu.Unlock()
			sleep(loadCtx, jitter(env.Rand, cfg.FaultDuration))
			if err := n.Stop(context.WithoutCancel(ctx), env); err != nil {
				logf("nemesis %s failed to heal: %v", name, err)
			}
			mu.Lock()
			windows[len(windows)-1].End = rec.Now()
			if s, ok := n.(stepper); ok {
				windows[len(windows)-1].Steps = s.Steps()
			}
			current = ""
			mu.Unlock()
		}
	}()
	// Progress, once a second.
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
				mu.Lock()
				fault := current
				mu.Unlock()
				if fault == "" {
					fault = "none"
				}
				locks := ""
				if lw != nil {
					locks = fmt.Sprintf("lock ops %-5d ", lw.Operations())
				}
				logf("%6.0fs  ops %-7d %sfault: %s", time.Since(rec.Start()).Seconds(), w.Operations(), locks, fault)
			}
		}
	}()
	wg.Wait()
	close(progressDone)
	end := rec.Now()

	sum := &Summary{Seed: cfg.Seed, Nodes: len(target.Nodes()), Duration: cfg.Duration.String(), Nemeses: cfg.Nemeses, OutDir: cfg.OutDir}
	logf("load stopped after %.0fs; healing and waiting for the cluster to converge", time.Duration(end).Seconds())
	// Healing must happen even when the run was interrupted: leave nothing
	// cut, paused or dead behind. Each step has its own time limit.
	cleanup := context.WithoutCancel(ctx)
	healAll(cleanup, env)
	final, diverged, err := settle(cleanup, cfg, env, w)
	if err != nil {
		sum.Error = err.Error()
		logf("cluster did not converge: %v", err)
	}
	sum.Final = final
	var lockOps []LockOp
	if lw != nil {
		lockOps = lw.Ops()
		resource, known := "", false
		if err == nil {
			rctx, cancel := context.WithTimeout(cleanup, cfg.SettleTimeout)
			resource, err = lw.FinalResource(rctx, env.Target.Nodes()[0].HTTPAddr)
			cancel()
			if err != nil {
				sum.Error = err.Error()
			}
			known = err == nil
		}
		ls := CheckLock(lockOps, resource, known)
		sum.Lock = &ls
		sum.Verdict.Lock, sum.Verdict.LockViolations = ls.Verdict, ls.Violations
	}

	ops := rec.Ops()
	sum.Operations = len(ops)
	for _, o := range ops {
		switch o.Outcome {
		case OK:
			sum.Verdict.OK++
		case Failed:
			sum.Verdict.Failed++
		case Unknown:
			sum.Verdict.Unknown++
		}
	}
	logf("checking %d operations", len(ops))
	var info porcupine.LinearizationInfo
	sum.Verdict.Linearizable, sum.Verdict.ViolatingKeys, info = CheckLinearizable(ops, cfg.CheckTimeout)
	if final != nil {
		sum.Verdict.LostWrites = FindLostWrites(ops, final)
	}
	sum.Verdict.Diverged = diverged
	if err != nil && sum.Verdict.Linearizable == "ok" {
		// A cluster that never came back is a failed run even if what was
		// recorded is linearizable.
		sum.Verdict.Linearizable = "unknown"
	}
	avail := Measure(ops, windows, end)
	sum.Faults = avail.Faults

	hist := History{Ops: ops, Faults: windows, Lock: lockOps}
	if err := hist.WriteJSON(filepath.Join(cfg.OutDir, "history.json")); err != nil {
		return sum, err
	}
	if err := writeJSON(filepath.Join(cfg.OutDir, "summary.json"), sum); err != nil {
		return sum, err
	}
	if sum.Verdict.Linearizable == "violation" {
		info.AddAnnotations(faultAnnotations(windows))
		if err := porcupine.VisualizePath(registerModel, info, filepath.Join(cfg.OutDir, "linearizability.html")); err != nil {
			logf("visualization: %v", err)
		}
	}
	if err := WriteReport(filepath.Join(cfg.OutDir, "report.html"), sum, avail, hist); err != nil {
		return sum, err
	}
	return sum, nil
}

// healAll undoes every fault that may still be active: rules cleared,
// paused nodes resumed, killed nodes restarted, OS-level cuts removed.
func healAll(ctx context.Context, env *Env) {
	for _, n := range env.Target.Nodes() {
		_ = env.Target.Resume(n.ID)
		if !env.Target.Running(n.ID) {
			if err := env.Target.Restart(n.ID); err != nil {
				env.Logf("restart %s: %v", n.ID, err)
			}
		}
	}
	if lt, ok := env.Target.(*LocalTarget); ok {
		_ = lt.HealOS()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := env.clearFaults(ctx)
		if err == nil || time.Now().After(deadline) {
			if err != nil {
				env.Logf("clearing fault rules: %v", err)
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settle waits until the cluster is quiet — every node agrees on a leader
// and has applied the same index, and that index stays put for a while —
// then reads every key linearizably (recorded in the history) and from
// each node's own state. Requests that timed out on the client may still
// be in flight inside the cluster when the load stops (their outcome is
// unknown, and they may land late), so the reads are taken again if the
// index moved while they ran.
func settle(ctx context.Context, cfg Config, env *Env, w *Workload) (map[string]string, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.SettleTimeout)
	defer cancel()
	for {
		leaderAddr, index, err := quiet(ctx, env)
		if err != nil {
			return nil, nil, err
		}
		final := map[string]string{}
		var diverged []string
		for _, key := range w.Keys() {
			op, err := w.FinalRead(ctx, leaderAddr, key)
			if err != nil {
				return nil, nil, err
			}
			final[key] = op.Value
			for _, n := range env.Target.Nodes() {
				v, err := w.StaleRead(ctx, n.HTTPAddr, key)
				if err != nil {
					return final, diverged, err
				}
				if v != op.Value {
					diverged = append(diverged, fmt.Sprintf("%s: %s has %q, the leader %q", key, n.ID, v, op.Value))
				}
			}
		}
		if _, again, err := quiet(ctx, env); err == nil && again == index {
			return final, diverged, nil
		}
		env.Logf("late writes landed while reading back; reading again")
	}
}

// quiet waits until every node agrees on the leader and has applied the
// same index for two seconds, and returns the leader's address and that
// index.
func quiet(ctx context.Context, env *Env) (string, uint64, error) {
	type status struct {
		LeaderID     string `json:"leader_id"`
		AppliedIndex uint64 `json:"applied_index"`
	}
	var (
		stableSince time.Time
		lastIndex   uint64
	)
	for {
		leader, leaderAddr, index, same := "", "", uint64(0), true
		for i, n := range env.Target.Nodes() {
			var st status
			if err := env.getJSON(ctx, n.HTTPAddr, "/v1/cluster/status", &st); err != nil || st.LeaderID == "" {
				same = false
				break
			}
			if i > 0 && (st.LeaderID != leader || st.AppliedIndex != index) {
				same = false
				break
			}
			leader, index = st.LeaderID, st.AppliedIndex
			if n.ID == st.LeaderID {
				leaderAddr = n.HTTPAddr
			}
		}
		switch {
		case !same || leaderAddr == "" || index != lastIndex:
			stableSince, lastIndex = time.Time{}, index
		case stableSince.IsZero():
			stableSince = time.Now()
		case time.Since(stableSince) >= 2*time.Second:
			return leaderAddr, index, nil
		}
		select {
		case <-ctx.Done():
			return "", 0, fmt.Errorf("the cluster did not settle (same leader, same applied index everywhere) in time")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func faultAnnotations(ws []FaultWindow) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, f := range ws {
		end := f.End
		if end == 0 {
			end = f.Start
		}
		out = append(out, porcupine.Annotation{Tag: "nemesis", Start: f.Start, End: end, Description: f.Nemesis, Details: f.Detail, BackgroundColor: "#fde2e2"})
	}
	return out
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// jitter varies d by up to half, with the run's seeded randomness.
func jitter(r *rand.Rand, d time.Duration) time.Duration {
	return d/2 + time.Duration(r.Int64N(int64(d)+1))
}
