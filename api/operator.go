package api

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
)

// RaftServer is one server of Consul's /v1/operator/raft/configuration,
// in Consul's JSON shape, so consul/api's Operator().RaftGetConfiguration
// and `consul operator raft list-peers`-style tools read it.
type RaftServer struct {
	ID string
	// Node is Consul's node name; a Troupe node's name is its id.
	Node    string
	Address string
	Leader  bool
	// ProtocolVersion is Consul's Raft protocol version: "3", the one
	// whose server ids are not addresses, as here.
	ProtocolVersion string
	Voter           bool
	// LastIndex is reported for the answering node only (0 for the
	// others): Consul takes it from autopilot's view of each server.
	LastIndex uint64
}

// RaftConfiguration is Consul's answer to
// /v1/operator/raft/configuration.
type RaftConfiguration struct {
	Servers []RaftServer
	// Index is the log index the configuration was made at.
	Index uint64
}

// raftProtocolVersion is what every server reports as its Raft protocol
// version (see RaftServer).
const raftProtocolVersion = "3"

// operatorRaftConfiguration answers Consul's GET
// /v1/operator/raft/configuration: every server of the Raft
// configuration, voters and non-voters. Like Consul, it answers with the
// leader's view unless ?stale (here: after a read barrier, so the
// configuration holds every change committed before the request).
func (s *Server) operatorRaftConfiguration(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	conf, err := s.b.Cluster.Configuration(ctx, has(q, "stale"))
	if err != nil {
		writeError(w, err)
		return
	}
	st, _ := s.b.Cluster.Status()
	out := RaftConfiguration{Servers: []RaftServer{}, Index: conf.Index}
	for _, m := range conf.Members {
		rs := RaftServer{ID: m.ID, Node: m.ID, Address: m.RaftAddr, Leader: m.Leader, ProtocolVersion: raftProtocolVersion, Voter: m.Voter}
		if m.ID == st.ID {
			rs.LastIndex = st.LastLogIndex
		}
		out.Servers = append(out.Servers, rs)
	}
	writeJSON(w, http.StatusOK, out)
}

// operatorRaftRemovePeer answers Consul's DELETE
// /v1/operator/raft/peer?id=<id> (or ?address=<raft address>): the
// server leaves the Raft configuration, as DELETE /v1/cluster/members/<id>
// does, with the same check that the voters the leader reaches keep a
// quorum. Consul's answer to a success is an empty 200.
func (s *Server) operatorRaftRemovePeer(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	id, addr := q.Get("id"), q.Get("address")
	if (id == "") == (addr == "") {
		httpError(w, http.StatusBadRequest, "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove")
		return
	}
	members, err := s.b.Cluster.Members()
	if err != nil {
		writeError(w, err)
		return
	}
	found := ""
	for _, m := range members {
		if (id != "" && m.ID == id) || (addr != "" && m.RaftAddr == addr) {
			found = m.ID
		}
	}
	if found == "" {
		what := fmt.Sprintf("id %q", id)
		if addr != "" {
			what = fmt.Sprintf("address %q", addr)
		}
		httpError(w, http.StatusNotFound, what+" was not found in the Raft configuration")
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	if err := s.b.Cluster.ChangeMembership(ctx, peerlink.MembershipRequest{Remove: found, Token: requestToken(r)}); err != nil {
		status, outcome := errorStatus(err)
		if status == http.StatusInternalServerError {
			// A refusal of the leader's (the quorum check, a clash):
			// nothing changed.
			status, outcome = http.StatusConflict, OutcomeNotApplied
		}
		w.Header().Set(OutcomeHeader, outcome)
		httpError(w, status, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

// TransferLeaderResponse is Consul's answer to a leadership transfer.
type TransferLeaderResponse struct {
	Success bool
}

// operatorRaftTransferLeader answers Consul's POST
// /v1/operator/raft/transfer-leader[?id=<voter>]: the leader hands
// leadership to that voter, or to a live one of its choosing, and the
// answer comes once the new leader has been heard from. An unknown id is
// 404 and a non-voter 400, with nothing done; a transfer that did not
// happen (the target did not take over in time) is 500, and the old
// leader still leads.
func (s *Server) operatorRaftTransferLeader(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	id := q.Get("id")
	if id != "" {
		members, err := s.b.Cluster.Members()
		if err != nil {
			writeError(w, err)
			return
		}
		i := slices.IndexFunc(members, func(m cluster.Member) bool { return m.ID == id })
		switch {
		case i < 0:
			httpError(w, http.StatusNotFound, fmt.Sprintf("id %q was not found in the Raft configuration", id))
			return
		case !members[i].Voter:
			httpError(w, http.StatusBadRequest, fmt.Sprintf("%q is a non-voter and cannot lead: promote it first", id))
			return
		}
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	req := peerlink.MembershipRequest{TransferLeader: &peerlink.TransferRequest{To: id}, Token: requestToken(r)}
	if err := s.b.Cluster.ChangeMembership(ctx, req); err != nil {
		writeError(w, fmt.Errorf("leadership transfer: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, TransferLeaderResponse{Success: true})
}
