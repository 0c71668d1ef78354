package actors

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/troupe-kv/troupe/cluster/peerlink"
)

// joinActor asks the --join seeds, in turn, to add this node to their
// cluster, with a growing pause between rounds, until one accepts or the
// node finds itself a member (an operator added it); then it stops. The raft actor starts it only for a node that belongs to no
// cluster yet, and restarts it with itself.
type joinActor struct {
	tree    *Tree
	backoff time.Duration
	cancel  scheduler.CancelFunc
}

type (
	joinAttempt struct{}
	joinResult  struct{ joined bool }
)

func (a *joinActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.backoff = 200 * time.Millisecond
		ctx.Send(ctx.Self(), joinAttempt{})
	case *actor.Stopping, *actor.Restarting:
		if a.cancel != nil {
			a.cancel()
		}
	case joinAttempt:
		if a.member() {
			// An operator added it (kvctl members add): nothing to ask.
			a.tree.cfg.Logger.Info("added to the cluster")
			ctx.Stop(ctx.Self())
			return
		}
		a.attempt(ctx)
	case *joinResult:
		if m.joined {
			ctx.Stop(ctx.Self())
			return
		}
		a.cancel = scheduler.NewTimerScheduler(ctx.ActorSystem().Root).SendOnce(a.backoff, ctx.Self(), joinAttempt{})
		a.backoff = min(2*a.backoff, 5*time.Second)
	}
}

// member reports whether this node is in the Raft configuration it
// holds, i.e. whether the leader has added it since it started.
func (a *joinActor) member() bool {
	ms, err := a.tree.client.Members()
	if err != nil {
		return false
	}
	for _, m := range ms {
		if m.ID == a.tree.cfg.Raft.NodeID {
			return true
		}
	}
	return false
}

// attempt tries every seed once, off the mailbox. It asks each seed's
// client API, as an operator's tool would: joining is a membership change,
// which the cluster grants through the client API (with a management
// token when ACLs are on), never to a node that merely asks on the peer
// port.
func (a *joinActor) attempt(ctx actor.Context) {
	cfg := a.tree.cfg
	self, root := ctx.Self(), ctx.ActorSystem().Root
	req := peerlink.JoinRequest{ID: cfg.Raft.NodeID, RaftAddr: cfg.Raft.RaftAdvertise}
	if cfg.JoinAsNonvoter {
		req.Suffrage = peerlink.SuffrageNonvoter
	}
	body, _ := json.Marshal(req)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg.JoinTLS}}
	go func() {
		defer hc.CloseIdleConnections()
		for _, seed := range cfg.Join {
			c, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
			status, b, err := postJoin(c, hc, seedURL(seed, cfg.JoinTLS != nil), cfg.JoinToken, body)
			cancel()
			if err == nil && status == http.StatusOK {
				cfg.Logger.Info("joined the cluster", "through", seed, "suffrage", cmp.Or(req.Suffrage, peerlink.SuffrageVoter))
				root.Send(self, &joinResult{joined: true})
				return
			}
			cfg.Logger.Warn("join attempt failed", "seed", seed, "status", status, "err", err, "answer", string(bytes.TrimSpace(b)))
		}
		root.Send(self, &joinResult{})
	}()
}

// seedURL makes a seed's join URL: a seed given as host:port uses https
// when TLS is configured for joining.
func seedURL(seed string, tls bool) string {
	if !strings.Contains(seed, "://") {
		scheme := "http://"
		if tls {
			scheme = "https://"
		}
		seed = scheme + seed
	}
	return strings.TrimRight(seed, "/") + "/v1/cluster/join"
}

func postJoin(ctx context.Context, hc *http.Client, url, token string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}
