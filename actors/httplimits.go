package actors

import (
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
	max  int64
	open atomic.Int64
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		go refuse(c, fmt.Sprintf("too many connections: this node serves at most %d at a time", l.max))
	}
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
