package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/chaos"
)

// external holds the flags that describe a running cluster, shared by a
// full run against --endpoints and by inject.
type external struct {
	endpoints                              string
	killCmd, startCmd, pauseCmd, resumeCmd string
}

func externalFlags(fs *pflag.FlagSet, defaultEndpoints string) *external {
	e := &external{}
	fs.StringVar(&e.endpoints, "endpoints", defaultEndpoints, "a running cluster to act on, by HTTP address: host:port,... (the members are learned from /v1/cluster/members) or id=host:port,...")
	tmpl := "shell command to %s; {host}, {http} and {raft} are filled in too (default for a member on this machine: %s)"
	fs.StringVar(&e.killCmd, "kill-cmd", "", fmt.Sprintf(tmpl, "kill member {id}", "SIGKILL to the kvnode listening on its address"))
	fs.StringVar(&e.startCmd, "start-cmd", "", fmt.Sprintf(tmpl, "start member {id} again after a kill", "its old command line, read from /proc before the kill"))
	fs.StringVar(&e.pauseCmd, "pause-cmd", "", fmt.Sprintf(tmpl, "pause member {id}", "SIGSTOP"))
	fs.StringVar(&e.resumeCmd, "resume-cmd", "", fmt.Sprintf(tmpl, "resume member {id}", "SIGCONT"))
	return e
}

func (e *external) target(ctx context.Context, logf func(string, ...any)) (*chaos.ExternalTarget, error) {
	if (e.pauseCmd == "") != (e.resumeCmd == "") {
		return nil, errors.New("--pause-cmd and --resume-cmd go together")
	}
	nodes, err := chaos.ExternalNodes(ctx, e.endpoints)
	if err != nil {
		return nil, fmt.Errorf("--endpoints: %w", err)
	}
	return chaos.NewExternal(chaos.ExternalConfig{Nodes: nodes, KillCmd: e.killCmd, StartCmd: e.startCmd, PauseCmd: e.pauseCmd, ResumeCmd: e.resumeCmd, Logf: logf}), nil
}

const injectHelp = `Usage: troupe-chaos inject NEMESIS [flags]

Apply one fault to a running cluster and watch it: find the leader, inject
NEMESIS (kill-leader, pause-leader, or any other nemesis of a chaos run),
report the new leader and how long the election took, hold the fault for
--hold, heal it (start the killed node again, resume the paused one, lift
the rules) and report the leader after. Ctrl-C during the hold heals at
once. chaos/kill-leader.sh and chaos/pause-leader.sh call this.

The cluster defaults to the one 'make run' starts. Members on this machine
are killed, paused and resumed with signals to the kvnode process that
listens on their HTTP address (never a process found by name); a killed
one is started again from its old command line, directory, environment
and log file, detached. For other members give command templates.

Exit status: 0 done; 1 no leader to act on (nothing done); 2 an error.

Flags:
`

// runInject is 'troupe-chaos inject'.
func runInject(args []string) int {
	fs := pflag.NewFlagSet("troupe-chaos inject", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(os.Stderr, injectHelp)
		fs.PrintDefaults()
		fmt.Fprintf(os.Stderr, "\nNemeses: %s\n", strings.Join(chaos.NemesisNames(), ", "))
	}
	ext := externalFlags(fs, "127.0.0.1:8500,127.0.0.1:8501,127.0.0.1:8502")
	hold := fs.Duration("hold", 10*time.Second, "how long the fault lasts from the moment it is injected (0: until Ctrl-C)")
	keep := fs.Bool("keep", false, "leave the fault in place: a killed node stays down (how to start it is printed), nothing is healed")
	leaderWait := fs.Duration("leader-wait", 15*time.Second, "how long to watch for a new leader (never past --hold)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "troupe-chaos inject:", err)
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "troupe-chaos inject: name one nemesis, e.g. troupe-chaos inject kill-leader (see --help)")
		return 2
	}
	nemesis := fs.Arg(0)
	if strings.HasPrefix(nemesis, "kill") && ext.killCmd != "" && ext.startCmd == "" && !*keep {
		fmt.Fprintln(os.Stderr, "troupe-chaos inject: --kill-cmd needs --start-cmd to start the node again, or --keep to leave it down")
		return 2
	}
	logf := func(format string, a ...any) {
		fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, a...))
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	target, err := ext.target(ctx, logf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "troupe-chaos inject:", err)
		return 2
	}
	_, err = chaos.Inject(ctx, chaos.InjectConfig{Nemesis: nemesis, Hold: *hold, Keep: *keep, LeaderWait: *leaderWait, Logf: logf}, target)
	switch {
	case errors.Is(err, chaos.ErrNoLeader):
		fmt.Fprintln(os.Stderr, "troupe-chaos inject:", err)
		return 1
	case err != nil:
		fmt.Fprintln(os.Stderr, "troupe-chaos inject:", err)
		return 2
	}
	return 0
}
