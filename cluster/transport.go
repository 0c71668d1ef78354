package cluster

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// streamLayer is raft's StreamLayer over TCP through the node's faultnet.
// Owning the listener (rather than using raft.NewTCPTransport) lets the node
// close and rebind it when the raft actor restarts, and puts every Raft
// message under the fault rules.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	network   *faultnet.Network
}

func newStreamLayer(bind, advertise string, network *faultnet.Network) (*streamLayer, error) {
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
	return &streamLayer{Listener: network.Listen(ln), advertise: adv, network: network}, nil
}

// Addr reports the advertised address: raft uses it as this node's identity
// on the wire.
func (l *streamLayer) Addr() net.Addr { return l.advertise }

// Dial connects to a peer's Raft listener, introducing this node by id.
func (l *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return l.network.Dial(ctx, string(addr), true)
}
