package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/client"
)

// Disks is what the corrupt nemesis needs of a target beyond Target: the
// nodes' files, how a node's last run ended, and a way to start a node
// blank as a joiner. LocalTarget has it; a cluster given by --endpoints
// does not.
type Disks interface {
	// DataDir is the node's data directory.
	DataDir(id string) string
	// Exited reports whether the node's last run ended on its own, and
	// its exit error (nil for status 0).
	Exited(id string) (bool, error)
	// LastRun is what the node logged since it last started.
	LastRun(id string) string
	// Wipe empties the node's data directory (it must be stopped).
	Wipe(id string) error
	// StartJoining starts the node with no cluster of its own, joining
	// through the given HTTP addresses.
	StartJoining(id string, through []string) error
}

// The files the corrupt nemesis damages.
const (
	corruptStateFile = "kv.db"    // the state file: rebuilt with repair_state_file
	corruptLog       = "wal"      // a Raft log segment: the node refuses to start
	corruptSnapshot  = "snapshot" // the newest snapshot's state.bin: an older one stands in, or the node refuses
)

// corruptKinds is the order the nemesis draws from.
var corruptKinds = []string{corruptStateFile, corruptLog, corruptSnapshot}

// corruptFlips is how many bytes one fault flips. A flip in a free page of
// kv.db, or in a part of a segment no entry uses, changes nothing a node
// reads; several make it likely that one lands in data.
const corruptFlips = 8

// corruptNemesis is a disk that damages a stopped node's files: it kills
// a node (random, with the run's seed, so sometimes the leader), flips
// bytes of one of its files (kv.db, a Raft log segment, or the newest
// snapshot's state.bin) at offsets drawn from the seed, and restarts it
// when the fault ends. What must follow (docs/operations.md):
//
//   - kv.db: the node, started with repair_state_file (the local chaos
//     cluster runs with it), moves the damaged file aside and rebuilds it
//     from its snapshot and log, or finds nothing it reads damaged;
//   - a log segment, or a snapshot nothing else on the node can stand in
//     for: the node refuses to start, exit status 1, with one line naming
//     the file and what to do; the nemesis then does it: removes the member
//     through another node, empties its data directory and starts it again
//     with --join;
//   - a snapshot an older one and the log can stand in for: moved aside,
//     and the node goes on.
//
// Either way the node must serve only what the cluster committed: the
// checkers judge that. Each step goes into the fault's record (Steps).
type corruptNemesis struct {
	// kind, when set, is the file to damage (tests); otherwise drawn.
	kind   string
	victim string
	steps  []string
}

func (c *corruptNemesis) Name() string { return "corrupt" }

// Steps is what the nemesis did and saw, for the run's history.
func (c *corruptNemesis) Steps() []string { return c.steps }

func (c *corruptNemesis) step(e *Env, format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	c.steps = append(c.steps, s)
	e.Logf("corrupt: %s", s)
}

func (c *corruptNemesis) Start(ctx context.Context, e *Env) (string, error) {
	d, ok := e.Target.(Disks)
	if !ok {
		return "", errors.New("corrupt needs a local cluster, whose files it can reach")
	}
	n, err := e.pick(ctx, false)
	if err != nil {
		return "", err
	}
	c.victim = n.ID
	if err := e.Target.Kill(n.ID); err != nil {
		return "", err
	}
	dir := d.DataDir(n.ID)
	files := map[string]string{}
	var kinds []string
	for _, k := range corruptKinds {
		if f := corruptTarget(dir, k, e.Rand); f != "" {
			files[k] = f
			kinds = append(kinds, k)
		}
	}
	kind := c.kind
	if kind == "" && len(kinds) > 0 {
		kind = kinds[e.Rand.IntN(len(kinds))]
	}
	file := files[kind]
	if file == "" {
		return "kill -9 " + n.ID, fmt.Errorf("%s has no %s file to damage", n.ID, kind)
	}
	lo := int64(0)
	if kind == corruptLog {
		lo = 32 // raft-wal's segment header: damage there is not an entry's
	}
	offsets, err := flipBytes(file, e.Rand, corruptFlips, lo)
	rel, _ := filepath.Rel(dir, file)
	detail := fmt.Sprintf("kill -9 %s, %d bytes flipped in %s", n.ID, len(offsets), rel)
	if err != nil {
		return detail, err
	}
	c.step(e, "%s at offsets %v", detail, offsets)
	return detail, nil
}

// Stop starts the node again and sees what it makes of the damage: it
// runs (repaired, or nothing it reads was damaged), or it refuses to
// start and the nemesis replaces it as the refusal says.
func (c *corruptNemesis) Stop(ctx context.Context, e *Env) error {
	if c.victim == "" {
		return nil
	}
	d := e.Target.(Disks)
	if err := e.Target.Restart(c.victim); err != nil {
		return err
	}
	node := nodeByID(e, c.victim)
	ended, exit, err := c.await(ctx, e, d, node, 30*time.Second)
	if err != nil {
		return err
	}
	if !ended {
		run := d.LastRun(c.victim)
		switch {
		case strings.Contains(run, "the state file was damaged: moved aside"):
			c.step(e, "%s started: its kv.db was damaged, moved aside and rebuilt from its snapshot and log", c.victim)
		case strings.Contains(run, "a snapshot is corrupt: moved aside"):
			c.step(e, "%s started: its damaged snapshot was moved aside, an older one and the log stand in", c.victim)
		default:
			c.step(e, "%s started: nothing it reads was damaged (the flipped bytes were in unused space)", c.victim)
		}
		return nil
	}
	line := refusal(d.LastRun(c.victim))
	status := exitStatus(exit)
	if status != 1 {
		c.step(e, "%s exited with status %d, not the documented 1: %s", c.victim, status, line)
	} else {
		c.step(e, "%s refused to start (status 1): %s", c.victim, line)
	}
	return c.replace(ctx, e, d, node)
}

// replace does what a refusal says: remove the member through another
// node, empty its data directory, start it with --join, wait until it
// serves.
func (c *corruptNemesis) replace(ctx context.Context, e *Env, d Disks, node Node) error {
	var others []string
	for _, n := range e.Target.Nodes() {
		if n.ID != c.victim && e.Target.Running(n.ID) {
			others = append(others, n.HTTPAddr)
		}
	}
	cl := client.New(others, client.WithHTTPClient(e.HTTP))
	deadline := time.Now().Add(30 * time.Second)
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := cl.Remove(rctx, c.victim)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("removing %s: %w", c.victim, err)
		}
		sleep(ctx, 500*time.Millisecond)
	}
	c.step(e, "removed %s from the cluster through %s", c.victim, strings.Join(others, ","))
	if err := d.Wipe(c.victim); err != nil {
		return err
	}
	c.step(e, "emptied %s", d.DataDir(c.victim))
	if err := d.StartJoining(c.victim, others); err != nil {
		return err
	}
	ended, exit, err := c.await(ctx, e, d, node, time.Minute)
	switch {
	case err != nil:
		return err
	case ended:
		return fmt.Errorf("%s exited after rejoining (status %d): %s", c.victim, exitStatus(exit), refusal(d.LastRun(c.victim)))
	}
	c.step(e, "%s joined again with --join and serves", c.victim)
	return nil
}

// await waits until the node is ready (false) or its process has ended
// (true, with its exit error).
func (c *corruptNemesis) await(ctx context.Context, e *Env, d Disks, n Node, within time.Duration) (bool, error, error) {
	deadline := time.Now().Add(within)
	for {
		if ended, exit := d.Exited(n.ID); ended {
			return true, exit, nil
		}
		if ready(ctx, e, n) {
			return false, nil, nil
		}
		if time.Now().After(deadline) {
			return false, nil, fmt.Errorf("%s neither became ready nor exited within %s", n.ID, within)
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func ready(ctx context.Context, e *Env, n Node) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/readyz", nil)
	resp, err := e.HTTP.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func nodeByID(e *Env, id string) Node {
	for _, n := range e.Target.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return Node{ID: id}
}

// refusal is the one line a node that refuses to start ends with
// ("kvnode: ..."), or the end of its log when there is none.
func refusal(run string) string {
	if i := strings.LastIndex(run, "\nkvnode: "); i >= 0 {
		line, _, _ := strings.Cut(run[i+1:], "\n")
		return line
	}
	run = strings.TrimSpace(run)
	if len(run) > 300 {
		run = "..." + run[len(run)-300:]
	}
	return run
}

func exitStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

// corruptTarget finds the file of the given kind in a data directory: "",
// when there is none (no snapshot taken yet, say).
func corruptTarget(dir, kind string, r *rand.Rand) string {
	switch kind {
	case corruptStateFile:
		f := filepath.Join(dir, "kv.db")
		if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
			return f
		}
	case corruptLog:
		segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*.wal"))
		sort.Strings(segs)
		if len(segs) > 0 {
			return segs[r.IntN(len(segs))]
		}
	case corruptSnapshot:
		return newestSnapshot(filepath.Join(dir, "snapshots"))
	}
	return ""
}

// newestSnapshot is the state.bin of the newest finished snapshot under
// dir: raft names them <term>-<index>-<milliseconds>.
func newestSnapshot(dir string) string {
	entries, _ := os.ReadDir(dir)
	var best [3]uint64
	found := ""
	for _, en := range entries {
		parts := strings.Split(en.Name(), "-")
		if !en.IsDir() || len(parts) != 3 {
			continue // a .tmp one is unfinished
		}
		var key [3]uint64
		ok := true
		for i, p := range parts {
			v, err := strconv.ParseUint(p, 10, 64)
			ok = ok && err == nil
			key[i] = v
		}
		f := filepath.Join(dir, en.Name(), "state.bin")
		if _, err := os.Stat(f); !ok || err != nil {
			continue
		}
		if found == "" || key[0] > best[0] || key[0] == best[0] && (key[1] > best[1] || key[1] == best[1] && key[2] > best[2]) {
			best, found = key, f
		}
	}
	return found
}

// flipBytes flips one bit in each of n bytes of path, at offsets drawn
// from r in [lo, end), where end is one past the file's last non-zero
// byte (a preallocated segment's zeroed tail holds nothing yet), and
// returns the offsets, in order.
func flipBytes(path string, r *rand.Rand, n int, lo int64) ([]int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	end := int64(len(data))
	for end > lo && data[end-1] == 0 {
		end--
	}
	if end <= lo {
		return nil, fmt.Errorf("%s holds no data past byte %d", path, lo)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var offsets []int64
	for range n {
		off := lo + r.Int64N(end-lo)
		b := []byte{data[off] ^ byte(1)<<r.IntN(8)}
		data[off] = b[0]
		if _, err := f.WriteAt(b, off); err != nil {
			return offsets, err
		}
		offsets = append(offsets, off)
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	return offsets, f.Sync()
}
