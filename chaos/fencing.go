package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/localcluster"
)

// The fencing story (docs/fault-model.md, "Locks and fencing tokens"): a
// lock alone cannot keep two holders apart, because a holder can be
// paused (a GC pause, a frozen VM, SIGSTOP) for longer than its session
// lives and then go on as if it still held the lock. What keeps the
// protected resource safe is a fencing token: the lock's LockIndex, which
// rises with every acquisition, sent with every write; the resource
// refuses a token below the highest it has accepted.
//
// RunFencing plays it against a running cluster: holder A (a process of
// its own) takes the lock and writes with its token; A is frozen with
// SIGSTOP past 2×TTL; its session expires, B takes the lock with a higher
// token and writes; A is resumed and writes again, still believing it
// holds the lock, and the resource refuses it.

// FencedWrite is one write the fenced resource was asked to make.
type FencedWrite struct {
	Client   string
	Token    uint64
	Value    string
	Accepted bool
	At       time.Time
}

// FencedResource is a resource protected by fencing tokens: it accepts a
// write only if its token is at least the highest it has accepted. It is
// an http.Handler (POST /write?client=&token=&value=: 200 accepted, 409
// refused), so a holder in another process can write to it.
type FencedResource struct {
	mu     sync.Mutex
	max    uint64
	writes []FencedWrite
}

// Write makes (or refuses) one write.
func (r *FencedResource) Write(clientName string, token uint64, value string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok := token >= r.max
	if ok {
		r.max = token
	}
	r.writes = append(r.writes, FencedWrite{Client: clientName, Token: token, Value: value, Accepted: ok, At: time.Now()})
	return ok
}

// Writes is every write asked for, in order.
func (r *FencedResource) Writes() []FencedWrite {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]FencedWrite(nil), r.writes...)
}

// ServeHTTP takes writes from other processes.
func (r *FencedResource) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	token, err := strconv.ParseUint(q.Get("token"), 10, 64)
	if req.Method != http.MethodPost || req.URL.Path != "/write" || err != nil {
		http.Error(w, "POST /write?client=&token=&value=", http.StatusBadRequest)
		return
	}
	if !r.Write(q.Get("client"), token, q.Get("value")) {
		http.Error(w, "refused: a higher fencing token has written since", http.StatusConflict)
		return
	}
	fmt.Fprintln(w, "accepted")
}

// CheckFencing checks the resource's promise on a history of writes: no
// write was accepted with a token below one accepted before it.
func CheckFencing(writes []FencedWrite) error {
	var max uint64
	for i, w := range writes {
		if !w.Accepted {
			continue
		}
		if w.Token < max {
			return fmt.Errorf("write %d by %s was accepted with token %d after token %d", i, w.Client, w.Token, max)
		}
		max = w.Token
	}
	return nil
}

// FencingConfig sets up RunFencing.
type FencingConfig struct {
	// Endpoints are the cluster's HTTP addresses.
	Endpoints []string
	// Key is the lock (default chaos/fencing/.lock).
	Key string
	// TTL is the holders' session TTL; it must be at least the cluster's
	// session_ttl_min (default 10s, the server's minimum).
	TTL time.Duration
	// LockDelay is the holders' sessions' lock-delay (default 1s).
	LockDelay time.Duration
	// Holder makes the command that runs holder A (FencingHolder) with
	// env added to its environment; default: this executable with the
	// argument fencing-holder (troupe-chaos).
	Holder func(env []string) *exec.Cmd
	// Logf hears every step of the story.
	Logf func(string, ...any)
}

// FencingResult is how the story went.
type FencingResult struct {
	TokenA, TokenB uint64
	// Frozen is how long A was paused.
	Frozen time.Duration
	Writes []FencedWrite
	// HolderOutput is what A printed.
	HolderOutput []string
}

// Environment of the holder process.
const (
	envFenceEndpoints = "TROUPE_FENCE_ENDPOINTS"
	envFenceKey       = "TROUPE_FENCE_KEY"
	envFenceURL       = "TROUPE_FENCE_URL"
	envFenceTTL       = "TROUPE_FENCE_TTL"
	envFenceLockDelay = "TROUPE_FENCE_LOCK_DELAY"
)

// IsFencingHolder reports whether this process was started as holder A.
func IsFencingHolder(getenv func(string) string) bool { return getenv(envFenceURL) != "" }

// RunFencing plays the story and returns an error if it did not unfold
// (a step timed out) or if the resource accepted a stale write.
func RunFencing(ctx context.Context, cfg FencingConfig) (*FencingResult, error) {
	if cfg.Key == "" {
		cfg.Key = "chaos/fencing/.lock"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 10 * time.Second
	}
	if cfg.LockDelay <= 0 {
		cfg.LockDelay = time.Second
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if cfg.Holder == nil {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Holder = func(env []string) *exec.Cmd {
			cmd := exec.Command(self, "fencing-holder")
			cmd.Env = append(os.Environ(), env...)
			return cmd
		}
	}
	res := &FencingResult{}
	resource := &FencedResource{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: resource, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	holder := cfg.Holder([]string{
		envFenceEndpoints + "=" + strings.Join(cfg.Endpoints, ","),
		envFenceKey + "=" + cfg.Key,
		envFenceURL + "=http://" + ln.Addr().String(),
		envFenceTTL + "=" + cfg.TTL.String(),
		envFenceLockDelay + "=" + cfg.LockDelay.String(),
	})
	holder.Stderr = os.Stderr
	out, err := holder.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("starting holder A: %w", err)
	}
	pid := holder.Process.Pid
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	var outMu sync.Mutex
	var output []string
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			outMu.Lock()
			output = append(output, sc.Text())
			outMu.Unlock()
			lines <- sc.Text()
		}
		close(lines)
		exited <- holder.Wait()
	}()
	defer func() {
		// Whatever happened, A must not stay frozen or running.
		_ = syscall.Kill(pid, syscall.SIGCONT)
		_ = holder.Process.Kill()
	}()
	record := func() {
		outMu.Lock()
		res.HolderOutput = slices.Clone(output)
		outMu.Unlock()
		res.Writes = resource.Writes()
	}
	fail := func(format string, args ...any) (*FencingResult, error) {
		record()
		return res, fmt.Errorf(format, args...)
	}
	wait := func(prefix string, within time.Duration) (string, bool) {
		timer := time.NewTimer(within)
		defer timer.Stop()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					return "", false
				}
				if strings.HasPrefix(l, prefix) {
					return strings.TrimSpace(strings.TrimPrefix(l, prefix)), true
				}
			case <-timer.C:
				return "", false
			case <-ctx.Done():
				return "", false
			}
		}
	}

	tok, ok := wait("acquired ", 60*time.Second)
	if !ok {
		return fail("holder A never took the lock %s", cfg.Key)
	}
	res.TokenA, _ = strconv.ParseUint(tok, 10, 64)
	logf("holder A (pid %d) holds %s with fencing token %d", pid, cfg.Key, res.TokenA)
	if _, ok := wait("accepted ", 30*time.Second); !ok {
		return fail("holder A never wrote to the resource")
	}
	logf("holder A writes to the resource with token %d: accepted", res.TokenA)

	if err := localcluster.PauseProcess(pid); err != nil {
		return fail("freezing holder A: %v", err)
	}
	frozen := time.Now()
	logf("holder A frozen (SIGSTOP): no renewals, no writes; its session ends 2×TTL = %v after its last renewal", 2*cfg.TTL)

	c := client.New(cfg.Endpoints)
	defer c.CloseIdleConnections()
	lctx, cancel := context.WithTimeout(ctx, 4*cfg.TTL+cfg.LockDelay+90*time.Second)
	defer cancel()
	b, err := c.Lock(lctx, cfg.Key, client.LockOptions{Value: []byte("B"), SessionTTL: cfg.TTL, LockDelay: cfg.LockDelay, SessionName: "fencing holder B"})
	if err != nil {
		return fail("holder B could not take the lock: %v", err)
	}
	defer func() {
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = b.Unlock(uctx)
		ucancel()
	}()
	res.TokenB = b.LockIndex
	logf("A's session expired; holder B took the lock %v after A froze, with fencing token %d", time.Since(frozen).Round(time.Millisecond), res.TokenB)
	if res.TokenB <= res.TokenA {
		return fail("holder B's token %d is not above A's %d", res.TokenB, res.TokenA)
	}
	if !resource.Write("B", res.TokenB, "written by B") {
		return fail("the resource refused B's write with the newest token %d", res.TokenB)
	}
	logf("holder B writes with token %d: accepted", res.TokenB)

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fail("resuming holder A: %v", err)
	}
	res.Frozen = time.Since(frozen)
	logf("holder A resumed after %v, still believing it holds the lock, and writes with token %d", res.Frozen.Round(time.Millisecond), res.TokenA)
	refusedTok, ok := wait("refused ", 30*time.Second)
	if !ok {
		return fail("holder A never reported a refused write after it resumed")
	}
	logf("the resource refused A's write with token %s: it has seen %d", refusedTok, res.TokenB)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		return fail("holder A did not exit after its write was refused")
	}
	record()
	if err := CheckFencing(res.Writes); err != nil {
		return res, fmt.Errorf("fencing failed: %w", err)
	}
	staleRefused := false
	for _, w := range res.Writes {
		staleRefused = staleRefused || w.Client == "A" && w.Token == res.TokenA && !w.Accepted
	}
	if !staleRefused {
		return res, errors.New("no write of A with its old token reached the resource after B's")
	}
	return res, nil
}

// FencingHolder is holder A's whole life (troupe-chaos fencing-holder,
// or a test binary run as it): take the lock, then write to the resource
// with its token every 100ms, as a holder that does not know it was
// frozen would, until the resource refuses it. It prints "acquired N",
// "accepted N" (the first time) and "refused N" on stdout.
func FencingHolder(ctx context.Context, getenv func(string) string) error {
	ttl, err1 := time.ParseDuration(getenv(envFenceTTL))
	delay, err2 := time.ParseDuration(getenv(envFenceLockDelay))
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("fencing holder: %w", err)
	}
	c := client.New(strings.Split(getenv(envFenceEndpoints), ","))
	h, err := c.Lock(ctx, getenv(envFenceKey), client.LockOptions{Value: []byte("A"), SessionTTL: ttl, LockDelay: delay, SessionName: "fencing holder A"})
	if err != nil {
		return err
	}
	fmt.Printf("acquired %d\n", h.LockIndex)
	hc := &http.Client{Timeout: 5 * time.Second}
	url := fmt.Sprintf("%s/write?client=A&token=%d&value=written+by+A", getenv(envFenceURL), h.LockIndex)
	reported := false
	for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := hc.Post(url, "text/plain", nil)
		if err != nil {
			continue
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			if !reported {
				fmt.Printf("accepted %d\n", h.LockIndex)
				reported = true
			}
		case http.StatusConflict:
			fmt.Printf("refused %d\n", h.LockIndex)
			return nil
		}
	}
	return errors.New("fencing holder: never refused")
}
