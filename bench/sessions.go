package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/troupe-kv/troupe/internal/procstat"
)

// SessionLoad keeps many Consul sessions alive on a Troupe cluster, each
// renewed every TTL/2 as consul/api's RenewPeriodic does, so that the cost
// of live sessions (on the leader, where their timers run, and on the
// write path) can be measured.
type SessionLoad struct {
	store     Troupe
	endpoints []string
	ids       []string
	ttl       time.Duration
	hc        *http.Client

	cancel context.CancelFunc
	wg     sync.WaitGroup

	renewals atomic.Int64 // answered 200
	failures atomic.Int64 // any other answer, or no answer
	late     atomic.Int64 // rounds that could not renew every session within TTL/2
}

// SessionStats is what a SessionLoad did.
type SessionStats struct {
	Sessions int   `json:"sessions"`
	Renewals int64 `json:"renewals"`
	Failures int64 `json:"renewal_failures"`
	Late     int64 `json:"late_rounds"`
}

// StartSessions creates n sessions with the given TTL (spread over the
// endpoints, so they belong to every node) and starts workers goroutines
// that renew each of them every TTL/2, paced evenly across the period.
func StartSessions(ctx context.Context, store Troupe, endpoints []string, n int, ttl time.Duration, workers int) (*SessionLoad, error) {
	l := &SessionLoad{store: store, endpoints: endpoints, ttl: ttl, hc: NewClient(workers, store.TLSConfig())}
	ids := make([]string, n)
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				id, err := l.create(ctx, endpoints[i%len(endpoints)])
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	l.ids = ids
	rctx, cancel := context.WithCancel(ctx)
	l.cancel = cancel
	for w := 0; w < workers; w++ {
		var mine []int
		for i := w; i < n; i += workers {
			mine = append(mine, i)
		}
		l.wg.Add(1)
		go l.renew(rctx, mine)
	}
	return l, nil
}

func (l *SessionLoad) url(endpoint, path string) string {
	scheme := "http://"
	if l.store.TLS != nil {
		scheme = "https://"
	}
	return scheme + endpoint + path
}

func (l *SessionLoad) do(ctx context.Context, method, url string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// create makes a session through endpoint, with l's TTL (none when 0),
// behavior release and no lock-delay.
func (l *SessionLoad) create(ctx context.Context, endpoint string) (string, error) {
	spec := map[string]string{"Behavior": "release", "LockDelay": "0s"}
	if l.ttl > 0 {
		spec["TTL"] = l.ttl.String()
	}
	body, _ := json.Marshal(spec)
	code, b, err := l.do(ctx, http.MethodPut, l.url(endpoint, "/v1/session/create"), body)
	if err != nil {
		return "", err
	}
	var out struct{ ID string }
	if code != http.StatusOK || json.Unmarshal(b, &out) != nil || out.ID == "" {
		return "", fmt.Errorf("session create: %d %s", code, b)
	}
	return out.ID, nil
}

// renew renews the sessions at the given indexes once per TTL/2, each at
// its own offset within the period, so renewals arrive at an even rate.
func (l *SessionLoad) renew(ctx context.Context, mine []int) {
	defer l.wg.Done()
	period := l.ttl / 2
	if len(mine) == 0 {
		return
	}
	step := period / time.Duration(len(mine))
	for ctx.Err() == nil {
		start := time.Now()
		for k, i := range mine {
			if d := time.Until(start.Add(time.Duration(k) * step)); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
			code, _, err := l.do(ctx, http.MethodPut, l.url(l.endpoints[i%len(l.endpoints)], "/v1/session/renew/"+l.ids[i]), nil)
			switch {
			case ctx.Err() != nil:
				return
			case err == nil && code == http.StatusOK:
				l.renewals.Add(1)
			default:
				l.failures.Add(1)
			}
		}
		if d := time.Until(start.Add(period)); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		} else {
			l.late.Add(1)
		}
	}
}

// Live counts the sessions of this load that the cluster still holds
// (read through endpoint, linearizably).
func (l *SessionLoad) Live(ctx context.Context, endpoint string) (int, error) {
	code, b, err := l.do(ctx, http.MethodGet, l.url(endpoint, "/v1/session/list"), nil)
	if err != nil {
		return 0, err
	}
	var list []struct{ ID string }
	if code != http.StatusOK || json.Unmarshal(b, &list) != nil {
		return 0, fmt.Errorf("session list: %d", code)
	}
	mine := make(map[string]bool, len(l.ids))
	for _, id := range l.ids {
		mine[id] = true
	}
	n := 0
	for _, s := range list {
		if mine[s.ID] {
			n++
		}
	}
	return n, nil
}

// Stats is what the load has done so far.
func (l *SessionLoad) Stats() SessionStats {
	return SessionStats{Sessions: len(l.ids), Renewals: l.renewals.Load(), Failures: l.failures.Load(), Late: l.late.Load()}
}

// Stop ends the renewals and destroys every session.
func (l *SessionLoad) Stop(ctx context.Context) error {
	l.cancel()
	l.wg.Wait()
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(l.ids); i += 16 {
				code, b, err := l.do(ctx, http.MethodPut, l.url(l.endpoints[i%len(l.endpoints)], "/v1/session/destroy/"+l.ids[i]), nil)
				if err == nil && code != http.StatusOK {
					err = fmt.Errorf("session destroy: %d %s", code, b)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	l.hc.CloseIdleConnections()
	return <-errs
}

// SessionCost is the measured cost of many live sessions on a cluster.
type SessionCost struct {
	SessionStats
	TTLSeconds float64 `json:"ttl_seconds"`
	// Live is how many of the sessions the cluster still held after the
	// loaded row: any fewer expired although renewed.
	Live int `json:"live_at_end"`
	// CPU is in cores (1 = one core busy), over a quiet window of
	// renewals only, and without them before they started.
	LeaderCPUIdle          float64 `json:"leader_cpu_cores_idle"`
	LeaderCPUWithSessions  float64 `json:"leader_cpu_cores_with_sessions"`
	ClusterCPUWithSessions float64 `json:"cluster_cpu_cores_with_sessions"`
	LeaderRSSBefore        int64   `json:"leader_rss_bytes_before"`
	LeaderRSSWith          int64   `json:"leader_rss_bytes_with_sessions"`
	RenewalsPerSec         float64 `json:"renewals_per_sec"`
	// RaftEntries is how far the leader's commit index moved during the
	// window of renewals only: renewals are not Raft entries, so this
	// stays near zero (the odd state checkpoint aside).
	RaftEntries uint64 `json:"raft_entries_during_renewals"`
	// WritesWithNetCPUMicrosPerOp is the servers' CPU per write in the
	// loaded row less what the renewals alone used over as long: what a
	// write itself cost beside them.
	WritesWithNetCPUMicrosPerOp float64 `json:"writes_with_sessions_net_cpu_us_per_op"`
	// Writes at the same client count without the sessions (before they
	// were created and after they were destroyed) and with them.
	WritesBefore Result `json:"writes_before"`
	WritesWith   Result `json:"writes_with_sessions"`
	WritesAfter  Result `json:"writes_after"`
}

// SessionWindow is how long MeasureSessions watches CPU and the log with
// the renewals running and nothing else.
const SessionWindow = 10 * time.Second

// MeasureSessions creates n sessions with ttl renewed every TTL/2 and
// measures the leader's CPU and memory with them, and a write row of
// writers clients before, with and after them (the rows bracket the
// loaded one, so a drift of the machine shows as a difference between
// before and after).
func (c *Cluster) MeasureSessions(ctx context.Context, n int, ttl, row time.Duration, writers, keys, valueSize int) (*SessionCost, error) {
	leader, err := waitLeader(ctx, c.C)
	if err != nil {
		return nil, err
	}
	pid := leader.Pid()
	writes := func() Result {
		syscall.Sync()
		before := CPUTime(c.Pids())
		r := Run(ctx, Config{Store: c.Store(), Endpoints: c.Endpoints(), Kind: Writes, Clients: writers, Duration: row, Keys: keys, ValueSize: valueSize})
		if used := CPUTime(c.Pids()) - before; used > 0 && r.Ops > 0 {
			r.CPUMicrosPerOp = float64(used.Microseconds()) / float64(r.Ops)
		}
		return r
	}
	cores := func(pids []int, window time.Duration) float64 {
		before := CPUTime(pids)
		select {
		case <-ctx.Done():
		case <-time.After(window):
		}
		return (CPUTime(pids) - before).Seconds() / window.Seconds()
	}
	const window = SessionWindow
	res := &SessionCost{TTLSeconds: ttl.Seconds()}
	res.LeaderRSSBefore = procstat.Status(pid)["VmRSS"]
	res.LeaderCPUIdle = cores([]int{pid}, window)
	res.WritesBefore = writes()

	l, err := StartSessions(ctx, c.Store(), c.Endpoints(), n, ttl, 64)
	if err != nil {
		return nil, err
	}
	// One full renewal period first, so the window sees the steady state.
	select {
	case <-ctx.Done():
	case <-time.After(ttl / 2):
	}
	r0 := l.renewals.Load()
	before := CPUTime(c.Pids())
	st0, err := leader.Status()
	if err != nil {
		return nil, err
	}
	res.LeaderCPUWithSessions = cores([]int{pid}, window)
	res.ClusterCPUWithSessions = (CPUTime(c.Pids()) - before).Seconds() / window.Seconds()
	res.RenewalsPerSec = float64(l.renewals.Load()-r0) / window.Seconds()
	st1, err := leader.Status()
	if err != nil {
		return nil, err
	}
	res.RaftEntries = st1.CommitIndex - st0.CommitIndex
	res.LeaderRSSWith = procstat.Status(pid)["VmRSS"]
	res.WritesWith = writes()
	if w := res.WritesWith; w.Ops > 0 {
		renewalsCPU := res.ClusterCPUWithSessions * w.Seconds * 1e6
		res.WritesWithNetCPUMicrosPerOp = (w.CPUMicrosPerOp*float64(w.Ops) - renewalsCPU) / float64(w.Ops)
	}
	res.SessionStats = l.Stats()
	if res.Live, err = l.Live(ctx, c.Endpoints()[0]); err != nil {
		return res, err
	}
	if now, err := waitLeader(ctx, c.C); err != nil || now.Pid() != pid {
		return res, fmt.Errorf("the leader changed during the measurement")
	}
	if err := l.Stop(ctx); err != nil {
		return res, err
	}
	res.WritesAfter = writes()
	return res, nil
}
