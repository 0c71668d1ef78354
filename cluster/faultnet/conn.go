package faultnet

import (
	"bufio"
	"context"
	"math/rand/v2"
	"syscall"

	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// preambleMagic starts every Raft connection, so a stray client (an HTTP
// request sent to the Raft port) is rejected instead of confusing Raft.
const preambleMagic = "TRP1"

// maxIDLen bounds the node id in a preamble.
const maxIDLen = 255

// preambleTimeout is how long an accepted connection may take to introduce
// itself.
const preambleTimeout = 10 * time.Second

func writePreamble(c net.Conn, id string) error {
	if len(id) > maxIDLen {
		return fmt.Errorf("faultnet: node id %q too long", id)
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	defer c.SetWriteDeadline(time.Time{})
	_, err := c.Write(append([]byte(preambleMagic+string(rune(len(id)))), id...))
	return err
}

// readPreamble reads the caller's id. Its length byte is written as a rune
// below 256, i.e. one or two UTF-8 bytes.
func readPreamble(r *bufio.Reader) (string, error) {
	magic := make([]byte, len(preambleMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return "", err
	}
	if string(magic) != preambleMagic {
		return "", errors.New("faultnet: connection did not start with a Troupe preamble")
	}
	n, _, err := r.ReadRune()
	if err != nil {
		return "", err
	}
	if n > maxIDLen {
		return "", errors.New("faultnet: bad preamble length")
	}
	id := make([]byte, n)
	if _, err := io.ReadFull(r, id); err != nil {
		return "", err
	}
	return string(id), nil
}

// conn applies the rules for its peer to every read and write. An accepted
// conn learns its peer from the caller's preamble on first use, so a slow
// caller cannot stall Accept.
type conn struct {
	net.Conn
	net    *Network
	peer   string
	r      io.Reader // after the preamble, on accepted conns
	needID bool

	idOnce sync.Once
	idErr  error
	closed chan struct{}   // closed by Close: wakes a Read or Write held by a fault
	ctx    context.Context // cancelled by Close, for waits that take a context
	cancel context.CancelFunc

	mu            sync.Mutex
	readDeadline  time.Time
	writeDeadline time.Time
	rngOut, rngIn *rand.Rand // this link's own random choices, set by register
	closeOnce     sync.Once
}

func newConn(raw net.Conn, n *Network, peer string, needID bool) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	return &conn{Conn: raw, net: n, peer: peer, needID: needID, closed: make(chan struct{}), ctx: ctx, cancel: cancel}
}

// fate draws, for one message, whether it is lost and how long it waits.
func (c *conn) fate(e effect, rng *rand.Rand) (lost bool, wait time.Duration) {
	if e.drop == 0 && e.delay == 0 {
		return false, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	lost = e.drop > 0 && rng.Float64() < e.drop
	return lost, pause(e, rng)
}

// throttle waits until the link's token bucket allows n more bytes, or
// the deadline passes (a timeout) or the conn closes.
func (c *conn) throttle(l *rate.Limiter, n int, deadline time.Time) error {
	if l == nil {
		return nil
	}
	ctx, cancel := c.ctx, context.CancelFunc(func() {})
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(c.ctx, deadline)
	}
	defer cancel()
	if err := l.WaitN(ctx, n); err != nil {
		if c.ctx.Err() != nil {
			return net.ErrClosed
		}
		return &net.OpError{Op: "io", Net: "tcp", Err: timeoutError{}}
	}
	return nil
}

func (c *conn) identify() error {
	if !c.needID {
		return nil
	}
	c.idOnce.Do(func() {
		br := bufio.NewReader(c.Conn)
		_ = c.Conn.SetReadDeadline(time.Now().Add(preambleTimeout))
		id, err := readPreamble(br)
		c.mu.Lock()
		dl := c.readDeadline
		c.mu.Unlock()
		_ = c.Conn.SetReadDeadline(dl)
		if err != nil {
			c.idErr = err
			c.Conn.Close()
			return
		}
		c.peer, c.r = id, br
		c.net.register(c)
	})
	return c.idErr
}

func (c *conn) Read(b []byte) (int, error) {
	if err := c.identify(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	dl := c.readDeadline
	c.mu.Unlock()
	// Hold the read while the peer is cut off from us: its messages "never
	// arrive". Loss, delay and the bandwidth cap of the "in" direction act
	// on each message once it has arrived.
	e, err := c.net.waitWhileCut(c.closed, c.peer, In, dl)
	if err != nil {
		return 0, err
	}
	if e.limiter != nil && len(b) > e.limiter.Burst() {
		b = b[:e.limiter.Burst()]
	}
	var n int
	if c.r != nil {
		n, err = c.r.Read(b)
	} else {
		n, err = c.Conn.Read(b)
	}
	if n > 0 {
		lost, wait := c.fate(e, c.rngIn)
		if lost {
			c.Close()
			return 0, &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
		}
		if herr := c.hold(wait, dl); herr != nil {
			return 0, herr
		}
		if terr := c.throttle(e.limiter, n, dl); terr != nil {
			return 0, terr
		}
	}
	return n, err
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// hold waits d, as a delayed message does, but gives up at the deadline
// (a timeout, as the OS would report) or when the conn is closed.
func (c *conn) hold(d time.Duration, deadline time.Time) error {
	if d <= 0 {
		return nil
	}
	timeout := false
	if !deadline.IsZero() && time.Until(deadline) < d {
		d, timeout = max(time.Until(deadline), 0), true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		if timeout {
			return &net.OpError{Op: "io", Net: "tcp", Err: timeoutError{}}
		}
		return nil
	case <-c.closed:
		return net.ErrClosed
	}
}

func (c *conn) Write(b []byte) (int, error) {
	if err := c.identify(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	dl := c.writeDeadline
	c.mu.Unlock()
	if c.isClosed() {
		return 0, net.ErrClosed
	}
	e, err := c.net.waitWhileCut(c.closed, c.peer, Out, dl)
	if err != nil {
		return 0, err
	}
	lost, wait := c.fate(e, c.rngOut)
	if lost {
		// The sender believes the message left; it never arrives, and the
		// connection breaks under both ends.
		c.Close()
		return len(b), nil
	}
	if err := c.hold(wait, dl); err != nil {
		return 0, err
	}
	if e.limiter == nil {
		return c.Conn.Write(b)
	}
	written := 0
	for written < len(b) {
		chunk := min(len(b)-written, e.limiter.Burst())
		if err := c.throttle(e.limiter, chunk, dl); err != nil {
			return written, err
		}
		n, err := c.Conn.Write(b[written : written+chunk])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline, c.writeDeadline = t, t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.writeDeadline = t
	c.mu.Unlock()
	return c.Conn.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cancel()
		c.net.unregister(c)
	})
	return c.Conn.Close()
}

// listener hands out conns that identify their peer from the preamble.
type listener struct {
	net.Listener
	net *Network
}

func (l *listener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if !l.net.faults {
		return &handshakeConn{Conn: raw}, nil
	}
	return newConn(raw, l.net, "", true), nil
}

// handshakeConn is an accepted connection of a Network without faults: it
// consumes the caller's preamble before its first read and is the plain
// connection after that.
type handshakeConn struct {
	net.Conn
	once sync.Once
	r    io.Reader
	id   string
	err  error

	mu           sync.Mutex
	readDeadline time.Time
}

func (c *handshakeConn) identify() error {
	c.once.Do(func() {
		br := bufio.NewReader(c.Conn)
		_ = c.Conn.SetReadDeadline(time.Now().Add(preambleTimeout))
		c.id, c.err = readPreamble(br)
		c.mu.Lock()
		_ = c.Conn.SetReadDeadline(c.readDeadline)
		c.mu.Unlock()
		if c.err != nil {
			c.Conn.Close()
		}
		c.r = br
	})
	return c.err
}

func (c *handshakeConn) Read(b []byte) (int, error) {
	if err := c.identify(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}

// Identify reads the preamble of a connection accepted by a Network's
// listener, if that has not happened yet, and returns the node id the
// caller claims. The claim is not proof: a layer above (mutual TLS)
// authenticates it.
func Identify(c net.Conn) (string, error) {
	switch c := c.(type) {
	case *conn:
		if err := c.identify(); err != nil {
			return "", err
		}
		return c.peer, nil
	case *handshakeConn:
		if err := c.identify(); err != nil {
			return "", err
		}
		return c.id, nil
	}
	return "", errors.New("faultnet: not a connection accepted by a faultnet listener")
}

func (c *handshakeConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *handshakeConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.readDeadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}
