package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/scheduler"

	"github.com/troupe-kv/troupe/cluster"
)

// joinActor asks the --join seeds, in turn, to add this node to their
// cluster, with a growing pause between rounds, until one accepts; then
// it stops. The raft actor starts it only for a node that belongs to no
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

// attempt tries every seed once, off the mailbox.
func (a *joinActor) attempt(ctx actor.Context) {
	cfg, link := a.tree.cfg, a.tree.link
	self, root := ctx.Self(), ctx.ActorSystem().Root
	body, _ := json.Marshal(cluster.JoinRequest{ID: cfg.Raft.NodeID, RaftAddr: cfg.Raft.RaftAdvertise, HTTPAddr: cfg.AdvertiseHTTP})
	go func() {
		for _, seed := range cfg.Join {
			c, cancel := context.WithTimeout(context.Background(), cfg.RequestTimeout)
			status, b, err := link.Do(c, seed, http.MethodPost, cluster.JoinPath, body, false)
			cancel()
			if err == nil && status == http.StatusOK {
				cfg.Logger.Info("joined the cluster", "through", seed)
				root.Send(self, &joinResult{joined: true})
				return
			}
			cfg.Logger.Warn("join attempt failed", "seed", seed, "status", status, "err", err, "answer", string(bytes.TrimSpace(b)))
		}
		root.Send(self, &joinResult{})
	}()
}
