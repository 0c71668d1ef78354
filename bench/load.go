// Package bench measures Troupe (or another HTTP KV store) under load: a
// closed-loop generator with keep-alive connections that drives writes,
// linearizable and stale reads, a 90/10 mix and CAS at a given number of
// concurrent clients spread over every node, and reports throughput and
// latency percentiles.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is a load shape.
type Kind string

// The load shapes of the benchmark table.
const (
	Writes Kind = "writes"
	Reads  Kind = "reads"       // linearizable
	Stale  Kind = "stale-reads" // any node, local state
	Mix    Kind = "mix-90-10"   // 90% linearizable reads, 10% writes
	CAS    Kind = "cas"
	// Txn is one transaction of TxnOps sets of distinct keys, applied
	// atomically (Troupe's /v1/txn, etcd's /v3/kv/txn).
	Txn Kind = "txn-4"
)

// TxnOps is how many sets a Txn row's transaction holds.
const TxnOps = 4

// Store is the HTTP dialect of the store under test.
type Store interface {
	Name() string
	// Put, Get and CAS build a request for one operation on key; CAS
	// also returns how to read the new version from a successful answer.
	Put(endpoint, key string, value []byte) *http.Request
	Get(endpoint, key string, stale bool) *http.Request
	CAS(endpoint, key string, value []byte, version uint64) *http.Request
	// Txn sets every key to value in one atomic transaction.
	Txn(endpoint string, keys []string, value []byte) *http.Request
	// Check reads an answer: whether it succeeded and, for CAS and Put,
	// the key's new version (0 when unknown).
	Check(kind Kind, resp *http.Response, body []byte) (ok bool, version uint64)
	// TLSConfig is what the load clients need to speak HTTPS to the
	// store (its requests then use https URLs); nil for plain HTTP.
	TLSConfig() *tls.Config
}

// Config is one load run.
type Config struct {
	Store     Store
	Endpoints []string
	Kind      Kind
	Clients   int
	Duration  time.Duration
	Keys      int // key space (default 10000)
	ValueSize int // bytes (default 100)
	Prefix    string
}

// Result is one row of the benchmark table.
type Result struct {
	Store     string  `json:"store"`
	Kind      Kind    `json:"kind"`
	Clients   int     `json:"clients"`
	Ops       int     `json:"ops"`
	Errors    int     `json:"errors"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50MS     float64 `json:"p50_ms"`
	P90MS     float64 `json:"p90_ms"`
	P99MS     float64 `json:"p99_ms"`
	MaxMS     float64 `json:"max_ms"`
	Seconds   float64 `json:"seconds"`
	// CPUMicrosPerOp is the servers' CPU time (user + system, all nodes)
	// per successful operation, when the servers are local processes. It
	// is far less sensitive to a busy machine than throughput.
	CPUMicrosPerOp float64 `json:"server_cpu_us_per_op,omitempty"`
}

// String is the row as troupe-bench prints it.
func (r Result) String() string {
	s := fmt.Sprintf("%-10s %-12s %4d clients %9.0f ops/s  err %-5d p50 %6.2f  p90 %6.2f  p99 %7.2f  max %7.2f ms",
		r.Store, r.Kind, r.Clients, r.OpsPerSec, r.Errors, r.P50MS, r.P90MS, r.P99MS, r.MaxMS)
	if r.CPUMicrosPerOp > 0 {
		s += fmt.Sprintf("  cpu %5.0f µs/op", r.CPUMicrosPerOp)
	}
	return s
}

// GoBenchLine formats r as a line of Go benchmark output, so runs of
// troupe-bench can be compared with benchstat like any Go benchmark:
// one "op" is one request, and the custom units carry throughput, tail
// latency and server CPU.
func (r Result) GoBenchLine() string {
	nsPerOp := 0.0
	if r.OpsPerSec > 0 {
		nsPerOp = 1e9 / r.OpsPerSec
	}
	s := fmt.Sprintf("Benchmark%s/%s/clients=%d \t%d\t%.0f ns/op\t%.1f ops/s\t%.3f p50-ms\t%.3f p99-ms",
		benchName(r.Store), r.Kind, r.Clients, r.Ops, nsPerOp, r.OpsPerSec, r.P50MS, r.P99MS)
	if r.CPUMicrosPerOp > 0 {
		s += fmt.Sprintf("\t%.1f cpu-us/op", r.CPUMicrosPerOp)
	}
	return s
}

// benchName turns a store's name into a benchmark name: "troupe-tls"
// becomes "TroupeTls", because benchstat reads a "-" in a name as the start
// of the GOMAXPROCS suffix.
func benchName(store string) string {
	var b strings.Builder
	for _, part := range strings.Split(store, "-") {
		if part != "" {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}

// CPUTime is the user plus system CPU time the processes have used so far
// (Linux /proc), for CPU-per-operation figures.
func CPUTime(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name (field 2) may hold spaces; fields after the
		// closing parenthesis are fixed.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total
}

// NewClient is an HTTP client sized for n concurrent keep-alive
// connections, speaking TLS with tlsConfig when it is not nil. With or
// without TLS it speaks HTTP/1.1 and keeps its connections, so that a
// comparison of the two measures the cost of encryption, not of a
// handshake per request nor of HTTP/2 (which Go would negotiate over TLS
// only).
func NewClient(n int, tlsConfig *tls.Config) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsConfig.Clone(),
			Protocols:           &protocols,
			MaxIdleConns:        2 * n,
			MaxIdleConnsPerHost: 2 * n,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// Run drives cfg.Clients closed-loop clients for cfg.Duration; client i
// sends to endpoint i mod len(endpoints), so load spreads over all nodes.
func Run(ctx context.Context, cfg Config) Result {
	if cfg.Keys <= 0 {
		cfg.Keys = 10000
	}
	if cfg.ValueSize <= 0 {
		cfg.ValueSize = 100
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "bench/"
	}
	hc := NewClient(cfg.Clients, cfg.Store.TLSConfig())
	defer hc.CloseIdleConnections()
	run := time.Now().UnixNano() // clients replay their key sequence in every row
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	var (
		mu     sync.Mutex
		lats   []time.Duration
		errors int
		wg     sync.WaitGroup
	)
	start := time.Now()
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 42))
			endpoint := cfg.Endpoints[c%len(cfg.Endpoints)]
			casKey := cfg.Prefix + "cas/" + strconv.Itoa(c)
			var version uint64
			value := bytes.Repeat([]byte("v"), cfg.ValueSize)
			if cfg.Kind == CAS {
				// The key may be left from an earlier row.
				version = learnVersion(ctx, hc, cfg.Store, endpoint, casKey)
			}
			mine := make([]time.Duration, 0, 4096)
			bad := 0
			txnKeys := make([]string, TxnOps)
			for seq := 0; ctx.Err() == nil; seq++ {
				key := cfg.Prefix + strconv.Itoa(rng.IntN(cfg.Keys))
				stamp(value, run, c, seq)
				kind := cfg.Kind
				if kind == Mix {
					kind = Reads
					if rng.IntN(10) == 0 {
						kind = Writes
					}
				}
				var req *http.Request
				switch kind {
				case Writes:
					req = cfg.Store.Put(endpoint, key, value)
				case Reads:
					req = cfg.Store.Get(endpoint, key, false)
				case Stale:
					req = cfg.Store.Get(endpoint, key, true)
				case CAS:
					req = cfg.Store.CAS(endpoint, casKey, value, version)
				case Txn:
					// One group of TxnOps neighbouring keys: distinct (etcd
					// refuses a transaction that names a key twice), and a
					// group's keys always hold one value, which shows the
					// transactions were applied whole.
					group := rng.IntN(max(1, cfg.Keys/TxnOps)) * TxnOps
					for i := range txnKeys {
						txnKeys[i] = cfg.Prefix + strconv.Itoa(group+i)
					}
					req = cfg.Store.Txn(endpoint, txnKeys, value)
				}
				t0 := time.Now()
				resp, err := hc.Do(req.WithContext(ctx))
				if err != nil {
					if ctx.Err() == nil {
						bad++
					}
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				ok, v := cfg.Store.Check(kind, resp, body)
				if err != nil || !ok {
					bad++
					if kind == CAS {
						// The key moved on (or exists from an earlier run):
						// learn its version, outside the measurement.
						version = learnVersion(ctx, hc, cfg.Store, endpoint, casKey)
					}
					continue
				}
				if kind == CAS {
					version = v
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			errors += bad
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	q := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))].Microseconds()) / 1000
	}
	return Result{
		Store: cfg.Store.Name(), Kind: cfg.Kind, Clients: cfg.Clients,
		Ops: len(lats), Errors: errors, OpsPerSec: float64(len(lats)) / elapsed.Seconds(),
		P50MS: q(0.5), P90MS: q(0.9), P99MS: q(0.99), MaxMS: q(1), Seconds: elapsed.Seconds(),
	}
}

// Preload writes keys prefix0..prefix(n-1) with the given number of
// concurrent clients, so reads find data and memory can be measured.
func Preload(ctx context.Context, store Store, endpoints []string, prefix string, n, valueSize, clients int) error {
	hc := NewClient(clients, store.TLSConfig())
	defer hc.CloseIdleConnections()
	run := time.Now().UnixNano()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			value := bytes.Repeat([]byte("v"), valueSize)
			for i := c; i < n; i += clients {
				if ctx.Err() != nil {
					return
				}
				stamp(value, run, -1, i)
				req := store.Put(endpoints[i%len(endpoints)], prefix+strconv.Itoa(i), value)
				resp, err := hc.Do(req.WithContext(ctx))
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if ok, _ := store.Check(Writes, resp, body); !ok {
					errs <- fmt.Errorf("preload %s: %d %s", prefix+strconv.Itoa(i), resp.StatusCode, body)
					return
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// stamp writes the run's start time, a client's number and a sequence
// number over the start of value, so that every write stores a value the
// key has never held, also across rows, whose clients replay the same key
// sequence. Troupe
// (like Consul) applies a write that repeats a key's value and flags
// without touching the entry or its ModifyIndex, which would make
// repeated identical writes cheaper than real ones, and the index a write
// returns would not be the key's version for the next CAS.
func stamp(value []byte, run int64, client, seq int) {
	var b [48]byte
	s := strconv.AppendInt(b[:0], run, 36)
	s = append(s, '.')
	s = strconv.AppendInt(s, int64(client), 36)
	s = append(s, '.')
	s = strconv.AppendInt(s, int64(seq), 36)
	s = append(s, '.')
	copy(value, s)
}

// learnVersion reads key's current version (0 if absent).
func learnVersion(ctx context.Context, hc *http.Client, store Store, endpoint, key string) uint64 {
	resp, err := hc.Do(store.Get(endpoint, key, false).WithContext(ctx))
	if err != nil {
		return 0
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return 0
	}
	_, v := store.Check(Reads, resp, body)
	return v
}
