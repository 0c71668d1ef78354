package peerlink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// Client sends this node's requests to other nodes over the channel,
// reusing connections. Addresses are peers' Raft addresses.
type Client struct {
	cfg Config
	hc  *http.Client
}

// NewClient returns a Client that dials through cfg's network, under its
// fault rules and TLS.
func NewClient(cfg Config) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return Dial(ctx, cfg, addr, ChannelRPC)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{cfg: cfg, hc: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Apply asks the leader at addr to apply an encoded command. An error
// before the request was fully sent means nothing was applied
// (ErrNoLeader); a failure after that leaves the outcome unknown.
func (c *Client) Apply(ctx context.Context, addr string, cmd []byte) (storage.Result, error) {
	var reply applyReply
	if err := c.call(ctx, addr, pathApply, cmd, &reply); err != nil {
		return storage.Result{}, err
	}
	return storage.Result{Index: reply.Index, OK: reply.OK, Txn: reply.Txn}, nil
}

// ApplyBatch sends several encoded commands to the leader in one request;
// it answers each separately. Transport failures apply to the whole batch:
// before the batch was sent nothing was applied (ErrNoLeader), after it
// every command's outcome is unknown.
func (c *Client) ApplyBatch(ctx context.Context, addr string, cmds [][]byte) ([]BatchItemReply, error) {
	var reply []BatchItemReply
	if err := c.call(ctx, addr, pathApplyBatch, encodeBatch(cmds), &reply); err != nil {
		return nil, err
	}
	if len(reply) != len(cmds) {
		return nil, fmt.Errorf("%w (the leader answered %d results for %d commands)", ErrUnknownOutcome, len(reply), len(cmds))
	}
	return reply, nil
}

// ReadIndex asks the leader at addr for a read index.
func (c *Client) ReadIndex(ctx context.Context, addr string) (uint64, error) {
	var reply readIndexReply
	if err := c.call(ctx, addr, pathReadIndex, nil, &reply); err != nil {
		return 0, err
	}
	return reply.Index, nil
}

// Ping asks the node at addr who it is and how its client port is: the
// failure detector's probe. A lost ping must count as lost, and Go's HTTP
// client never resends a POST on a fresh connection by itself.
func (c *Client) Ping(ctx context.Context, addr string) (PingReply, error) {
	return c.ping(ctx, c.hc, addr)
}

// Identify probes addr on a connection of its own that expects node id
// there: with TLS on, the callee's certificate must name id. The leader
// uses it before it adds a voter, whose address it has not met before.
func (c *Client) Identify(ctx context.Context, addr, id string) (PingReply, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dial(ctx, c.cfg, addr, ChannelRPC, id)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	return c.ping(ctx, &http.Client{Transport: tr}, addr)
}

func (c *Client) ping(ctx context.Context, hc *http.Client, addr string) (PingReply, error) {
	var reply PingReply
	if err := c.callWith(ctx, hc, addr, pathPing, nil, &reply); err != nil {
		var le *linkError
		if errors.As(err, &le) {
			// A probe that went unanswered says nothing about leaders.
			return PingReply{}, le.err
		}
		return PingReply{}, err
	}
	return reply, nil
}

// Membership forwards a membership change to the leader at addr.
func (c *Client) Membership(ctx context.Context, addr string, req MembershipRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var reply struct{}
	return c.call(ctx, addr, pathMembership, body, &reply)
}

// RenewSession asks the leader at addr to renew session id: found false
// means there is no such session. A renewal changes no state, so one that
// failed on the way may be sent again.
func (c *Client) RenewSession(ctx context.Context, addr, id string) (storage.Session, bool, error) {
	var reply sessionRenewReply
	if err := c.call(ctx, addr, pathSessionRenew, []byte(id), &reply); err != nil {
		return storage.Session{}, false, err
	}
	return reply.Session, reply.Found, nil
}

func (c *Client) call(ctx context.Context, addr, path string, body []byte, out any) error {
	return c.callWith(ctx, c.hc, addr, path, body, out)
}

func (c *Client) callWith(ctx context.Context, hc *http.Client, addr, path string, body []byte, out any) error {
	return c.send(ctx, hc, addr, path, bytes.NewReader(body), nil, out)
}

// RestoreSnapshot streams a backup to the leader at addr for it to
// restore, with the client's ACL token, which the leader checks itself.
func (c *Client) RestoreSnapshot(ctx context.Context, addr, token string, backup io.Reader) (storage.BackupInfo, error) {
	var info storage.BackupInfo
	h := http.Header{}
	if token != "" {
		h.Set(tokenHeader, token)
	}
	err := c.send(ctx, c.hc, addr, pathSnapshotRestore, backup, h, &info)
	return info, err
}

func (c *Client) send(ctx context.Context, hc *http.Client, addr, path string, body io.Reader, header http.Header, out any) error {
	sent := false
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) { sent = i.Err == nil }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, "http://"+addr+path, body)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		// A request the leader never fully received cannot have been
		// applied.
		if !sent {
			return &linkError{fmt.Errorf("%w (%s unreachable: %v)", ErrNoLeader, addr, err), err}
		}
		return &linkError{fmt.Errorf("%w (lost contact with %s: %v)", ErrUnknownOutcome, addr, err), err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w (reading the answer of %s: %v)", ErrUnknownOutcome, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		return remoteError(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%w (bad answer from %s: %v)", ErrUnknownOutcome, addr, err)
	}
	return nil
}

// linkError is a request that failed on the way: as a forwarded request
// it is "no leader" or "outcome unknown"; err is what the network said.
type linkError struct {
	wrapped error
	err     error
}

func (e *linkError) Error() string { return e.wrapped.Error() }
func (e *linkError) Unwrap() error { return e.wrapped }
