package peerlink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// Handler serves what other nodes ask of this one. The server has already
// checked that the sender may send each command (see checkSender).
type Handler interface {
	// Ping answers a probe: this node's id and its client port's trouble.
	Ping() PingReply
	// Apply applies a command a follower forwarded; only a leader takes
	// it, and it never forwards it again (the sender retries).
	Apply(ctx context.Context, cmd []byte) (storage.Result, error)
	// ApplyBatch applies a follower's batch and answers each command.
	ApplyBatch(ctx context.Context, cmds [][]byte) []BatchItemReply
	// ReadIndex answers a follower's read-index request; leader only.
	ReadIndex(ctx context.Context) (uint64, error)
	// Membership makes a membership change a member forwarded; leader
	// only.
	Membership(ctx context.Context, req MembershipRequest) error
	// RenewSession resets the TTL of session id and returns it (found
	// false: no such session); leader only.
	RenewSession(ctx context.Context, id string) (s storage.Session, found bool, err error)
	// RestoreSnapshot restores the backup read from r, which a member
	// passed on for a client holding token; leader only. It may take
	// much longer than a request timeout: it bounds itself.
	RestoreSnapshot(ctx context.Context, token string, r io.Reader) (storage.BackupInfo, error)
}

// ServerOptions tune the server half.
type ServerOptions struct {
	// MaxCommandBytes is the largest single command accepted.
	MaxCommandBytes int64
	// RequestTimeout bounds how long one request may wait for the leader.
	RequestTimeout time.Duration
	Logger         *slog.Logger
}

// Server serves the forwarding protocol on a Listener's RPC channel.
type Server struct {
	srv  *http.Server
	h    Handler
	opts ServerOptions
	done chan struct{}
}

type peerKey struct{}

// Serve serves h on ln (a Listener's RPC channel) until Close.
func Serve(ln net.Listener, h Handler, opts ServerOptions) *Server {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 5 * time.Second
	}
	if opts.MaxCommandBytes <= 0 {
		opts.MaxCommandBytes = 1 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{h: h, opts: opts, done: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           s.mux(),
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if pc, ok := c.(*Conn); ok {
				return context.WithValue(ctx, peerKey{}, pc.Peer)
			}
			return ctx
		},
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s
}

func (s *Server) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathApply, s.apply)
	mux.HandleFunc("POST "+pathApplyBatch, s.applyBatch)
	mux.HandleFunc("POST "+pathReadIndex, s.readIndex)
	mux.HandleFunc("POST "+pathPing, s.ping)
	mux.HandleFunc("POST "+pathMembership, s.membership)
	mux.HandleFunc("POST "+pathSessionRenew, s.renewSession)
	mux.HandleFunc("POST "+pathSnapshotRestore, s.restoreSnapshot)
	return mux
}

// Close stops serving and closes every connection.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// sender is the node id of the connection a request came on.
func sender(r *http.Request) string {
	id, _ := r.Context().Value(peerKey{}).(string)
	return id
}

// checkSender refuses commands a node may only send about itself: a node
// registers its own client address, and nobody else's; removing a node's
// address is the leader's own doing when it removes the member, never a
// request from another node.
func checkSender(from string, data []byte) error {
	cmd, err := storage.DecodeCommand(data)
	if err != nil {
		return &RemoteError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	switch cmd.Op {
	case storage.OpRegisterNode:
		if cmd.Key != from {
			return &RemoteError{Status: http.StatusForbidden, Message: fmt.Sprintf("node %q may register only its own address, not that of %q", from, cmd.Key)}
		}
	case storage.OpDeregisterNode:
		return &RemoteError{Status: http.StatusForbidden, Message: fmt.Sprintf("node %q may not deregister %q: only the leader does, when it removes a member", from, cmd.Key)}
	case storage.OpAlarmRaise:
		// A member measures its own disk; an operator's disarm
		// (OpAlarmClear) comes through any node.
		if _, member, _ := strings.Cut(cmd.Key, "/"); member != from {
			return &RemoteError{Status: http.StatusForbidden, Message: fmt.Sprintf("node %q may raise alarms only about itself, not %q", from, cmd.Key)}
		}
	}
	return nil
}

func (s *Server) context(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.opts.RequestTimeout)
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxCommandBytes))
	if err != nil {
		writeError(w, &RemoteError{Status: http.StatusRequestEntityTooLarge, Message: err.Error()})
		return
	}
	if err := checkSender(sender(r), data); err != nil {
		writeError(w, err)
		return
	}
	ctx, cancel := s.context(r)
	defer cancel()
	res, err := s.h.Apply(ctx, data)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, applyReply{Index: res.Index, OK: res.OK, Txn: res.Txn})
}

func (s *Server) applyBatch(w http.ResponseWriter, r *http.Request) {
	// A follower fills a batch up to MaxBatchBytes, or sends one command
	// alone when it is bigger than that.
	limit := max(MaxBatchBytes, s.opts.MaxCommandBytes) + MaxBatch*16
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		writeError(w, &RemoteError{Status: http.StatusRequestEntityTooLarge, Message: err.Error()})
		return
	}
	cmds, err := decodeBatch(data)
	if err != nil {
		writeError(w, &RemoteError{Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	// Refused commands are answered alone; the rest are applied.
	from := sender(r)
	replies := make([]BatchItemReply, len(cmds))
	var ok [][]byte
	var at []int
	for i, c := range cmds {
		if int64(len(c)) > s.opts.MaxCommandBytes {
			replies[i] = ReplyFor(storage.Result{}, &RemoteError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("command of %d bytes is over the %d-byte limit", len(c), s.opts.MaxCommandBytes)})
			continue
		}
		if err := checkSender(from, c); err != nil {
			replies[i] = ReplyFor(storage.Result{}, err)
			continue
		}
		ok, at = append(ok, c), append(at, i)
	}
	if len(ok) > 0 {
		ctx, cancel := s.context(r)
		defer cancel()
		for j, rep := range s.h.ApplyBatch(ctx, ok) {
			replies[at[j]] = rep
		}
	}
	writeJSON(w, replies)
}

func (s *Server) readIndex(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.context(r)
	defer cancel()
	idx, err := s.h.ReadIndex(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, readIndexReply{Index: idx})
}

func (s *Server) ping(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, s.h.Ping())
}

func (s *Server) membership(w http.ResponseWriter, r *http.Request) {
	var req MembershipRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, &RemoteError{Status: http.StatusBadRequest, Message: "bad membership request: " + err.Error()})
		return
	}
	if err := req.validate(); err != nil {
		writeError(w, &RemoteError{Status: http.StatusBadRequest, Message: err.Error()})
		return
	}
	ctx, cancel := s.context(r)
	defer cancel()
	if err := s.h.Membership(ctx, req); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, struct{}{})
}

func (s *Server) renewSession(w http.ResponseWriter, r *http.Request) {
	id, err := io.ReadAll(http.MaxBytesReader(w, r.Body, storage.MaxSessionIDSize))
	if err != nil || len(id) == 0 {
		writeError(w, &RemoteError{Status: http.StatusBadRequest, Message: fmt.Sprintf("a session renewal carries a session id of 1 to %d bytes", storage.MaxSessionIDSize)})
		return
	}
	ctx, cancel := s.context(r)
	defer cancel()
	sess, found, err := s.h.RenewSession(ctx, string(id))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, sessionRenewReply{Found: found, Session: sess})
}

func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	info, err := s.h.RestoreSnapshot(r.Context(), r.Header.Get(tokenHeader), r.Body)
	if err != nil {
		if errors.Is(err, storage.ErrBadBackup) {
			err = &RemoteError{Status: http.StatusBadRequest, Message: err.Error()}
		}
		writeError(w, err)
		return
	}
	writeJSON(w, info)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers err with its code (so the sender gets the sentinel
// error back), or with a refusal's own status.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusServiceUnavailable
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		status = re.Status
		err = errors.New(re.Message)
	case errors.Is(err, storage.ErrBadCommand):
		status = http.StatusBadRequest
	case ErrorCode(err) == "":
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorBody{Code: ErrorCode(err), Error: err.Error()})
}
