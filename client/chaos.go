package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// Fault injection through /v1/chaos/*, mounted only on nodes started with
// --chaos. Fault rules are local to the node that holds them, so these calls
// take the one endpoint they are meant for and never fail over: a rule set
// installed on the wrong node would be a different experiment. Rules are
// the server's own faultnet types, so the two cannot drift apart; the
// server validates them, not the client, so the two cannot disagree
// either. chaos/faultplan builds the rule sets for whole-cluster faults.

// ErrChaosDisabled is the Err of the *Error a chaos call returns when the
// node answers 404: it does not run with --chaos.
var ErrChaosDisabled = errors.New("chaos is not enabled on this node (start kvnode with --chaos)")

// CrashActors names the actors Crash accepts; "peer/<id>" is the failure
// detector's monitor of one peer.
var CrashActors = []string{"raft", "forward", "http", "peers", "peer/<id>", "sessions", "quota", "node"}

// CrashFaults names the ways Crash can make an actor fail besides a panic
// (""): "raft-shutdown" stops Raft underneath the raft actor, "listener"
// closes the raft or http actor's listener.
var CrashFaults = []string{"raft-shutdown", "listener"}

const faultsPath = "/v1/chaos/faults"

// Faults returns the fault rules installed on the node at endpoint.
func (c *Client) Faults(ctx context.Context, endpoint string) (faultnet.Rules, error) {
	return c.faults(ctx, endpoint, &request{method: http.MethodGet, path: faultsPath, read: true, accept: []int{200}})
}

// SetFaults replaces the node's whole rule set (it does not merge) and
// returns the set as installed. Invalid rules are refused with HTTP 400 and
// the server's reason; nothing changes then.
func (c *Client) SetFaults(ctx context.Context, endpoint string, rs faultnet.Rules) (faultnet.Rules, error) {
	body, err := json.Marshal(rs)
	if err != nil {
		return faultnet.Rules{}, err
	}
	return c.SetFaultsJSON(ctx, endpoint, body)
}

// SetFaultsJSON is SetFaults with the rule set as JSON, sent as is, so
// that the server, not the client, judges it (unknown fields, bad
// durations): a tool passing on a user's rules reports the server's reason.
func (c *Client) SetFaultsJSON(ctx context.Context, endpoint string, rules []byte) (faultnet.Rules, error) {
	if rules == nil {
		rules = []byte{}
	}
	return c.faults(ctx, endpoint, &request{method: http.MethodPut, path: faultsPath, body: rules,
		contentType: "application/json", accept: []int{200}})
}

// ClearFaults removes every rule from the node, healing its links.
func (c *Client) ClearFaults(ctx context.Context, endpoint string) error {
	_, err := c.faults(ctx, endpoint, &request{method: http.MethodDelete, path: faultsPath, accept: []int{200}})
	return err
}

// Crash makes one actor of the node fail, to watch supervision handle it;
// actor is one of CrashActors ("peer/n2" for a peer monitor) and fault ""
// (a panic) or one of CrashFaults. The crash happens after the answer is
// sent, asynchronously: a crashed "http" or "node" actor may cut the
// connection the answer travels on, which makes the returned error's
// outcome unknown although the crash happened.
func (c *Client) Crash(ctx context.Context, endpoint, actor, fault string) error {
	q := url.Values{"actor": {actor}}
	if fault != "" {
		q.Set("fault", fault)
	}
	_, err := c.at(ctx, endpoint, &request{method: http.MethodPost, path: "/v1/chaos/crash", query: q, accept: []int{200}})
	return chaosError(err)
}

func (c *Client) faults(ctx context.Context, endpoint string, r *request) (faultnet.Rules, error) {
	resp, err := c.at(ctx, endpoint, r)
	if err != nil {
		return faultnet.Rules{}, chaosError(err)
	}
	var rs faultnet.Rules
	if err := decode(resp, &rs); err != nil {
		return faultnet.Rules{}, err
	}
	return rs, nil
}

// chaosError turns a 404 into ErrChaosDisabled: the chaos routes are not
// mounted at all on a node without --chaos, and they never answer 404
// themselves.
func chaosError(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		e.Message = ErrChaosDisabled.Error()
		e.Err = ErrChaosDisabled
	}
	return err
}

// at sends r to endpoint alone, once: no failover, no retry. endpoint is
// "host:port" or a URL, as for New, and need not be one of the client's
// endpoints.
func (c *Client) at(ctx context.Context, endpoint string, r *request) (*response, error) {
	ep := c.endpointOf(endpoint)
	resp, err := c.once(ctx, ep, r)
	if err != nil {
		err.Attempts = 1
		return nil, err
	}
	return resp, nil
}

// endpointOf parses an endpoint as New does: bare host:port is https
// when the client has TLS settings.
func (c *Client) endpointOf(s string) endpoint {
	scheme := "http"
	if c.tls != nil {
		scheme = "https"
	}
	u, err := parseEndpoint(s, scheme)
	ep := endpoint{url: u, name: s, err: err}
	if err == nil {
		ep.name = u.String()
	}
	return ep
}
