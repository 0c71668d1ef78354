// Command kvctl is the command-line client for Troupe: it reads and writes
// keys and inspects the cluster through any node's HTTP API, failing over
// between the nodes it is given.
//
// Exit status: 0 on success; 1 when the answer is "no" (key not found, a
// CAS whose precondition no longer holds, no leader known, a peer not alive
// for health --check); 2 on errors (bad usage, unreachable cluster, server
// error, timeout, chaos not enabled). Scripts can thus tell "the key is
// absent" from "the cluster could not say".
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
	"github.com/troupe-kv/troupe/internal/version"
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

// envConfig names the variable that supplies --config. kvnode reads the
// same one, which is why an unknown key in the file gets a hint about it.
const envConfig = "TROUPE_CONFIG"

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
// The connection settings (addr, timeout and the TLS files) are resolved
// by settings.go from these flags, the environment and a config file.
type globals struct {
	addrs    addrList
	output   string
	timeout  time.Duration
	help     bool
	config   string
	caFile   string
	certFile string
	keyFile  string
	token    string
	version  bool
}

func (g *globals) flagSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("kvctl", pflag.ContinueOnError)
	fs.Var(&g.addrs, "addr", "node HTTP `addresses`, host:port or URL; comma-separated or repeated (default $"+envAddr+", else "+client.DefaultEndpoint+")")
	fs.StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	fs.DurationVar(&g.timeout, "timeout", 10*time.Second, "give up after this long, failover included; 0: never ($TROUPE_TIMEOUT)")
	fs.BoolVarP(&g.help, "help", "h", false, "show help")
	fs.StringVar(&g.config, "config", "", "YAML `file` with the keys addr, timeout, ca_file, cert_file, key_file (default $"+envConfig+")")
	fs.StringVar(&g.caFile, "ca-file", "", "PEM `file` of the CA that signed the nodes' certificates; addresses without a scheme then use https (default $TROUPE_CA_FILE)")
	fs.StringVar(&g.certFile, "cert-file", "", "PEM client certificate `file`, for nodes that require one (default $TROUPE_CERT_FILE)")
	fs.StringVar(&g.keyFile, "key-file", "", "PEM `file` with the key of --cert-file (default $TROUPE_KEY_FILE)")
	fs.StringVar(&g.token, "token", "", "ACL token sent as X-Consul-Token (default $"+envToken+", else $"+envConsulToken+")")
	fs.BoolVar(&g.version, "version", false, "print kvctl's version, commit and Go version, then exit")
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
	if g.version {
		return c.printVersion()
	}
	if len(rest) == 0 {
		if g.help {
			c.mainUsage(c.stdout)
			return exitOK
		}
		c.mainUsage(c.stderr)
		return exitError
	}
	if rest[0] == "help" {
		if len(rest) < 2 {
			c.mainUsage(c.stdout)
			return exitOK
		}
		cmd, extra, err := resolveCommand(rest[1:], true)
		if err != nil {
			return c.fail(err, cmd.fullName())
		}
		if len(extra) > 0 {
			return c.fail(usagef("%s has no subcommands, got %q", cmd.fullName(), extra[0]), cmd.fullName())
		}
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	cmd, rest, err := resolveCommand(rest, false)
	if err != nil {
		return c.fail(err, cmd.fullName())
	}
	name := cmd.fullName()
	if cmd.setup == nil {
		// A command group ("chaos") named without a subcommand.
		if g.help || slices.Contains(rest, "-h") || slices.Contains(rest, "--help") {
			c.commandUsage(c.stdout, cmd)
			return exitOK
		}
		return c.fail(usagef("%s needs a subcommand first, one of %s", name, strings.Join(cmd.subNames(), ", ")), name)
	}
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := cmd.setup(fs)
	fs.AddFlagSet(gfs)
	if err := fs.Parse(rest); err != nil {
		return c.fail(usagef("%v", err), name)
	}
	if g.help {
		c.commandUsage(c.stdout, cmd)
		return exitOK
	}
	if g.version {
		return c.printVersion()
	}
	pos := fs.Args()
	if len(pos) < cmd.minArgs || len(pos) > cmd.maxArgs {
		return c.fail(usagef("%s expects %s, got %d argument(s)", name, cmd.argsText(), len(pos)), name)
	}
	if g.output != "text" && g.output != "json" {
		return c.fail(usagef("--output must be text or json, not %q", g.output), name)
	}
	inv := &invocation{cli: c, ctx: c.ctx, json: g.output == "json"}
	if !cmd.local {
		set, err := c.settings(fs)
		if err != nil {
			return c.fail(err, name)
		}
		if set.tls != nil {
			inv.opts = append(inv.opts, client.WithTLS(set.tls))
		}
		inv.opts = append(inv.opts, client.WithToken(c.tokenOf(fs, g.token)))
		inv.timeout = set.timeout
		if set.timeout > 0 && !cmd.unbounded {
			var cancel context.CancelFunc
			inv.ctx, cancel = context.WithTimeout(inv.ctx, set.timeout)
			defer cancel()
		}
		g.timeout = set.timeout
		inv.addrs = set.addrs
		inv.client = inv.newClient(set.addrs)
		defer inv.client.CloseIdleConnections()
	}
	ctx := inv.ctx
	err = act(inv, pos)
	if err != nil && ctx.Err() != nil && c.ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("timed out after %v (raise --timeout?): %w", g.timeout, err)
	}
	return c.fail(tlsHint(err), name)
}

// printVersion answers --version.
func (c *cli) printVersion() int {
	fmt.Fprintln(c.stdout, "kvctl", version.Info())
	return exitOK
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

func findCommand(list []*command, name string) *command {
	for _, cmd := range list {
		if cmd.name == name || slices.Contains(cmd.aliases, name) {
			return cmd
		}
	}
	return nil
}

// resolveCommand finds the command args start with, descending into
// command groups ("chaos isolate"), and returns the arguments after its
// name. A group followed by a flag, or by nothing, is returned as is. On
// error it still returns the deepest command found (nil for an unknown
// top-level name), so the message can point at its help.
func resolveCommand(args []string, forHelp bool) (*command, []string, error) {
	cmd := findCommand(commands, args[0])
	if cmd == nil {
		return nil, nil, usagef("unknown command %q", args[0])
	}
	args = args[1:]
	for len(cmd.subs) > 0 && len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub := findCommand(cmd.subs, args[0])
		if sub == nil {
			return cmd, nil, usagef("unknown %s subcommand %q (want one of %s)", cmd.fullName(), args[0], strings.Join(cmd.subNames(), ", "))
		}
		cmd, args = sub, args[1:]
	}
	if forHelp && len(args) > 0 && strings.HasPrefix(args[0], "-") {
		return cmd, nil, usagef("help expects command names, got %q", args[0])
	}
	return cmd, args, nil
}

const exitStatusHelp = `Exit status:
  0  success (lock: the command's own status)
  1  the answer is "no": key not found (get), CAS precondition failed
     (cas, del --cas), no leader known (leader), a peer not alive
     (health --check), no such session (session info, session renew)
  2  error: bad usage, cluster unreachable, server error or timeout, chaos
     not enabled on a node; for writes the message says whether the write
     may have been applied
`

func (c *cli) mainUsage(w io.Writer) {
	var g globals
	fmt.Fprintf(w, `kvctl talks to a Troupe cluster, a fault-tolerant key-value store.

Usage:
  kvctl [global flags] <command> [flags] [arguments]

`)
	// Groups list their subcommands instead of themselves.
	var listed []*command
	width := 0
	for _, one := range runnable(commands) {
		listed = append(listed, one)
		width = max(width, len(one.fullName()))
	}
	for _, group := range []string{kv, coordGroup, clusterGroup, aclGroup, chaosGroup, tlsGroup} {
		fmt.Fprintf(w, "%s:\n", group)
		for _, cmd := range listed {
			if cmd.group == group {
				fmt.Fprintf(w, "  %-*s  %s\n", width, cmd.fullName(), cmd.summary)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Global flags (also accepted after the command):\n%s\n", g.flagSet().FlagUsages())
	fmt.Fprint(w, exitStatusHelp)
	fmt.Fprintf(w, `
Settings: flags win over the environment (TROUPE_ADDR, TROUPE_TIMEOUT,
TROUPE_CA_FILE, TROUPE_CERT_FILE, TROUPE_KEY_FILE), which wins over the YAML
file named by --config or TROUPE_CONFIG (keys addr, timeout, ca_file,
cert_file, key_file). Addresses given as https://host:port use TLS; with a
CA, certificate or key file set, so do addresses without a scheme.

Examples:
  export %s=10.0.0.1:8500,10.0.0.2:8500,10.0.0.3:8500
  kvctl put config/color blue
  kvctl get config/color
  kvctl -o json status
  kvctl --ca-file ca.pem --addr db1.example.com:8500 status

Run 'kvctl help <command>' for a command's flags and examples.
`, envAddr)
}

func (c *cli) commandUsage(w io.Writer, cmd *command) {
	var g globals
	gfs := g.flagSet()
	fs := pflag.NewFlagSet(cmd.fullName(), pflag.ContinueOnError)
	if cmd.setup != nil {
		cmd.setup(fs)
	}
	fmt.Fprintf(w, "Usage: kvctl %s %s\n\n%s\n", cmd.fullName(), cmd.argsText(), cmd.long)
	if len(cmd.aliases) > 0 {
		fmt.Fprintf(w, "\nAliases: %s\n", strings.Join(cmd.aliases, ", "))
	}
	if len(cmd.subs) > 0 {
		fmt.Fprintf(w, "\nSubcommands:\n")
		tw := newTable(w)
		for _, sub := range cmd.subs {
			fmt.Fprintf(tw, "  %s\t%s\n", sub.name, sub.summary)
		}
		tw.Flush()
		fmt.Fprintf(w, "\nRun 'kvctl help %s <subcommand>' for a subcommand's flags and examples.\n", cmd.fullName())
	}
	fmt.Fprintf(w, "\nExamples:\n%s\n", cmd.example)
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	fmt.Fprintf(w, "\nGlobal flags:\n%s", gfs.FlagUsages())
}
