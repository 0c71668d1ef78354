package inproc

import (
	"context"
	"io"
	"testing"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// ProbeOnly opens a peer port that answers probes as node id and nothing
// else, and returns its address: enough for a leader to add it as a
// voter, never a working one (a voter that stays down, for tests of
// membership).
func ProbeOnly(t testing.TB, id string) string {
	t.Helper()
	l, err := peerlink.Listen("127.0.0.1:0", peerlink.Config{Network: faultnet.Plain(id)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := peerlink.Serve(l.RPC(), probeOnly(id), peerlink.ServerOptions{})
	t.Cleanup(func() { s.Close(); l.Close() })
	return l.Addr().String()
}

// probeOnly answers probes; everything else it refuses as a follower
// would.
type probeOnly string

func (p probeOnly) Ping() peerlink.PingReply { return peerlink.PingReply{ID: string(p)} }

func (p probeOnly) Apply(context.Context, []byte) (storage.Result, error) {
	return storage.Result{}, peerlink.ErrNotLeader
}

func (p probeOnly) ApplyBatch(_ context.Context, cmds [][]byte) []peerlink.BatchItemReply {
	out := make([]peerlink.BatchItemReply, len(cmds))
	for i := range out {
		out[i] = peerlink.ReplyFor(storage.Result{}, peerlink.ErrNotLeader)
	}
	return out
}

func (p probeOnly) ReadIndex(context.Context) (uint64, error) { return 0, peerlink.ErrNotLeader }

func (p probeOnly) Membership(context.Context, peerlink.MembershipRequest) error {
	return peerlink.ErrNotLeader
}

func (p probeOnly) RenewSession(context.Context, string) (storage.Session, bool, error) {
	return storage.Session{}, false, peerlink.ErrNotLeader
}

func (p probeOnly) RestoreSnapshot(context.Context, string, io.Reader) (storage.BackupInfo, error) {
	return storage.BackupInfo{}, peerlink.ErrNotLeader
}
