package peerlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// TLS is the cluster's mutual TLS: every connection on the channel is
// authenticated both ways with certificates from one cluster CA that name
// node ids. Its configs must always reflect the current certificates, so a
// reload takes effect for the next connection.
type TLS interface {
	// PeerServerConfig accepts callers with a node certificate from the
	// cluster CA.
	PeerServerConfig() *tls.Config
	// PeerClientConfig presents this node's certificate and accepts a
	// callee whose certificate names expectID (any node id when "").
	PeerClientConfig(expectID string) *tls.Config
	// PeerID is the verified node id of the other end of a connection.
	PeerID(tls.ConnectionState) (string, error)
}

// Config is what both halves of the channel share.
type Config struct {
	// Network carries every connection, under its fault rules.
	Network *faultnet.Network
	// TLS, when set, requires mutual TLS; nil means plaintext, where a
	// caller's node id is only its claim.
	TLS TLS
	// Admit, when set, decides whether the node a connection comes from
	// may use the channel at all (the receiving node admits members only).
	Admit func(id string) error
	// ClusterID, when set, is the id of the cluster this node's state
	// belongs to ("" while it has none). Every connection carries the
	// caller's; when both ends have one they must be equal, so a node
	// given another cluster's data directory can neither reach this
	// cluster nor be reached by it.
	ClusterID func() string
	// Logger hears of refused connections; nil discards.
	Logger *slog.Logger
}

// Channel names what a connection carries.
type Channel byte

// The channels of the peer port.
const (
	ChannelRaft Channel = 'R' // hashicorp/raft's RPC stream
	ChannelRPC  Channel = 'H' // the forwarding protocol (HTTP/1.1)
)

// handshakeTimeout bounds the whole opening of a connection (preamble,
// TLS, channel and cluster id), so a silent caller cannot hold a slot for
// long.
const handshakeTimeout = 10 * time.Second

// maxHandshakes caps connections being opened at once: past it a new
// connection is closed at once, so a flood of strangers cannot exhaust the
// node's memory or descriptors through half-open handshakes.
const maxHandshakes = 256

// Dial connects to the peer port at addr for channel ch, authenticating
// both ends when TLS is on. The peer is expected to be the node the
// network knows at addr, if it knows one.
func Dial(ctx context.Context, cfg Config, addr string, ch Channel) (net.Conn, error) {
	return dial(ctx, cfg, addr, ch, cfg.Network.PeerOf(addr))
}

// dial is Dial expecting node expect ("" for any node) at addr.
func dial(ctx context.Context, cfg Config, addr string, ch Channel, expect string) (net.Conn, error) {
	c, err := cfg.Network.Dial(ctx, addr, true)
	if err != nil {
		return nil, err
	}
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) > handshakeTimeout {
		dl = time.Now().Add(handshakeTimeout)
	}
	_ = c.SetDeadline(dl)
	// A fault rule may hold the handshake's messages; the caller giving
	// up (a Raft shutdown) must not wait for them.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	conn, err := dialHandshake(ctx, cfg, c, addr, ch, expect)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return conn, nil
}

// dialHandshake opens a dialled connection: TLS when on, then the channel.
func dialHandshake(ctx context.Context, cfg Config, c net.Conn, addr string, ch Channel, expect string) (net.Conn, error) {
	if cfg.TLS != nil {
		tc := tls.Client(c, cfg.TLS.PeerClientConfig(expect))
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, fmt.Errorf("peer TLS handshake with %s: %w", addr, err)
		}
		c = tc
	}
	if _, err := c.Write(appendOpening(nil, ch, clusterID(cfg))); err != nil {
		return nil, err
	}
	return c, nil
}

// maxClusterIDLen bounds the cluster id a connection carries.
const maxClusterIDLen = 64

// appendOpening appends what a caller sends once its connection is
// authenticated: the channel, then its cluster id, length first.
func appendOpening(b []byte, ch Channel, clusterID string) []byte {
	if len(clusterID) > maxClusterIDLen {
		clusterID = "" // cannot happen with derived ids; never send a bad length
	}
	return append(append(b, byte(ch), byte(len(clusterID))), clusterID...)
}

func clusterID(cfg Config) string {
	if cfg.ClusterID == nil {
		return ""
	}
	return cfg.ClusterID()
}

// Conn is an accepted connection with the node id of its caller: verified
// by TLS when TLS is on, claimed otherwise.
type Conn struct {
	net.Conn
	Peer string
}

// Listener is the peer port: it opens every accepted connection and hands
// it to the listener of its channel.
type Listener struct {
	cfg     Config
	tcp     net.Listener // the socket itself
	ln      net.Listener // through the fault layer
	raft    *subListener
	rpc     *subListener
	slots   chan struct{}
	closed  atomic.Bool
	onFault func(error)
	wg      sync.WaitGroup
}

// Listen binds the peer port. onFault hears, once, of the socket failing
// underneath (which raft's accept loop would retry forever); both channel
// listeners then fail too.
func Listen(bind string, cfg Config, onFault func(error)) (*Listener, error) {
	tcp, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Listener{
		cfg:     cfg,
		tcp:     tcp,
		ln:      cfg.Network.Listen(tcp),
		raft:    newSubListener(tcp.Addr()),
		rpc:     newSubListener(tcp.Addr()),
		slots:   make(chan struct{}, maxHandshakes),
		onFault: onFault,
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.tcp.Addr() }

// Raft is the listener of Raft connections.
func (l *Listener) Raft() net.Listener { return l.raft }

// RPC is the listener of forwarding-protocol connections.
func (l *Listener) RPC() net.Listener { return l.rpc }

// Close closes the port and both channel listeners.
func (l *Listener) Close() error {
	l.closed.Store(true)
	err := l.tcp.Close()
	l.raft.Close()
	l.rpc.Close()
	l.wg.Wait()
	return err
}

// InjectFailure closes the socket underneath as if it had died, for the
// chaos suite: the fault callback fires as it would for a real failure.
func (l *Listener) InjectFailure() error { return l.tcp.Close() }

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed.Load() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				l.raft.fail(err)
				l.rpc.fail(err)
				if l.onFault != nil {
					l.onFault(err)
				}
				return
			}
			// Out of descriptors and the like: pause and go on, as
			// net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.cfg.Logger.Warn("peer port accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		select {
		case l.slots <- struct{}{}:
		default:
			l.cfg.Logger.Warn("peer port: too many connections opening at once; closing one", "from", c.RemoteAddr())
			c.Close()
			continue
		}
		go func() {
			defer func() { <-l.slots }()
			l.open(c)
		}()
	}
}

// open runs the handshake of one accepted connection and hands it to its
// channel, or closes it with a log line saying why.
func (l *Listener) open(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, ch, err := l.handshake(c)
	if err != nil {
		c.Close()
		l.cfg.Logger.Warn("peer port refused a connection", "from", c.RemoteAddr(), "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	sub := l.raft
	if ch == ChannelRPC {
		sub = l.rpc
	}
	if !sub.deliver(conn) {
		conn.Close()
	}
}

func (l *Listener) handshake(c net.Conn) (*Conn, Channel, error) {
	id, err := faultnet.Identify(c)
	if err != nil {
		return nil, 0, err
	}
	var conn net.Conn = c
	if l.cfg.TLS != nil {
		tc := tls.Server(c, l.cfg.TLS.PeerServerConfig())
		if err := tc.Handshake(); err != nil {
			return nil, 0, fmt.Errorf("TLS handshake with %q: %w", id, err)
		}
		certID, err := l.cfg.TLS.PeerID(tc.ConnectionState())
		if err != nil {
			return nil, 0, err
		}
		if certID != id {
			return nil, 0, fmt.Errorf("caller introduced itself as %q but its certificate names node %q", id, certID)
		}
		conn = tc
	}
	var b [2]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil {
		return nil, 0, fmt.Errorf("reading the opening of %q: %w", id, err)
	}
	ch := Channel(b[0])
	if ch != ChannelRaft && ch != ChannelRPC {
		return nil, 0, fmt.Errorf("%q asked for unknown channel %q", id, b[0])
	}
	if b[1] > maxClusterIDLen {
		return nil, 0, fmt.Errorf("%q sent a cluster id of %d bytes", id, b[1])
	}
	theirs := make([]byte, b[1])
	if _, err := io.ReadFull(conn, theirs); err != nil {
		return nil, 0, fmt.Errorf("reading the cluster id of %q: %w", id, err)
	}
	if ours := clusterID(l.cfg); ours != "" && len(theirs) > 0 && string(theirs) != ours {
		return nil, 0, &ClusterMismatch{Peer: id, Theirs: string(theirs), Ours: ours}
	}
	if l.cfg.Admit != nil {
		if err := l.cfg.Admit(id); err != nil {
			return nil, 0, err
		}
	}
	return &Conn{Conn: conn, Peer: id}, ch, nil
}

// ClusterMismatch is a connection refused because its caller belongs to
// another cluster: its state came from another cluster's data, or it is
// the node of another cluster that reached this port.
type ClusterMismatch struct {
	Peer, Theirs, Ours string
}

// Error says what to check.
func (e *ClusterMismatch) Error() string {
	return fmt.Sprintf("%q belongs to cluster %s, this node to cluster %s: a data directory from another cluster, or a node of another cluster at a member's address (docs/fault-model.md)", e.Peer, e.Theirs, e.Ours)
}

// subListener is one channel's net.Listener: it hands out the connections
// the Listener opened for it.
type subListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
	err   atomic.Pointer[error]
}

func newSubListener(addr net.Addr) *subListener {
	return &subListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (s *subListener) deliver(c net.Conn) bool {
	select {
	case s.conns <- c:
		return true
	case <-s.done:
		return false
	}
}

// Accept returns the next connection of this channel.
func (s *subListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		if err := s.err.Load(); err != nil {
			return nil, *err
		}
		return nil, net.ErrClosed
	}
}

// fail closes the listener with the socket's error.
func (s *subListener) fail(err error) {
	s.err.Store(&err)
	s.Close()
}

// Close stops handing out connections; the port itself stays open.
func (s *subListener) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

// Addr is the port's address.
func (s *subListener) Addr() net.Addr { return s.addr }
