package api

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxBlockingQueries is how many blocking queries a node holds at
// once unless configured.
const DefaultMaxBlockingQueries = 4096

// clientLimiter gives each client (its ACL token when it sends one, else
// its address) a token bucket of rate requests per second.
type clientLimiter struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*clientBucket
}

type clientBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// maxTrackedClients bounds the limiter's memory: past it, clients idle for
// a minute are forgotten (a forgotten client starts with a full bucket).
const maxTrackedClients = 10000

func newClientLimiter(perSecond float64, burst int) *clientLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &clientLimiter{rate: rate.Limit(perSecond), burst: max(burst, 1), clients: map[string]*clientBucket{}}
}

// allow takes one request from client's bucket; when it is empty it says
// how long until the next request would be let through.
func (l *clientLimiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		if len(l.clients) >= maxTrackedClients {
			for id, c := range l.clients {
				if now.Sub(c.seen) > time.Minute {
					delete(l.clients, id)
				}
			}
		}
		b = &clientBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.clients[client] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// clientKey names the client of r for rate limiting: its token, in any of
// the ways Consul clients send one, else the host of its address.
func clientKey(r *http.Request) string {
	if t := requestToken(r); t != "" {
		return "token:" + t
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "addr:" + host
}

// rateLimited answers 429 with Retry-After when r's client is over its
// rate, and reports whether it did.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request) bool {
	if s.limiter == nil {
		return false
	}
	ok, wait := s.limiter.allow(clientKey(r), time.Now())
	if ok {
		return false
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	w.Header().Set(OutcomeHeader, OutcomeNotApplied)
	httpError(w, http.StatusTooManyRequests, fmt.Sprintf("rate limit: at most %g requests per second per client (burst %d); retry in %s", float64(s.limiter.rate), s.limiter.burst, wait.Round(time.Millisecond)))
	return true
}

// admitBlocking reads a request's ?index and ?wait and, for a blocking
// query (index above 0), counts it in against MaxBlockingQueries. It
// answers 400 or 429 itself when it returns !ok; otherwise release must
// be called once the query is answered (it does nothing for a plain one).
func (s *Server) admitBlocking(w http.ResponseWriter, q url.Values) (index uint64, wait time.Duration, release func(), ok bool) {
	if index, wait, ok = blockingParams(w, q); !ok {
		return 0, 0, nil, false
	}
	if index == 0 {
		return 0, wait, func() {}, true
	}
	if release, ok = s.holdBlocking(w); !ok {
		return 0, 0, nil, false
	}
	return index, wait, release, true
}

// holdBlocking counts a blocking query in, or answers 429 when the node
// already holds MaxBlockingQueries of them. release must be called when
// admitted.
func (s *Server) holdBlocking(w http.ResponseWriter) (release func(), ok bool) {
	if s.blocking.Add(1) > int64(s.opts.MaxBlockingQueries) {
		s.blocking.Add(-1)
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusTooManyRequests, fmt.Sprintf("too many blocking queries: this node holds at most %d at a time", s.opts.MaxBlockingQueries))
		return nil, false
	}
	return func() { s.blocking.Add(-1) }, true
}
