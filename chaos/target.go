package chaos

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
)

// Node is one member of the cluster under test.
type Node struct {
	ID       string
	HTTPAddr string
	// IP is the node's own address when it runs in a network namespace
	// (OS-level partitions need it); empty otherwise.
	IP string
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

// ExternalConfig describes a cluster started elsewhere (docker compose,
// VMs): its members by id and HTTP address, and optional shell commands
// that kill, start, pause and resume a member ({id} is replaced by the
// member's id). Without a command, the nemeses that need it are refused.
type ExternalConfig struct {
	Nodes                                  []Node
	KillCmd, StartCmd, PauseCmd, ResumeCmd string
}

// ExternalTarget is a cluster this run did not start.
type ExternalTarget struct {
	cfg  ExternalConfig
	mu   sync.Mutex
	down map[string]bool
}

// NewExternal wraps a running cluster.
func NewExternal(cfg ExternalConfig) *ExternalTarget {
	return &ExternalTarget{cfg: cfg, down: map[string]bool{}}
}

// Nodes lists the members.
func (e *ExternalTarget) Nodes() []Node { return append([]Node(nil), e.cfg.Nodes...) }

func (e *ExternalTarget) runCmd(tmpl, what, id string) error {
	if tmpl == "" {
		return fmt.Errorf("cannot %s %s: no --%s-cmd given for an external cluster", what, id, what)
	}
	out, err := exec.Command("sh", "-c", strings.ReplaceAll(tmpl, "{id}", id)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", what, id, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Kill runs the kill command.
func (e *ExternalTarget) Kill(id string) error {
	if err := e.runCmd(e.cfg.KillCmd, "kill", id); err != nil {
		return err
	}
	e.mu.Lock()
	e.down[id] = true
	e.mu.Unlock()
	return nil
}

// Restart runs the start command.
func (e *ExternalTarget) Restart(id string) error {
	e.mu.Lock()
	down := e.down[id]
	e.mu.Unlock()
	if !down {
		return nil
	}
	if err := e.runCmd(e.cfg.StartCmd, "start", id); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.down, id)
	e.mu.Unlock()
	return nil
}

// Pause runs the pause command.
func (e *ExternalTarget) Pause(id string) error { return e.runCmd(e.cfg.PauseCmd, "pause", id) }

// Resume runs the resume command (a no-op without one: nothing was paused).
func (e *ExternalTarget) Resume(id string) error {
	if e.cfg.ResumeCmd == "" {
		return nil
	}
	return e.runCmd(e.cfg.ResumeCmd, "resume", id)
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
