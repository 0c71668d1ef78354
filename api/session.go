package api

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// Session TTL bounds, as Consul's: a TTL of 0 (or none) means the session
// has no timer; any other must lie within [SessionTTLMin, MaxSessionTTL].
const (
	DefaultSessionTTLMin = 10 * time.Second
	MaxSessionTTL        = 24 * time.Hour
	// DefaultLockDelay is the lock-delay of a session that names none.
	DefaultLockDelay = 15 * time.Second
)

// maxSessionBody bounds a session create's body.
const maxSessionBody = 64 << 10

// SessionEntry is Consul's JSON form of a session. LockDelay is an integer
// count of nanoseconds on the way out (it comes in as a duration string);
// TTL is exactly what the creator sent; NodeChecks is [] rather than null
// for a session without checks (the Go client's tests compare with []).
type SessionEntry struct {
	ID            string
	Name          string
	Node          string
	LockDelay     time.Duration
	Behavior      string
	TTL           string
	NodeChecks    []string
	ServiceChecks []sessionServiceCheck
	CreateIndex   uint64
	ModifyIndex   uint64
}

// sessionServiceCheck is Consul's ServiceCheck; Troupe has no services,
// so a session never has one.
type sessionServiceCheck struct {
	ID        string
	Namespace string `json:",omitempty"`
}

func toSessionEntry(s storage.Session) SessionEntry {
	checks := s.NodeChecks
	if checks == nil {
		checks = []string{}
	}
	return SessionEntry{
		ID: s.ID, Name: s.Name, Node: s.Node, LockDelay: s.LockDelay, Behavior: s.Behavior, TTL: s.TTL,
		NodeChecks: checks, CreateIndex: s.CreateIndex, ModifyIndex: s.ModifyIndex,
	}
}

// sessionCreateBody is what a create may carry. Consul's decoder is
// lenient (unknown fields are ignored, names match in any case), and so is
// this one; LockDelay is a duration string or a number, and the check
// lists tell "absent" (the default, serfHealth) from "[]" (none).
type sessionCreateBody struct {
	Name          string
	Node          string
	LockDelay     json.RawMessage
	Behavior      string
	TTL           string
	NodeChecks    *[]string
	Checks        *[]string // Consul's older name for NodeChecks
	ServiceChecks []sessionServiceCheck
}

// sessionCreateError is a create refused for its body: 400 with the
// reason. Consul answers most of these with 500; a body that cannot be
// stored is the client's to fix, and 400 tells its retry logic so.
type sessionCreateError struct{ msg string }

func (e *sessionCreateError) Error() string { return e.msg }

func badSession(format string, args ...any) error {
	return &sessionCreateError{fmt.Sprintf(format, args...)}
}

// parseSessionCreate decodes and validates a create's body (empty means
// every default) into the session to store, but for its ID and Node,
// which the caller settles. node is the body's Node, "" if it names none.
func parseSessionCreate(body []byte, ttlMin time.Duration) (s storage.Session, node string, err error) {
	var in sessionCreateBody
	if len(bytes.TrimSpace(body)) > 0 {
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&in); err != nil {
			return s, "", badSession("Request decode failed: %v", err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			return s, "", badSession("Request decode failed: data after the session object")
		}
	}
	s = storage.Session{Name: in.Name, Behavior: in.Behavior, TTL: in.TTL, LockDelay: DefaultLockDelay}
	switch s.Behavior {
	case "":
		s.Behavior = storage.SessionRelease
	case storage.SessionRelease, storage.SessionDelete:
	default:
		return s, "", badSession("Invalid Behavior setting '%s': want release or delete", in.Behavior)
	}
	if len(in.LockDelay) > 0 && string(in.LockDelay) != "null" {
		if s.LockDelay, err = parseLockDelay(in.LockDelay); err != nil {
			return s, "", err
		}
	}
	if s.TTL != "" {
		ttl, err := time.ParseDuration(s.TTL)
		if err != nil {
			return s, "", badSession("Session TTL '%s' invalid: %v", s.TTL, err)
		}
		if ttl != 0 && (ttl < ttlMin || ttl > MaxSessionTTL) {
			return s, "", badSession("Invalid Session TTL '%s', must be between [%v=%v] (or 0 for none)", s.TTL, ttlMin, MaxSessionTTL)
		}
	}
	s.NodeChecks = []string{storage.CheckSerfHealth}
	if in.NodeChecks != nil || in.Checks != nil {
		s.NodeChecks = []string{}
		for _, list := range []*[]string{in.NodeChecks, in.Checks} {
			if list == nil {
				continue
			}
			for _, id := range *list {
				if id != storage.CheckSerfHealth {
					return s, "", badSession("Missing check '%s' registration: the only node check is %s", id, storage.CheckSerfHealth)
				}
				if !slices.Contains(s.NodeChecks, id) {
					s.NodeChecks = append(s.NodeChecks, id)
				}
			}
		}
	}
	if len(in.ServiceChecks) > 0 {
		return s, "", badSession("Missing check '%s' registration: Troupe has no services, so no service checks", in.ServiceChecks[0].ID)
	}
	if len(s.Name) > 1024 {
		return s, "", badSession("Name is %d bytes, the limit is 1024", len(s.Name))
	}
	return s, in.Node, nil
}

// parseLockDelay reads Consul's two forms: a duration string ("15s",
// "15000ms"), or a number of nanoseconds, where a number under 1000 counts
// seconds instead (so 15 means 15s).
func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	var d time.Duration
	var str string
	if json.Unmarshal(raw, &str) == nil {
		var err error
		if d, err = time.ParseDuration(str); err != nil {
			return 0, badSession("LockDelay %q invalid: %v", str, err)
		}
	} else {
		var f float64
		if err := json.Unmarshal(raw, &f); err != nil {
			return 0, badSession("LockDelay must be a duration (\"15s\") or a number of nanoseconds, not %s", raw)
		}
		if f >= math.MaxInt64 || f <= math.MinInt64 || f != math.Trunc(f) {
			return 0, badSession("LockDelay %s is not a whole number of nanoseconds", raw)
		}
		d = time.Duration(f)
		if d > 0 && d < 1000 {
			d *= time.Second
		}
	}
	if d < 0 {
		return 0, badSession("LockDelay %v is negative", d)
	}
	return d, nil
}

// newSessionID is a random (version 4) UUID in lower case.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// sessionCreate serves PUT /v1/session/create.
func (s *Server) sessionCreate(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSessionBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body too large, max size: %d bytes", maxSessionBody))
		return
	}
	sess, node, err := parseSessionCreate(body, s.opts.SessionTTLMin)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	if sess.Node, err = s.sessionNode(node); err != nil {
		var bad *sessionCreateError
		if errors.As(err, &bad) {
			httpError(w, http.StatusBadRequest, err.Error())
		} else {
			writeError(w, err)
		}
		return
	}
	if a := authzOf(r); a != nil && !a.sessionWrite(sess.Node) {
		a.denied(w, "session:write", sess.Node)
		return
	}
	sess.ID = newSessionID()
	res, ok := s.replicate(w, r, &storage.Command{Op: storage.OpSessionCreate, Key: sess.ID, Value: storage.EncodeSession(sess)})
	if !ok {
		return
	}
	if !res.OK {
		httpError(w, http.StatusInternalServerError, "the session was not created (its id was taken): try again")
		return
	}
	writeJSON(w, http.StatusOK, struct{ ID string }{sess.ID})
}

// sessionNode settles a new session's Node: this node when the body names
// none, else a member of the cluster (matched without regard to case, as
// Consul matches node names), so serfHealth has a node to watch.
func (s *Server) sessionNode(named string) (string, error) {
	if named == "" || strings.EqualFold(named, s.opts.NodeID) {
		if s.opts.NodeID == "" {
			return "", errors.New("this node has no id to give the session")
		}
		return s.opts.NodeID, nil
	}
	members, err := s.b.Cluster.Members()
	if err != nil {
		return "", err
	}
	for _, m := range members {
		if strings.EqualFold(m.ID, named) {
			return m.ID, nil
		}
	}
	return "", badSession("Missing node registration: %q is not a member of this cluster", named)
}

// sessionID reads the {id} of a session path, lower-cased (ids are
// matched without regard to case, as in Consul); it answers 400 itself.
func sessionID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := strings.ToLower(r.PathValue("id"))
	switch {
	case id == "":
		httpError(w, http.StatusBadRequest, "Missing session")
		return "", false
	case len(id) > storage.MaxSessionIDSize || strings.Contains(id, "/"):
		httpError(w, http.StatusBadRequest, fmt.Sprintf("Invalid session id: at most %d bytes, without '/'", storage.MaxSessionIDSize))
		return "", false
	}
	return id, true
}

// lookupSession reads session id linearizably, for a check of the token
// before the session is changed.
func (s *Server) lookupSession(w http.ResponseWriter, r *http.Request, id string) (storage.Session, bool, bool) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.b.KV.Read(ctx, storage.Query{Kind: storage.QuerySession, Key: id}, s.opts.UnsafeReads, storage.Block{})
	if err != nil {
		writeError(w, err)
		return storage.Session{}, false, false
	}
	if !res.Found {
		return storage.Session{}, false, true
	}
	return res.Sessions[0], true, true
}

// sessionDestroy serves PUT /v1/session/destroy/{id}: true, also for a
// session that does not exist (Consul's answer).
func (s *Server) sessionDestroy(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	if a := authzOf(r); a != nil {
		sess, found, ok := s.lookupSession(w, r, id)
		switch {
		case !ok:
			return
		case !found:
			writeJSON(w, http.StatusOK, true)
			return
		case !a.sessionWrite(sess.Node):
			a.denied(w, "session:write", sess.Node)
			return
		}
	}
	if _, ok := s.replicate(w, r, &storage.Command{Op: storage.OpSessionDestroy, Key: id}); ok {
		writeJSON(w, http.StatusOK, true)
	}
}

// sessionRenew serves PUT /v1/session/renew/{id}: the leader resets the
// session's timer (no Raft entry) and the answer is the session, in a
// list; 404 for a session that does not exist, which the Go client turns
// into ErrSessionExpired.
func (s *Server) sessionRenew(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	id, ok := sessionID(w, r)
	if !ok {
		return
	}
	if s.b.Sessions == nil {
		httpError(w, http.StatusNotImplemented, "session renewal is not available on this node")
		return
	}
	notFound := func() { httpError(w, http.StatusNotFound, fmt.Sprintf("Session id '%s' not found", id)) }
	if a := authzOf(r); a != nil {
		sess, found, ok := s.lookupSession(w, r, id)
		switch {
		case !ok:
			return
		case !found:
			notFound()
			return
		case !a.sessionWrite(sess.Node):
			a.denied(w, "session:write", sess.Node)
			return
		}
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	sess, found, err := s.b.Sessions.RenewSession(ctx, id)
	switch {
	case err != nil:
		writeError(w, err)
	case !found:
		notFound()
	default:
		writeJSON(w, http.StatusOK, []SessionEntry{toSessionEntry(sess)})
	}
}

// sessionRead serves the three session reads: info/{id}, list and
// node/{node}. Each may block (?index, ?wait) on the sessions-wide index,
// and answers 200 with a list, [] when nothing matches (never 404: the Go
// client treats any other code as an error).
func (s *Server) sessionRead(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if !s.checkScopeQuery(w, r, q) {
			return
		}
		stale, consistent := has(q, "stale"), has(q, "consistent")
		if stale && consistent {
			httpError(w, http.StatusBadRequest, "Cannot specify ?stale with ?consistent, conflicting semantics.")
			return
		}
		query := storage.Query{Kind: storage.QuerySessions}
		switch kind {
		case "info":
			id, ok := sessionID(w, r)
			if !ok {
				return
			}
			query = storage.Query{Kind: storage.QuerySession, Key: id}
		case "node":
			query.Key = r.PathValue("node")
			if query.Key == "" {
				httpError(w, http.StatusBadRequest, "Missing node name")
				return
			}
		}
		minIndex, wait, release, ok := s.admitBlocking(w, q)
		if !ok {
			return
		}
		defer release()
		res, err := s.b.KV.Read(r.Context(), query, stale || s.opts.UnsafeReads, storage.Block{MinIndex: minIndex, Wait: wait, Drain: s.draining})
		if err != nil {
			if r.Context().Err() == nil {
				writeError(w, err)
			}
			return
		}
		out := make([]SessionEntry, 0, len(res.Sessions))
		a := authzOf(r)
		for _, sess := range res.Sessions {
			if a != nil && !a.sessionRead(sess.Node) {
				w.Header().Set("X-Consul-Results-Filtered-By-ACLs", "true")
				continue
			}
			out = append(out, toSessionEntry(sess))
		}
		s.writeRead(w, r, out, true, res.Index, !stale)
	}
}
