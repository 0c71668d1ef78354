package actors

import (
	"slices"

	"github.com/troupe-kv/troupe/storage"
)

// The ACL reads are of this node's state file, without a read barrier:
// every request resolves its token, and a quorum round for each would
// double the cost of a read. The API takes a barrier itself where it
// needs a fresh answer (an unknown token, the /v1/acl reads). ACL writes
// are commands like any other and go through Apply.

// ACLTokenBySecret finds a token by the hash of its secret.
func (c *Client) ACLTokenBySecret(hash []byte) (storage.ACLToken, bool, error) {
	return c.tree.cfg.Store.ACLTokenBySecret(hash)
}

// ACLToken finds a token by its accessor ID.
func (c *Client) ACLToken(accessor string) (storage.ACLToken, bool, error) {
	return c.tree.cfg.Store.ACLToken(accessor)
}

// ACLTokens lists every token.
func (c *Client) ACLTokens() ([]storage.ACLToken, error) { return c.tree.cfg.Store.ACLTokens() }

// ACLPolicy finds a policy by ID.
func (c *Client) ACLPolicy(id string) (storage.ACLPolicy, bool, error) {
	return c.tree.cfg.Store.ACLPolicy(id)
}

// ACLPolicies lists every stored policy.
func (c *Client) ACLPolicies() ([]storage.ACLPolicy, error) { return c.tree.cfg.Store.ACLPolicies() }

// ACLBootstrapped reports whether the ACL bootstrap has happened.
func (c *Client) ACLBootstrapped() (bool, uint64, error) { return c.tree.cfg.Store.ACLBootstrapped() }

// isManagement reports whether secret is a token this node knows that
// holds the builtin management policy.
func (c *Client) isManagement(secret string) bool {
	if secret == "" {
		return false
	}
	tok, found, err := c.ACLTokenBySecret(storage.HashSecret(secret))
	if err != nil || !found {
		return false
	}
	return slices.Contains(tok.Policies, storage.ManagementPolicyID)
}
