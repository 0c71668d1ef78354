// Package testcluster starts real kvnode processes on loopback for
// integration tests, chaos runs and benchmarks: build the binary once, start
// N nodes with their own data directories and ports, and kill, pause,
// restart or wipe them.
package testcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// TB is the part of testing.TB the harness uses, so tools outside tests
// (the chaos runner, benchmarks) can drive it too.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	TempDir() string
	Failed() bool
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/kvnode once per process and returns its path. Set
// TROUPE_TEST_RACE=1 to build it with the race detector.
func Binary(t TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("TROUPE_KVNODE_BIN"); p != "" {
			buildPath = p
			return
		}
		dir, err := os.MkdirTemp("", "troupe-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "kvnode")
		args := []string{"build", "-o", buildPath}
		if os.Getenv("TROUPE_TEST_RACE") == "1" {
			args = append(args, "-race")
		}
		args = append(args, "github.com/troupe-kv/troupe/cmd/kvnode")
		cmd := exec.Command("go", args...)
		cmd.Dir = moduleRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build kvnode: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Options tune a test cluster.
type Options struct {
	// Args are extra kvnode flags for every node.
	Args []string
	// Chaos starts the nodes with --chaos.
	Chaos bool
	// Addrs, when set, gives node i (from 0) its HTTP and Raft addresses
	// instead of free loopback ports.
	Addrs func(i int) (httpAddr, raftAddr string)
	// Wrap, when set, turns a node's command line into the one to run
	// (e.g. inside a network namespace with "ip netns exec").
	Wrap func(n *Node, argv []string) []string
	// Dir, when set, holds the nodes' data and logs instead of a
	// temporary directory.
	Dir string
}

// Node is one kvnode process.
type Node struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	c    *Cluster
	args []string // bootstrap flags plus Options.Args
	mu   sync.Mutex
	cmd  *exec.Cmd
	log  *os.File
}

// Cluster is a set of kvnode processes that bootstrapped together.
type Cluster struct {
	t     TB
	bin   string
	dir   string
	opts  Options
	Nodes []*Node
}

// Start launches n nodes that form a new cluster, and registers cleanup.
func Start(t TB, n int, opts Options) *Cluster {
	t.Helper()
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{t: t, bin: Binary(t), dir: dir, opts: opts}
	addrs := opts.Addrs
	if addrs == nil {
		ports := FreePorts(t, 2*n)
		addrs = func(i int) (string, string) {
			return fmt.Sprintf("127.0.0.1:%d", ports[2*i]), fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])
		}
	}
	var members []string
	for i := 0; i < n; i++ {
		httpAddr, raftAddr := addrs(i)
		node := &Node{
			ID:       fmt.Sprintf("n%d", i+1),
			HTTPAddr: httpAddr,
			RaftAddr: raftAddr,
			c:        c,
		}
		node.DataDir = filepath.Join(c.dir, node.ID)
		node.LogPath = filepath.Join(c.dir, node.ID+".log")
		members = append(members, node.ID+"="+node.RaftAddr)
		c.Nodes = append(c.Nodes, node)
	}
	initial := strings.Join(members, ",")
	for _, node := range c.Nodes {
		node.args = append([]string{"--initial-cluster", initial}, opts.Args...)
		node.Start()
	}
	t.Cleanup(c.Close)
	return c
}

func (n *Node) argsFor() []string {
	a := []string{
		"--node-id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
		"--log-level", "info",
	}
	if n.c.opts.Chaos {
		a = append(a, "--chaos")
	}
	return append(a, n.args...)
}

// AddJoiner starts a new node that joins the running cluster through
// --join (the HTTP addresses of the existing nodes) instead of bootstrapping.
func (c *Cluster) AddJoiner(id string) *Node {
	c.t.Helper()
	ports := FreePorts(c.t, 2)
	n := &Node{
		ID:       id,
		HTTPAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		DataDir:  filepath.Join(c.dir, id),
		LogPath:  filepath.Join(c.dir, id+".log"),
		c:        c,
	}
	n.args = append([]string{"--join", strings.Join(c.Endpoints(), ",")}, c.opts.Args...)
	c.Nodes = append(c.Nodes, n)
	n.Start()
	return n
}

// Start launches the node's process (again, after Kill or Stop).
func (n *Node) Start() {
	n.c.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		n.c.t.Fatalf("%s is already running", n.ID)
	}
	log, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		n.c.t.Fatal(err)
	}
	fmt.Fprintf(log, "---- start %s ----\n", time.Now().Format(time.RFC3339Nano))
	argv := append([]string{n.c.bin}, n.argsFor()...)
	if n.c.opts.Wrap != nil {
		argv = n.c.opts.Wrap(n, argv)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		log.Close()
		n.c.t.Fatalf("start %s: %v", n.ID, err)
	}
	n.cmd, n.log = cmd, log
}

// Running reports whether the process was started and not yet reaped.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Kill sends SIGKILL and reaps the process: a crash with no cleanup.
func (n *Node) Kill() { n.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for a clean exit.
func (n *Node) Stop() { n.signalAndWait(syscall.SIGTERM) }

func (n *Node) signalAndWait(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot act on SIGTERM
	_ = n.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
	n.log.Close()
	n.cmd, n.log = nil, nil
}

// WaitExit waits for the process to exit on its own and returns its exit
// error (nil for status 0).
func (n *Node) WaitExit(timeout time.Duration) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s is not running", n.ID)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		n.mu.Lock()
		n.log.Close()
		n.cmd, n.log = nil, nil
		n.mu.Unlock()
		return err
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", n.ID, timeout)
	}
}

// Pause stops the process with SIGSTOP: it keeps its sockets but says
// nothing, like a VM freeze or a long GC pause.
func (n *Node) Pause() { n.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (n *Node) Resume() { n.signal(syscall.SIGCONT) }

func (n *Node) signal(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		_ = n.cmd.Process.Signal(sig)
	}
}

// Pid is the process id, or 0 when not running.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Wipe deletes the node's data directory (the node must be stopped).
func (n *Node) Wipe() {
	if n.Running() {
		n.c.t.Fatalf("wipe %s while running", n.ID)
	}
	if err := os.RemoveAll(n.DataDir); err != nil {
		n.c.t.Fatal(err)
	}
}

// Log returns what the node has logged so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// URL is the node's base HTTP URL.
func (n *Node) URL() string { return "http://" + n.HTTPAddr }

// Close kills every node. On failure it prints the tail of each log.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Kill()
	}
	if c.t.Failed() {
		for _, n := range c.Nodes {
			log := n.Log()
			if len(log) > 6000 {
				log = log[len(log)-6000:]
			}
			c.t.Logf("---- tail of %s log ----\n%s", n.ID, log)
		}
	}
}

// Endpoints lists every node's HTTP address.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.HTTPAddr)
	}
	return out
}

// Status is the subset of /v1/cluster/status tests use.
type Status struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	Term           uint64 `json:"term"`
	CommitIndex    uint64 `json:"commit_index"`
	AppliedIndex   uint64 `json:"applied_index"`
	LeaderID       string `json:"leader_id"`
	LeaderHTTPAddr string `json:"leader_http_addr"`
}

var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute},
}

// WaitHTTP waits until the node's HTTP API answers /healthz.
func (n *Node) WaitHTTP(timeout time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if code, _, _, err := n.Do(http.MethodGet, "/healthz", nil); err == nil && code == 200 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.c.t.Fatalf("%s: HTTP API not up within %s", n.ID, timeout)
}

// Status fetches the node's /v1/cluster/status.
func (n *Node) Status() (Status, error) {
	var st Status
	resp, err := httpClient.Get(n.URL() + "/v1/cluster/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return st, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// WaitLeader waits until every running node agrees on one leader that has
// registered its HTTP address, and returns it.
func (c *Cluster) WaitLeader(timeout time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no agreed leader within %s", timeout)
	return nil
}

func (c *Cluster) agreedLeader() *Node {
	leader := ""
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		st, err := n.Status()
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

// WaitNewLeader waits for a leader other than old.
func (c *Cluster) WaitNewLeader(old *Node, timeout time.Duration) *Node {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if l := c.agreedLeader(); l != nil && l != old {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no new leader (other than %s) within %s", old.ID, timeout)
	return nil
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

// WaitApplied waits until node n has applied at least index.
func (n *Node) WaitApplied(index uint64, timeout time.Duration) {
	n.c.t.Helper()
	deadline := time.Now().Add(timeout)
	var last Status
	for time.Now().Before(deadline) {
		st, err := n.Status()
		if err == nil && st.AppliedIndex >= index {
			return
		}
		last = st
		time.Sleep(50 * time.Millisecond)
	}
	n.c.t.Fatalf("%s did not apply index %d within %s (at %d)", n.ID, index, timeout, last.AppliedIndex)
}

// Do sends a request to the node and returns status, body and headers.
func (n *Node) Do(method, path string, body []byte) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// FreePorts finds n free TCP ports on loopback.
func FreePorts(t TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
