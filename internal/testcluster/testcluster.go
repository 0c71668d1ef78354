// Package testcluster is localcluster for tests: the same kvnode
// processes, with every failure turned into t.Fatal, waits that take a
// timeout, and a cleanup that kills the nodes and prints the tail of each
// log when the test failed.
package testcluster

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/localcluster"
)

// Options tune a test cluster; Binary and Dir default to Binary(t) and a
// temporary directory.
type Options = localcluster.Options

// Status is the part of /v1/cluster/status tests use.
type Status = localcluster.Status

// Binary returns the kvnode binary the tests run: $TROUPE_KVNODE, which
// 'make test' sets to a freshly built bin/kvnode. Tests do not build it
// themselves.
func Binary(t testing.TB) string {
	t.Helper()
	if os.Getenv(localcluster.EnvKVNode) == "" {
		t.Fatalf("%s is not set: these tests run real kvnode processes. Run them with 'make test', or build one and point at it: go build -o bin/kvnode ./cmd/kvnode && %s=$PWD/bin/kvnode go test ...",
			localcluster.EnvKVNode, localcluster.EnvKVNode)
	}
	bin, err := localcluster.FindKVNode("")
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// Cluster is a set of kvnode processes that bootstrapped together.
type Cluster struct {
	*localcluster.Cluster
	// Nodes wrap the cluster's nodes, in the same order.
	Nodes []*Node
	t     testing.TB
}

// Node is one kvnode process.
type Node struct {
	*localcluster.Node
	t testing.TB
}

// Start launches n nodes that form a new cluster, and kills them when the
// test ends.
func Start(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Binary(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	lc, err := localcluster.Start(n, opts)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Cluster: lc, t: t}
	for _, ln := range lc.Nodes {
		c.Nodes = append(c.Nodes, &Node{Node: ln, t: t})
	}
	t.Cleanup(c.close)
	return c
}

func (c *Cluster) close() {
	_ = c.Cluster.Kill()
	if c.t.Failed() {
		for _, n := range c.Nodes {
			c.t.Logf("---- tail of %s log ----\n%s", n.ID, n.Tail(6000))
		}
	}
}

// wrap finds the test node of a cluster node (nil for nil).
func (c *Cluster) wrap(ln *localcluster.Node) *Node {
	for _, n := range c.Nodes {
		if n.Node == ln {
			return n
		}
	}
	return nil
}

// AddJoiner starts a node that joins the running cluster with --join.
func (c *Cluster) AddJoiner(id string, args ...string) *Node {
	c.t.Helper()
	ln, err := c.Cluster.AddJoiner(id, args...)
	if ln != nil && c.wrap(ln) == nil {
		c.Nodes = append(c.Nodes, &Node{Node: ln, t: c.t})
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return c.wrap(ln)
}

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node { return c.wrap(c.Cluster.Node(id)) }

// Followers returns the running nodes other than leader.
func (c *Cluster) Followers(leader *Node) []*Node {
	var l *localcluster.Node
	if leader != nil {
		l = leader.Node
	}
	var out []*Node
	for _, n := range c.Cluster.Followers(l) {
		out = append(out, c.wrap(n))
	}
	return out
}

// WaitLeader waits until every running node agrees on one leader that has
// registered its HTTP address, and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *Node {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := c.Cluster.WaitLeader(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.wrap(l)
}

// WaitNewLeader waits for a leader other than old.
func (c *Cluster) WaitNewLeader(old *Node, timeout time.Duration) *Node {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := c.Cluster.WaitNewLeader(ctx, old.Node)
	if err != nil {
		c.t.Fatal(err)
	}
	return c.wrap(l)
}

// FreePorts finds n free TCP ports on loopback.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := localcluster.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// check fails the test on err.
func (n *Node) check(err error) {
	n.t.Helper()
	if err != nil {
		n.t.Fatal(err)
	}
}

// Start launches the node's process again, after Kill or Stop.
func (n *Node) Start() { n.t.Helper(); n.check(n.Node.Start()) }

// Kill sends SIGKILL and reaps the process: a crash with no cleanup.
func (n *Node) Kill() { n.t.Helper(); n.check(n.Node.Kill()) }

// Stop sends SIGTERM and waits for a clean exit.
func (n *Node) Stop() { n.t.Helper(); n.check(n.Node.Stop()) }

// Restart stops the node cleanly and starts it again.
func (n *Node) Restart() { n.t.Helper(); n.check(n.Node.Restart()) }

// Pause stops the process with SIGSTOP.
func (n *Node) Pause() { n.t.Helper(); n.check(n.Node.Pause()) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() { n.t.Helper(); n.check(n.Node.Resume()) }

// Wipe deletes the node's data directory (the node must be stopped).
func (n *Node) Wipe() { n.t.Helper(); n.check(n.Node.Wipe()) }

// WaitHTTP waits until the node's HTTP API answers /healthz.
func (n *Node) WaitHTTP(timeout time.Duration) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n.check(n.Node.WaitHTTP(ctx))
}

// WaitApplied waits until the node has applied at least index.
func (n *Node) WaitApplied(index uint64, timeout time.Duration) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n.check(n.Node.WaitApplied(ctx, index))
}

// WaitExit waits for the process to exit on its own and returns its exit
// error (nil for status 0); the test fails if it has not exited in time.
func (n *Node) WaitExit(timeout time.Duration) error {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	exit, err := n.Node.WaitExit(ctx)
	n.check(err)
	return exit
}
