package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// ACLLink names a policy a token uses: by ID, by Name, or both.
type ACLLink struct {
	ID   string `json:"ID,omitempty"`
	Name string `json:"Name,omitempty"`
}

// ACLPolicy is a policy as /v1/acl/policy speaks it (Consul's field
// names).
type ACLPolicy struct {
	ID          string `json:"ID,omitempty"`
	Name        string
	Description string `json:"Description,omitempty"`
	Rules       string `json:"Rules,omitempty"`
	CreateIndex uint64 `json:"CreateIndex,omitempty"`
	ModifyIndex uint64 `json:"ModifyIndex,omitempty"`
}

// ACLToken is a token as /v1/acl/token speaks it. SecretID is only ever
// filled in by a create or the bootstrap: the cluster keeps a hash.
type ACLToken struct {
	AccessorID  string    `json:"AccessorID,omitempty"`
	SecretID    string    `json:"SecretID,omitempty"`
	Description string    `json:"Description,omitempty"`
	Policies    []ACLLink `json:"Policies,omitempty"`
	CreateTime  time.Time `json:"CreateTime,omitzero"`
	CreateIndex uint64    `json:"CreateIndex,omitempty"`
	ModifyIndex uint64    `json:"ModifyIndex,omitempty"`
}

// ACLBootstrap creates the first management token; it works once per
// cluster.
func (c *Client) ACLBootstrap(ctx context.Context) (*ACLToken, error) {
	var out ACLToken
	return &out, c.sendJSON(ctx, http.MethodPut, "/v1/acl/bootstrap", nil, &out)
}

// ACLPolicyCreate creates a policy and returns it with its ID.
func (c *Client) ACLPolicyCreate(ctx context.Context, p ACLPolicy) (*ACLPolicy, error) {
	var out ACLPolicy
	return &out, c.sendJSON(ctx, http.MethodPut, "/v1/acl/policy", p, &out)
}

// ACLPolicies lists the policies (without their rules).
func (c *Client) ACLPolicies(ctx context.Context) ([]ACLPolicy, error) {
	var out []ACLPolicy
	return out, c.getJSON(ctx, "/v1/acl/policies", &out)
}

// ACLPolicy reads one policy by ID.
func (c *Client) ACLPolicy(ctx context.Context, id string) (*ACLPolicy, error) {
	var out ACLPolicy
	return &out, c.getJSON(ctx, "/v1/acl/policy/"+url.PathEscape(id), &out)
}

// ACLPolicyByName reads one policy by name.
func (c *Client) ACLPolicyByName(ctx context.Context, name string) (*ACLPolicy, error) {
	var out ACLPolicy
	return &out, c.getJSON(ctx, "/v1/acl/policy/name/"+url.PathEscape(name), &out)
}

// ACLPolicyDelete deletes a policy by ID.
func (c *Client) ACLPolicyDelete(ctx context.Context, id string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/v1/acl/policy/"+url.PathEscape(id), nil, nil)
}

// ACLTokenCreate creates a token; the answer carries its SecretID, which
// cannot be read again later.
func (c *Client) ACLTokenCreate(ctx context.Context, t ACLToken) (*ACLToken, error) {
	var out ACLToken
	return &out, c.sendJSON(ctx, http.MethodPut, "/v1/acl/token", t, &out)
}

// ACLTokens lists the tokens (without secrets).
func (c *Client) ACLTokens(ctx context.Context) ([]ACLToken, error) {
	var out []ACLToken
	return out, c.getJSON(ctx, "/v1/acl/tokens", &out)
}

// ACLToken reads one token by accessor ID ("self": the client's own).
func (c *Client) ACLToken(ctx context.Context, accessor string) (*ACLToken, error) {
	var out ACLToken
	return &out, c.getJSON(ctx, "/v1/acl/token/"+url.PathEscape(accessor), &out)
}

// ACLTokenDelete deletes a token by accessor ID.
func (c *Client) ACLTokenDelete(ctx context.Context, accessor string) error {
	return c.sendJSON(ctx, http.MethodDelete, "/v1/acl/token/"+url.PathEscape(accessor), nil, nil)
}

// sendJSON sends a write with an optional JSON body and decodes the
// answer into out when it is not nil.
func (c *Client) sendJSON(ctx context.Context, method, path string, in, out any) error {
	r := &request{method: method, path: path, accept: []int{200}}
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return err
		}
		r.body, r.contentType = body, "application/json"
	}
	resp, err := c.do(ctx, r)
	if err != nil || out == nil {
		return err
	}
	return decode(resp, out)
}
