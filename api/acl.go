package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// ACL is what ACL enforcement and the /v1/acl endpoints need of the node.
// The reads are of this node's own state, without a read barrier: a token
// is resolved locally, as Consul resolves it, so a request costs no quorum
// round for its token.
type ACL interface {
	// Apply replicates an ACL command through the leader, as KV's Apply.
	Apply(ctx context.Context, cmd *storage.Command) (storage.Result, error)
	// ReadBarrier returns once local reads are linearizable.
	ReadBarrier(ctx context.Context) error
	ACLTokenBySecret(hash []byte) (storage.ACLToken, bool, error)
	ACLToken(accessor string) (storage.ACLToken, bool, error)
	ACLTokens() ([]storage.ACLToken, error)
	ACLPolicy(id string) (storage.ACLPolicy, bool, error)
	ACLPolicies() ([]storage.ACLPolicy, error)
	ACLBootstrapped() (bool, uint64, error)
}

// The builtin management policy, with Consul's ID and name, so tools that
// look for it find it.
const (
	ManagementPolicyID   = storage.ManagementPolicyID
	ManagementPolicyName = "global-management"
)

// authz is a resolved token: who it is and what it may do.
type authz struct {
	accessor   string
	management bool
	rules      *ruleSet
	token      storage.ACLToken
}

func (a *authz) keyRead(key string) bool {
	return a.management || a.rules.keyAccess(key).canRead()
}

func (a *authz) keyWrite(key string) bool {
	return a.management || a.rules.keyAccess(key).canWrite()
}

func (a *authz) keyWritePrefix(prefix string) bool {
	return a.management || a.rules.canWritePrefix(prefix)
}

// sessionRead and sessionWrite check a session rule for sessions on node.
func (a *authz) sessionRead(node string) bool {
	return a.management || a.rules.sessionAccess(node).canRead()
}

func (a *authz) sessionWrite(node string) bool {
	return a.management || a.rules.sessionAccess(node).canWrite()
}

func (a *authz) mayReadUnder(dir string) bool {
	return a.management || a.rules.mayReadUnder(dir)
}

// denied answers 403 with the reason, in the form Consul's tools print.
func (a *authz) denied(w http.ResponseWriter, perm, resource string) {
	aclRefusal(w, http.StatusForbidden, a.deniedMessage(perm, resource))
}

// deniedMessage says what the token lacks, for a 403 or a transaction's
// error.
func (a *authz) deniedMessage(perm, resource string) string {
	msg := fmt.Sprintf("Permission denied: token with AccessorID '%s' lacks permission '%s'", a.accessor, perm)
	if resource != "" {
		msg += fmt.Sprintf(" on %q", resource)
	}
	return msg
}

// aclRefusal answers a request refused for its token. The outcome header
// tells clients that nothing was applied, so a refused write is not
// mistaken for one that may have happened.
func aclRefusal(w http.ResponseWriter, status int, msg string) {
	w.Header().Set(OutcomeHeader, OutcomeNotApplied)
	httpError(w, status, msg)
}

type authzKey struct{}

// authzOf is the resolved token of r, or nil when ACLs are off.
func authzOf(r *http.Request) *authz {
	a, _ := r.Context().Value(authzKey{}).(*authz)
	return a
}

// requestToken finds the token in the ways Consul accepts one, in
// Consul's order: ?token= first, then X-Consul-Token, then
// Authorization: Bearer (the scheme in any case).
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// routeClass is what a request needs before its handler runs.
type routeClass int

const (
	classOpen       routeClass = iota // no token needed
	classToken                        // any valid token
	classKV                           // a valid token; the handler checks each key or session
	classManagement                   // a management token
)

// classify decides each route's class. Anything not named here needs a
// management token, so a route added later is closed until someone
// decides otherwise.
func classify(r *http.Request) (routeClass, string) {
	p := r.URL.Path
	switch {
	case p == "/v1/kv" || strings.HasPrefix(p, "/v1/kv/") || p == "/v1/txn" || strings.HasPrefix(p, "/v1/session/"):
		return classKV, ""
	case p == "/healthz" || p == "/readyz" || p == "/v1/status/leader" || p == "/v1/status/peers":
		// Consul leaves these open too: probes and load balancers have
		// no token, and they reveal only addresses and liveness.
		return classOpen, ""
	case p == "/" || p == "/ui" || strings.HasPrefix(p, "/ui/"):
		// The console's files hold no data; every call they make for
		// data carries the token the user typed in.
		return classOpen, ""
	case p == "/v1/acl/bootstrap":
		// Open by necessity; the handler allows it once.
		return classOpen, ""
	case p == "/v1/acl/token/self":
		return classToken, ""
	case strings.HasPrefix(p, "/v1/acl/"):
		return classManagement, "acl:write"
	}
	if r.Method == http.MethodGet {
		switch p {
		case "/v1/cluster/members", "/v1/cluster/status", "/v1/cluster/health", "/v1/cluster/alarms", "/metrics", "/v1/agent/metrics":
			// Consul asks agent:read for its metrics; Troupe has no agent
			// rules, so any valid token will do (one with no policy at
			// all is the scrape token: docs/security.md).
			return classToken, ""
		case "/v1/ui/events", "/v1/ui/peers", "/v1/ui/cluster":
			// What the console shows is what /v1/cluster/health and
			// /v1/cluster/status tell any token holder, over time.
			return classToken, ""
		}
	}
	return classManagement, "operator:write"
}

// authorize resolves r's token and checks its route class, answering 401
// or 403 itself when the request may not go on.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	class, perm := classify(r)
	if class == classOpen {
		return r, true
	}
	secret := requestToken(r)
	if secret == "" {
		aclRefusal(w, http.StatusUnauthorized, "ACL not found: this request needs a token (X-Consul-Token header, Authorization: Bearer, or ?token=)")
		return r, false
	}
	a, err := s.resolve(r.Context(), secret)
	if err != nil {
		writeError(w, err)
		return r, false
	}
	if a == nil {
		aclRefusal(w, http.StatusUnauthorized, "ACL not found: the token is not known to this cluster")
		return r, false
	}
	if class == classManagement && !a.management {
		a.denied(w, perm, "")
		return r, false
	}
	return r.WithContext(context.WithValue(r.Context(), authzKey{}, a)), true
}

// resolve finds the token with secret and what its policies grant; nil
// for an unknown token. A secret this node does not know is looked up
// again after a read barrier, so a token created through another node
// works here at once, not only when this node has caught up.
func (s *Server) resolve(ctx context.Context, secret string) (*authz, error) {
	hash := storage.HashSecret(secret)
	tok, found, err := s.b.ACL.ACLTokenBySecret(hash)
	if err != nil {
		return nil, err
	}
	if !found {
		bctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		berr := s.b.ACL.ReadBarrier(bctx)
		cancel()
		if berr != nil {
			// Without a quorum this node cannot tell an unknown token from
			// a new one: refuse, saying so.
			return nil, nil
		}
		if tok, found, err = s.b.ACL.ACLTokenBySecret(hash); err != nil || !found {
			return nil, err
		}
	}
	a := &authz{accessor: tok.AccessorID, token: tok, rules: newRuleSet()}
	for _, id := range tok.Policies {
		if id == ManagementPolicyID {
			a.management = true
			continue
		}
		rs, err := s.policyRules(id)
		if err != nil {
			return nil, err
		}
		if rs != nil {
			a.rules.merge(rs)
		}
	}
	return a, nil
}

// policyCache keeps each policy's parsed rules, keyed by ID and checked
// against its ModifyIndex, so a request does not parse rules again.
type policyCache struct {
	mu sync.Mutex
	m  map[string]cachedPolicy
}

type cachedPolicy struct {
	modifyIndex uint64
	rules       *ruleSet
}

// policyRules returns the parsed rules of policy id, nil when it does not
// exist (a token's link to a deleted policy grants nothing).
func (s *Server) policyRules(id string) (*ruleSet, error) {
	p, found, err := s.b.ACL.ACLPolicy(id)
	if err != nil || !found {
		return nil, err
	}
	s.policies.mu.Lock()
	defer s.policies.mu.Unlock()
	if c, ok := s.policies.m[id]; ok && c.modifyIndex == p.ModifyIndex {
		return c.rules, nil
	}
	rs, err := parseRules(p.Rules)
	if err != nil {
		// Stored rules were checked when written; rules this release
		// cannot read grant nothing rather than fail every request.
		rs = newRuleSet()
	}
	if s.policies.m == nil || len(s.policies.m) > 4096 {
		s.policies.m = map[string]cachedPolicy{}
	}
	s.policies.m[id] = cachedPolicy{p.ModifyIndex, rs}
	return rs, nil
}

// timeNow is the clock for token creation times.
var timeNow = func() time.Time { return time.Now().UTC() }
