package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
)

// Member is one server of the Raft configuration, as GET
// /v1/cluster/members reports it. The client keeps its own copy of the
// type so that importing it does not drag Raft into every tool.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// Voter is false for a member that replicates but does not vote.
	Voter bool `json:"voter"`
	// Suffrage is Voter said as a word: "voter" or "nonvoter" (""
	// from a node older than the field).
	Suffrage string `json:"suffrage"`
	// Leader is the answering node's belief, which may be stale by an
	// election.
	Leader bool `json:"leader"`
	// Version is the release the member runs, as the answering node last
	// heard it; "" for a peer it has not heard from yet.
	Version string `json:"version"`
}

// Status is one node's view of the cluster, from GET /v1/cluster/status.
// It is per node: which node answered is in ID.
type Status struct {
	ID                string `json:"id"`
	State             string `json:"state"`
	Term              uint64 `json:"term"`
	CommitIndex       uint64 `json:"commit_index"`
	AppliedIndex      uint64 `json:"applied_index"`
	LastLogIndex      uint64 `json:"last_log_index"`
	LastSnapshotIndex uint64 `json:"last_snapshot_index"`
	// LastContactMS is how long ago this node heard from the leader; 0 on
	// the leader.
	LastContactMS  int64  `json:"last_contact_ms"`
	LeaderID       string `json:"leader_id"`
	LeaderRaftAddr string `json:"leader_raft_addr"`
	LeaderHTTPAddr string `json:"leader_http_addr"`
	// Version, Commit and GoVersion describe the answering node's build.
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

// JoinRequest asks the cluster to add a member at its Raft address. The
// leader first checks that the node answers there; the node registers its
// own HTTP address once it is a member.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// Suffrage is "voter" (also when empty) or "nonvoter": a non-voter
	// replicates and serves reads but counts towards no quorum until it
	// is promoted (Promote).
	Suffrage string `json:"suffrage,omitempty"`
}

// The suffrages of JoinRequest.
const (
	SuffrageVoter    = "voter"
	SuffrageNonvoter = "nonvoter"
)

// Members lists the Raft configuration as the answering node sees it.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	if err := c.getJSON(ctx, "/v1/cluster/members", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Status returns the answering node's status. To see every node, give each
// endpoint its own client with WithMaxAttempts(1): failover would otherwise
// quietly answer for another node.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.getJSON(ctx, "/v1/cluster/status", &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Leader returns the leader's Raft address, "" while there is none
// (Consul's /v1/status/leader).
func (c *Client) Leader(ctx context.Context) (string, error) {
	var addr string
	if err := c.getJSON(ctx, "/v1/status/leader", &addr); err != nil {
		return "", err
	}
	return addr, nil
}

// Peers returns the voters' Raft addresses (Consul's /v1/status/peers).
func (c *Client) Peers(ctx context.Context) ([]string, error) {
	var peers []string
	if err := c.getJSON(ctx, "/v1/status/peers", &peers); err != nil {
		return nil, err
	}
	return peers, nil
}

// Live returns nil when the answering node's process runs and serves
// HTTP (GET /healthz), whether or not it belongs to a cluster yet.
func (c *Client) Live(ctx context.Context) error {
	_, err := c.do(ctx, &request{method: http.MethodGet, path: "/healthz", read: true, accept: []int{200}})
	return err
}

// Ready returns nil once the answering node can serve linearizable
// requests (GET /readyz): it has a leader and has caught up.
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, &request{method: http.MethodGet, path: "/readyz", read: true, accept: []int{200}})
	return err
}

// MembershipOption changes how a join or a removal is made.
type MembershipOption func(url.Values)

// Force makes a join or a removal even when the leader reckons it would
// leave the reachable voters short of a quorum (?force=true).
func Force() MembershipOption { return func(q url.Values) { q.Set("force", "true") } }

func membershipQuery(opts []MembershipOption) url.Values {
	if len(opts) == 0 {
		return nil
	}
	q := url.Values{}
	for _, o := range opts {
		o(q)
	}
	return q
}

// Join adds a voter, or a non-voter (JoinRequest.Suffrage). Any node
// accepts it and forwards it to the leader; joining a member that is
// already in place is a no-op.
func (c *Client) Join(ctx context.Context, req JoinRequest, opts ...MembershipOption) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	_, err = c.do(ctx, &request{method: http.MethodPost, path: "/v1/cluster/join", query: membershipQuery(opts), body: body,
		contentType: "application/json", accept: []int{200}})
	return err
}

// Remove takes a member out of the Raft configuration. Removing the leader
// makes it hand leadership over first.
func (c *Client) Remove(ctx context.Context, id string, opts ...MembershipOption) error {
	_, err := c.do(ctx, &request{method: http.MethodDelete, path: "/v1/cluster/members/" + id, query: membershipQuery(opts), accept: []int{200}})
	return err
}

// Promote makes the non-voter id a voter. The leader refuses (409, an
// *Error whose message says how far behind) while the non-voter has not
// caught up; Force skips that check and the quorum check. Promoting a
// voter is a no-op.
func (c *Client) Promote(ctx context.Context, id string, opts ...MembershipOption) error {
	_, err := c.do(ctx, &request{method: http.MethodPost, path: "/v1/cluster/members/" + id + "/promote", query: membershipQuery(opts), accept: []int{200}})
	return err
}

// Snapshot makes the answering node take a Raft snapshot now and returns
// its index; useful before maintenance, to shorten the log a restart
// replays.
func (c *Client) Snapshot(ctx context.Context) (uint64, error) {
	resp, err := c.do(ctx, &request{method: http.MethodPost, path: "/v1/cluster/snapshot", accept: []int{200}})
	if err != nil {
		return 0, err
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	if err := decode(resp, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, &request{method: http.MethodGet, path: path, query: url.Values{}, read: true, accept: []int{200}})
	if err != nil {
		return err
	}
	return decode(resp, v)
}
