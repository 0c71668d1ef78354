package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// KV is what the /v1/kv endpoints need of the node.
type KV interface {
	// Apply replicates a command through the leader (forwarding if needed).
	Apply(ctx context.Context, cmd *storage.Command) (storage.Result, error)
	// Read runs q on this node's state, after a read barrier unless
	// stale, waiting as a blocking query when b asks.
	Read(ctx context.Context, q storage.Query, stale bool, b storage.Block) (storage.QueryResult, error)
	// Leader is this node's view of the leader, for Consul's headers.
	Leader() cluster.LeaderInfo
}

// Cluster is what the status, membership and health endpoints need.
type Cluster interface {
	Leader() cluster.LeaderInfo
	Status() (cluster.Status, error)
	Members() ([]cluster.Member, error)
	// Configuration is the Raft configuration with its index; unless
	// stale, after a read barrier.
	Configuration(ctx context.Context, stale bool) (cluster.Configuration, error)
	Peers() ([]string, error)
	Ready() error
	// ChangeMembership adds, removes or promotes a member through the
	// leader; the request carries the caller's ACL token, which the
	// leader checks again when the request reaches it through another
	// node.
	ChangeMembership(ctx context.Context, req peerlink.MembershipRequest) error
	Snapshot(ctx context.Context) (uint64, error)
	// Health is the failure detector's view of every peer.
	Health(ctx context.Context) (*cluster.Health, error)
	// Alarms are the cluster's raised alarms, as this node holds them.
	Alarms() []storage.Alarm
	// Disarm clears the alarms of type typ about member ("" for either:
	// any) through the leader, and reports whether one was raised.
	Disarm(ctx context.Context, typ, member string) (bool, error)
}

// Sessions is what the /v1/session endpoints need besides KV's Apply
// (create, destroy) and Read (info, list, node): renewals, which reset the
// leader's timer and are no Raft entry.
type Sessions interface {
	// RenewSession renews session id through the leader; found false
	// means there is no such session.
	RenewSession(ctx context.Context, id string) (s storage.Session, found bool, err error)
}

// Chaos is the fault injection behind /v1/chaos/*.
type Chaos interface {
	// Crash makes an actor fail (fault "" is a panic).
	Crash(actor, fault, reason string) error
	Faults() faultnet.Rules
	SetFaults(faultnet.Rules) error
}

// Backends are the parts of a node the API serves. Chaos may be nil: the
// chaos endpoints are then not mounted at all. ACL may be nil only while
// Options.ACLEnabled is off; the /v1/acl endpoints then answer that ACLs
// are disabled.
type Backends struct {
	KV       KV
	Cluster  Cluster
	Chaos    Chaos
	ACL      ACL
	Sessions Sessions
	// Snapshots may be nil: /v1/snapshot is then not mounted.
	Snapshots Snapshots
	// Console, when set, serves the web console's data (/v1/ui/*); the
	// console's files at /ui/ are served either way.
	Console Console
}

// Options tune the API.
type Options struct {
	// Datacenter is the only datacenter this cluster answers for
	// (?dc=other gets Consul's "No path to datacenter").
	Datacenter string
	// NodeID is this node's id: the Node of a session created through
	// it without one.
	NodeID string
	// SessionTTLMin is the shortest session TTL accepted (Consul's
	// session_ttl_min); zero means DefaultSessionTTLMin.
	SessionTTLMin time.Duration
	// MaxValueSize is the largest value a PUT accepts, in bytes.
	MaxValueSize int64
	// RequestTimeout bounds how long a linearizable request waits for a
	// leader and a quorum before answering 503.
	RequestTimeout time.Duration
	// UnsafeReads answers default and ?consistent reads from local state
	// without a read barrier. It breaks linearizability on purpose, so the
	// chaos suite can show its checker catches that. Never in production.
	UnsafeReads bool
	// Pprof mounts Go's profiler at /debug/pprof/.
	Pprof bool
	// TxnMaxOps is the most operations one /v1/txn may carry; past it
	// 413. Zero means DefaultTxnMaxOps.
	TxnMaxOps int
	// MaxBlockingQueries caps the blocking queries (?index) held at once;
	// past it one is refused with 429. Zero means DefaultMaxBlockingQueries.
	MaxBlockingQueries int
	// RateLimit is the requests per second each client (its token, else
	// its address) may send, with RateBurst of headroom; past it 429 with
	// Retry-After. Zero turns rate limiting off.
	RateLimit float64
	RateBurst int
	// ACLEnabled turns on ACL enforcement: every request but the few open
	// ones (docs/api.md) needs a token that allows it. Off, tokens are
	// accepted and ignored, as in Consul with ACLs disabled.
	ACLEnabled bool
	// MemberTLS, when set, is how this node reaches other members'
	// client ports over HTTPS (trusting the cluster CA, presenting this
	// node's certificate) for the console's fan-out; nil means plain HTTP.
	MemberTLS *tls.Config
	// Metrics, when set, is served in Prometheus' text format at /metrics
	// and at Consul's /v1/agent/metrics.
	Metrics prometheus.Gatherer
	// Registerer, when set, receives the API's own series (requests by
	// route and code, their latency); nil leaves requests uncounted.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// DefaultMaxValueSize is Consul's default kv_max_value_size: 512 KiB.
const DefaultMaxValueSize = 512 << 10

// MaxKeySize is the longest key accepted, in bytes.
const MaxKeySize = 8 << 10

// Server is the HTTP API of one node.
type Server struct {
	b    Backends
	opts Options
	mux  *http.ServeMux

	drainOnce sync.Once
	draining  chan struct{} // closed by Drain

	limiter  *clientLimiter // nil: no rate limit
	blocking atomic.Int64   // blocking queries held now

	policies policyCache

	httpm      *httpMetrics // nil: requests are not counted
	prometheus http.Handler // the exposition of opts.Metrics
	memberOnce sync.Once
	memberHTTP *http.Client // see memberClient
}

// New returns the node's HTTP handler.
func New(b Backends, opts Options) *Server {
	if opts.Datacenter == "" {
		opts.Datacenter = "dc1"
	}
	if opts.MaxValueSize <= 0 {
		opts.MaxValueSize = DefaultMaxValueSize
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBlockingQueries <= 0 {
		opts.MaxBlockingQueries = DefaultMaxBlockingQueries
	}
	if opts.TxnMaxOps <= 0 {
		opts.TxnMaxOps = DefaultTxnMaxOps
	}
	if opts.SessionTTLMin <= 0 {
		opts.SessionTTLMin = DefaultSessionTTLMin
	}
	if opts.ACLEnabled && b.ACL == nil {
		// Enforcing with nothing to resolve tokens against would refuse
		// everything; that is a wiring bug, not a configuration.
		panic("api: ACLEnabled without an ACL backend")
	}
	s := &Server{b: b, opts: opts, mux: http.NewServeMux(), draining: make(chan struct{}), limiter: newClientLimiter(opts.RateLimit, opts.RateBurst), httpm: newHTTPMetrics(opts.Registerer)}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/status/leader", s.statusLeader)
	m.HandleFunc("GET /v1/status/peers", s.statusPeers)
	m.HandleFunc("PUT /v1/txn", s.txn)
	m.HandleFunc("PUT /v1/session/create", s.sessionCreate)
	m.HandleFunc("PUT /v1/session/destroy/{id...}", s.sessionDestroy)
	m.HandleFunc("PUT /v1/session/renew/{id...}", s.sessionRenew)
	m.HandleFunc("GET /v1/session/info/{id...}", s.sessionRead("info"))
	m.HandleFunc("GET /v1/session/list", s.sessionRead("list"))
	m.HandleFunc("GET /v1/session/node/{node...}", s.sessionRead("node"))

	m.HandleFunc("GET /v1/cluster/members", s.clusterMembers)
	m.HandleFunc("POST /v1/cluster/join", s.clusterJoin)
	m.HandleFunc("DELETE /v1/cluster/members/{id}", s.clusterRemove)
	m.HandleFunc("POST /v1/cluster/members/{id}/promote", s.clusterPromote)
	m.HandleFunc("GET /v1/operator/raft/configuration", s.operatorRaftConfiguration)
	m.HandleFunc("DELETE /v1/operator/raft/peer", s.operatorRaftRemovePeer)
	m.HandleFunc("POST /v1/operator/raft/transfer-leader", s.operatorRaftTransferLeader)
	m.HandleFunc("GET /v1/cluster/status", s.clusterStatus)
	m.HandleFunc("POST /v1/cluster/snapshot", s.clusterSnapshot)
	m.HandleFunc("GET /v1/cluster/health", s.clusterHealth)
	m.HandleFunc("GET /v1/cluster/alarms", s.clusterAlarms)
	m.HandleFunc("DELETE /v1/cluster/alarms", s.clusterDisarm)
	m.HandleFunc("GET /healthz", s.healthz)
	if s.opts.Pprof {
		m.HandleFunc("/debug/pprof/", pprof.Index)
		m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		m.HandleFunc("/debug/pprof/profile", pprof.Profile)
		m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	if s.opts.Metrics != nil {
		s.prometheus = prometheusHandler(s.opts.Metrics)
		m.Handle("GET /metrics", s.prometheus)
		m.HandleFunc("GET /v1/agent/metrics", s.agentMetrics)
	}
	m.HandleFunc("GET /readyz", s.readyz)

	s.aclRoutes()
	s.snapshotRoutes()
	s.consoleRoutes()

	if s.b.Chaos != nil {
		m.HandleFunc("POST /v1/chaos/crash", s.chaosCrash)
		m.HandleFunc("GET /v1/chaos/faults", s.chaosGetFaults)
		m.HandleFunc("PUT /v1/chaos/faults", s.chaosSetFaults)
		m.HandleFunc("DELETE /v1/chaos/faults", s.chaosClearFaults)
	}
}

// Drain makes blocking queries answer now with their current result, so a
// shutdown does not wait for long polls or cut them off without an answer.
func (s *Server) Drain() { s.drainOnce.Do(func() { close(s.draining) }) }

// ServeHTTP answers r and, when the API has a Registerer, counts and
// times it by the route it took.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.httpm == nil {
		s.serve(w, r)
		return
	}
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	route := s.serve(rec, r)
	if rec.code == 0 {
		// A handler that wrote nothing answered 200 with no body.
		rec.code = http.StatusOK
	}
	s.httpm.observe(r, route, rec.code, time.Since(start))
}

// serve routes /v1/kv/ itself: net/http's mux would answer keys with
// "//" or "." segments with a redirect, and Consul clients turn a redirected
// PUT into a GET. It returns the route's label for the metrics.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) string {
	if s.rateLimited(w, r) {
		return s.routeOf(r)
	}
	if s.opts.ACLEnabled {
		w.Header().Set("X-Consul-Default-ACL-Policy", "deny")
		var ok bool
		if r, ok = s.authorize(w, r); !ok {
			return s.routeOf(r)
		}
	}
	if isKVPath(r.URL.Path) {
		s.kv(w, r)
		return routeKV
	}
	s.mux.ServeHTTP(w, r)
	// The mux sets the pattern it matched on the request it was given.
	return routeLabel(r.Pattern)
}

// requestContext bounds a request that needs a leader or a quorum.
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.RequestTimeout)
}

// Outcome header values tell a client whether a failed write may still have
// been applied: "not-applied" is safe to retry anywhere, "unknown" is not.
const (
	OutcomeHeader     = "X-Troupe-Outcome"
	OutcomeNotApplied = "not-applied"
	OutcomeUnknown    = "unknown"
)

// errorStatus is the one place errors become HTTP statuses.
func errorStatus(err error) (status int, outcome string) {
	var remote *peerlink.RemoteError
	switch {
	case errors.As(err, &remote) && remote.Status >= 400 && remote.Status < 500:
		// The leader refused the request outright.
		return remote.Status, OutcomeNotApplied
	case errors.Is(err, cluster.ErrBusy):
		return http.StatusTooManyRequests, OutcomeNotApplied
	case errors.Is(err, storage.ErrNoSpace):
		// A NOSPACE alarm is raised: nothing that grows the state is
		// applied until an operator frees space and disarms it.
		return http.StatusInsufficientStorage, OutcomeNotApplied
	case errors.Is(err, cluster.ErrUnknownOutcome):
		return http.StatusServiceUnavailable, OutcomeUnknown
	case errors.Is(err, cluster.ErrNoLeader), errors.Is(err, cluster.ErrNotLeader), errors.Is(err, cluster.ErrDisk),
		errors.Is(err, cluster.ErrStateDiverged), errors.Is(err, storage.ErrCorrupt):
		return http.StatusServiceUnavailable, OutcomeNotApplied
	case errors.Is(err, storage.ErrBadCommand):
		return http.StatusBadRequest, OutcomeNotApplied
	case errors.Is(err, context.Canceled):
		return 499, OutcomeUnknown
	}
	return http.StatusInternalServerError, OutcomeUnknown
}

// writeError answers with a plain-text error, as Consul does.
func writeError(w http.ResponseWriter, err error) {
	status, outcome := errorStatus(err)
	w.Header().Set(OutcomeHeader, outcome)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	httpError(w, status, err.Error())
}

func httpError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// jsonError is the body of an error from a native endpoint; Code names
// the sentinel errors (see peerlink.ErrorCode).
type jsonError struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error"`
}

// writeJSONError answers the native endpoints with a JSON error carrying
// a code tools can act on.
func writeJSONError(w http.ResponseWriter, status int, err error) {
	code, outcome := errorStatus(err)
	if status == 0 {
		status = code
	}
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set(OutcomeHeader, outcome)
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, jsonError{Code: peerlink.ErrorCode(err), Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// setLeaderHeaders adds Consul's X-Consul-KnownLeader and
// X-Consul-LastContact.
func (s *Server) setLeaderHeaders(w http.ResponseWriter, linearizable bool) {
	li := s.b.KV.Leader()
	known := li.Known || linearizable
	contact := li.LastContact
	if linearizable {
		contact = 0
	}
	w.Header().Set("X-Consul-KnownLeader", strconv.FormatBool(known))
	w.Header().Set("X-Consul-LastContact", strconv.FormatInt(contact.Milliseconds(), 10))
}

// has reports a presence-only query flag (Consul clients send "recurse=").
func has(q url.Values, name string) bool {
	_, ok := q[name]
	return ok
}

// checkScope rejects requests for another datacenter, namespace or
// partition: this cluster is one datacenter with no namespaces.
func (s *Server) checkScope(w http.ResponseWriter, r *http.Request) bool {
	return s.checkScopeQuery(w, r, r.URL.Query())
}

// checkScopeQuery is checkScope with the query already parsed.
func (s *Server) checkScopeQuery(w http.ResponseWriter, r *http.Request, q url.Values) bool {
	dc := q.Get("datacenter")
	if dc == "" {
		dc = q.Get("dc")
	}
	if dc != "" && dc != s.opts.Datacenter {
		httpError(w, http.StatusInternalServerError, fmt.Sprintf("No path to datacenter %q", dc))
		return false
	}
	for _, p := range []struct{ query, header, what string }{
		{"ns", "X-Consul-Namespace", "Namespaces"},
		{"partition", "X-Consul-Partition", "Admin partitions"},
	} {
		v := q.Get(p.query)
		if v == "" {
			v = r.Header.Get(p.header)
		}
		if v != "" && v != "default" {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid query parameter %q = %q: %s are not supported", p.query, v, p.what))
			return false
		}
	}
	return true
}
