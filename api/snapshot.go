package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// Snapshots is what /v1/snapshot needs: Consul's backup and restore of
// the whole state.
type Snapshots interface {
	// SaveSnapshot writes a backup of this node's state (after a read
	// barrier unless stale) to an anonymous temporary file, returned at
	// its start; the caller closes it.
	SaveSnapshot(ctx context.Context, stale bool) (*os.File, storage.BackupInfo, error)
	// RestoreSnapshot replaces the whole cluster's state with the backup
	// read from r, through the leader; token is the client's.
	RestoreSnapshot(ctx context.Context, r io.Reader, token string) (storage.BackupInfo, error)
}

// SnapshotSHA256Header carries a saved snapshot's checksum (also the last
// 32 bytes of the body), so a client can check what it stored.
const SnapshotSHA256Header = "X-Troupe-Snapshot-Sha256"

// maxRestoreUpload bounds how long the upload of a restore may take: the
// server's ReadTimeout is made for ordinary requests.
const maxRestoreUpload = 15 * time.Minute

func (s *Server) snapshotRoutes() {
	if s.b.Snapshots == nil {
		return
	}
	s.mux.HandleFunc("GET /v1/snapshot", s.snapshotSave)
	s.mux.HandleFunc("PUT /v1/snapshot", s.snapshotRestore)
}

// snapshotSave streams a backup of the whole state, as Consul's GET
// /v1/snapshot does (the body is Troupe's own format, which PUT takes
// back). Any node serves it: after a read barrier it holds every write
// acknowledged before the request, like a linearizable read; ?stale
// skips the barrier.
func (s *Server) snapshotSave(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if !s.checkScopeQuery(w, r, q) {
		return
	}
	stale := has(q, "stale")
	ctx, cancel := s.requestContext(r)
	defer cancel()
	f, info, err := s.b.Snapshots.SaveSnapshot(ctx, stale)
	if err != nil {
		writeError(w, err)
		return
	}
	defer f.Close()
	s.setLeaderHeaders(w, !stale)
	h := w.Header()
	h.Set("X-Consul-Index", strconv.FormatUint(info.Index, 10))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
	h.Set(SnapshotSHA256Header, info.SHA256)
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f)
}

// snapshotRestore replaces the whole cluster's state with the uploaded
// backup, as Consul's PUT /v1/snapshot does. A damaged, cut or foreign
// file is refused with 400 and changes nothing.
func (s *Server) snapshotRestore(w http.ResponseWriter, r *http.Request) {
	if !s.checkScope(w, r) {
		return
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(maxRestoreUpload))
	info, err := s.b.Snapshots.RestoreSnapshot(r.Context(), r.Body, requestToken(r))
	switch {
	case errors.Is(err, storage.ErrBadBackup):
		w.Header().Set(OutcomeHeader, OutcomeNotApplied)
		httpError(w, http.StatusBadRequest, fmt.Sprintf("snapshot refused, nothing was changed: %v", err))
		return
	case err != nil:
		writeError(w, err)
		return
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(info.RestoredAt, 10))
	writeJSON(w, http.StatusOK, info)
}
