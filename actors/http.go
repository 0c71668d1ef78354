package actors

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/asynkron/protoactor-go/actor"
)

// httpActor owns the API listener. Started binds it and starts serving;
// Stopping drains in-flight requests; a restart closes the server hard and
// binds again.
type httpActor struct {
	tree    *Tree
	handler http.Handler
	srv     *http.Server
	ln      net.Listener
}

// serveFailed tells the http actor that its server stopped on its own.
type serveFailed struct {
	err error
}

func (a *httpActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
	case *actor.Restarting:
		if a.srv != nil {
			_ = a.srv.Close()
		}
	case *actor.Stopping:
		// Long polls answer now rather than hold the drain for its timeout.
		if d, ok := a.handler.(interface{ Drain() }); ok {
			d.Drain()
		}
		if a.srv != nil {
			c, cancel := context.WithTimeout(context.Background(), DrainTimeout)
			if err := a.srv.Shutdown(c); err != nil {
				_ = a.srv.Close()
			}
			cancel()
		}
	case *serveFailed:
		panic(fmt.Sprintf("http server stopped: %v", m.err))
	case *crash:
		if m.fault == FaultListener {
			// Serve fails on the closed listener and reports it.
			_ = a.ln.Close()
			return
		}
		panic(fmt.Sprintf("injected crash: %s", m.reason))
	}
}

func (a *httpActor) start(ctx actor.Context) {
	ln, err := net.Listen("tcp", a.tree.cfg.HTTPAddr)
	if err != nil {
		panic(fmt.Sprintf("http listener on %s: %v", a.tree.cfg.HTTPAddr, err))
	}
	lim := a.tree.cfg.HTTPLimits
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		// No WriteTimeout: blocking queries legitimately hold a response
		// for up to ten minutes.
		IdleTimeout:    lim.IdleTimeout,
		MaxHeaderBytes: lim.MaxHeaderBytes,
	}
	a.srv, a.ln = srv, ln
	tlsCfg := a.tree.cfg.HTTPTLS
	ln = &connLimiter{Listener: ln, max: int64(lim.MaxConns), health: &a.tree.clientPort, silent: tlsCfg != nil}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	go func() {
		err := srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			root.Send(self, &serveFailed{err: err})
		}
	}()
}
