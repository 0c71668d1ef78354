package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The lock workload runs beside the KV workload: a few clients contend
// for one lock (Consul's ?acquire) and, while they hold it, write to a
// fenced resource with the lock's fencing token. Its checker (CheckLock)
// proves that no two sessions held the same LockIndex, that LockIndex
// rose across acquisitions in real time, and that the resource never
// accepted a token lower than one it had accepted before.
//
// The fencing token is the lock key's LockIndex, read back (linearizably)
// right after a successful acquire, as client.Lock does: it rises with
// every acquisition by anyone, and the workload never deletes the lock
// key, which would reset it.
//
// The fenced resource is a key of the store guarded by a token check made
// atomic by CAS: a writer reads the resource ({token, client, seq} and its
// ModifyIndex), refuses itself if the resource has seen a higher token
// than its own, and otherwise writes {its token, ...} with ?cas=ModifyIndex.
// A CAS that loses (the resource moved between the read and the write) is
// a conflict, not a refusal; the writer reads again.
//
// Each tenure uses a fresh session (TTL LockTTL, lock-delay LockDelay,
// bound to the node it was created on): create, acquire, write, release,
// destroy. Now and then a holder freezes itself well past 2×TTL without
// renewing (a GC pause or a frozen VM, simulated), so its session expires,
// another client takes the lock with a higher token, and the stale holder
// writes with its old token when it wakes: the resource must refuse it.

// LockKind is what a lock-workload operation did.
type LockKind string

// Lock-workload operation kinds.
const (
	LockAcquire LockKind = "acquire"
	LockRelease LockKind = "release"
	LockWrite   LockKind = "fenced-write"
	// LockPause is a holder freezing itself past its session's life; its
	// Call and Return bound the pause.
	LockPause LockKind = "pause"
)

// Results of a fenced write whose outcome is known.
const (
	Accepted = "accepted" // the CAS took effect
	Refused  = "refused"  // the resource had seen a higher token: nothing sent
	Conflict = "conflict" // the CAS lost: the resource moved since it was read
)

// LockOp is one operation of the lock workload.
type LockOp struct {
	Client  int      `json:"client"`
	Session string   `json:"session"`
	Kind    LockKind `json:"kind"`
	Outcome Outcome  `json:"outcome"`
	// Acquired: an acquire (or release) answered true.
	Acquired bool `json:"acquired,omitempty"`
	// Token: an acquire's LockIndex as read back while this session held
	// the key (0: not learned); the token a fenced write carried.
	Token uint64 `json:"token,omitempty"`
	// Seen is the token the resource held when a fenced write read it.
	Seen uint64 `json:"seen,omitempty"`
	// Result of a fenced write: accepted, refused or conflict.
	Result string `json:"result,omitempty"`
	// Value a fenced write wrote (or tried to).
	Value string `json:"value,omitempty"`
	// Call and Return as in Op. An acquire returns when its token was read
	// back.
	Call   int64  `json:"call"`
	Return int64  `json:"return"`
	Node   string `json:"node"`
	Error  string `json:"error,omitempty"`
}

// fencedValue is what the resource key holds.
type fencedValue struct {
	Token  uint64 `json:"token"`
	Client int    `json:"client"`
	Seq    int    `json:"seq"`
}

// LockConfig shapes the lock workload.
type LockConfig struct {
	Clients   int           // contending clients (0: no lock workload)
	Prefix    string        // keys <Prefix>lock and <Prefix>resource (default "chaos/lock/")
	TTL       time.Duration // session TTL (default 10s, the server's minimum)
	LockDelay time.Duration // session lock-delay (default 1s)
	// PauseChance is the chance that a tenure freezes (default 0.08;
	// negative: never), for Pause (default 4×TTL + LockDelay + 2s: past
	// 2×TTL, and past the extra TTL a session gets when a new leader
	// re-arms its timer, so another client can take the lock meanwhile).
	PauseChance float64
	Pause       time.Duration
}

func (c *LockConfig) defaults() {
	if c.Prefix == "" {
		c.Prefix = "chaos/lock/"
	}
	if c.TTL <= 0 {
		c.TTL = 10 * time.Second
	}
	if c.LockDelay <= 0 {
		c.LockDelay = time.Second
	}
	if c.PauseChance == 0 {
		c.PauseChance = 0.08
	}
	if c.Pause <= 0 {
		c.Pause = 4*c.TTL + c.LockDelay + 2*time.Second
	}
}

// LockWorkload runs the lock clients; it shares the KV workload's HTTP
// client, timeout and history clock.
type LockWorkload struct {
	cfg       LockConfig
	w         *Workload
	endpoints func() []string
	seed      uint64
	mu        sync.Mutex
	ops       []LockOp
	count     atomic.Int64
}

// NewLockWorkload prepares the lock workload over w's transport.
func NewLockWorkload(cfg LockConfig, w *Workload) *LockWorkload {
	cfg.defaults()
	return &LockWorkload{cfg: cfg, w: w, endpoints: w.endpoints, seed: w.cfg.Seed}
}

// LockKey is the contended lock; ResourceKey the fenced resource.
func (l *LockWorkload) LockKey() string     { return l.cfg.Prefix + "lock" }
func (l *LockWorkload) ResourceKey() string { return l.cfg.Prefix + "resource" }

// Ops is the lock history so far, ordered by invocation.
func (l *LockWorkload) Ops() []LockOp {
	l.mu.Lock()
	out := append([]LockOp(nil), l.ops...)
	l.mu.Unlock()
	sortLockOps(out)
	return out
}

// Operations is how many lock operations have completed.
func (l *LockWorkload) Operations() int64 { return l.count.Load() }

func (l *LockWorkload) record(op LockOp) LockOp {
	l.mu.Lock()
	l.ops = append(l.ops, op)
	l.mu.Unlock()
	l.count.Add(1)
	return op
}

// Run drives the lock clients until ctx ends; each then releases and
// destroys what it holds.
func (l *LockWorkload) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for c := 0; c < l.cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			l.client(ctx, c)
		}(c)
	}
	wg.Wait()
}

func (l *LockWorkload) node(rng *rand.Rand) string {
	for {
		if eps := l.endpoints(); len(eps) > 0 {
			return eps[rng.IntN(len(eps))]
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// client runs tenures: a session, the lock, fenced writes, the release.
func (l *LockWorkload) client(ctx context.Context, c int) {
	rng := rand.New(rand.NewPCG(l.seed, 0x10c0+uint64(c)))
	seq := 0
	for ctx.Err() == nil {
		sid, ok := l.createSession(ctx, l.node(rng), c)
		if !ok {
			sleep(ctx, time.Duration(100+rng.IntN(200))*time.Millisecond)
			continue
		}
		renewed := time.Now()
		token, held := l.contend(ctx, rng, c, sid, &renewed)
		if held && token > 0 {
			l.hold(ctx, rng, c, sid, token, &seq, &renewed)
		}
		// Release even when the acquire's outcome is unknown: the session
		// may hold the key without knowing it.
		end, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.w.cfg.Timeout)
		if held {
			l.release(end, l.node(rng), c, sid)
		}
		l.destroy(end, l.node(rng), sid)
		cancel()
	}
}

// contend tries to acquire until it holds the lock (with its token read
// back), the session ends or ctx ends. held reports that the session may
// hold the key (so it must be released).
func (l *LockWorkload) contend(ctx context.Context, rng *rand.Rand, c int, sid string, renewed *time.Time) (token uint64, held bool) {
	for ctx.Err() == nil {
		if !l.keepAlive(ctx, rng, sid, renewed) {
			return 0, false
		}
		node := l.node(rng)
		op := LockOp{Client: c, Session: sid, Kind: LockAcquire, Node: node, Call: l.w.rec.Now()}
		r := l.w.do(ctx, http.MethodPut, node, "/v1/kv/"+l.LockKey()+"?acquire="+url.QueryEscape(sid), []byte(fmt.Sprintf("client-%d", c)))
		op.Outcome, op.Error = r.outcome, r.err
		if r.outcome == OK {
			switch strings.TrimSpace(string(r.body)) {
			case "true":
				op.Acquired = true
			case "false":
			default:
				op.Outcome, op.Error = Unknown, fmt.Sprintf("unexpected answer %d %q", r.status, r.body)
			}
		}
		if op.Outcome == Unknown {
			op.Return = l.w.rec.Now()
			l.record(op)
			return 0, true
		}
		if !op.Acquired {
			op.Return = l.w.rec.Now()
			l.record(op)
			sleep(ctx, time.Duration(100+rng.IntN(200))*time.Millisecond)
			continue
		}
		// The token: the key's LockIndex while this session holds it.
		for i := 0; i < 3 && ctx.Err() == nil; i++ {
			p, res := l.get(ctx, l.node(rng), l.LockKey())
			if res.outcome != OK {
				op.Error = "reading the token back: " + res.err
				continue
			}
			if p == nil || p.Session != sid {
				op.Error = "the key changed hands before its token was read back"
				break
			}
			op.Token, op.Error = p.LockIndex, ""
			break
		}
		op.Return = l.w.rec.Now()
		l.record(op)
		return op.Token, true
	}
	return 0, false
}

// hold makes fenced writes for a while with the token, sometimes after
// freezing past the session's life.
func (l *LockWorkload) hold(ctx context.Context, rng *rand.Rand, c int, sid string, token uint64, seq *int, renewed *time.Time) {
	until := time.Now().Add(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
	pause := l.cfg.PauseChance > 0 && rng.Float64() < l.cfg.PauseChance
	for writes := 0; ctx.Err() == nil && (writes < 2 || time.Now().Before(until)); writes++ {
		if pause && writes == 1 {
			// Frozen: no renewal, no news; the session ends meanwhile.
			op := LockOp{Client: c, Session: sid, Kind: LockPause, Token: token, Outcome: OK, Call: l.w.rec.Now()}
			sleep(ctx, l.cfg.Pause)
			op.Return = l.w.rec.Now()
			l.record(op)
			if ctx.Err() != nil {
				return
			}
		} else if !l.keepAlive(ctx, rng, sid, renewed) {
			// The session ended: a careful holder stops; the frozen one
			// above does not know yet and writes once more.
			return
		}
		*seq++
		res := l.fencedWrite(ctx, rng, c, sid, token, *seq)
		if res == Refused {
			return // fenced off: a newer holder has written
		}
		sleep(ctx, time.Duration(50+rng.IntN(100))*time.Millisecond)
	}
}

// fencedWrite reads the resource and, if it has seen no higher token,
// replaces it with this token by CAS on what it read.
func (l *LockWorkload) fencedWrite(ctx context.Context, rng *rand.Rand, c int, sid string, token uint64, seq int) string {
	node := l.node(rng)
	v, _ := json.Marshal(fencedValue{Token: token, Client: c, Seq: seq})
	op := LockOp{Client: c, Session: sid, Kind: LockWrite, Token: token, Value: string(v), Node: node, Call: l.w.rec.Now()}
	p, r := l.get(ctx, node, l.ResourceKey())
	var index uint64
	if r.outcome == OK && p != nil {
		var cur fencedValue
		if err := json.Unmarshal(p.Value, &cur); err != nil {
			r.outcome, r.err = Unknown, fmt.Sprintf("the resource holds %q", p.Value)
		}
		op.Seen, index = cur.Token, p.ModifyIndex
	}
	if r.outcome != OK {
		// Nothing was written: the read before the write failed.
		op.Outcome, op.Error, op.Return = Failed, "reading the resource: "+r.err, l.w.rec.Now()
		l.record(op)
		return ""
	}
	if op.Seen > token {
		op.Outcome, op.Result, op.Return = OK, Refused, l.w.rec.Now()
		l.record(op)
		return Refused
	}
	r = l.w.do(ctx, http.MethodPut, node, fmt.Sprintf("/v1/kv/%s?cas=%d", l.ResourceKey(), index), v)
	op.Return, op.Outcome, op.Error = l.w.rec.Now(), r.outcome, r.err
	if r.outcome == OK {
		switch strings.TrimSpace(string(r.body)) {
		case "true":
			op.Result = Accepted
		case "false":
			op.Result = Conflict
		default:
			op.Outcome, op.Error = Unknown, fmt.Sprintf("unexpected answer %d %q", r.status, r.body)
		}
	}
	l.record(op)
	return op.Result
}

func (l *LockWorkload) release(ctx context.Context, node string, c int, sid string) {
	op := LockOp{Client: c, Session: sid, Kind: LockRelease, Node: node, Call: l.w.rec.Now()}
	r := l.w.do(ctx, http.MethodPut, node, "/v1/kv/"+l.LockKey()+"?release="+url.QueryEscape(sid), []byte(fmt.Sprintf("client-%d", c)))
	op.Return, op.Outcome, op.Error = l.w.rec.Now(), r.outcome, r.err
	if r.outcome == OK {
		op.Acquired = strings.TrimSpace(string(r.body)) == "true"
	}
	l.record(op)
}

func (l *LockWorkload) createSession(ctx context.Context, node string, c int) (string, bool) {
	body, _ := json.Marshal(map[string]string{"Name": fmt.Sprintf("chaos lock client %d", c), "TTL": l.cfg.TTL.String(), "LockDelay": l.cfg.LockDelay.String()})
	r := l.w.do(ctx, http.MethodPut, node, "/v1/session/create", body)
	if r.outcome != OK || r.status != http.StatusOK {
		return "", false // an unknown session expires by itself
	}
	var out struct{ ID string }
	if json.Unmarshal(r.body, &out) != nil || out.ID == "" {
		return "", false
	}
	return out.ID, true
}

func (l *LockWorkload) destroy(ctx context.Context, node, sid string) {
	_ = l.w.do(ctx, http.MethodPut, node, "/v1/session/destroy/"+url.PathEscape(sid), nil)
}

// keepAlive renews the session every half TTL; false when it ended (or
// could not be renewed for a whole TTL).
func (l *LockWorkload) keepAlive(ctx context.Context, rng *rand.Rand, sid string, renewed *time.Time) bool {
	if time.Since(*renewed) < l.cfg.TTL/2 {
		return true
	}
	r := l.w.do(ctx, http.MethodPut, l.node(rng), "/v1/session/renew/"+url.PathEscape(sid), nil)
	switch {
	case r.outcome == OK && r.status == http.StatusOK:
		*renewed = time.Now()
		return true
	case r.outcome == OK && r.status == http.StatusNotFound:
		return false
	}
	return time.Since(*renewed) < l.cfg.TTL
}

// lockPair is the part of a KVPair the lock workload reads.
type lockPair struct {
	Value       []byte
	Session     string
	LockIndex   uint64
	ModifyIndex uint64
}

// get is a linearizable read of one key; nil when it does not exist.
func (l *LockWorkload) get(ctx context.Context, node, key string) (*lockPair, result) {
	r := l.w.do(ctx, http.MethodGet, node, "/v1/kv/"+key, nil)
	if r.outcome != OK || r.status == http.StatusNotFound {
		return nil, r
	}
	var pairs []lockPair
	if err := json.Unmarshal(r.body, &pairs); err != nil || len(pairs) != 1 {
		r.outcome, r.err = Unknown, fmt.Sprintf("bad read body %q", r.body)
		return nil, r
	}
	return &pairs[0], r
}

// FinalResource reads the resource linearizably through node after
// healing, retrying until ctx ends; "" when it does not exist.
func (l *LockWorkload) FinalResource(ctx context.Context, node string) (string, error) {
	for {
		p, r := l.get(ctx, node, l.ResourceKey())
		if r.outcome == OK {
			if p == nil {
				return "", nil
			}
			return string(p.Value), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no read of the fenced resource succeeded after healing: %s", r.err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
