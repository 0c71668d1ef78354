package client

import (
	"context"
	"net/http"
	"net/url"
)

// AlarmNoSpace is the alarm a member raises when its state file holds
// more live data than its quota_bytes, or its data directory's file
// system has less free space than min_free_bytes. While it is raised,
// writes that would grow the state are refused on every node with HTTP
// 507 (see IsNoSpace); reads and deletes work.
const AlarmNoSpace = "nospace"

// Alarm is one raised alarm, from GET /v1/cluster/alarms.
type Alarm struct {
	Type   string `json:"type"`
	Member string `json:"member"`
	// Reason is what the member measured when it raised the alarm.
	Reason string `json:"reason"`
	// Index is the log index the alarm was raised at.
	Index uint64 `json:"index"`
}

// Alarms lists the cluster's raised alarms.
func (c *Client) Alarms(ctx context.Context) ([]Alarm, error) {
	var out []Alarm
	if err := c.getJSON(ctx, "/v1/cluster/alarms", &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Disarm clears the alarms of type typ about member ("" for either:
// any), as etcdctl alarm disarm does, and reports whether one was
// raised. Free space first: a member still past its limits raises its
// alarm again within a second.
func (c *Client) Disarm(ctx context.Context, typ, member string) (bool, error) {
	q := url.Values{}
	if typ != "" {
		q.Set("type", typ)
	}
	if member != "" {
		q.Set("member", member)
	}
	resp, err := c.do(ctx, &request{method: http.MethodDelete, path: "/v1/cluster/alarms", query: q, accept: []int{200}})
	if err != nil {
		return false, err
	}
	var out struct {
		Disarmed bool `json:"disarmed"`
	}
	if err := decode(resp, &out); err != nil {
		return false, err
	}
	return out.Disarmed, nil
}

// IsNoSpace reports a write refused because the cluster's NOSPACE alarm
// is raised (HTTP 507): nothing was applied, and sending it again, to any
// node, fails the same way until space is freed and the alarm disarmed.
func IsNoSpace(err error) bool {
	return StatusCode(err) == http.StatusInsufficientStorage
}
