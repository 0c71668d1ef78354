package peerlink

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

func setCmd(key, value string) []byte {
	return (&storage.Command{Op: storage.OpSet, Key: key, Value: []byte(value)}).Encode()
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// listen opens a peer port for node self on loopback.
func listen(t testing.TB, cfg Config) *Listener {
	t.Helper()
	l, err := Listen("127.0.0.1:0", cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// recorded is what a test leader saw of one request.
type recorded struct {
	from, path string
	body       []byte
}

// fakeLeader is a real peer port whose RPC channel answers every request
// with status and body, recording it.
func fakeLeader(t *testing.T, status int, body string) (string, func() []recorded) {
	var mu sync.Mutex
	var reqs []recorded
	l := listen(t, Config{Network: faultnet.Plain("n1")})
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			reqs = append(reqs, recorded{from: sender(r), path: r.URL.Path, body: b})
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, c.(*Conn).Peer)
		},
	}
	go srv.Serve(l.RPC())
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), func() []recorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]recorded(nil), reqs...)
	}
}

func newTestClient(t *testing.T, self string) (*Client, *faultnet.Network) {
	n := faultnet.New(self)
	c := NewClient(Config{Network: n})
	t.Cleanup(c.Close)
	return c, n
}
