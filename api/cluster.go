package api

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// statusLeader answers Consul's /v1/status/leader: the leader's Raft
// address as a JSON string, "" when there is none.
func (s *Server) statusLeader(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	writeJSON(w, http.StatusOK, s.b.Cluster.Leader().RaftAddr)
}

// statusPeers answers Consul's /v1/status/peers: the voters' Raft addresses.
func (s *Server) statusPeers(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	peers, err := s.b.Cluster.Peers()
	if err != nil {
		writeError(w, err)
		return
	}
	if peers == nil {
		peers = []string{}
	}
	writeJSON(w, http.StatusOK, peers)
}

func (s *Server) clusterMembers(w http.ResponseWriter, r *http.Request) {
	members, err := s.b.Cluster.Members()
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	if members == nil {
		members = []cluster.Member{}
	}
	writeJSON(w, http.StatusOK, members)
}

func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Cluster.Status()
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) clusterJoin(w http.ResponseWriter, r *http.Request) {
	var req peerlink.JoinRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("bad join request: %v", err))
		return
	}
	if err := validateJoin(req); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	force, err := forceParam(r)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.b.Cluster.ChangeMembership(ctx, peerlink.MembershipRequest{Join: &req, Token: requestToken(r), Force: force}); err != nil {
		writeJSONError(w, membershipStatus(err), err)
		return
	}
	suffrage := req.Suffrage
	if suffrage == "" {
		suffrage = peerlink.SuffrageVoter
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": req.ID, "suffrage": suffrage})
}

func validateJoin(req peerlink.JoinRequest) error {
	if strings.TrimSpace(req.ID) == "" || strings.ContainsAny(req.ID, "/=, \t\n") {
		return fmt.Errorf("bad join request: id %q must be non-empty and free of '/', '=', ',' and spaces", req.ID)
	}
	host, port, err := net.SplitHostPort(req.RaftAddr)
	if err != nil || host == "" || port == "" || port == "0" {
		return fmt.Errorf("bad join request: raft_addr %q must be host:port", req.RaftAddr)
	}
	switch req.Suffrage {
	case "", peerlink.SuffrageVoter, peerlink.SuffrageNonvoter:
	default:
		return fmt.Errorf("bad join request: suffrage %q must be %q or %q", req.Suffrage, peerlink.SuffrageVoter, peerlink.SuffrageNonvoter)
	}
	return nil
}

// membershipStatus keeps "not leader / no quorum" at 503, a leader's own
// refusal at its status, and turns other refusals from Raft (e.g. a clashing
// address) into 409.
func membershipStatus(err error) int {
	status, _ := errorStatus(err)
	if status == http.StatusInternalServerError {
		return http.StatusConflict
	}
	return status
}

func (s *Server) clusterRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.changeMember(w, r, id, func(force bool) peerlink.MembershipRequest {
		return peerlink.MembershipRequest{Remove: id, Token: requestToken(r), Force: force}
	}, "removed")
}

// clusterPromote makes a non-voter a voter once it has caught up (409
// with how far behind it is otherwise; ?force=true skips that check).
func (s *Server) clusterPromote(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.changeMember(w, r, id, func(force bool) peerlink.MembershipRequest {
		return peerlink.MembershipRequest{Promote: id, Token: requestToken(r), Force: force}
	}, "promoted")
}

// changeMember makes a change to the existing member id through the
// leader: 404 when there is no such member, the leader's refusal
// otherwise, and {done: id} on success.
func (s *Server) changeMember(w http.ResponseWriter, r *http.Request, id string, change func(force bool) peerlink.MembershipRequest, done string) {
	members, err := s.b.Cluster.Members()
	if err != nil {
		// Not knowing the members is not the same as "no such member": a
		// 404 here could make a tool skip a removal that never happened.
		writeJSONError(w, 0, err)
		return
	}
	known := false
	for _, m := range members {
		known = known || m.ID == id
	}
	if !known {
		writeJSONError(w, http.StatusNotFound, fmt.Errorf("no member with id %q", id))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	force, err := forceParam(r)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	if err := s.b.Cluster.ChangeMembership(ctx, change(force)); err != nil {
		writeJSONError(w, membershipStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{done: id})
}

func (s *Server) clusterSnapshot(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	idx, err := s.b.Cluster.Snapshot(ctx)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
}

// clusterHealth reports the failure detector's verdict on every peer.
func (s *Server) clusterHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	h, err := s.b.Cluster.Health(ctx)
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

// clusterAlarms lists the raised alarms.
func (s *Server) clusterAlarms(w http.ResponseWriter, r *http.Request) {
	alarms := s.b.Cluster.Alarms()
	if alarms == nil {
		alarms = []storage.Alarm{}
	}
	writeJSON(w, http.StatusOK, alarms)
}

// clusterDisarm clears the alarms ?type and ?member name (absent: any),
// as etcdctl alarm disarm does. A member still past its limits raises its
// alarm again at its next measurement.
func (s *Server) clusterDisarm(w http.ResponseWriter, r *http.Request) {
	typ, member, err := alarmParams(r.URL.Query())
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	disarmed, err := s.b.Cluster.Disarm(ctx, typ, member)
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"disarmed": disarmed})
}

// alarmParams reads and checks ?type and ?member of a disarm.
func alarmParams(q url.Values) (typ, member string, err error) {
	for name := range q {
		if name != "type" && name != "member" {
			return "", "", fmt.Errorf("unknown parameter %q (type and member are known)", name)
		}
	}
	typ, member = q.Get("type"), q.Get("member")
	if typ != "" && typ != storage.AlarmNoSpace {
		return "", "", fmt.Errorf("unknown alarm type %q (known: %s)", typ, storage.AlarmNoSpace)
	}
	if strings.ContainsAny(member, "/=, \t\n") {
		return "", "", fmt.Errorf("member %q is not a node id", member)
	}
	return typ, member, nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok\n")
}

// readyz is 200 when this node can serve linearizable requests.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Cluster.Ready(); err != nil {
		httpError(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}

func (s *Server) chaosGetFaults(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.b.Chaos.Faults())
}

func (s *Server) chaosSetFaults(w http.ResponseWriter, r *http.Request) {
	var rs faultnet.Rules
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rs); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("bad fault rules: %v", err))
		return
	}
	if err := s.b.Chaos.SetFaults(rs); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, s.b.Chaos.Faults())
}

func (s *Server) chaosClearFaults(w http.ResponseWriter, r *http.Request) {
	if err := s.b.Chaos.SetFaults(faultnet.Rules{}); err != nil {
		writeJSONError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, s.b.Chaos.Faults())
}

// chaosCrash makes an actor panic so supervision can be watched from
// outside. Mounted only with --chaos.
func (s *Server) chaosCrash(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("actor")
	if err := s.b.Chaos.Crash(name, r.URL.Query().Get("fault"), "requested through /v1/chaos/crash"); err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"crashed": name})
}

// forceParam reads ?force: a membership change that would leave the
// reachable voters short of a quorum is made anyway.
func forceParam(r *http.Request) (bool, error) {
	v, ok := r.URL.Query()["force"]
	if !ok {
		return false, nil
	}
	if len(v) == 1 && (v[0] == "" || v[0] == "true") {
		return true, nil
	}
	if len(v) == 1 && v[0] == "false" {
		return false, nil
	}
	return false, fmt.Errorf("force must be true or false, not %q", strings.Join(v, ","))
}
