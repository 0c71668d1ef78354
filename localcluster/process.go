package localcluster

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotLocal is returned by FindProcess for an address that is not one of
// this machine's: the node runs elsewhere, and only a command can reach it.
var ErrNotLocal = errors.New("not an address of this machine")

// Process is a kvnode process on this machine that this package did not
// start (a node of 'make run', or one started by hand), found by the
// address it listens on. It can be signalled like a Node, and started
// again from what /proc said about it before it died.
type Process struct {
	ID   string // the node id it was looked up as
	Pid  int
	Argv []string
	Dir  string   // working directory
	Env  []string // environment (empty if unreadable)
	// Stdout and Stderr are the files its output went to, reopened
	// (appending) on a restart; a pipe or a deleted file cannot be, so a
	// restarted node then logs to a file of its own instead.
	Stdout, Stderr string
}

// FindProcess finds the kvnode that listens on addr (host:port, its HTTP
// or Raft address) as node id ("" accepts any id). It looks for the
// listening socket in /proc/net/tcp{,6} and its owner among /proc/*/fd,
// and never matches a process by name, so other clusters on the machine
// are safe. The address must be this machine's (ErrNotLocal otherwise),
// in this network namespace.
func FindProcess(id, addr string) (*Process, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("%s: bad port: %v", addr, err)
	}
	ips, err := localIPs(host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	inodes, err := listeningInodes(port, ips)
	if err != nil {
		return nil, err
	}
	if len(inodes) == 0 {
		return nil, fmt.Errorf("no process on this machine listens on %s (in this network namespace)", addr)
	}
	var found []*Process
	var why []string
	for _, pid := range socketOwners(inodes) {
		p, err := readProcess(pid)
		if err != nil {
			why = append(why, err.Error())
			continue
		}
		if !p.isKVNode() {
			why = append(why, fmt.Sprintf("%s belongs to pid %d (%s), not to a kvnode: the node may run in a container or a VM behind a forwarded port", addr, pid, p.commandLine(80)))
			continue
		}
		if got := p.flag("--node-id"); id != "" && got != "" && got != id {
			why = append(why, fmt.Sprintf("the kvnode on %s (pid %d) is --node-id %s, not %s", addr, pid, got, id))
			continue
		}
		p.ID = id
		found = append(found, p)
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		return nil, fmt.Errorf("several kvnode processes serve %s", addr)
	case len(why) > 0:
		return nil, errors.New(strings.Join(why, "; "))
	}
	return nil, fmt.Errorf("cannot tell which process listens on %s: its sockets are not readable here (another user's process?)", addr)
}

// localIPs resolves host and checks that it is this machine: loopback, a
// wildcard, or addresses of its interfaces.
func localIPs(host string) ([]net.IP, error) {
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = append(ips, ip)
	} else {
		names, err := net.LookupHost(host)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			ips = append(ips, net.ParseIP(n))
		}
	}
	mine, _ := net.InterfaceAddrs()
	for _, ip := range ips {
		if ip == nil || ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		local := false
		for _, a := range mine {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				local = true
			}
		}
		if !local {
			return nil, ErrNotLocal
		}
	}
	return ips, nil
}

// IsLocal reports whether the host of addr (host:port) is this machine.
func IsLocal(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	_, err = localIPs(host)
	return err == nil
}

// listeningInodes returns the socket inodes listening on port at one of
// ips or at a wildcard address.
func listeningInodes(port int, ips []net.IP) (map[string]bool, error) {
	inodes := map[string]bool{}
	read := 0
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		read++
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			ip, p, err := parseProcAddr(f[1])
			if err != nil || p != port {
				continue
			}
			for _, want := range ips {
				if ip.IsUnspecified() || want.IsUnspecified() || ip.Equal(want) {
					inodes[f[9]] = true
				}
			}
		}
	}
	if read == 0 {
		return nil, errors.New("cannot read /proc/net/tcp: finding a process by its address needs Linux")
	}
	return inodes, nil
}

// parseProcAddr decodes /proc/net/tcp's "0100007F:1F90": the address as
// the kernel stores it (32-bit words in host order, little-endian here)
// and the port in hex.
func parseProcAddr(s string) (net.IP, int, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || len(raw)%4 != 0 {
		return nil, 0, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("bad port in %q", s)
	}
	return net.IP(raw), int(port), nil
}

// socketOwners lists the processes holding any of the socket inodes.
func socketOwners(inodes map[string]bool) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range dirs {
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err == nil && strings.HasPrefix(link, "socket:[") && inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func readProcess(pid int) (*Process, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil || len(cmdline) == 0 {
		return nil, fmt.Errorf("cannot read the command line of pid %d", pid)
	}
	p := &Process{Pid: pid, Argv: strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")}
	if p.Dir, err = os.Readlink(dir + "/cwd"); err != nil {
		return nil, fmt.Errorf("cannot read the working directory of pid %d: %v", pid, err)
	}
	if env, err := os.ReadFile(dir + "/environ"); err == nil && len(env) > 0 {
		p.Env = strings.Split(strings.TrimSuffix(string(env), "\x00"), "\x00")
	}
	p.Stdout, _ = os.Readlink(dir + "/fd/1")
	p.Stderr, _ = os.Readlink(dir + "/fd/2")
	return p, nil
}

func (p *Process) isKVNode() bool {
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(p.Pid) + "/exe")
	return strings.HasPrefix(filepath.Base(exe), "kvnode") || strings.HasPrefix(filepath.Base(p.Argv[0]), "kvnode")
}

// flag is the value of --name V or --name=V on the command line.
func (p *Process) flag(name string) string {
	for i, a := range p.Argv {
		if a == name && i+1 < len(p.Argv) {
			return p.Argv[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func (p *Process) commandLine(max int) string {
	s := strings.Join(p.Argv, " ")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// Alive reports whether the process exists and is not a zombie.
func (p *Process) Alive() bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself hold spaces or parentheses.
	rest := b[bytes.LastIndexByte(b, ')')+1:]
	state := strings.Fields(string(rest))
	return len(state) > 0 && state[0] != "Z" && state[0] != "X"
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(p.Pid, sig); err != nil {
		return fmt.Errorf("%s (pid %d): %v: %w", p.ID, p.Pid, sig, err)
	}
	return nil
}

// Kill sends SIGKILL and waits (at most ctx) until the process is gone.
func (p *Process) Kill(ctx context.Context) error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	err := poll(ctx, 20*time.Millisecond, func(context.Context) bool { return !p.Alive() })
	if err != nil {
		return fmt.Errorf("%s (pid %d) still alive after SIGKILL: %w", p.ID, p.Pid, err)
	}
	return nil
}

// restartLog is where a restarted process logs when its old output
// cannot be reopened.
func (p *Process) restartLog() string {
	return filepath.Join(os.TempDir(), "troupe-"+p.ID+"-restart.log")
}

// reopenable: a regular file or a character device (a terminal,
// /dev/null) can be opened again; a pipe or a deleted file cannot.
func reopenable(path string) bool {
	if !filepath.IsAbs(path) || strings.HasSuffix(path, " (deleted)") {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && (fi.Mode().IsRegular() || fi.Mode()&os.ModeCharDevice != 0)
}

// Start launches the process again (after Kill) with the command line,
// directory and environment it had, appending to the files its output
// went to, in a session of its own: it is no longer a child of whatever
// started it first (Ctrl-C there does not reach it), and outlives this
// program. Pid becomes the new process's.
func (p *Process) Start() error {
	stdout, stderr := p.Stdout, p.Stderr
	if !reopenable(stdout) {
		stdout = p.restartLog()
	}
	if !reopenable(stderr) {
		stderr = stdout
	}
	out, err := os.OpenFile(stdout, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	errf := out
	if stderr != stdout {
		if errf, err = os.OpenFile(stderr, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644); err != nil {
			return err
		}
		defer errf.Close()
	}
	cmd := exec.Command(p.Argv[0], p.Argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = p.Dir, out, errf
	if len(p.Env) > 0 {
		cmd.Env = p.Env
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("restart %s: %w", p.ID, err)
	}
	go func() { _ = cmd.Wait() }() // reap it should it die while we run
	p.Pid, p.Stdout, p.Stderr = cmd.Process.Pid, stdout, stderr
	return nil
}

// ShellCommand is a command line a person can paste to start the process
// again as Start would, for when it is left down.
func (p *Process) ShellCommand() string {
	var env []string
	for _, e := range p.Env {
		if strings.HasPrefix(e, "TROUPE_") {
			env = append(env, e)
		}
	}
	out := p.Stdout
	if !reopenable(out) {
		out = p.restartLog()
	}
	words := append(append(env, "setsid"), p.Argv...)
	return fmt.Sprintf("(cd %s && %s </dev/null >>%s 2>&1 &)", shellQuote(p.Dir), shellJoin(words), shellQuote(out))
}

func shellJoin(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(w))
	}
	return b.String()
}

// shellQuote quotes s for sh where it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_./:=,@%+-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
