package actors

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPLimits bound what one client connection may cost the node, so slow
// or numerous clients cannot hold it: a request's headers and its whole
// body must arrive within their timeouts, headers are capped in size, an
// idle keep-alive connection is closed, and past MaxConns a new
// connection is answered 503 and closed at once.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included; it does
	// not bound the answer, so blocking queries may still wait minutes.
	ReadTimeout    time.Duration
	IdleTimeout    time.Duration
	MaxHeaderBytes int
	MaxConns       int
}

// DefaultHTTPLimits are the limits a node starts with unless configured.
func DefaultHTTPLimits() HTTPLimits {
	return HTTPLimits{
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		MaxConns:          4096,
	}
}

// connLimiter hands out at most max connections at a time; past that it
// answers a new connection 503 with the reason and closes it, instead of
// leaving it unanswered in the accept queue.
type connLimiter struct {
	net.Listener
	max    int64
	open   atomic.Int64
	health *portHealth
	// silent closes a connection over the limit without an answer: on a
	// TLS port a plaintext 503 would read as a broken handshake anyway.
	silent bool
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			// net/http retries temporary errors (out of descriptors)
			// with a pause; meanwhile no client gets in.
			l.health.trouble(fmt.Errorf("the client port cannot accept connections: %w", err))
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			l.health.fine()
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		reason := fmt.Sprintf("too many connections: this node serves at most %d at a time", l.max)
		l.health.trouble(errors.New("the client port is at its connection limit: " + reason))
		if l.silent {
			c.Close()
			continue
		}
		go refuse(c, reason)
	}
}

// portHealth remembers the client port's latest trouble, so /readyz and
// the node's answers to its peers' probes can say that it cannot serve
// clients, though it is alive and its peers hear it.
type portHealth struct {
	mu   sync.Mutex
	last error
	at   time.Time
}

// troubleMemory is how long one failure keeps the port unhealthy unless
// a connection is accepted normally since.
const troubleMemory = 5 * time.Second

func (h *portHealth) trouble(err error) {
	h.mu.Lock()
	h.last, h.at = err, time.Now()
	h.mu.Unlock()
}

func (h *portHealth) fine() {
	h.mu.Lock()
	h.last = nil
	h.mu.Unlock()
}

// err is the port's trouble as of now, nil if none.
func (h *portHealth) err(now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil || now.Sub(h.at) > troubleMemory {
		return nil
	}
	return h.last
}

// refuse answers a connection over the limit without reading its request.
func refuse(c net.Conn, reason string) {
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n", len(reason)+1, reason)
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}
