package localcluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startMarker begins the line Start writes to the log before each run.
const startMarker = "---- start "

// Node is one kvnode process of a Cluster. Its fields are fixed when the
// cluster is started; the process behind them may come and go.
type Node struct {
	ID       string
	HTTPAddr string
	RaftAddr string
	DataDir  string
	LogPath  string

	c    *Cluster
	args []string // how this node meets the others (bootstrap or join), then Options.Args
	// extra are flags for this node alone, last, so they win (SetFlags).
	extra []string

	mu   sync.Mutex
	proc *process // nil until the first Start
}

// process is one run of a node, reaped by a single goroutine so that
// stopping it and waiting for it to exit on its own never race over Wait.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once reaped
	err  error         // Wait's result, set before done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (n *Node) argv() []string {
	a := []string{
		n.c.opts.Binary,
		"--node-id", n.ID,
		"--data-dir", n.DataDir,
		"--http-addr", n.HTTPAddr,
		"--raft-addr", n.RaftAddr,
		"--log-level", "info",
	}
	if n.c.opts.Chaos {
		a = append(a, "--chaos")
	}
	a = append(a, n.args...)
	a = append(a, n.extra...) // the caller holds n.mu
	if n.c.opts.Wrap != nil {
		a = n.c.opts.Wrap(n, a)
	}
	return a
}

// SetFlags gives the node's next starts these flags on top of the
// cluster's, e.g. to restart one node with another setting.
func (n *Node) SetFlags(flags ...string) {
	n.mu.Lock()
	n.extra = flags
	n.mu.Unlock()
}

// Start launches the node's process: the first time, or again after it
// was killed, stopped or exited. Output is appended to LogPath.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc != nil && !n.proc.exited() {
		return fmt.Errorf("%s is already running (pid %d)", n.ID, n.proc.cmd.Process.Pid)
	}
	log, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "%s%s ----\n", startMarker, time.Now().Format(time.RFC3339Nano))
	argv := n.argv()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	n.proc = p
	return nil
}

// running is the current process, or nil when there is none or it exited.
func (n *Node) running() *process {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil || n.proc.exited() {
		return nil
	}
	return n.proc
}

// Running reports whether the process is up (it may be paused).
func (n *Node) Running() bool { return n.running() != nil }

// Pid is the process id, or 0 when the node is not running.
func (n *Node) Pid() int {
	if p := n.running(); p != nil {
		return p.cmd.Process.Pid
	}
	return 0
}

// Kill sends SIGKILL and waits until the process is gone: a crash, with
// no chance to flush or say goodbye. A node that is not running is left
// alone.
func (n *Node) Kill() error { return n.signalAndWait(syscall.SIGKILL) }

// Stop sends SIGTERM and waits for a clean exit; a node that has not
// exited after 30 s is killed.
func (n *Node) Stop() error { return n.signalAndWait(syscall.SIGTERM) }

// Restart stops the node cleanly and starts it again on the same data.
func (n *Node) Restart() error {
	if err := n.Stop(); err != nil {
		return err
	}
	return n.Start()
}

func (n *Node) signalAndWait(sig syscall.Signal) error {
	p := n.running()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused process cannot act on SIGTERM
	if err := p.cmd.Process.Signal(sig); err != nil && !p.exited() {
		return fmt.Errorf("%s: %v: %w", n.ID, sig, err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// Pause stops the process with SIGSTOP: it keeps its sockets but says
// nothing, like a VM freeze or a long GC pause.
//
// It returns once the kernel reports the process stopped: kill(2) returns
// before every thread has stopped, and a request answered in between
// would make the pause look like it never happened.
func (n *Node) Pause() error {
	p := n.running()
	if p == nil {
		return n.signal(syscall.SIGSTOP)
	}
	if err := PauseProcess(p.cmd.Process.Pid); err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	return nil
}

// PauseProcess stops process pid with SIGSTOP and returns once the kernel
// reports it stopped (see Node.Pause); any process, not only a node (the
// chaos suite pauses lock holders too).
func PauseProcess(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if stopped(pid) {
			return nil
		}
	}
	return fmt.Errorf("process %d still running 2s after SIGSTOP", pid)
}

// stopped reports whether /proc says pid is stopped by a signal (state T).
func stopped(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'T'
}

// Resume continues a paused process with SIGCONT. A node that is not
// running has nothing to resume, which is not an error.
func (n *Node) Resume() error {
	if !n.Running() {
		return nil
	}
	return n.signal(syscall.SIGCONT)
}

// Signal sends sig to the running process (SIGHUP reloads certificates).
func (n *Node) Signal(sig syscall.Signal) error { return n.signal(sig) }

func (n *Node) signal(sig syscall.Signal) error {
	p := n.running()
	if p == nil {
		return fmt.Errorf("%s is not running", n.ID)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", n.ID, sig, err)
	}
	return nil
}

// WaitExit waits for the process to exit on its own and returns how it
// ended: nil for status 0, an *exec.ExitError otherwise. It fails when
// the node is not running or ctx ends first.
func (n *Node) WaitExit(ctx context.Context) (exit error, err error) {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%s was never started", n.ID)
	}
	select {
	case <-p.done:
		return p.err, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%s did not exit: %w", n.ID, ctx.Err())
	}
}

// Exited reports whether the node's last run has ended (it was started,
// and is not running now) and how: nil for status 0, an *exec.ExitError
// otherwise.
func (n *Node) Exited() (bool, error) {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil || !p.exited() {
		return false, nil
	}
	return true, p.err
}

// LastRun is what the node logged since its last start.
func (n *Node) LastRun() string {
	log := n.Log()
	if i := strings.LastIndex(log, startMarker); i >= 0 {
		return log[i:]
	}
	return log
}

// Wipe deletes the node's data directory; the node must not be running.
func (n *Node) Wipe() error {
	if n.Running() {
		return fmt.Errorf("wipe %s while it runs", n.ID)
	}
	return os.RemoveAll(n.DataDir)
}

// Log returns what the node has logged so far, over all its runs.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// Tail is the last max bytes of the log, for failure reports.
func (n *Node) Tail(max int) string {
	log := n.Log()
	if len(log) > max {
		log = log[len(log)-max:]
	}
	return log
}

// URL is the node's base URL: https when its cluster runs TLS.
func (n *Node) URL() string {
	if n.c != nil && n.c.tls != nil {
		return "https://" + n.HTTPAddr
	}
	return "http://" + n.HTTPAddr
}

// client is the HTTP client that speaks to this node.
func (n *Node) client() *http.Client {
	if n.c != nil && n.c.tls != nil {
		return n.c.tls.client
	}
	return httpClient
}

// Status is the part of /v1/cluster/status that tools and tests use.
type Status struct {
	ID             string `json:"id"`
	State          string `json:"state"`
	Term           uint64 `json:"term"`
	CommitIndex    uint64 `json:"commit_index"`
	AppliedIndex   uint64 `json:"applied_index"`
	LeaderID       string `json:"leader_id"`
	LeaderHTTPAddr string `json:"leader_http_addr"`
}

var httpClient = newHTTPClient(nil)

// Status fetches the node's /v1/cluster/status.
func (n *Node) Status() (Status, error) { return n.status(context.Background()) }

func (n *Node) status(ctx context.Context) (Status, error) {
	var st Status
	code, body, _, err := n.do(ctx, http.MethodGet, "/v1/cluster/status", nil)
	if err != nil {
		return st, err
	}
	if code != http.StatusOK {
		return st, fmt.Errorf("%s: status %d: %s", n.ID, code, bytes.TrimSpace(body))
	}
	return st, json.Unmarshal(body, &st)
}

// Do sends a request to the node (20 s at most) and returns the status
// code, body and headers.
func (n *Node) Do(method, path string, body []byte) (int, []byte, http.Header, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return n.do(ctx, method, path, body)
}

func (n *Node) do(ctx context.Context, method, path string, body []byte) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, method, n.URL()+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	resp, err := n.client().Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// WaitHTTP waits until the node answers /healthz with 200.
func (n *Node) WaitHTTP(ctx context.Context) error {
	err := poll(ctx, 20*time.Millisecond, func(ctx context.Context) bool {
		code, _, _, err := n.do(ctx, http.MethodGet, "/healthz", nil)
		return err == nil && code == http.StatusOK
	})
	if err != nil {
		return fmt.Errorf("%s: HTTP API not up: %w", n.ID, err)
	}
	return nil
}

// WaitApplied waits until the node has applied at least index.
func (n *Node) WaitApplied(ctx context.Context, index uint64) error {
	var last Status
	err := poll(ctx, 50*time.Millisecond, func(ctx context.Context) bool {
		st, err := n.status(ctx)
		if err == nil {
			last = st
		}
		return err == nil && st.AppliedIndex >= index
	})
	if err != nil {
		return fmt.Errorf("%s did not apply index %d (at %d): %w", n.ID, index, last.AppliedIndex, err)
	}
	return nil
}

// poll calls ok every interval until it reports true or ctx ends. The
// error names how long it waited, which is what a reader of a failed
// test or tool run wants to know.
func poll(ctx context.Context, every time.Duration, ok func(context.Context) bool) error {
	start := time.Now()
	for {
		if ok(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gave up after %s: %w", time.Since(start).Round(time.Millisecond), ctx.Err())
		case <-time.After(every):
		}
	}
}
