package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/localcluster"
)

// LocalConfig describes a cluster of kvnode processes started by the run.
type LocalConfig struct {
	Nodes    int
	Dir      string   // data and logs
	KVNode   string   // the kvnode binary (see localcluster.FindKVNode)
	Args     []string // extra flags for every node
	UseNetNS bool     // run each node in its own network namespace
}

// LocalTarget runs kvnode processes on this machine.
type LocalTarget struct {
	c     *localcluster.Cluster
	netns *netnsSetup
}

// StartLocal launches the cluster with chaos enabled and waits (a minute
// at most) for its leader.
func StartLocal(cfg LocalConfig, logf func(string, ...any)) (*LocalTarget, error) {
	bin, err := localcluster.FindKVNode(cfg.KVNode)
	if err != nil {
		return nil, err
	}
	lt := &LocalTarget{}
	// A node whose kv.db the corrupt nemesis damaged rebuilds it from its
	// snapshot and log rather than refusing to start.
	args := append([]string{"--repair-state-file"}, cfg.Args...)
	opts := localcluster.Options{Binary: bin, Chaos: true, Args: args, Dir: cfg.Dir}
	if cfg.UseNetNS {
		ns, err := setupNetNS(cfg.Nodes)
		if err != nil {
			return nil, err
		}
		lt.netns = ns
		opts.Addrs = func(i int) (string, string) {
			return ns.ip(i) + ":8500", ns.ip(i) + ":8300"
		}
		opts.Wrap = func(n *localcluster.Node, argv []string) []string {
			return append([]string{"ip", "netns", "exec", ns.name(n.ID)}, argv...)
		}
	}
	if lt.c, err = localcluster.Start(cfg.Nodes, opts); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var leader *localcluster.Node
		if leader, err = lt.c.WaitLeader(ctx); err == nil {
			if logf != nil {
				logf("%d nodes up (%s), leader %s", len(lt.c.Nodes), bin, leader.ID)
			}
			return lt, nil
		}
		_ = lt.c.Kill()
	}
	if lt.netns != nil {
		lt.netns.teardown()
	}
	return nil, err
}

// Cluster exposes the processes (leader lookups, logs).
func (l *LocalTarget) Cluster() *localcluster.Cluster { return l.c }

// Nodes lists the members.
func (l *LocalTarget) Nodes() []Node {
	var out []Node
	for i, n := range l.c.Nodes {
		node := Node{ID: n.ID, HTTPAddr: n.HTTPAddr, RaftAddr: n.RaftAddr}
		if l.netns != nil {
			node.IP = l.netns.ip(i)
		}
		out = append(out, node)
	}
	return out
}

func (l *LocalTarget) node(id string) (*localcluster.Node, error) {
	if n := l.c.Node(id); n != nil {
		return n, nil
	}
	return nil, fmt.Errorf("no node %q", id)
}

// act runs one process action on the node with the given id.
func (l *LocalTarget) act(id string, f func(*localcluster.Node) error) error {
	n, err := l.node(id)
	if err != nil {
		return err
	}
	return f(n)
}

// Kill sends SIGKILL.
func (l *LocalTarget) Kill(id string) error { return l.act(id, (*localcluster.Node).Kill) }

// Restart starts a killed node again (a running one is left alone).
func (l *LocalTarget) Restart(id string) error {
	return l.act(id, func(n *localcluster.Node) error {
		if n.Running() {
			return nil
		}
		return n.Start()
	})
}

// Pause sends SIGSTOP.
func (l *LocalTarget) Pause(id string) error { return l.act(id, (*localcluster.Node).Pause) }

// Resume sends SIGCONT.
func (l *LocalTarget) Resume(id string) error { return l.act(id, (*localcluster.Node).Resume) }

// Running reports whether the process is up.
func (l *LocalTarget) Running(id string) bool {
	n, err := l.node(id)
	return err == nil && n.Running()
}

// DataDir is the node's data directory.
func (l *LocalTarget) DataDir(id string) string {
	if n := l.c.Node(id); n != nil {
		return n.DataDir
	}
	return ""
}

// Exited reports whether the node's last run ended on its own, and how.
func (l *LocalTarget) Exited(id string) (bool, error) {
	if n := l.c.Node(id); n != nil {
		return n.Exited()
	}
	return false, nil
}

// LastRun is what the node logged since it last started.
func (l *LocalTarget) LastRun(id string) string {
	if n := l.c.Node(id); n != nil {
		return n.LastRun()
	}
	return ""
}

// Wipe empties the node's data directory; it must be stopped.
func (l *LocalTarget) Wipe(id string) error { return l.act(id, (*localcluster.Node).Wipe) }

// StartJoining starts the node without its initial cluster, joining
// through the given HTTP addresses: a blank node added as a new member.
// Its later starts keep these flags; with state on disk it joins nothing.
func (l *LocalTarget) StartJoining(id string, through []string) error {
	return l.act(id, func(n *localcluster.Node) error {
		n.SetFlags("--initial-cluster", "", "--join", strings.Join(through, ","))
		return n.Start()
	})
}

// NetNS reports whether nodes run in namespaces.
func (l *LocalTarget) NetNS() bool { return l.netns != nil }

// Partition drops traffic between the two groups at the OS level
// (iptables in each node's namespace).
func (l *LocalTarget) Partition(a, b []Node) error {
	if l.netns == nil {
		return fmt.Errorf("OS-level partitions need --netns")
	}
	return l.netns.partition(a, b)
}

// HealOS removes every OS-level partition.
func (l *LocalTarget) HealOS() error {
	if l.netns == nil {
		return nil
	}
	return l.netns.heal()
}

// Close stops every node and removes the namespaces.
func (l *LocalTarget) Close() error {
	err := l.c.Stop()
	if l.netns != nil {
		return errors.Join(err, l.netns.teardown())
	}
	return err
}

// netnsSetup is a private network for the nodes, made of network
// namespaces: one per node, each with a veth into a bridge that lives in a
// "hub" namespace (10.77.0.0/24), and one veth from the hub to this
// process's namespace (10.77.1.0/30) with a route, so the workload reaches
// every node. Keeping the bridge out of the root namespace keeps the
// host's firewall (e.g. Docker's FORWARD policy) out of the way and leaves
// the host untouched but for one veth and one route. iptables inside a
// node's namespace then cuts it off from chosen peers, below Troupe.
//
// Each run picks its own name prefix and subnet (10.77.N.0/24, with the
// hub link on 10.78.N.0/30), so runs side by side do not collide.
type netnsSetup struct {
	prefix string
	octet  int
	nodes  int
}

func (ns *netnsSetup) name(id string) string { return ns.prefix + id }
func (ns *netnsSetup) hub() string           { return ns.prefix + "hub" }
func (ns *netnsSetup) subnet() string        { return fmt.Sprintf("10.77.%d.", ns.octet) }
func (ns *netnsSetup) link() string          { return fmt.Sprintf("10.78.%d.", ns.octet) }
func (ns *netnsSetup) ip(i int) string       { return fmt.Sprintf("%s%d", ns.subnet(), i+1) }
func (ns *netnsSetup) veth(i int) string     { return fmt.Sprintf("%sv%d", ns.prefix, i+1) }

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func setupNetNS(nodes int) (*netnsSetup, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("network namespaces need iproute2's ip command")
	}
	ns, err := pickNetNS(nodes)
	if err != nil {
		return nil, err
	}
	hub := func(args ...string) []string { return append([]string{"ip", "netns", "exec", ns.hub()}, args...) }
	steps := [][]string{
		{"ip", "netns", "add", ns.hub()},
		hub("ip", "link", "set", "lo", "up"),
		hub("ip", "link", "add", "br0", "type", "bridge"),
		hub("ip", "addr", "add", ns.subnet()+"254/24", "dev", "br0"),
		hub("ip", "link", "set", "br0", "up"),
		hub("sysctl", "-qw", "net.ipv4.ip_forward=1"),
		{"ip", "link", "add", ns.prefix + "r", "type", "veth", "peer", "name", ns.prefix + "rh"},
		{"ip", "link", "set", ns.prefix + "rh", "netns", ns.hub()},
		{"ip", "addr", "add", ns.link() + "1/30", "dev", ns.prefix + "r"},
		{"ip", "link", "set", ns.prefix + "r", "up"},
		hub("ip", "addr", "add", ns.link()+"2/30", "dev", ns.prefix+"rh"),
		hub("ip", "link", "set", ns.prefix+"rh", "up"),
		{"ip", "route", "add", ns.subnet() + "0/24", "via", ns.link() + "2"},
	}
	for i := 0; i < nodes; i++ {
		name, veth := ns.name(fmt.Sprintf("n%d", i+1)), ns.veth(i)
		in := func(args ...string) []string { return append([]string{"ip", "netns", "exec", name}, args...) }
		steps = append(steps,
			[]string{"ip", "netns", "add", name},
			[]string{"ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"},
			[]string{"ip", "link", "set", veth + "p", "netns", name},
			[]string{"ip", "link", "set", veth, "netns", ns.hub()},
			hub("ip", "link", "set", veth, "master", "br0"),
			hub("ip", "link", "set", veth, "up"),
			in("ip", "addr", "add", ns.ip(i)+"/24", "dev", veth+"p"),
			in("ip", "link", "set", veth+"p", "up"),
			in("ip", "link", "set", "lo", "up"),
			in("ip", "route", "add", "default", "via", ns.subnet()+"254"),
		)
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			ns.teardown()
			return nil, err
		}
	}
	return ns, nil
}

// partition drops, inside each node's namespace, packets to and from the
// nodes of the other group.
func (ns *netnsSetup) partition(a, b []Node) error {
	cut := func(from Node, others []Node) error {
		for _, o := range others {
			for _, chain := range [][]string{{"INPUT", "-s"}, {"OUTPUT", "-d"}} {
				if err := run("ip", "netns", "exec", ns.name(from.ID), "iptables", "-A", chain[0], chain[1], o.IP, "-j", "DROP"); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, n := range a {
		if err := cut(n, b); err != nil {
			return err
		}
	}
	for _, n := range b {
		if err := cut(n, a); err != nil {
			return err
		}
	}
	return nil
}

func (ns *netnsSetup) heal() error {
	var first error
	for i := 0; i < ns.nodes; i++ {
		if err := run("ip", "netns", "exec", ns.name(fmt.Sprintf("n%d", i+1)), "iptables", "-F"); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// teardown removes everything setupNetNS made; it is safe to call twice.
// Deleting a namespace deletes the veths inside it.
func (ns *netnsSetup) teardown() error {
	_ = run("ip", "route", "del", ns.subnet()+"0/24")
	_ = run("ip", "link", "del", ns.prefix+"r")
	for i := 0; i < ns.nodes; i++ {
		_ = run("ip", "netns", "del", ns.name(fmt.Sprintf("n%d", i+1)))
	}
	_ = run("ip", "netns", "del", ns.hub())
	return nil
}

// pickNetNS chooses a name prefix and a subnet no other run is using.
func pickNetNS(nodes int) (*netnsSetup, error) {
	out, err := exec.Command("ip", "-o", "route").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip route: %v", err)
	}
	routes := string(out)
	for try := 0; try < 50; try++ {
		octet := 10 + rand.IntN(240)
		if strings.Contains(routes, fmt.Sprintf("10.77.%d.0/24", octet)) || strings.Contains(routes, fmt.Sprintf("10.78.%d.0/30", octet)) {
			continue
		}
		prefix := fmt.Sprintf("trp%03x", rand.IntN(0x1000))
		if exec.Command("ip", "netns", "exec", prefix+"hub", "true").Run() == nil {
			continue // taken
		}
		return &netnsSetup{prefix: prefix, octet: octet, nodes: nodes}, nil
	}
	return nil, fmt.Errorf("no free subnet for the namespaces")
}
