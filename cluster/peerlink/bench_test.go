package peerlink

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/certs"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

// countingHandler applies nothing and remembers nothing.
type countingHandler struct{}

func (countingHandler) Ping() PingReply { return PingReply{ID: "n1"} }
func (countingHandler) Apply(context.Context, []byte) (storage.Result, error) {
	return storage.Result{Index: 1, OK: true}, nil
}
func (countingHandler) ApplyBatch(_ context.Context, cmds [][]byte) []BatchItemReply {
	return make([]BatchItemReply, len(cmds))
}
func (countingHandler) ReadIndex(context.Context) (uint64, error)           { return 1, nil }
func (countingHandler) Membership(context.Context, MembershipRequest) error { return nil }
func (countingHandler) RestoreSnapshot(context.Context, string, io.Reader) (storage.BackupInfo, error) {
	return storage.BackupInfo{}, nil
}
func (countingHandler) RenewSession(context.Context, string) (storage.Session, bool, error) {
	return storage.Session{}, true, nil
}

// nodeTLS is node id's certificates from a CA made in dir.
type nodeTLS struct{ *certs.Reloader }

func (nodeTLS) PeerID(cs tls.ConnectionState) (string, error) { return certs.PeerID(cs) }

func makeTLS(tb testing.TB, ids ...string) map[string]TLS {
	tb.Helper()
	dir := tb.TempDir()
	ca, caKey, err := certs.NewCA("bench CA", time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			tb.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", ca)
	out := map[string]TLS{}
	for _, id := range ids {
		cert, key, err := certs.NewNodeCert(ca, caKey, id, []string{"127.0.0.1"}, 30*time.Minute)
		if err != nil {
			tb.Fatal(err)
		}
		r, err := certs.Load(certs.Files{CA: caFile, Cert: write(id+".pem", cert), Key: write(id+"-key.pem", key)})
		if err != nil {
			tb.Fatal(err)
		}
		out[id] = nodeTLS{r}
	}
	return out
}

// BenchmarkApply is one forwarded write's round trip on a kept-alive
// connection: the cost of the channel itself without the fault layer,
// with it but no rules, and with mutual TLS.
func BenchmarkApply(b *testing.B) {
	keys := makeTLS(b, "n1", "n2")
	for _, kind := range []struct {
		name string
		net  func(string) *faultnet.Network
		tls  bool
	}{{"plain", faultnet.Plain, false}, {"faultnet-no-rules", faultnet.New, false}, {"mtls", faultnet.Plain, true}} {
		b.Run(kind.name, func(b *testing.B) {
			server, client := Config{Network: kind.net("n1")}, Config{Network: kind.net("n2")}
			if kind.tls {
				server.TLS, client.TLS = keys["n1"], keys["n2"]
			}
			l := listen(b, server)
			s := Serve(l.RPC(), countingHandler{}, ServerOptions{})
			defer s.Close()
			c := NewClient(client)
			defer c.Close()
			cmd := setCmd("bench/key", string(make([]byte, 100)))
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Apply(ctx, l.Addr().String(), cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestMutualTLSChannel: the channel works over mutual TLS, and the server
// knows the caller by its certificate.
func TestMutualTLSChannel(t *testing.T) {
	keys := makeTLS(t, "n1", "n2")
	l := listen(t, Config{Network: faultnet.Plain("n1"), TLS: keys["n1"]})
	out, err := Dial(ctxFor(t, 5*time.Second), Config{Network: faultnet.Plain("n2"), TLS: keys["n2"]}, l.Addr().String(), ChannelRPC)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := accept(t, l.RPC())
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	if pc := in.(*Conn); pc.Peer != "n2" {
		t.Fatalf("peer %q", pc.Peer)
	}
	// A caller whose preamble claims another id than its certificate is
	// refused.
	liar := Config{Network: faultnet.Plain("n3"), TLS: keys["n2"]}
	if c, err := Dial(ctxFor(t, 5*time.Second), liar, l.Addr().String(), ChannelRPC); err == nil {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a caller whose certificate contradicts its preamble was served")
		}
		c.Close()
	}
	if c, err := acceptWithin(t, l.RPC(), 500*time.Millisecond); err == nil {
		t.Fatalf("the liar's connection was delivered: %+v", c)
	}
}
