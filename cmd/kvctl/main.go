// Command kvctl is the command-line client for Troupe: it reads and writes
// keys and inspects the cluster through any node's HTTP API, failing over
// between the nodes it is given.
//
// Exit status: 0 on success; 1 when the answer is "no" (key not found, a
// CAS whose precondition no longer holds, no leader known); 2 on errors
// (bad usage, unreachable cluster, server error, timeout). Scripts can thus
// tell "the key is absent" from "the cluster could not say".
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/client"
)

// Exit statuses; see the package comment.
const (
	exitOK    = 0
	exitNo    = 1
	exitError = 2
)

// envAddr names the environment variable that supplies --addr, so a shell
// session can point every kvctl at one cluster once.
const envAddr = "TROUPE_ADDR"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&cli{ctx: ctx, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}).run(os.Args[1:])
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it with buffers.
func run(args []string, stdout, stderr io.Writer) int {
	return (&cli{ctx: context.Background(), stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}).run(args)
}

// cli is one invocation's environment, injectable for tests.
type cli struct {
	ctx            context.Context
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// globals are the flags every command accepts, before or after its name.
type globals struct {
	addrs   addrList
	output  string
	timeout time.Duration
	help    bool
}

func (g *globals) flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("kvctl", pflag.ContinueOnError)
	fs.Var(&g.addrs, "addr", "node HTTP `addresses`, host:port or URL; comma-separated or repeated (default $"+envAddr+", else "+client.DefaultEndpoint+")")
	fs.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "give up after this long, failover included (0: never)")
	fs.BoolVarP(&g.help, "help", "h", false, "show help")
	return fs
}

// addrList accumulates --addr values, splitting commas, so both
// "--addr a,b" and "--addr a --addr b" work.
type addrList []string

// String, Type and Set make addrList a pflag.Value.
func (a *addrList) String() string { return strings.Join(*a, ",") }
func (a *addrList) Type() string   { return "addrs" }
func (a *addrList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*a = append(*a, s)
		}
	}
	return nil
}

// exitErr carries a status other than 2 and a message meant for stderr.
type exitErr struct {
	code int
	msg  string
}

func (e *exitErr) Error() string { return e.msg }

// no is the "negative answer" exit: not an error, but not a success either.
func no(format string, a ...any) error {
	return &exitErr{code: exitNo, msg: fmt.Sprintf(format, a...)}
}

// usageError marks a command-line mistake; the message points at help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

func (c *cli) run(args []string) int {
	var g globals
	gfs := g.flagSet()
	gfs.SetInterspersed(false)
	gfs.SetOutput(io.Discard)
	if err := gfs.Parse(args); err != nil {
		return c.fail(usagef("%v", err), "")
	}
	rest := gfs.Args()
	if len(rest) == 0 {
		if g.help {
			c.mainUsage(c.stdout)
			return exitOK
		}
		c.mainUsage(c.stderr)
		return exitError
	}
	name := rest[0]
	if name == "help" {
		if len(rest) < 2 {
			c.mainUsage(c.stdout)
			return exitOK
		}
		cmd := findCommand(rest[1])
		if cmd == nil {
			return c.fail(usagef("unknown command %q", rest[1]), "")
		}
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	cmd := findCommand(name)
	if cmd == nil {
		return c.fail(usagef("unknown command %q", name), "")
	}
	fs := pflag.NewFlagSet(cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := cmd.setup(fs)
	fs.AddFlagSet(gfs)
	if err := fs.Parse(rest[1:]); err != nil {
		return c.fail(usagef("%v", err), name)
	}
	if g.help {
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	pos := fs.Args()
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		return c.fail(usagef("%s expects %s, got %d argument(s)", name, cmd.argsText(), len(pos)), name)
	}
	if g.output != "text" && g.output != "json" {
		return c.fail(usagef("--output must be text or json, not %q", g.output), name)
	}
	addrs := []string(g.addrs)
	if !fs.Changed("addr") {
		var env addrList
		_ = env.Set(c.getenv(envAddr))
		addrs = env
	}
	if len(addrs) == 0 {
		addrs = []string{client.DefaultEndpoint}
	}
	for _, a := range addrs {
		if _, err := client.ParseEndpoint(a); err != nil {
			return c.fail(usagef("--addr: %v", err), name)
		}
	}
	ctx := c.ctx
	if g.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.timeout)
		defer cancel()
	}
	inv := &invocation{cli: c, ctx: ctx, addrs: addrs, client: client.New(addrs), json: g.output == "json"}
	defer inv.client.CloseIdleConnections()
	err := act(inv, pos)
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v (raise --timeout?): %w", g.timeout, err)
	}
	return c.fail(err, name)
}

// fail prints err as one line and maps it to an exit status.
func (c *cli) fail(err error, cmd string) int {
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if errors.As(err, &ee) {
		fmt.Fprintf(c.stderr, "kvctl: %s\n", ee.msg)
		return ee.code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		hint := "kvctl help"
		if cmd != "" {
			hint += " " + cmd
		}
		fmt.Fprintf(c.stderr, "kvctl: %s (see '%s')\n", ue.msg, hint)
		return exitError
	}
	if cmd != "" {
		fmt.Fprintf(c.stderr, "kvctl: %s: %v\n", cmd, err)
	} else {
		fmt.Fprintf(c.stderr, "kvctl: %v\n", err)
	}
	return exitError
}

func findCommand(name string) *command {
	for _, cmd := range commands {
		if cmd.name == name || slices.Contains(cmd.aliases, name) {
			return cmd
		}
	}
	return nil
}

const exitStatusHelp = `Exit status:
  0  success
  1  the answer is "no": key not found (get), CAS precondition failed
     (cas, del --cas), no leader known (leader)
  2  error: bad usage, cluster unreachable, server error or timeout; for
     writes the message says whether the write may have been applied
`

func (c *cli) mainUsage(w io.Writer) {
	var g globals
	fmt.Fprintf(w, `kvctl talks to a Troupe cluster, a fault-tolerant key-value store.

Usage:
  kvctl [global flags] <command> [flags] [arguments]

`)
	for _, group := range []string{"Key-value commands", "Cluster commands"} {
		fmt.Fprintf(w, "%s:\n", group)
		for _, cmd := range commands {
			if cmd.group == group {
				fmt.Fprintf(w, "  %-9s %s\n", cmd.name, cmd.summary)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Global flags (also accepted after the command):\n%s\n", g.flagSet().FlagUsages())
	fmt.Fprint(w, exitStatusHelp)
	fmt.Fprintf(w, `
Examples:
  export %s=10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500
  kvctl put config/color blue
  kvctl get config/color
  kvctl -o json status

Run 'kvctl help <command>' for a command's flags and examples.
`, envAddr)
}

func (c *cli) commandUsage(w io.Writer, cmd *command) {
	var g globals
	gfs := g.flagSet()
	fs := pflag.NewFlagSet(cmd.name, pflag.ContinueOnError)
	cmd.setup(fs)
	fmt.Fprintf(w, "Usage: kvctl %s %s\n\n%s\n", cmd.name, cmd.argsText(), cmd.long)
	if len(cmd.aliases) > 0 {
		fmt.Fprintf(w, "\nAliases: %s\n", strings.Join(cmd.aliases, ", "))
	}
	fmt.Fprintf(w, "\nExamples:\n%s\n", cmd.example)
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	fmt.Fprintf(w, "\nGlobal flags:\n%s", gfs.FlagUsages())
}
