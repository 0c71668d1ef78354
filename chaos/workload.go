package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WorkloadConfig shapes the client load.
type WorkloadConfig struct {
	Clients int           // concurrent clients (default 10)
	Keys    int           // size of the key set: small, so operations contend (default 8)
	Prefix  string        // keys are <Prefix>k0 .. (default "chaos/")
	Timeout time.Duration // per request; past it the outcome is unknown (default 3s)
	// ReadRatio and CASRatio split the operations; the rest are writes.
	ReadRatio, CASRatio float64
	Seed                uint64
}

func (c *WorkloadConfig) defaults() {
	if c.Clients <= 0 {
		c.Clients = 10
	}
	if c.Keys <= 0 {
		c.Keys = 8
	}
	if c.Prefix == "" {
		c.Prefix = "chaos/"
	}
	if c.Timeout <= 0 {
		c.Timeout = 3 * time.Second
	}
	if c.ReadRatio == 0 && c.CASRatio == 0 {
		c.ReadRatio, c.CASRatio = 0.5, 0.2
	}
}

// Workload runs clients against a set of HTTP endpoints and records every
// operation.
type Workload struct {
	cfg       WorkloadConfig
	endpoints func() []string
	rec       *Recorder
	http      *http.Client
	processes atomic.Int64
	count     atomic.Int64
}

// NewWorkload prepares a workload. endpoints is asked before each operation
// so clients follow nodes that come and go.
func NewWorkload(cfg WorkloadConfig, endpoints func() []string, rec *Recorder) *Workload {
	cfg.defaults()
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Workload{cfg: cfg, endpoints: endpoints, rec: rec, http: &http.Client{Transport: tr}}
}

// Key names key number i.
func (w *Workload) Key(i int) string { return w.cfg.Prefix + "k" + strconv.Itoa(i) }

// Keys lists the workload's keys.
func (w *Workload) Keys() []string {
	out := make([]string, w.cfg.Keys)
	for i := range out {
		out[i] = w.Key(i)
	}
	return out
}

// Operations is how many operations have completed so far.
func (w *Workload) Operations() int64 { return w.count.Load() }

// Run drives the clients until ctx ends.
func (w *Workload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for c := 0; c < w.cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			w.client(ctx, c)
		}(c)
	}
	wg.Wait()
	w.http.CloseIdleConnections()
}

func (w *Workload) newProcess() int { return int(w.processes.Add(1) - 1) }

func (w *Workload) client(ctx context.Context, c int) {
	rng := rand.New(rand.NewPCG(w.cfg.Seed, uint64(c)))
	process := w.newProcess()
	seq := 0
	for ctx.Err() == nil {
		eps := w.endpoints()
		if len(eps) == 0 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		node := eps[rng.IntN(len(eps))]
		key := w.Key(rng.IntN(w.cfg.Keys))
		r := rng.Float64()
		var outcomes []Outcome
		switch {
		case r < w.cfg.ReadRatio:
			o := w.read(ctx, process, node, key, false)
			outcomes = append(outcomes, o.Outcome)
		case r < w.cfg.ReadRatio+w.cfg.CASRatio:
			seq++
			outcomes = w.cas(ctx, process, node, key, fmt.Sprintf("%d-%d", process, seq))
		default:
			seq++
			o := w.write(ctx, process, node, key, fmt.Sprintf("%d-%d", process, seq))
			outcomes = append(outcomes, o.Outcome)
		}
		for _, o := range outcomes {
			if o == Unknown {
				// This client no longer knows whether its last operation
				// happened; it carries on as a new process.
				process = w.newProcess()
				seq = 0
				break
			}
		}
		if ctx.Err() == nil {
			// A little pause keeps a dead cluster from being hammered.
			if outcomes[len(outcomes)-1] != OK {
				time.Sleep(time.Duration(20+rng.IntN(30)) * time.Millisecond)
			}
		}
	}
}

// kvValue is the part of Consul's KVPair the workload reads.
type kvValue struct {
	Value       []byte
	ModifyIndex uint64
}

// result is one HTTP exchange, classified.
type result struct {
	outcome Outcome
	status  int
	body    []byte
	err     string
}

// do sends one request (never retried: a retry would blur the outcome) and
// classifies what came back.
func (w *Workload) do(ctx context.Context, method, node, path string, body []byte) result {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	var sent atomic.Bool
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { sent.Store(i.Err == nil) }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, "http://"+node+path, bytes.NewReader(body))
	if err != nil {
		return result{outcome: Failed, err: err.Error()}
	}
	resp, err := w.http.Do(req)
	if err != nil {
		if !sent.Load() {
			return result{outcome: Failed, err: err.Error()}
		}
		return result{outcome: Unknown, err: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{outcome: Unknown, status: resp.StatusCode, err: err.Error()}
	}
	r := result{status: resp.StatusCode, body: b}
	switch {
	case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound:
		r.outcome = OK
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		r.outcome, r.err = Failed, strings.TrimSpace(string(b))
	case resp.Header.Get("X-Troupe-Outcome") == "not-applied":
		r.outcome, r.err = Failed, strings.TrimSpace(string(b))
	default:
		r.outcome, r.err = Unknown, strings.TrimSpace(string(b))
	}
	return r
}

func (w *Workload) record(op Op) Op {
	w.rec.Add(op)
	w.count.Add(1)
	return op
}

// read is a linearizable GET.
func (w *Workload) read(ctx context.Context, process int, node, key string, final bool) Op {
	op := Op{Process: process, Kind: Read, Key: key, Node: node, Call: w.rec.Now(), Final: final}
	r := w.do(ctx, http.MethodGet, node, "/v1/kv/"+key, nil)
	op.Return, op.Outcome, op.Error = w.rec.Now(), r.outcome, r.err
	if r.outcome == OK && r.status == http.StatusOK {
		var pairs []kvValue
		if err := json.Unmarshal(r.body, &pairs); err != nil || len(pairs) != 1 {
			op.Outcome, op.Error = Unknown, fmt.Sprintf("bad read body %q", r.body)
		} else {
			op.Value = string(pairs[0].Value)
		}
	}
	return w.record(op)
}

// write is a plain PUT of a unique value.
func (w *Workload) write(ctx context.Context, process int, node, key, value string) Op {
	op := Op{Process: process, Kind: Write, Key: key, Value: value, Node: node, Call: w.rec.Now()}
	r := w.do(ctx, http.MethodPut, node, "/v1/kv/"+key, []byte(value))
	op.Return, op.Outcome, op.Error = w.rec.Now(), r.outcome, r.err
	if r.outcome == OK && strings.TrimSpace(string(r.body)) != "true" {
		op.Outcome, op.Error = Unknown, fmt.Sprintf("unexpected answer %d %q", r.status, r.body)
	}
	return w.record(op)
}

// cas reads the key, then replaces what it saw with a new unique value
// using Consul's ?cas=<ModifyIndex>. Values are unique and the workload
// never deletes, so "the index is unchanged" and "the value is unchanged"
// are the same condition: the model checks CAS on values.
func (w *Workload) cas(ctx context.Context, process int, node, key, value string) []Outcome {
	call := w.rec.Now()
	r := w.do(ctx, http.MethodGet, node, "/v1/kv/"+key, nil)
	read := Op{Process: process, Kind: Read, Key: key, Node: node, Call: call, Return: w.rec.Now(), Outcome: r.outcome, Error: r.err}
	var index uint64
	if r.outcome == OK && r.status == http.StatusOK {
		var pairs []kvValue
		if err := json.Unmarshal(r.body, &pairs); err != nil || len(pairs) != 1 {
			read.Outcome, read.Error = Unknown, fmt.Sprintf("bad read body %q", r.body)
		} else {
			read.Value, index = string(pairs[0].Value), pairs[0].ModifyIndex
		}
	}
	w.record(read)
	if read.Outcome != OK {
		return []Outcome{read.Outcome}
	}
	op := Op{Process: process, Kind: CAS, Key: key, From: read.Value, To: value, Node: node, Call: w.rec.Now()}
	r = w.do(ctx, http.MethodPut, node, "/v1/kv/"+key+"?cas="+strconv.FormatUint(index, 10), []byte(value))
	op.Return, op.Outcome, op.Error = w.rec.Now(), r.outcome, r.err
	if r.outcome == OK {
		switch strings.TrimSpace(string(r.body)) {
		case "true":
			op.Swapped = true
		case "false":
		default:
			op.Outcome, op.Error = Unknown, fmt.Sprintf("unexpected answer %d %q", r.status, r.body)
		}
	}
	w.record(op)
	return []Outcome{OK, op.Outcome}
}

// FinalRead reads key linearizably through node, retrying until ctx ends:
// used after healing, when the cluster must answer.
func (w *Workload) FinalRead(ctx context.Context, node, key string) (Op, error) {
	for {
		op := w.read(ctx, w.newProcess(), node, key, true)
		if op.Outcome == OK {
			return op, nil
		}
		select {
		case <-ctx.Done():
			return op, errors.New("no linearizable read succeeded after healing: " + op.Error)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// StaleRead reads key from node's local state (?stale), for comparing
// replicas.
func (w *Workload) StaleRead(ctx context.Context, node, key string) (string, error) {
	r := w.do(ctx, http.MethodGet, node, "/v1/kv/"+key+"?stale", nil)
	if r.outcome != OK {
		return "", fmt.Errorf("stale read of %s on %s: %s", key, node, r.err)
	}
	if r.status == http.StatusNotFound {
		return "", nil
	}
	var pairs []kvValue
	if err := json.Unmarshal(r.body, &pairs); err != nil || len(pairs) != 1 {
		return "", fmt.Errorf("bad stale read body %q", r.body)
	}
	return string(pairs[0].Value), nil
}
