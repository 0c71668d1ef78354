package api

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// ACLLink names a policy a token uses, as Consul's ACLTokenPolicyLink.
type ACLLink struct {
	ID   string
	Name string
}

// ACLPolicy is Consul's JSON form of a policy.
type ACLPolicy struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string
	CreateIndex uint64
	ModifyIndex uint64
}

// ACLToken is Consul's JSON form of a token. SecretID is set only in the
// answers to a create and to the bootstrap: the cluster keeps only its
// hash, so it can never show it again.
type ACLToken struct {
	AccessorID  string
	SecretID    string `json:",omitempty"`
	Description string
	Policies    []ACLLink
	Local       bool
	CreateTime  time.Time
	CreateIndex uint64
	ModifyIndex uint64
}

// aclTokenRequest is what a token create or update may carry: Consul's
// fields, so consul/api's requests decode, with the ones Troupe has no
// use for required to be empty.
type aclTokenRequest struct {
	AccessorID        string
	SecretID          string
	Description       string
	Policies          []ACLLink
	Local             bool
	Name              string            `json:",omitempty"`
	Roles             []json.RawMessage `json:",omitempty"`
	ServiceIdentities []json.RawMessage `json:",omitempty"`
	NodeIdentities    []json.RawMessage `json:",omitempty"`
	TemplatedPolicies []json.RawMessage `json:",omitempty"`
	AuthMethod        string
	ExpirationTTL     json.RawMessage
	ExpirationTime    json.RawMessage
	CreateTime        json.RawMessage
	Hash              json.RawMessage
	CreateIndex       uint64
	ModifyIndex       uint64
	Namespace         string
	Partition         string
}

type aclPolicyRequest struct {
	ID          string
	Name        string
	Description string
	Rules       string
	Datacenters []string
	Hash        json.RawMessage
	CreateIndex uint64
	ModifyIndex uint64
	Namespace   string
	Partition   string
}

func (s *Server) aclRoutes() {
	m := s.mux
	m.HandleFunc("PUT /v1/acl/bootstrap", s.acl(s.aclBootstrap))
	m.HandleFunc("PUT /v1/acl/policy", s.acl(s.aclPolicyCreate))
	m.HandleFunc("GET /v1/acl/policy/{id}", s.acl(s.aclPolicyRead))
	m.HandleFunc("GET /v1/acl/policy/name/{name}", s.acl(s.aclPolicyReadByName))
	m.HandleFunc("PUT /v1/acl/policy/{id}", s.acl(s.aclPolicyUpdate))
	m.HandleFunc("DELETE /v1/acl/policy/{id}", s.acl(s.aclPolicyDelete))
	m.HandleFunc("GET /v1/acl/policies", s.acl(s.aclPolicyList))
	m.HandleFunc("PUT /v1/acl/token", s.acl(s.aclTokenCreate))
	m.HandleFunc("GET /v1/acl/token/self", s.acl(s.aclTokenSelf))
	m.HandleFunc("GET /v1/acl/token/{id}", s.acl(s.aclTokenRead))
	m.HandleFunc("PUT /v1/acl/token/{id}", s.acl(s.aclTokenUpdate))
	m.HandleFunc("DELETE /v1/acl/token/{id}", s.acl(s.aclTokenDelete))
	m.HandleFunc("GET /v1/acl/tokens", s.acl(s.aclTokenList))
}

// reqError is a handler's refusal of a request, with its status; any
// other error a handler returns comes from the node and is rendered by
// writeError.
type reqError struct {
	status int
	msg    string
}

func (e *reqError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &reqError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(msg string) error { return &reqError{http.StatusNotFound, msg} }

// aclHandler answers with its result (rendered as JSON with 200) or an
// error.
type aclHandler func(w http.ResponseWriter, r *http.Request) (any, error)

// acl wraps the /v1/acl handlers: with ACLs off they answer what Consul
// answers then (401, "ACL support disabled"); otherwise it renders what
// the handler returns. Every refusal is made before anything is proposed,
// so a 4xx here says nothing was applied.
func (s *Server) acl(h aclHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.opts.ACLEnabled {
			aclRefusal(w, http.StatusUnauthorized, "ACL support disabled (start the nodes with acl_enabled)")
			return
		}
		if !s.checkScope(w, r) {
			return
		}
		out, err := h(w, r)
		var re *reqError
		switch {
		case errors.As(err, &re):
			aclRefusal(w, re.status, re.msg)
		case err != nil:
			writeError(w, err)
		default:
			writeJSON(w, http.StatusOK, out)
		}
	}
}

// newUUID makes a random (version 4) UUID, the form of Consul's IDs and
// secrets.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

var (
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	policyNameRE = regexp.MustCompile(`^[A-Za-z0-9\-_]{1,128}$`)
)

const (
	maxDescription = 1024
	maxACLBody     = 1 << 20
)

// decodeBody reads a JSON request body strictly: an unknown field is an
// error, so a misspelt field is not silently dropped. An empty body
// decodes as the zero value when allowEmpty.
func decodeBody(r *http.Request, v any, allowEmpty bool) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxACLBody+1))
	if err != nil {
		return badRequest("reading request body: %v", err)
	}
	if len(data) > maxACLBody {
		return badRequest("request body over %d bytes", maxACLBody)
	}
	if len(data) == 0 {
		if allowEmpty {
			return nil
		}
		return badRequest("missing request body")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: data after the JSON object")
	}
	return nil
}

// aclBarrier makes the ACL reads that follow linearizable unless ?stale:
// what a client just wrote through any node must show.
func (s *Server) aclBarrier(r *http.Request) error {
	if has(r.URL.Query(), "stale") {
		return nil
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	return s.b.ACL.ReadBarrier(ctx)
}

// aclApply replicates an ACL command; refused names why the state machine
// may refuse it, for the 409.
func (s *Server) aclApply(w http.ResponseWriter, r *http.Request, cmd *storage.Command, refused string) (uint64, error) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.b.ACL.Apply(ctx, cmd)
	if err != nil {
		return 0, err
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	if !res.OK {
		return 0, &reqError{http.StatusConflict, refused}
	}
	return res.Index, nil
}

func (s *Server) aclBootstrap(w http.ResponseWriter, r *http.Request) (any, error) {
	var req struct{ BootstrapSecret string }
	if err := decodeBody(r, &req, true); err != nil {
		return nil, err
	}
	secret := req.BootstrapSecret
	if secret == "" {
		secret = newUUID()
	} else if !uuidRE.MatchString(secret) {
		return nil, badRequest("BootstrapSecret must be a UUID")
	}
	// The local check only spares a proposal; the state machine decides.
	done, idx, err := s.b.ACL.ACLBootstrapped()
	if err != nil {
		return nil, err
	}
	if done {
		return nil, &reqError{http.StatusForbidden, fmt.Sprintf("Permission denied: ACL bootstrap no longer allowed (reset index: %d)", idx)}
	}
	tok := storage.ACLToken{
		AccessorID:  newUUID(),
		SecretHash:  storage.HashSecret(secret),
		Description: "Bootstrap Token (Global Management)",
		Policies:    []string{ManagementPolicyID},
		CreateTime:  timeNow(),
	}
	index, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLBootstrap, Key: tok.AccessorID, Value: storage.EncodeACLToken(tok)}, "")
	var re *reqError
	if errors.As(err, &re) {
		return nil, &reqError{http.StatusForbidden, "Permission denied: ACL bootstrap no longer allowed (another bootstrap won)"}
	}
	if err != nil {
		return nil, err
	}
	tok.CreateIndex, tok.ModifyIndex = index, index
	out := s.tokenOut(tok)
	out.SecretID = secret
	return out, nil
}

// policyOut renders a stored policy.
func policyOut(p storage.ACLPolicy) ACLPolicy {
	return ACLPolicy{ID: p.ID, Name: p.Name, Description: p.Description, Rules: p.Rules, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
}

// managementPolicy is the builtin policy, which is never stored.
func managementPolicy() ACLPolicy {
	return ACLPolicy{ID: ManagementPolicyID, Name: ManagementPolicyName, Description: "Builtin Policy that grants unlimited access", Rules: "# everything: the builtin management policy", CreateIndex: 1, ModifyIndex: 1}
}

// validatePolicy checks a policy create or update on its own.
func validatePolicy(req *aclPolicyRequest) error {
	switch {
	case !policyNameRE.MatchString(req.Name):
		return badRequest("invalid policy name %q: 1 to 128 letters, digits, '-' or '_'", req.Name)
	case req.Name == ManagementPolicyName:
		return badRequest("the name %q belongs to the builtin management policy", req.Name)
	case len(req.Description) > maxDescription:
		return badRequest("description over %d bytes", maxDescription)
	case len(req.Datacenters) > 0:
		return badRequest("Datacenters is not supported: this cluster is one datacenter")
	case req.Namespace != "" && req.Namespace != "default" || req.Partition != "" && req.Partition != "default":
		return badRequest("namespaces and partitions are not supported")
	}
	if _, err := parseRules(req.Rules); err != nil {
		return badRequest("%v", err)
	}
	return nil
}

// nameFree checks that no policy but id ("" for a new one) has name.
func (s *Server) nameFree(name, id string) error {
	other, taken, err := s.policyByName(name)
	if err != nil {
		return err
	}
	if taken && other.ID != id {
		return badRequest("a policy named %q already exists", name)
	}
	return nil
}

func (s *Server) aclPolicyCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req aclPolicyRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if req.ID != "" {
		return nil, badRequest("Cannot specify an ID in policy creation")
	}
	if err := validatePolicy(&req); err != nil {
		return nil, err
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	if err := s.nameFree(req.Name, ""); err != nil {
		return nil, err
	}
	p := storage.ACLPolicy{ID: newUUID(), Name: req.Name, Description: req.Description, Rules: req.Rules}
	index, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetPolicy, Key: p.ID, Value: storage.EncodeACLPolicy(p)},
		fmt.Sprintf("a policy named %q was created concurrently", req.Name))
	if err != nil {
		return nil, err
	}
	p.CreateIndex, p.ModifyIndex = index, index
	return policyOut(p), nil
}

func (s *Server) policyByName(name string) (storage.ACLPolicy, bool, error) {
	all, err := s.b.ACL.ACLPolicies()
	if err != nil {
		return storage.ACLPolicy{}, false, err
	}
	for _, p := range all {
		if p.Name == name {
			return p, true, nil
		}
	}
	return storage.ACLPolicy{}, false, nil
}

func (s *Server) aclPolicyRead(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	if id == ManagementPolicyID {
		return managementPolicy(), nil
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	p, found, err := s.b.ACL.ACLPolicy(id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("ACL policy not found")
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(p.ModifyIndex, 1), 10))
	return policyOut(p), nil
}

func (s *Server) aclPolicyReadByName(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	if name == ManagementPolicyName {
		return managementPolicy(), nil
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	p, found, err := s.policyByName(name)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("ACL policy not found")
	}
	return policyOut(p), nil
}

func (s *Server) aclPolicyUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	var req aclPolicyRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	switch {
	case req.ID != "" && req.ID != id:
		return nil, badRequest("policy ID %q in the body does not match %q in the path", req.ID, id)
	case id == ManagementPolicyID:
		return nil, badRequest("the builtin management policy cannot be changed")
	}
	if err := validatePolicy(&req); err != nil {
		return nil, err
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	if err := s.nameFree(req.Name, id); err != nil {
		return nil, err
	}
	cur, found, err := s.b.ACL.ACLPolicy(id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("ACL policy not found")
	}
	p := storage.ACLPolicy{ID: id, Name: req.Name, Description: req.Description, Rules: req.Rules}
	index, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetPolicy, Key: id, Index: cur.ModifyIndex, Value: storage.EncodeACLPolicy(p)},
		"the policy was changed or deleted concurrently; read it and try again")
	if err != nil {
		return nil, err
	}
	p.CreateIndex, p.ModifyIndex = cur.CreateIndex, index
	return policyOut(p), nil
}

func (s *Server) aclPolicyDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	if id == ManagementPolicyID {
		return nil, badRequest("the builtin management policy cannot be deleted")
	}
	_, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLDeletePolicy, Key: id}, "")
	return true, err
}

func (s *Server) aclPolicyList(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	all, err := s.b.ACL.ACLPolicies()
	if err != nil {
		return nil, err
	}
	out := []ACLPolicy{managementPolicy()}
	for _, p := range all {
		p.Rules = "" // Consul's listing leaves the rules out too
		out = append(out, policyOut(p))
	}
	return out, nil
}

// tokenOut renders a stored token, naming its policies; a link to a
// deleted policy is left out, as it grants nothing.
func (s *Server) tokenOut(t storage.ACLToken) ACLToken {
	out := ACLToken{AccessorID: t.AccessorID, Description: t.Description, CreateTime: t.CreateTime, CreateIndex: t.CreateIndex, ModifyIndex: t.ModifyIndex, Policies: []ACLLink{}}
	for _, id := range t.Policies {
		if id == ManagementPolicyID {
			out.Policies = append(out.Policies, ACLLink{ID: id, Name: ManagementPolicyName})
			continue
		}
		if p, found, err := s.b.ACL.ACLPolicy(id); err == nil && found {
			out.Policies = append(out.Policies, ACLLink{ID: id, Name: p.Name})
		}
	}
	return out
}

// tokenPolicies resolves a request's policy links (by ID or by name) to
// policy IDs.
func (s *Server) tokenPolicies(links []ACLLink) ([]string, error) {
	var ids []string
	seen := map[string]bool{}
	for _, l := range links {
		id := l.ID
		switch {
		case id == ManagementPolicyID || id == "" && l.Name == ManagementPolicyName:
			id = ManagementPolicyID
		case id != "":
			p, found, err := s.b.ACL.ACLPolicy(id)
			if err != nil {
				return nil, err
			}
			if !found {
				return nil, badRequest("no ACL policy with ID %q", id)
			}
			if l.Name != "" && l.Name != p.Name {
				return nil, badRequest("policy %q is named %q, not %q", id, p.Name, l.Name)
			}
		case l.Name != "":
			p, found, err := s.policyByName(l.Name)
			if err != nil {
				return nil, err
			}
			if !found {
				return nil, badRequest("no ACL policy named %q", l.Name)
			}
			id = p.ID
		default:
			return nil, badRequest("a policy link needs an ID or a Name")
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// checkTokenRequest rejects what Troupe's tokens cannot carry.
func checkTokenRequest(req *aclTokenRequest) error {
	switch {
	case len(req.Roles) > 0:
		return badRequest("roles are not supported: link policies directly")
	case len(req.ServiceIdentities) > 0 || len(req.NodeIdentities) > 0 || len(req.TemplatedPolicies) > 0:
		return badRequest("service, node and templated identities are not supported")
	case req.AuthMethod != "":
		return badRequest("auth methods are not supported")
	case len(req.ExpirationTTL) > 0 && string(req.ExpirationTTL) != "0" || len(req.ExpirationTime) > 0 && string(req.ExpirationTime) != "null":
		return badRequest("token expiry is not supported")
	case req.Local:
		return badRequest("local tokens are not supported: this cluster is one datacenter")
	case req.Namespace != "" && req.Namespace != "default" || req.Partition != "" && req.Partition != "default":
		return badRequest("namespaces and partitions are not supported")
	case len(req.Description) > maxDescription:
		return badRequest("description over %d bytes", maxDescription)
	}
	return nil
}

func (s *Server) aclTokenCreate(w http.ResponseWriter, r *http.Request) (any, error) {
	var req aclTokenRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if err := checkTokenRequest(&req); err != nil {
		return nil, err
	}
	// Consul lets the caller choose both IDs (to move tokens between
	// clusters); they must still be UUIDs.
	for _, f := range []struct{ name, v string }{{"AccessorID", req.AccessorID}, {"SecretID", req.SecretID}} {
		if f.v != "" && !uuidRE.MatchString(f.v) {
			return nil, badRequest("%s must be a UUID", f.name)
		}
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	ids, err := s.tokenPolicies(req.Policies)
	if err != nil {
		return nil, err
	}
	secret := req.SecretID
	if secret == "" {
		secret = newUUID()
	}
	tok := storage.ACLToken{AccessorID: req.AccessorID, SecretHash: storage.HashSecret(secret), Description: req.Description, Policies: ids, CreateTime: timeNow()}
	if tok.AccessorID == "" {
		tok.AccessorID = newUUID()
	}
	index, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetToken, Key: tok.AccessorID, Value: storage.EncodeACLToken(tok)},
		"a token with this AccessorID or SecretID already exists")
	if err != nil {
		return nil, err
	}
	tok.CreateIndex, tok.ModifyIndex = index, index
	out := s.tokenOut(tok)
	out.SecretID = secret
	return out, nil
}

func (s *Server) aclTokenRead(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	tok, found, err := s.b.ACL.ACLToken(r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("ACL not found: no token with this AccessorID")
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(tok.ModifyIndex, 1), 10))
	return s.tokenOut(tok), nil
}

// aclTokenSelf shows the caller its own token, which any valid token may.
func (s *Server) aclTokenSelf(w http.ResponseWriter, r *http.Request) (any, error) {
	a := authzOf(r)
	if a == nil { // cannot happen with ACLs on: authorize resolved it
		return nil, &reqError{http.StatusUnauthorized, "ACL not found"}
	}
	return s.tokenOut(a.token), nil
}

func (s *Server) aclTokenUpdate(w http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	var req aclTokenRequest
	if err := decodeBody(r, &req, false); err != nil {
		return nil, err
	}
	if req.AccessorID != "" && req.AccessorID != id {
		return nil, badRequest("AccessorID %q in the body does not match %q in the path", req.AccessorID, id)
	}
	if err := checkTokenRequest(&req); err != nil {
		return nil, err
	}
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	cur, found, err := s.b.ACL.ACLToken(id)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, notFound("ACL not found: no token with this AccessorID")
	}
	if req.SecretID != "" && !bytes.Equal(storage.HashSecret(req.SecretID), cur.SecretHash) {
		return nil, badRequest("a token's SecretID cannot be changed")
	}
	ids, err := s.tokenPolicies(req.Policies)
	if err != nil {
		return nil, err
	}
	tok := cur
	tok.Description, tok.Policies = req.Description, ids
	index, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetToken, Key: id, Index: cur.ModifyIndex, Value: storage.EncodeACLToken(tok)},
		"the token was changed or deleted concurrently; read it and try again")
	if err != nil {
		return nil, err
	}
	tok.ModifyIndex = index
	return s.tokenOut(tok), nil
}

func (s *Server) aclTokenDelete(w http.ResponseWriter, r *http.Request) (any, error) {
	_, err := s.aclApply(w, r, &storage.Command{Op: storage.OpACLDeleteToken, Key: r.PathValue("id")}, "")
	return true, err
}

func (s *Server) aclTokenList(w http.ResponseWriter, r *http.Request) (any, error) {
	if err := s.aclBarrier(r); err != nil {
		return nil, err
	}
	all, err := s.b.ACL.ACLTokens()
	if err != nil {
		return nil, err
	}
	out := make([]ACLToken, 0, len(all))
	for _, t := range all {
		out = append(out, s.tokenOut(t))
	}
	return out, nil
}
