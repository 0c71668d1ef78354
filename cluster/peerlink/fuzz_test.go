package peerlink

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/storage"
)

// FuzzServer sends the forwarding protocol's server arbitrary requests
// from a member: it must never panic or hang, must answer every request,
// and what reaches the handler must be well-formed and allowed for the
// sender (no other node's registration, no deregistration).
func FuzzServer(f *testing.F) {
	for _, seed := range []struct {
		path string
		body []byte
	}{
		{pathApply, setCmd("k", "v")},
		{pathApply, register("n2", "10.0.0.2:8500")},
		{pathApply, register("n1", "10.0.0.9:8500")},
		{pathApplyBatch, encodeBatch([][]byte{setCmd("a", "1"), register("n3", "x:1")})},
		{pathApplyBatch, []byte{5, 'a'}},
		{pathReadIndex, nil},
		{pathPing, nil},
		{pathMembership, []byte(`{"join":{"id":"n4","raft_addr":"10.0.0.4:8300"}}`)},
		{pathMembership, []byte(`{"remove":"n3","token":"t"}`)},
		{pathMembership, []byte(`{"join":{},"remove":"x"}`)},
		{pathSessionRenew, []byte("0a2b4c6d-1111-2222-3333-444455556666")},
		{pathSessionRenew, nil},
		{"/nope", []byte("x")},
	} {
		f.Add(seed.path, seed.body)
	}
	h := &checkingHandler{t: f}
	s := &Server{h: h, opts: ServerOptions{MaxCommandBytes: 4096, RequestTimeout: time.Second}}
	mux := s.mux()
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		h.t = t
		if len(path) == 0 || path[0] != '/' {
			path = "/" + path
		}
		req := httptest.NewRequest(http.MethodPost, "http://peer/", bytes.NewReader(body))
		req.URL.Path = path
		req = req.WithContext(context.WithValue(req.Context(), peerKey{}, "n2"))
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code == 0 {
			t.Fatalf("%s: no answer", path)
		}
	})
}

// checkingHandler fails the fuzz run if anything the server should have
// refused reaches it.
type checkingHandler struct{ t testing.TB }

func (h *checkingHandler) check(cmd []byte) {
	c, err := storage.DecodeCommand(cmd)
	if err != nil {
		h.t.Fatalf("an undecodable command reached the handler: %x", cmd)
	}
	if c.Op == storage.OpDeregisterNode || c.Op == storage.OpRegisterNode && c.Key != "n2" {
		h.t.Fatalf("a forbidden command reached the handler: %+v", c)
	}
}

func (h *checkingHandler) Ping() PingReply { return PingReply{ID: "n1"} }

func (h *checkingHandler) Apply(_ context.Context, cmd []byte) (storage.Result, error) {
	h.check(cmd)
	return storage.Result{Index: 1, OK: true}, nil
}

func (h *checkingHandler) ApplyBatch(_ context.Context, cmds [][]byte) []BatchItemReply {
	out := make([]BatchItemReply, len(cmds))
	for i, c := range cmds {
		h.check(c)
		out[i] = BatchItemReply{Index: 1, OK: true}
	}
	return out
}

func (h *checkingHandler) ReadIndex(context.Context) (uint64, error) { return 1, nil }

func (h *checkingHandler) RenewSession(_ context.Context, id string) (storage.Session, bool, error) {
	if id == "" || len(id) > storage.MaxSessionIDSize {
		h.t.Fatalf("a renewal of %d-byte id reached the handler", len(id))
	}
	return storage.Session{ID: id}, true, nil
}

func (h *checkingHandler) Membership(_ context.Context, req MembershipRequest) error {
	if req.validate() != nil {
		h.t.Fatalf("an invalid membership request reached the handler: %+v", req)
	}
	return nil
}

func (h *checkingHandler) RestoreSnapshot(_ context.Context, _ string, r io.Reader) (storage.BackupInfo, error) {
	return storage.ReadBackup(r, nil)
}
