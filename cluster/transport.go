package cluster

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// tcpLayer is raft's StreamLayer over plain TCP. Owning the listener (rather
// than using raft.NewTCPTransport) lets the node close and rebind it when the
// raft actor restarts, and is the seam where network faults are injected.
type tcpLayer struct {
	net.Listener
	advertise net.Addr
}

func newTCPLayer(bind, advertise string) (*tcpLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listener on %s: %w", bind, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("raft advertise address %q is not reachable by peers", advertise)
	}
	if adv.Port == 0 {
		// Binding port 0 (tests) means the advertised port is the real one.
		adv.Port = ln.Addr().(*net.TCPAddr).Port
	}
	return &tcpLayer{Listener: ln, advertise: adv}, nil
}

// Addr reports the advertised address: raft uses it as this node's identity
// on the wire.
func (l *tcpLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer's Raft listener.
func (l *tcpLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return conn, nil
}
