package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"
)

// bucketACL holds the ACL tables under key prefixes rather than in buckets
// of their own, so a snapshot check and the bucket list at open need to
// know of one name only:
//
//	p/<policy id>       -> ACLPolicy
//	t/<accessor id>     -> ACLToken
//	s/<sha256(secret)>  -> accessor id
//	bootstrap           -> index of the bootstrap (absent until then)
var bucketACL = []byte("acl")

var (
	aclPolicyPrefix = []byte("p/")
	aclTokenPrefix  = []byte("t/")
	aclSecretPrefix = []byte("s/")
	aclBootstrapKey = []byte("bootstrap")
)

// ACLPolicy is a named set of rules, stored as the rule text the client
// sent: the state machine never interprets rules, so a newer release may
// understand more of the language without a migration.
type ACLPolicy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	CreateIndex uint64
	ModifyIndex uint64
}

// ACLToken is a token as stored: the secret itself never is, only its
// SHA-256, which is what requests are resolved by.
type ACLToken struct {
	AccessorID  string
	SecretHash  []byte
	Description string
	Policies    []string // policy IDs; a dangling one grants nothing
	CreateTime  time.Time
	CreateIndex uint64
	ModifyIndex uint64
}

// ManagementPolicyID is the builtin policy that grants everything, with
// Consul's ID, so tools that name it work unchanged.
const ManagementPolicyID = "00000000-0000-0000-0000-000000000001"

// HashSecret is the form a token's secret is stored and looked up in.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// aclRecordVersion is the first byte of every stored ACL record. The body
// is JSON: ACL records are small and rare, and JSON lets fields be added
// without a new binary layout.
const aclRecordVersion = 1

func encodeACL(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{aclRecordVersion}, b...), nil
}

func decodeACL(data []byte, v any) error {
	if len(data) == 0 || data[0] != aclRecordVersion {
		return fmt.Errorf("storage: ACL record has an unknown format")
	}
	if err := json.Unmarshal(data[1:], v); err != nil {
		return fmt.Errorf("storage: ACL record: %v", err)
	}
	return nil
}

// EncodeACLPolicy is the Value of an OpACLSetPolicy command.
func EncodeACLPolicy(p ACLPolicy) []byte {
	b, _ := encodeACL(p) // a struct of strings and integers always encodes
	return b
}

// EncodeACLToken is the Value of an OpACLSetToken or OpACLBootstrap command.
func EncodeACLToken(t ACLToken) []byte {
	b, _ := encodeACL(t) // as EncodeACLPolicy
	return b
}

func aclKey(prefix []byte, id string) []byte {
	return append(append([]byte(nil), prefix...), id...)
}

// The ACL commands refuse (Result.OK false), identically on every node,
// whatever would leave the tables inconsistent: a record that does not
// decode, a create over an existing ID, a name or secret already taken, an
// update whose expected ModifyIndex is stale. Callers check the common
// cases first to give a precise reason; the refusals here are what make
// the checks hold under concurrent writes.

func (w writer) aclSetPolicy(idx uint64, c *Command) (bool, error) {
	var p ACLPolicy
	if decodeACL(c.Value, &p) != nil || p.ID == "" || p.Name == "" || p.ID != c.Key || len(c.Key) > 256 {
		return false, nil
	}
	key := aclKey(aclPolicyPrefix, p.ID)
	cur := w.acl.Get(key)
	switch {
	case c.Index == 0 && cur != nil:
		return false, nil
	case c.Index != 0:
		var old ACLPolicy
		if cur == nil || decodeACL(cur, &old) != nil || old.ModifyIndex != c.Index {
			return false, nil
		}
		p.CreateIndex = old.CreateIndex
	default:
		p.CreateIndex = idx
	}
	// A policy name is unique, as tokens may link to policies by name.
	c2 := w.acl.Cursor()
	for k, v := c2.Seek(aclPolicyPrefix); k != nil && bytes.HasPrefix(k, aclPolicyPrefix); k, v = c2.Next() {
		var o ACLPolicy
		if decodeACL(v, &o) == nil && o.Name == p.Name && o.ID != p.ID {
			return false, nil
		}
	}
	p.ModifyIndex = idx
	b, _ := encodeACL(p)
	return true, w.acl.Put(key, b)
}

func (w writer) aclDeletePolicy(c *Command) (bool, error) {
	return true, w.acl.Delete(aclKey(aclPolicyPrefix, c.Key))
}

// aclSetToken creates (Index 0) or updates (Index = the token's
// ModifyIndex) a token. An update keeps the secret and creation time: a
// token's secret never changes once handed out.
func (w writer) aclSetToken(idx uint64, c *Command) (bool, error) {
	var t ACLToken
	if decodeACL(c.Value, &t) != nil || t.AccessorID == "" || t.AccessorID != c.Key || len(c.Key) > 256 {
		return false, nil
	}
	key := aclKey(aclTokenPrefix, t.AccessorID)
	cur := w.acl.Get(key)
	if c.Index != 0 {
		var old ACLToken
		if cur == nil || decodeACL(cur, &old) != nil || old.ModifyIndex != c.Index {
			return false, nil
		}
		t.SecretHash, t.CreateTime, t.CreateIndex, t.ModifyIndex = old.SecretHash, old.CreateTime, old.CreateIndex, idx
		b, _ := encodeACL(t)
		return true, w.acl.Put(key, b)
	}
	if cur != nil {
		return false, nil
	}
	return w.aclCreateToken(idx, t)
}

func (w writer) aclCreateToken(idx uint64, t ACLToken) (bool, error) {
	if len(t.SecretHash) != sha256.Size {
		return false, nil
	}
	skey := aclKey(aclSecretPrefix, string(t.SecretHash))
	if w.acl.Get(skey) != nil {
		return false, nil
	}
	t.CreateIndex, t.ModifyIndex = idx, idx
	b, _ := encodeACL(t)
	if err := w.acl.Put(aclKey(aclTokenPrefix, t.AccessorID), b); err != nil {
		return false, err
	}
	return true, w.acl.Put(skey, []byte(t.AccessorID))
}

func (w writer) aclDeleteToken(c *Command) (bool, error) {
	key := aclKey(aclTokenPrefix, c.Key)
	cur := w.acl.Get(key)
	if cur == nil {
		return true, nil
	}
	var old ACLToken
	if decodeACL(cur, &old) == nil && len(old.SecretHash) > 0 {
		if err := w.acl.Delete(aclKey(aclSecretPrefix, string(old.SecretHash))); err != nil {
			return false, err
		}
	}
	return true, w.acl.Delete(key)
}

// aclBootstrap creates the first management token, once: the check and the
// create are one transaction, so of two concurrent bootstraps exactly one
// wins, on every node alike.
func (w writer) aclBootstrap(idx uint64, c *Command) (bool, error) {
	if w.acl.Get(aclBootstrapKey) != nil {
		return false, nil
	}
	var t ACLToken
	if decodeACL(c.Value, &t) != nil || t.AccessorID == "" || t.AccessorID != c.Key || len(c.Key) > 256 || w.acl.Get(aclKey(aclTokenPrefix, t.AccessorID)) != nil {
		return false, nil
	}
	ok, err := w.aclCreateToken(idx, t)
	if !ok || err != nil {
		return ok, err
	}
	return true, putUint(w.acl, aclBootstrapKey, idx)
}

// ACLPolicy returns the policy with id.
func (s *Store) ACLPolicy(id string) (p ACLPolicy, found bool, err error) {
	err = s.view(func(r reader) error {
		v := r.table(bucketACL).Get(aclKey(aclPolicyPrefix, id))
		if v == nil {
			return nil
		}
		found = true
		return decodeACL(v, &p)
	})
	return p, found, err
}

// ACLPolicies returns every stored policy, ordered by ID.
func (s *Store) ACLPolicies() ([]ACLPolicy, error) {
	var out []ACLPolicy
	err := s.view(func(r reader) error {
		return forEachPrefix(r.table(bucketACL), aclPolicyPrefix, func(v []byte) error {
			var p ACLPolicy
			if err := decodeACL(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	return out, err
}

// ACLToken returns the token with accessor id.
func (s *Store) ACLToken(accessor string) (t ACLToken, found bool, err error) {
	err = s.view(func(r reader) error {
		v := r.table(bucketACL).Get(aclKey(aclTokenPrefix, accessor))
		if v == nil {
			return nil
		}
		found = true
		return decodeACL(v, &t)
	})
	return t, found, err
}

// ACLTokenBySecret returns the token whose secret hashes to hash (see
// HashSecret).
func (s *Store) ACLTokenBySecret(hash []byte) (t ACLToken, found bool, err error) {
	err = s.view(func(r reader) error {
		b := r.table(bucketACL)
		acc := b.Get(aclKey(aclSecretPrefix, string(hash)))
		if acc == nil {
			return nil
		}
		v := b.Get(aclKey(aclTokenPrefix, string(acc)))
		if v == nil {
			return nil
		}
		found = true
		return decodeACL(v, &t)
	})
	return t, found, err
}

// ACLTokens returns every token, ordered by accessor ID.
func (s *Store) ACLTokens() ([]ACLToken, error) {
	var out []ACLToken
	err := s.view(func(r reader) error {
		return forEachPrefix(r.table(bucketACL), aclTokenPrefix, func(v []byte) error {
			var t ACLToken
			if err := decodeACL(v, &t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	return out, err
}

// ACLBootstrapped reports whether the ACL bootstrap has happened, and at
// which index.
func (s *Store) ACLBootstrapped() (done bool, index uint64, err error) {
	err = s.view(func(r reader) error {
		v := r.table(bucketACL).Get(aclBootstrapKey)
		done, index = v != nil, decodeUint(v)
		return nil
	})
	return done, index, err
}

func forEachPrefix(b table, prefix []byte, fn func(v []byte) error) error {
	c := b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}
