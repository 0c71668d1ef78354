package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/cluster/peerlink"
)

// streamLayer is raft's StreamLayer over the Raft channel of the node's
// peer port (see package peerlink). Owning the port (rather than using
// raft.NewTCPTransport) lets the node close and rebind it when the raft
// actor restarts, puts every Raft message under the fault rules, and
// authenticates both ends with mutual TLS when that is on.
type streamLayer struct {
	net.Listener
	port      *peerlink.Listener
	advertise advertisedAddr
	link      peerlink.Config

	// ctx ends when this Raft instance shuts down, cancelling dials that a
	// cut link holds open.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newStreamLayer(bind, advertise string, link peerlink.Config, onFault func(error)) (*streamLayer, error) {
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		return nil, fmt.Errorf("raft advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		return nil, fmt.Errorf("raft advertise address %q is not reachable by peers", advertise)
	}
	port, err := peerlink.Listen(bind, link, func(err error) {
		if onFault != nil {
			onFault(&TransportFault{Addr: advertise, Err: err})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("raft listener on %s: %w", bind, err)
	}
	addr := advertisedAddr(advertise)
	if adv.Port == 0 {
		// Binding port 0 (tests) means the advertised port is the real one.
		host, _, _ := net.SplitHostPort(advertise)
		addr = advertisedAddr(net.JoinHostPort(host, strconv.Itoa(port.Addr().(*net.TCPAddr).Port)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &streamLayer{
		Listener:  port.Raft(),
		port:      port,
		advertise: addr,
		link:      link,
		ctx:       ctx,
		cancel:    cancel,
		conns:     map[net.Conn]struct{}{},
	}, nil
}

// Close closes the whole peer port: Raft closes its transport only when
// this node's Raft goes away, and the port goes with it.
func (l *streamLayer) Close() error { return l.port.Close() }

// TransportFault reports that the Raft listener failed: the node can
// still send but no peer can reach it, which raft cannot repair itself
// (its accept loop retries the dead listener forever).
type TransportFault struct {
	Addr string
	Err  error
}

// Error names the listener and the cause.
func (f *TransportFault) Error() string {
	return fmt.Sprintf("raft listener on %s failed: %v", f.Addr, f.Err)
}

// Unwrap returns the cause.
func (f *TransportFault) Unwrap() error { return f.Err }

// Accept hands raft the next inbound Raft connection.
func (l *streamLayer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.track(c)
}

// Addr reports the advertised address: raft uses it as this node's identity
// on the wire.
func (l *streamLayer) Addr() net.Addr { return l.advertise }

// advertisedAddr is the Raft address as it was configured, a host name
// left a host name (compose services, Kubernetes pods). A leader names
// itself by it in every message, so followers report the leader by the
// same address the membership lists it under; a resolved address would
// show the leader (GET /v1/status/leader) as an IP that is not among the
// peers (GET /v1/status/peers).
type advertisedAddr string

// Network is "tcp".
func (a advertisedAddr) Network() string { return "tcp" }

// String is the address as configured.
func (a advertisedAddr) String() string { return string(a) }

// Dial connects to a peer's Raft listener, introducing this node by id.
//
// A refused connection (the peer's process is down, its machine up) is
// retried until the timeout instead of failing at once. hashicorp/raft
// backs off exponentially, up to about ten seconds, after each failed
// replication attempt; fast failures would pile up while a node restarts
// and leave it without new entries for seconds after it is back. A dial
// that waits for the peer instead connects the moment it returns.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(l.ctx, timeout)
	defer cancel()
	for {
		c, err := peerlink.Dial(ctx, l.link, string(addr), peerlink.ChannelRaft)
		if err == nil {
			return l.track(c)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(dialRetry):
		}
	}
}

// dialRetry is the pause between attempts to reach a peer that refuses.
const dialRetry = 50 * time.Millisecond

func (l *streamLayer) track(c net.Conn) (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, layer: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeConns closes every connection of this Raft instance, so goroutines
// blocked on a silent peer give up at once instead of at their I/O
// deadline; shutdown then takes milliseconds even during a partition.
func (l *streamLayer) closeConns() {
	l.cancel()
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = map[net.Conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		c.(*trackedConn).Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	layer *streamLayer
}

func (c *trackedConn) Close() error {
	c.layer.mu.Lock()
	delete(c.layer.conns, c)
	c.layer.mu.Unlock()
	return c.Conn.Close()
}
