package actors

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// peerHandler serves the peer port's forwarding protocol through Client:
// everything it is asked comes from another node, so only a leader
// serves it and nothing is forwarded again (one hop, no loops).
type peerHandler struct{ c *Client }

func (h peerHandler) Ping() peerlink.PingReply {
	r := peerlink.PingReply{ID: h.c.NodeID(), HTTPAddr: h.c.tree.cfg.AdvertiseHTTP, Version: h.c.tree.cfg.Build.Version}
	if err := h.c.tree.clientPort.err(time.Now()); err != nil {
		r.ClientPortError = err.Error()
	}
	if err := h.c.tree.disk.Err(); err != nil {
		r.DiskError = err.Error()
	}
	r.StateCheck = newestStateCheck(h.c.tree.cfg.Store.StateChecks())
	r.AppliedIndex = h.c.tree.cfg.Store.AppliedIndex()
	return r
}

func (h peerHandler) Apply(ctx context.Context, cmd []byte) (storage.Result, error) {
	return h.c.propose(ctx, cmd, true)
}

func (h peerHandler) ApplyBatch(ctx context.Context, cmds [][]byte) []peerlink.BatchItemReply {
	return h.c.applyForwardedBatch(ctx, cmds)
}

func (h peerHandler) ReadIndex(ctx context.Context) (uint64, error) {
	return h.c.readIndex(ctx, true)
}

// Membership takes a change another member passed on for a client. A
// member may only speak for itself (peerlink refuses the rest), so with
// ACLs on the leader does not take the forwarding node's word that the
// client may change the membership: it checks the client's token itself.
func (h peerHandler) Membership(ctx context.Context, req peerlink.MembershipRequest) error {
	if h.c.tree.cfg.ACLEnabled && !h.c.isManagement(req.Token) {
		return &peerlink.RemoteError{Status: http.StatusForbidden, Message: "Permission denied: changing the membership needs a management token (operator:write)"}
	}
	return h.c.membership(ctx, &membership{req: req, fromPeer: true})
}

// RenewSession renews a session for a client of another node; only the
// leader serves it.
func (h peerHandler) RenewSession(ctx context.Context, id string) (storage.Session, bool, error) {
	return h.c.renewSession(ctx, id, true)
}

// RestoreSnapshot takes a backup another member passed on for a client;
// only the leader serves it. As with membership, the leader checks the
// client's token itself.
func (h peerHandler) RestoreSnapshot(ctx context.Context, token string, r io.Reader) (storage.BackupInfo, error) {
	if h.c.tree.cfg.ACLEnabled && !h.c.isManagement(token) {
		return storage.BackupInfo{}, &peerlink.RemoteError{Status: http.StatusForbidden, Message: "Permission denied: restoring a snapshot needs a management token (operator:write)"}
	}
	return h.c.restoreSnapshot(ctx, r, token, true)
}
