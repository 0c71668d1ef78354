package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Session is a session as the server reports it, in Consul's JSON:
// LockDelay is a count of nanoseconds (a time.Duration), TTL the text the
// creator sent.
type Session struct {
	ID         string
	Name       string
	Node       string
	LockDelay  time.Duration
	Behavior   string
	TTL        string
	NodeChecks []string
	// ServiceChecks is always empty: Troupe has no services.
	ServiceChecks []ServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

// ServiceCheck is Consul's; Troupe's sessions never have one.
type ServiceCheck struct {
	ID        string
	Namespace string `json:",omitempty"`
}

// SessionOptions shape a new session; zero values take the server's
// defaults (this node, a 15s lock-delay, behaviour release, bound to the
// node's health, no TTL).
type SessionOptions struct {
	Name string
	// Node is the member whose death ends the session (with the
	// serfHealth check); default the node that creates it.
	Node string
	// TTL: the session ends 2×TTL after its last renewal; 0 means none.
	TTL time.Duration
	// LockDelay: after the session ends, the keys it held stay
	// unacquirable this long. Negative asks for none (0 means the
	// server's default of 15s, as in Consul).
	LockDelay time.Duration
	// Behavior is "release" (default) or "delete": what the end of the
	// session does to the keys it holds.
	Behavior string
	// NoChecks makes a session that its node's death does not end.
	NoChecks bool
}

func sessionPath(op, id string) string { return "/v1/session/" + op + "/" + url.PathEscape(id) }

// CreateSession creates a session and returns its id. A failure after
// which the session may exist is an unknown outcome: a session with a TTL
// ends by itself if nobody renews it.
func (c *Client) CreateSession(ctx context.Context, opts SessionOptions) (string, error) {
	body := map[string]any{}
	if opts.Name != "" {
		body["Name"] = opts.Name
	}
	if opts.Node != "" {
		body["Node"] = opts.Node
	}
	if opts.TTL > 0 {
		body["TTL"] = opts.TTL.String()
	}
	switch {
	case opts.LockDelay < 0:
		body["LockDelay"] = "0s"
	case opts.LockDelay > 0:
		body["LockDelay"] = opts.LockDelay.String()
	}
	if opts.Behavior != "" {
		body["Behavior"] = opts.Behavior
	}
	if opts.NoChecks {
		body["NodeChecks"] = []string{}
	}
	b, _ := json.Marshal(body)
	resp, err := c.do(ctx, &request{method: http.MethodPut, path: "/v1/session/create", body: b, contentType: "application/json", accept: []int{200}})
	if err != nil {
		return "", err
	}
	var out struct{ ID string }
	if err := decode(resp, &out); err != nil {
		return "", err
	}
	return out.ID, nil
}

// DestroySession ends a session now: the keys it holds are released (or
// deleted) and their lock-delay starts. Destroying a session that does not
// exist succeeds.
func (c *Client) DestroySession(ctx context.Context, id string) error {
	_, err := c.do(ctx, &request{method: http.MethodPut, path: sessionPath("destroy", id), body: []byte{}, accept: []int{200}})
	return err
}

// RenewSession resets the session's TTL; a nil session means it no longer
// exists (it expired, or was destroyed). A renewal changes nothing but the
// leader's timer, so it fails over like a read.
func (c *Client) RenewSession(ctx context.Context, id string) (*Session, error) {
	resp, err := c.do(ctx, &request{method: http.MethodPut, path: sessionPath("renew", id), body: []byte{}, read: true, accept: []int{200, 404}})
	if err != nil {
		return nil, err
	}
	if resp.status == http.StatusNotFound {
		return nil, nil
	}
	var out []*Session
	if err := decode(resp, &out); err != nil || len(out) == 0 {
		return nil, err
	}
	return out[0], nil
}

// SessionInfo reads one session; nil when it does not exist. With
// opts.WaitIndex it blocks on the sessions' index.
func (c *Client) SessionInfo(ctx context.Context, id string, opts ReadOptions) (*Session, Meta, error) {
	list, meta, err := c.sessions(ctx, sessionPath("info", id), opts)
	if err != nil || len(list) == 0 {
		return nil, meta, err
	}
	return &list[0], meta, nil
}

// Sessions lists every session, or those of node when it is not empty.
func (c *Client) Sessions(ctx context.Context, node string, opts ReadOptions) ([]Session, Meta, error) {
	if node != "" {
		return c.sessions(ctx, sessionPath("node", node), opts)
	}
	return c.sessions(ctx, "/v1/session/list", opts)
}

func (c *Client) sessions(ctx context.Context, path string, opts ReadOptions) ([]Session, Meta, error) {
	resp, err := c.do(ctx, &request{method: http.MethodGet, path: path, query: opts.query(), read: true, accept: []int{200}})
	if err != nil {
		return nil, Meta{}, err
	}
	meta := readMeta(resp)
	var out []Session
	return out, meta, decode(resp, &out)
}

// Acquire locks key for session, writing value (and flags) if it succeeds.
// ok false means another session holds it, or its lock-delay runs; an
// error names a session that does not exist.
func (c *Client) Acquire(ctx context.Context, key, session string, value []byte, flags uint64) (bool, Meta, error) {
	return c.write(ctx, http.MethodPut, key, lockQuery("acquire", session, flags), value)
}

// Release unlocks key if session holds it, writing value (and flags), as
// Consul's release does. ok false means the session did not hold it.
func (c *Client) Release(ctx context.Context, key, session string, value []byte, flags uint64) (bool, Meta, error) {
	return c.write(ctx, http.MethodPut, key, lockQuery("release", session, flags), value)
}

func lockQuery(verb, session string, flags uint64) url.Values {
	q := url.Values{verb: {session}}
	if flags != 0 {
		q.Set("flags", strconv.FormatUint(flags, 10))
	}
	return q
}

// LockOptions tune Lock.
type LockOptions struct {
	// Value is written to the key when it is acquired and when it is
	// released.
	Value []byte
	// Session is an existing session to lock with; empty makes one (with
	// SessionTTL, renewed every half of it, and destroyed by Unlock).
	Session    string
	SessionTTL time.Duration // default 15s, as Consul's lock
	// LockDelay is the made session's (see SessionOptions.LockDelay).
	LockDelay   time.Duration
	SessionName string
	// RequestTimeout bounds each request (the caller's context bounds
	// the wait for the lock); default 10s.
	RequestTimeout time.Duration
	// Flags marks the key as a lock, as Consul's lock helper does with
	// its own flag value.
	Flags uint64
}

// Held is a lock this process holds.
type Held struct {
	c       *Client
	key     string
	session string
	own     bool // the session was made for the lock
	opts    LockOptions
	// LockIndex is the key's LockIndex when it was acquired: the lock's
	// term, which rises with every acquisition by anyone. Use it as a
	// fencing token: a resource that has seen a higher one must refuse
	// this holder (docs/fault-model.md).
	LockIndex uint64
	// ModifyIndex is the key's ModifyIndex at acquisition.
	ModifyIndex uint64

	lost   chan struct{}
	stop   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Session is the session the lock is held with.
func (h *Held) Session() string { return h.session }

// Lost is closed when the lock may no longer be held: the key lost this
// session (released, deleted, taken by another after an invalidation) or
// the session ended. Whoever acts under the lock must stop then; and since
// that news can be late (a paused process learns it only when it runs
// again), act under a fencing token too (LockIndex).
func (h *Held) Lost() <-chan struct{} { return h.lost }

// ErrLockLost is the cause of a Lost lock, as far as the holder knows.
var ErrLockLost = errors.New("the lock was lost")

// Lock blocks until it holds key (or ctx ends), Consul's lock recipe:
// wait on the key with blocking reads while another session holds it,
// acquire it when it is free, and retry after a refusal (a lock-delay).
// While held, a watcher closes Lost when the key stops being ours.
func (c *Client) Lock(ctx context.Context, key string, opts LockOptions) (*Held, error) {
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 15 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	h := &Held{c: c, key: key, session: opts.Session, opts: opts, lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if h.session == "" {
		rctx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
		id, err := c.CreateSession(rctx, SessionOptions{Name: opts.SessionName, TTL: opts.SessionTTL, LockDelay: opts.LockDelay})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("creating the lock's session: %w", err)
		}
		h.session, h.own = id, true
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	sessionEnded := make(chan struct{})
	if h.own {
		go h.renew(bg, sessionEnded)
	}
	fail := func(err error) (*Held, error) {
		h.cancel()
		if h.own {
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), opts.RequestTimeout)
			_ = c.DestroySession(dctx, h.session)
			dcancel()
		}
		return nil, err
	}
	var index uint64
	for {
		select {
		case <-sessionEnded:
			return fail(fmt.Errorf("%w: its session ended while waiting", ErrLockLost))
		default:
		}
		p, meta, err := c.Get(ctx, key, ReadOptions{WaitIndex: index, WaitTime: 15 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			index = 0
			if !sleepCtx(ctx, time.Second) {
				return fail(ctx.Err())
			}
			continue
		}
		index = meta.Index
		if p != nil && p.Session != "" && p.Session != h.session {
			continue // held by another: wait for a change
		}
		rctx, rcancel := context.WithTimeout(ctx, opts.RequestTimeout)
		ok, _, err := c.Acquire(rctx, key, h.session, opts.Value, opts.Flags)
		rcancel()
		if err != nil && !IsNotApplied(err) && !IsUnknownOutcome(err) {
			return fail(err)
		}
		if ok {
			break
		}
		// Refused while free (a lock-delay), or the outcome is unknown:
		// look again after a pause, as Consul's lock does.
		index = 0
		if !sleepCtx(ctx, time.Second) {
			return fail(ctx.Err())
		}
	}
	// The term we hold: read back by our session.
	for {
		p, _, err := c.Get(ctx, key, ReadOptions{})
		if err == nil {
			if p == nil || p.Session != h.session {
				return fail(fmt.Errorf("%w: the key changed hands right after it was acquired", ErrLockLost))
			}
			h.LockIndex, h.ModifyIndex = p.LockIndex, p.ModifyIndex
			break
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return fail(ctx.Err())
		}
	}
	go h.watch(bg, sessionEnded)
	return h, nil
}

// renew keeps the lock's own session alive, every half TTL; a renewal
// that finds the session gone ends it for good.
func (h *Held) renew(ctx context.Context, ended chan<- struct{}) {
	defer close(ended)
	every := h.opts.SessionTTL / 2
	last := time.Now()
	for {
		if !sleepCtx(ctx, every) {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
		s, err := h.c.RenewSession(rctx, h.session)
		cancel()
		switch {
		case err == nil && s == nil:
			return // it ended
		case err == nil:
			last = time.Now()
		case time.Since(last) > h.opts.SessionTTL && ctx.Err() == nil:
			return // could not renew for a whole TTL: assume it ended
		}
	}
}

// watch closes lost when the key is no longer held by the session, or the
// session ends.
func (h *Held) watch(ctx context.Context, ended <-chan struct{}) {
	defer close(h.done)
	keyChanged := make(chan struct{})
	go func() {
		defer close(keyChanged)
		var index uint64
		for ctx.Err() == nil {
			p, meta, err := h.c.Get(ctx, h.key, ReadOptions{WaitIndex: index, Consistent: true})
			if err != nil {
				index = 0
				sleepCtx(ctx, time.Second)
				continue
			}
			if p == nil || p.Session != h.session {
				return
			}
			index = meta.Index
		}
	}()
	select {
	case <-keyChanged:
	case <-ended:
	case <-ctx.Done():
		return
	}
	if ctx.Err() == nil {
		close(h.lost)
	}
}

// Unlock releases the key (writing LockOptions.Value) and, for a session
// Lock made, destroys it. It is safe after Lost.
func (h *Held) Unlock(ctx context.Context) error {
	h.cancel()
	<-h.done
	ctx, cancel := context.WithTimeout(ctx, h.opts.RequestTimeout)
	defer cancel()
	_, _, err := h.c.Release(ctx, h.key, h.session, h.opts.Value, h.opts.Flags)
	if h.own {
		if derr := h.c.DestroySession(ctx, h.session); err == nil {
			err = derr
		}
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
