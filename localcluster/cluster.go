// Package localcluster starts and controls real kvnode processes on this
// machine, for the tools (troupe-chaos, troupe-bench) and the tests
// (through internal/testcluster): a cluster of nodes that bootstrap
// together, a node that joins it, and each node's crash (SIGKILL), clean
// stop (SIGTERM), pause (SIGSTOP), resume, restart and wipe, plus waits for
// its API, an agreed leader and an applied index.
//
// Every call returns an error rather than failing a test, and nothing is
// built at run time: the caller names the kvnode binary (FindKVNode finds
// one). FindProcess reaches a kvnode this package did not start, such as a
// node of 'make run', by the address it listens on.
package localcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Options shape a cluster.
type Options struct {
	// Binary is the kvnode executable (see FindKVNode).
	Binary string
	// Dir holds each node's data directory (<Dir>/<id>) and log
	// (<Dir>/<id>.log); it is created if missing and never removed.
	Dir string
	// Args are extra kvnode flags for every node; they come last, so they
	// win over the defaults.
	Args []string
	// Chaos starts the nodes with --chaos (the fault-injection endpoints).
	Chaos bool
	// TLS makes a development CA in <Dir>/tls and starts every node with
	// a certificate from it: HTTPS on the client port, mutual TLS on the
	// peer port, client certificates required (tls_verify_incoming). The
	// package's own requests present a client certificate from that CA.
	TLS bool
	// Addrs, when set, gives node i (from 0) its HTTP and Raft addresses
	// instead of free loopback ports.
	Addrs func(i int) (httpAddr, raftAddr string)
	// Wrap, when set, turns a node's command line into the one to run,
	// e.g. inside a network namespace with "ip netns exec".
	Wrap func(n *Node, argv []string) []string
}

// Cluster is a set of kvnode processes started by this package.
type Cluster struct {
	// Nodes are n1..nN in start order, then the joiners.
	Nodes []*Node
	opts  Options
	tls   *clusterTLS // nil without Options.TLS
}

// Start launches n nodes that bootstrap one new cluster from a common
// --initial-cluster list. It does not wait for them: see WaitLeader. If a
// node cannot be started, the ones already running are killed.
func Start(n int, opts Options) (*Cluster, error) {
	switch {
	case n < 1:
		return nil, fmt.Errorf("a cluster needs at least one node, not %d", n)
	case opts.Binary == "":
		return nil, errors.New("no kvnode binary given (see FindKVNode)")
	case opts.Dir == "":
		return nil, errors.New("no directory given for the nodes' data and logs")
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	addrs := opts.Addrs
	if addrs == nil {
		ports, err := FreePorts(2 * n)
		if err != nil {
			return nil, err
		}
		addrs = func(i int) (string, string) { return loopback(ports[2*i]), loopback(ports[2*i+1]) }
	}
	c := &Cluster{opts: opts}
	if opts.TLS {
		t, err := newClusterTLS(filepath.Join(opts.Dir, "tls"))
		if err != nil {
			return nil, err
		}
		c.tls = t
	}
	var members []string
	for i := 0; i < n; i++ {
		node := c.newNode(fmt.Sprintf("n%d", i+1), addrs)
		members = append(members, node.ID+"="+node.RaftAddr)
		c.Nodes = append(c.Nodes, node)
	}
	initial := strings.Join(members, ",")
	for _, node := range c.Nodes {
		tlsArgs, err := c.tlsArgs(node)
		if err != nil {
			return nil, err
		}
		node.args = append(append([]string{"--initial-cluster", initial}, tlsArgs...), opts.Args...)
		if err := node.Start(); err != nil {
			_ = c.Kill()
			return nil, err
		}
	}
	return c, nil
}

// newNode lays out the next node: its addresses (from addrs, given the
// node's index) and its files.
func (c *Cluster) newNode(id string, addrs func(i int) (string, string)) *Node {
	n := &Node{
		ID:      id,
		DataDir: filepath.Join(c.opts.Dir, id),
		LogPath: filepath.Join(c.opts.Dir, id+".log"),
		c:       c,
	}
	n.HTTPAddr, n.RaftAddr = addrs(len(c.Nodes))
	return n
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// AddJoiner starts a new node that joins the running cluster through
// --join (the HTTP addresses of the nodes so far) instead of
// bootstrapping; args are extra flags for it alone (its --acl-token, say).
func (c *Cluster) AddJoiner(id string, args ...string) (*Node, error) {
	if c.Node(id) != nil {
		return nil, fmt.Errorf("there is already a node %s", id)
	}
	addrs := c.opts.Addrs
	if addrs == nil {
		ports, err := FreePorts(2)
		if err != nil {
			return nil, err
		}
		addrs = func(int) (string, string) { return loopback(ports[0]), loopback(ports[1]) }
	}
	n := c.newNode(id, addrs)
	tlsArgs, err := c.tlsArgs(n)
	if err != nil {
		return nil, err
	}
	n.args = append(append(append([]string{"--join", strings.Join(c.Endpoints(), ",")}, tlsArgs...), c.opts.Args...), args...)
	c.Nodes = append(c.Nodes, n)
	return n, n.Start()
}

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// Followers returns the running nodes other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.Nodes {
		if n != leader && n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// Endpoints lists every node's HTTP address.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.HTTPAddr)
	}
	return out
}

// Pids lists the process ids of the running nodes.
func (c *Cluster) Pids() []int {
	var out []int
	for _, n := range c.Nodes {
		if p := n.Pid(); p != 0 {
			out = append(out, p)
		}
	}
	return out
}

// Stop stops every node cleanly (a paused one is resumed first).
func (c *Cluster) Stop() error { return c.each((*Node).Stop) }

// Kill kills every node with SIGKILL: the quickest way to end a cluster
// whose data nobody needs.
func (c *Cluster) Kill() error { return c.each((*Node).Kill) }

func (c *Cluster) each(f func(*Node) error) error {
	var errs []error
	for _, n := range c.Nodes {
		errs = append(errs, f(n))
	}
	return errors.Join(errs...)
}

// WaitLeader waits until every running node names the same leader, with
// its HTTP address registered (so requests can be forwarded to it), and
// returns it.
func (c *Cluster) WaitLeader(ctx context.Context) (*Node, error) {
	return c.waitLeader(ctx, nil)
}

// WaitNewLeader is WaitLeader for a leader other than old (which may be
// dead, paused or cut off).
func (c *Cluster) WaitNewLeader(ctx context.Context, old *Node) (*Node, error) {
	return c.waitLeader(ctx, old)
}

func (c *Cluster) waitLeader(ctx context.Context, old *Node) (*Node, error) {
	var leader *Node
	err := poll(ctx, 50*time.Millisecond, func(ctx context.Context) bool {
		leader = c.agreedLeader(ctx)
		return leader != nil && leader != old
	})
	switch {
	case err == nil:
		return leader, nil
	case old != nil:
		return nil, fmt.Errorf("no new leader (other than %s): %w", old.ID, err)
	default:
		return nil, fmt.Errorf("no agreed leader: %w", err)
	}
}

func (c *Cluster) agreedLeader(ctx context.Context) *Node {
	leader := ""
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		st, err := n.status(ctx)
		if err != nil || st.LeaderID == "" || st.LeaderHTTPAddr == "" {
			return nil
		}
		if leader != "" && st.LeaderID != leader {
			return nil
		}
		leader = st.LeaderID
	}
	return c.Node(leader)
}

// FreePorts finds n TCP ports on loopback that are free right now. They
// are released before they are returned, so another program may take one
// in between: good enough for tests and benchmarks on one machine.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// Keep each listener open until all are found, so no port is
		// handed out twice.
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
