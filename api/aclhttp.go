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

// acl wraps the /v1/acl handlers: with ACLs off they answer what Consul
// answers then (401, "ACL support disabled").
func (s *Server) acl(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.opts.ACLEnabled {
			httpError(w, http.StatusUnauthorized, "ACL support disabled (start the nodes with acl_enabled)")
			return
		}
		if !s.checkScope(w, r) {
			return
		}
		h(w, r)
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
		return fmt.Errorf("reading request body: %v", err)
	}
	if len(data) > maxACLBody {
		return fmt.Errorf("request body over %d bytes", maxACLBody)
	}
	if len(data) == 0 {
		if allowEmpty {
			return nil
		}
		return errors.New("missing request body")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	if dec.More() {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}

// aclBarrier makes the ACL reads that follow linearizable unless ?stale:
// what a client just wrote through any node must show.
func (s *Server) aclBarrier(w http.ResponseWriter, r *http.Request) bool {
	if has(r.URL.Query(), "stale") {
		return true
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if err := s.b.ACL.ReadBarrier(ctx); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// aclApply replicates an ACL command, answering the error itself.
func (s *Server) aclApply(w http.ResponseWriter, r *http.Request, cmd *storage.Command) (storage.Result, bool) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.b.ACL.Apply(ctx, cmd)
	if err != nil {
		writeError(w, err)
		return res, false
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	return res, true
}

func (s *Server) aclBootstrap(w http.ResponseWriter, r *http.Request) {
	var req struct{ BootstrapSecret string }
	if err := decodeBody(r, &req, true); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	secret := req.BootstrapSecret
	if secret == "" {
		secret = newUUID()
	} else if !uuidRE.MatchString(secret) {
		httpError(w, http.StatusBadRequest, "BootstrapSecret must be a UUID")
		return
	}
	// The local check only spares a proposal; the state machine decides.
	done, idx, err := s.b.ACL.ACLBootstrapped()
	if err != nil {
		writeError(w, err)
		return
	}
	if done {
		aclRefusal(w, http.StatusForbidden, fmt.Sprintf("Permission denied: ACL bootstrap no longer allowed (reset index: %d)", idx))
		return
	}
	tok := storage.ACLToken{
		AccessorID:  newUUID(),
		SecretHash:  storage.HashSecret(secret),
		Description: "Bootstrap Token (Global Management)",
		Policies:    []string{ManagementPolicyID},
		CreateTime:  timeNow(),
	}
	res, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLBootstrap, Key: tok.AccessorID, Value: storage.EncodeACLToken(tok)})
	if !ok {
		return
	}
	if !res.OK {
		aclRefusal(w, http.StatusForbidden, "Permission denied: ACL bootstrap no longer allowed (another bootstrap won)")
		return
	}
	tok.CreateIndex, tok.ModifyIndex = res.Index, res.Index
	out := s.tokenOut(tok)
	out.SecretID = secret
	writeJSON(w, http.StatusOK, out)
}

// policyOut renders a stored policy.
func policyOut(p storage.ACLPolicy) ACLPolicy {
	return ACLPolicy{ID: p.ID, Name: p.Name, Description: p.Description, Rules: p.Rules, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex}
}

// managementPolicy is the builtin policy, which is never stored.
func managementPolicy() ACLPolicy {
	return ACLPolicy{ID: ManagementPolicyID, Name: ManagementPolicyName, Description: "Builtin Policy that grants unlimited access", Rules: "# everything: the builtin management policy", CreateIndex: 1, ModifyIndex: 1}
}

// validatePolicy checks a policy create or update; the error is the 400's
// reason.
func validatePolicy(req *aclPolicyRequest) error {
	switch {
	case !policyNameRE.MatchString(req.Name):
		return fmt.Errorf("invalid policy name %q: 1 to 128 letters, digits, '-' or '_'", req.Name)
	case req.Name == ManagementPolicyName:
		return fmt.Errorf("the name %q belongs to the builtin management policy", req.Name)
	case len(req.Description) > maxDescription:
		return fmt.Errorf("description over %d bytes", maxDescription)
	case len(req.Datacenters) > 0:
		return errors.New("Datacenters is not supported: this cluster is one datacenter")
	case req.Namespace != "" && req.Namespace != "default" || req.Partition != "" && req.Partition != "default":
		return errors.New("namespaces and partitions are not supported")
	}
	if _, err := parseRules(req.Rules); err != nil {
		return err
	}
	return nil
}

func (s *Server) aclPolicyCreate(w http.ResponseWriter, r *http.Request) {
	var req aclPolicyRequest
	if err := decodeBody(r, &req, false); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.ID != "" {
		httpError(w, http.StatusBadRequest, "Cannot specify an ID in policy creation")
		return
	}
	if err := validatePolicy(&req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if _, found, err := s.policyByName(req.Name); err != nil {
		writeError(w, err)
		return
	} else if found {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("a policy named %q already exists", req.Name))
		return
	}
	p := storage.ACLPolicy{ID: newUUID(), Name: req.Name, Description: req.Description, Rules: req.Rules}
	res, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetPolicy, Key: p.ID, Value: storage.EncodeACLPolicy(p)})
	if !ok {
		return
	}
	if !res.OK {
		httpError(w, http.StatusConflict, fmt.Sprintf("a policy named %q was created concurrently", req.Name))
		return
	}
	p.CreateIndex, p.ModifyIndex = res.Index, res.Index
	writeJSON(w, http.StatusOK, policyOut(p))
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

func (s *Server) aclPolicyRead(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.aclBarrier(w, r) {
		return
	}
	if id == ManagementPolicyID {
		writeJSON(w, http.StatusOK, managementPolicy())
		return
	}
	p, found, err := s.b.ACL.ACLPolicy(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "ACL policy not found")
		return
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(p.ModifyIndex, 1), 10))
	writeJSON(w, http.StatusOK, policyOut(p))
}

func (s *Server) aclPolicyReadByName(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !s.aclBarrier(w, r) {
		return
	}
	if name == ManagementPolicyName {
		writeJSON(w, http.StatusOK, managementPolicy())
		return
	}
	p, found, err := s.policyByName(name)
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "ACL policy not found")
		return
	}
	writeJSON(w, http.StatusOK, policyOut(p))
}

func (s *Server) aclPolicyUpdate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req aclPolicyRequest
	if err := decodeBody(r, &req, false); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.ID != "" && req.ID != id {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("policy ID %q in the body does not match %q in the path", req.ID, id))
		return
	}
	if id == ManagementPolicyID {
		httpError(w, http.StatusBadRequest, "the builtin management policy cannot be changed")
		return
	}
	if err := validatePolicy(&req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.aclBarrier(w, r) {
		return
	}
	cur, found, err := s.b.ACL.ACLPolicy(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "ACL policy not found")
		return
	}
	if other, taken, err := s.policyByName(req.Name); err != nil {
		writeError(w, err)
		return
	} else if taken && other.ID != id {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("a policy named %q already exists", req.Name))
		return
	}
	p := storage.ACLPolicy{ID: id, Name: req.Name, Description: req.Description, Rules: req.Rules}
	res, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetPolicy, Key: id, Index: cur.ModifyIndex, Value: storage.EncodeACLPolicy(p)})
	if !ok {
		return
	}
	if !res.OK {
		httpError(w, http.StatusConflict, "the policy was changed or deleted concurrently; read it and try again")
		return
	}
	p.CreateIndex, p.ModifyIndex = cur.CreateIndex, res.Index
	writeJSON(w, http.StatusOK, policyOut(p))
}

func (s *Server) aclPolicyDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == ManagementPolicyID {
		httpError(w, http.StatusBadRequest, "the builtin management policy cannot be deleted")
		return
	}
	if _, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLDeletePolicy, Key: id}); ok {
		writeJSON(w, http.StatusOK, true)
	}
}

func (s *Server) aclPolicyList(w http.ResponseWriter, r *http.Request) {
	if !s.aclBarrier(w, r) {
		return
	}
	all, err := s.b.ACL.ACLPolicies()
	if err != nil {
		writeError(w, err)
		return
	}
	out := []ACLPolicy{managementPolicy()}
	for _, p := range all {
		p.Rules = "" // Consul's listing leaves the rules out too
		out = append(out, policyOut(p))
	}
	writeJSON(w, http.StatusOK, out)
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
// policy IDs; an unknown one is the 400's reason.
func (s *Server) tokenPolicies(links []ACLLink) ([]string, int, error) {
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
				return nil, 0, err
			}
			if !found {
				return nil, http.StatusBadRequest, fmt.Errorf("no ACL policy with ID %q", id)
			}
			if l.Name != "" && l.Name != p.Name {
				return nil, http.StatusBadRequest, fmt.Errorf("policy %q is named %q, not %q", id, p.Name, l.Name)
			}
		case l.Name != "":
			p, found, err := s.policyByName(l.Name)
			if err != nil {
				return nil, 0, err
			}
			if !found {
				return nil, http.StatusBadRequest, fmt.Errorf("no ACL policy named %q", l.Name)
			}
			id = p.ID
		default:
			return nil, http.StatusBadRequest, errors.New("a policy link needs an ID or a Name")
		}
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	return ids, 0, nil
}

// checkTokenRequest rejects what Troupe's tokens cannot carry.
func checkTokenRequest(req *aclTokenRequest) error {
	switch {
	case len(req.Roles) > 0:
		return errors.New("roles are not supported: link policies directly")
	case len(req.ServiceIdentities) > 0 || len(req.NodeIdentities) > 0 || len(req.TemplatedPolicies) > 0:
		return errors.New("service, node and templated identities are not supported")
	case req.AuthMethod != "":
		return errors.New("auth methods are not supported")
	case len(req.ExpirationTTL) > 0 && string(req.ExpirationTTL) != "0" || len(req.ExpirationTime) > 0 && string(req.ExpirationTime) != "null":
		return errors.New("token expiry is not supported")
	case req.Local:
		return errors.New("local tokens are not supported: this cluster is one datacenter")
	case req.Namespace != "" && req.Namespace != "default" || req.Partition != "" && req.Partition != "default":
		return errors.New("namespaces and partitions are not supported")
	case len(req.Description) > maxDescription:
		return fmt.Errorf("description over %d bytes", maxDescription)
	}
	return nil
}

func (s *Server) aclTokenCreate(w http.ResponseWriter, r *http.Request) {
	var req aclTokenRequest
	if err := decodeBody(r, &req, false); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkTokenRequest(&req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	// Consul lets the caller choose both IDs (to move tokens between
	// clusters); they must still be UUIDs.
	for _, f := range []struct{ name, v string }{{"AccessorID", req.AccessorID}, {"SecretID", req.SecretID}} {
		if f.v != "" && !uuidRE.MatchString(f.v) {
			httpError(w, http.StatusBadRequest, f.name+" must be a UUID")
			return
		}
	}
	if !s.aclBarrier(w, r) {
		return
	}
	ids, status, err := s.tokenPolicies(req.Policies)
	if err != nil {
		if status == 0 {
			writeError(w, err)
		} else {
			httpError(w, status, err.Error())
		}
		return
	}
	secret := req.SecretID
	if secret == "" {
		secret = newUUID()
	}
	tok := storage.ACLToken{AccessorID: req.AccessorID, SecretHash: storage.HashSecret(secret), Description: req.Description, Policies: ids, CreateTime: timeNow()}
	if tok.AccessorID == "" {
		tok.AccessorID = newUUID()
	}
	res, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetToken, Key: tok.AccessorID, Value: storage.EncodeACLToken(tok)})
	if !ok {
		return
	}
	if !res.OK {
		httpError(w, http.StatusBadRequest, "a token with this AccessorID or SecretID already exists")
		return
	}
	tok.CreateIndex, tok.ModifyIndex = res.Index, res.Index
	out := s.tokenOut(tok)
	out.SecretID = secret
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) aclTokenRead(w http.ResponseWriter, r *http.Request) {
	if !s.aclBarrier(w, r) {
		return
	}
	tok, found, err := s.b.ACL.ACLToken(r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "ACL not found: no token with this AccessorID")
		return
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(tok.ModifyIndex, 1), 10))
	writeJSON(w, http.StatusOK, s.tokenOut(tok))
}

// aclTokenSelf shows the caller its own token, which any valid token may.
func (s *Server) aclTokenSelf(w http.ResponseWriter, r *http.Request) {
	a := authzOf(r)
	if a == nil { // cannot happen with ACLs on: authorize resolved it
		httpError(w, http.StatusUnauthorized, "ACL not found")
		return
	}
	writeJSON(w, http.StatusOK, s.tokenOut(a.token))
}

func (s *Server) aclTokenUpdate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req aclTokenRequest
	if err := decodeBody(r, &req, false); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.AccessorID != "" && req.AccessorID != id {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("AccessorID %q in the body does not match %q in the path", req.AccessorID, id))
		return
	}
	if err := checkTokenRequest(&req); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !s.aclBarrier(w, r) {
		return
	}
	cur, found, err := s.b.ACL.ACLToken(id)
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "ACL not found: no token with this AccessorID")
		return
	}
	if req.SecretID != "" && string(storage.HashSecret(req.SecretID)) != string(cur.SecretHash) {
		httpError(w, http.StatusBadRequest, "a token's SecretID cannot be changed")
		return
	}
	ids, status, err := s.tokenPolicies(req.Policies)
	if err != nil {
		if status == 0 {
			writeError(w, err)
		} else {
			httpError(w, status, err.Error())
		}
		return
	}
	tok := cur
	tok.Description, tok.Policies = req.Description, ids
	res, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLSetToken, Key: id, Index: cur.ModifyIndex, Value: storage.EncodeACLToken(tok)})
	if !ok {
		return
	}
	if !res.OK {
		httpError(w, http.StatusConflict, "the token was changed or deleted concurrently; read it and try again")
		return
	}
	tok.ModifyIndex = res.Index
	writeJSON(w, http.StatusOK, s.tokenOut(tok))
}

func (s *Server) aclTokenDelete(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.aclApply(w, r, &storage.Command{Op: storage.OpACLDeleteToken, Key: r.PathValue("id")}); ok {
		writeJSON(w, http.StatusOK, true)
	}
}

func (s *Server) aclTokenList(w http.ResponseWriter, r *http.Request) {
	if !s.aclBarrier(w, r) {
		return
	}
	all, err := s.b.ACL.ACLTokens()
	if err != nil {
		writeError(w, err)
		return
	}
	out := make([]ACLToken, 0, len(all))
	for _, t := range all {
		out = append(out, s.tokenOut(t))
	}
	writeJSON(w, http.StatusOK, out)
}
