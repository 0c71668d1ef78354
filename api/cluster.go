package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
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
	var req cluster.JoinRequest
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
	if err := s.b.Cluster.Join(ctx, req, r.Header.Get(cluster.ForwardedHeader) != ""); err != nil {
		writeJSONError(w, membershipStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"joined": req.ID})
}

func validateJoin(req cluster.JoinRequest) error {
	if strings.TrimSpace(req.ID) == "" || strings.ContainsAny(req.ID, "/=, \t\n") {
		return fmt.Errorf("bad join request: id %q must be non-empty and free of '/', '=', ',' and spaces", req.ID)
	}
	for name, addr := range map[string]string{"raft_addr": req.RaftAddr, "http_addr": req.HTTPAddr} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("bad join request: %s %q must be host:port", name, addr)
		}
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
	if err := s.b.Cluster.Remove(ctx, id, r.Header.Get(cluster.ForwardedHeader) != ""); err != nil {
		writeJSONError(w, membershipStatus(err), err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"removed": id})
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

// internalPing answers a peer's failure-detector probe. It obeys the fault
// rules like every other message from a peer.
func (s *Server) internalPing(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(cluster.ForwardedHeader) == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New("internal endpoint: only other nodes call it"))
		return
	}
	writeJSON(w, http.StatusOK, cluster.PingReply{ID: s.b.Peer.NodeID()})
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

// internalApply serves a follower's forwarded write. It is only valid as a
// forward: the header marks it so the leader never forwards it again.
func (s *Server) internalApply(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(cluster.ForwardedHeader) == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New("internal endpoint: only other nodes call it"))
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxValueSize+2*MaxKeySize+1024))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	res, err := s.b.Peer.ApplyForwarded(ctx, data)
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	writeJSON(w, http.StatusOK, cluster.ApplyReply{Index: res.Index, OK: res.OK})
}

// internalApplyBatch serves a follower's batch of forwarded writes.
func (s *Server) internalApplyBatch(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(cluster.ForwardedHeader) == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New("internal endpoint: only other nodes call it"))
		return
	}
	// A follower fills a batch up to MaxBatchBytes, or sends one command
	// alone when it is bigger than that.
	limit := max(int64(cluster.MaxBatchBytes), s.opts.MaxValueSize) + int64(cluster.MaxBatch)*(2*MaxKeySize+1024)
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeJSONError(w, http.StatusRequestEntityTooLarge, err)
		return
	}
	cmds, err := cluster.DecodeBatch(data)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	writeJSON(w, http.StatusOK, s.b.Peer.ApplyForwardedBatch(ctx, cmds))
}

func (s *Server) internalReadIndex(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(cluster.ForwardedHeader) == "" {
		writeJSONError(w, http.StatusBadRequest, errors.New("internal endpoint: only other nodes call it"))
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	idx, err := s.b.Peer.ReadIndexForwarded(ctx)
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	writeJSON(w, http.StatusOK, cluster.ReadIndexReply{Index: idx})
}

// fromPeer wraps the handlers of requests other nodes send (they carry the
// forwarded-by header) in the fault rules for that peer: the request obeys
// this node's "in" rules before it is served, and the answer obeys the
// "out" rules before it leaves. A request or answer "lost" on the way is
// never answered: the connection is dropped, as a silent network would.
func (s *Server) fromPeer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		peer := r.Header.Get(cluster.ForwardedHeader)
		if peer == "" || s.b.Chaos == nil {
			h(w, r)
			return
		}
		ctx, cancel := s.requestContext(r)
		defer cancel()
		// Bodies stand for the bytes on the wire: a bandwidth cap holds a
		// large forwarded batch longer than a ping.
		if err := s.b.Chaos.AllowInbound(ctx, peer, int(max(r.ContentLength, 0))); err != nil {
			dropConnection(w, peer)
			return
		}
		answer := &heldResponse{header: http.Header{}, status: http.StatusOK}
		h(answer, r)
		if err := s.b.Chaos.AllowOutbound(ctx, peer, answer.body.Len()); err != nil {
			dropConnection(w, peer)
			return
		}
		answer.sendTo(w)
	}
}

// dropConnection ends a request without an answer. A writer that cannot
// be hijacked gets a 503 instead, the nearest thing to silence it allows.
func dropConnection(w http.ResponseWriter, peer string) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			conn.Close()
			return
		}
	}
	writeJSONError(w, http.StatusServiceUnavailable, fmt.Errorf("%w (the link with %s is cut or lossy)", cluster.ErrNoLeader, peer))
}

// heldResponse keeps a handler's answer until the fault rules let it go.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header         { return h.header }
func (h *heldResponse) WriteHeader(status int)      { h.status = status }
func (h *heldResponse) Write(b []byte) (int, error) { return h.body.Write(b) }

func (h *heldResponse) sendTo(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	w.WriteHeader(h.status)
	_, _ = w.Write(h.body.Bytes())
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
