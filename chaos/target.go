package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-kv/troupe/localcluster"
)

// Node is one member of the cluster under test.
type Node struct {
	ID       string
	HTTPAddr string
	// RaftAddr is the member's Raft address, when known.
	RaftAddr string
	// IP is the node's own address when it runs in a network namespace
	// (OS-level partitions need it); empty otherwise.
	IP string
}

// Fill fills in a command template for this member, the one convention
// of troupe-chaos's --kill-cmd and friends and of the chaos scripts:
// {id} is the member's id, {host} the host of its HTTP address, {http}
// its HTTP host:port and {raft} its Raft host:port ("" when unknown).
func (n Node) Fill(tmpl string) string {
	host, _, err := net.SplitHostPort(n.HTTPAddr)
	if err != nil {
		host = n.HTTPAddr
	}
	return strings.NewReplacer("{id}", n.ID, "{host}", host, "{http}", n.HTTPAddr, "{raft}", n.RaftAddr).Replace(tmpl)
}

// Target is the cluster under test and what the nemeses may do to its
// processes. A local target starts the nodes itself.
type Target interface {
	Nodes() []Node
	Kill(id string) error
	Restart(id string) error
	Pause(id string) error
	Resume(id string) error
	// Running reports whether the node's process is up (it may be paused).
	Running(id string) bool
	// NetNS reports whether nodes run in network namespaces, so that
	// OS-level partitions are possible.
	NetNS() bool
	Close() error
}

// ExternalConfig describes a cluster started elsewhere (make run, docker
// compose, VMs): its members, and shell command templates (see Node.Fill)
// that kill, start, pause and resume a member. Without a command, a member
// on this machine is acted on directly: its kvnode process, found by the
// address it listens on (localcluster.FindProcess), gets the signal, and a
// killed one is started again from its old command line. For a member
// elsewhere the nemeses that need the command are refused.
type ExternalConfig struct {
	Nodes                                  []Node
	KillCmd, StartCmd, PauseCmd, ResumeCmd string
	// Logf, when set, hears what is done to whom.
	Logf func(string, ...any)
}

// ExternalTarget is a cluster this run did not start.
type ExternalTarget struct {
	cfg   ExternalConfig
	mu    sync.Mutex
	down  map[string]bool
	procs map[string]*localcluster.Process // members killed or paused by signal
}

// NewExternal wraps a running cluster.
func NewExternal(cfg ExternalConfig) *ExternalTarget {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	return &ExternalTarget{cfg: cfg, down: map[string]bool{}, procs: map[string]*localcluster.Process{}}
}

// Nodes lists the members.
func (e *ExternalTarget) Nodes() []Node { return append([]Node(nil), e.cfg.Nodes...) }

// local reports whether every member runs on this machine, where signals
// can stand in for commands.
func (e *ExternalTarget) local() bool {
	for _, n := range e.cfg.Nodes {
		if !localcluster.IsLocal(n.HTTPAddr) {
			return false
		}
	}
	return true
}

// CanKill reports whether members can be killed and started again: with
// both commands, or by signal when none is given and all are local.
func (e *ExternalTarget) CanKill() bool {
	return e.cfg.KillCmd != "" && e.cfg.StartCmd != "" || e.cfg.KillCmd == "" && e.cfg.StartCmd == "" && e.local()
}

// CanPause is CanKill for pausing and resuming.
func (e *ExternalTarget) CanPause() bool {
	return e.cfg.PauseCmd != "" && e.cfg.ResumeCmd != "" || e.cfg.PauseCmd == "" && e.cfg.ResumeCmd == "" && e.local()
}

// act does one thing to member id: runs the command template when there
// is one, else bySignal when the member is on this machine.
func (e *ExternalTarget) act(what, tmpl, id string, bySignal func(Node) error) error {
	var n Node
	for _, m := range e.cfg.Nodes {
		if m.ID == id {
			n = m
		}
	}
	switch {
	case n.ID == "":
		return fmt.Errorf("no member %q", id)
	case tmpl != "":
		cmd := n.Fill(tmpl)
		e.cfg.Logf("%s %s: %s", what, id, cmd)
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %v: %s", what, id, err, strings.TrimSpace(string(out)))
		}
		if len(out) > 0 {
			e.cfg.Logf("    %s", strings.TrimSpace(string(out)))
		}
		return nil
	case !localcluster.IsLocal(n.HTTPAddr):
		return fmt.Errorf("cannot %s %s: it runs on %s, not on this machine; give --%s-cmd (e.g. 'ssh {host} ...')", what, id, n.HTTPAddr, what)
	}
	return bySignal(n)
}

// find looks up a member's process and remembers it, to start or resume.
func (e *ExternalTarget) find(n Node) (*localcluster.Process, error) {
	p, err := localcluster.FindProcess(n.ID, n.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (give a command template instead)", n.ID, err)
	}
	e.mu.Lock()
	e.procs[n.ID] = p
	e.mu.Unlock()
	return p, nil
}

func (e *ExternalTarget) saved(id string) *localcluster.Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.procs[id]
}

func (e *ExternalTarget) setDown(id string, down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.down[id] = down
}

// Kill runs the kill command, or sends SIGKILL.
func (e *ExternalTarget) Kill(id string) error {
	err := e.act("kill", e.cfg.KillCmd, id, func(n Node) error {
		p, err := e.find(n)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Kill(ctx); err != nil {
			return err
		}
		e.cfg.Logf("sent SIGKILL to %s (pid %d); to start it again by hand: %s", id, p.Pid, p.ShellCommand())
		return nil
	})
	if err == nil {
		e.setDown(id, true)
	}
	return err
}

// Restart runs the start command, or starts a killed local member again,
// detached from whatever started it first. A member this run did not
// kill is left alone.
func (e *ExternalTarget) Restart(id string) error {
	e.mu.Lock()
	down := e.down[id]
	e.mu.Unlock()
	if !down {
		return nil
	}
	err := e.act("start", e.cfg.StartCmd, id, func(n Node) error {
		p := e.saved(id)
		if p == nil {
			return fmt.Errorf("cannot start %s: its process was not killed by this run", id)
		}
		if err := p.Start(); err != nil {
			return err
		}
		e.cfg.Logf("started %s again (pid %d, output to %s); it no longer belongs to what started it first: stop it with kill %d", id, p.Pid, p.Stdout, p.Pid)
		return nil
	})
	if err == nil {
		e.setDown(id, false)
	}
	return err
}

// Pause runs the pause command, or sends SIGSTOP.
func (e *ExternalTarget) Pause(id string) error {
	return e.act("pause", e.cfg.PauseCmd, id, func(n Node) error {
		p, err := e.find(n)
		if err != nil {
			return err
		}
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			return err
		}
		e.cfg.Logf("sent SIGSTOP to %s (pid %d); should this program die, resume it with: kill -CONT %d", id, p.Pid, p.Pid)
		return nil
	})
}

// Resume runs the resume command, or without one sends SIGCONT to what
// Pause stopped (nothing when nothing was).
func (e *ExternalTarget) Resume(id string) error {
	if e.cfg.ResumeCmd != "" {
		return e.act("resume", e.cfg.ResumeCmd, id, nil)
	}
	p := e.saved(id)
	if p == nil || !e.Running(id) {
		return nil
	}
	e.cfg.Logf("sent SIGCONT to %s (pid %d)", id, p.Pid)
	return p.Signal(syscall.SIGCONT)
}

// Running reports whether this run believes the member is up.
func (e *ExternalTarget) Running(id string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return !e.down[id]
}

// NetNS is false: an external cluster's network is not ours to cut.
func (e *ExternalTarget) NetNS() bool { return false }

// Close does nothing: the cluster is not ours to stop.
func (e *ExternalTarget) Close() error { return nil }

// ExternalNodes turns troupe-chaos's --endpoints into members. Entries
// given as id=host:port name their member; plain host:port ones are
// asked for the member list (/v1/cluster/members), which then names every
// member. Either way the list fills in each member's Raft address when a
// node answers.
func ExternalNodes(ctx context.Context, spec string) ([]Node, error) {
	var named []Node
	var addrs []string
	plain := false
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		id, addr, ok := strings.Cut(part, "=")
		if !ok {
			id, addr, plain = "", part, true
		}
		named = append(named, Node{ID: id, HTTPAddr: addr})
		addrs = append(addrs, addr)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no endpoints given")
	}
	members, err := fetchMembers(ctx, addrs)
	// A member registers its HTTP address shortly after it joins the
	// leader's term: give a fresh cluster a few seconds.
	for deadline := time.Now().Add(5 * time.Second); plain && err == nil && !complete(members) && time.Now().Before(deadline); {
		sleep(ctx, 200*time.Millisecond)
		members, err = fetchMembers(ctx, addrs)
	}
	if !plain {
		for i := range named {
			for _, m := range members {
				if m.ID == named[i].ID {
					named[i].RaftAddr = m.RaftAddr
				}
			}
		}
		return named, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot learn the members from %s: %w (or name them: id=host:port,...)", strings.Join(addrs, ","), err)
	}
	if !complete(members) {
		return nil, fmt.Errorf("a member has not registered its HTTP address (%+v); name the members: id=host:port,...", members)
	}
	return members, nil
}

// complete reports whether every member's HTTP address is known.
func complete(members []Node) bool {
	for _, m := range members {
		if m.HTTPAddr == "" {
			return false
		}
	}
	return len(members) > 0
}

// fetchMembers reads /v1/cluster/members from the first node that answers.
func fetchMembers(ctx context.Context, addrs []string) ([]Node, error) {
	var errs []string
	for _, addr := range addrs {
		var ms []struct {
			ID       string `json:"id"`
			RaftAddr string `json:"raft_addr"`
			HTTPAddr string `json:"http_addr"`
		}
		err := (&Env{HTTP: http.DefaultClient}).getJSON(ctx, addr, "/v1/cluster/members", &ms)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var out []Node
		for _, m := range ms {
			out = append(out, Node{ID: m.ID, HTTPAddr: m.HTTPAddr, RaftAddr: m.RaftAddr})
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s", strings.Join(errs, "; "))
}
