package bench

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// troupe-tls must measure a cluster that speaks TLS: its load reaches a
// real 3-node TLS cluster with the cluster's client certificate, and the
// plain store, or one without a client certificate, does not.
func TestTroupeTLSSpeaksTLSToATLSCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := StartCluster(ctx, t.TempDir(), testcluster.Binary(t), 3, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	store := c.Store()
	if store.Name() != "troupe-tls" {
		t.Fatalf("the TLS cluster's store is %q", store.Name())
	}
	eps := c.Endpoints()
	if err := Preload(ctx, store, eps, "smoke/", 30, 100, 4); err != nil {
		t.Fatalf("writes over TLS: %v", err)
	}
	hc := NewClient(1, store.TLSConfig())
	defer hc.CloseIdleConnections()
	for _, ep := range eps {
		resp, err := hc.Do(store.Get(ep, "smoke/7", false).WithContext(ctx))
		if err != nil {
			t.Fatalf("linearizable read from %s over TLS: %v", ep, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.TLS == nil {
			t.Fatalf("linearizable read from %s: %d %s (TLS state %v)", ep, resp.StatusCode, body, resp.TLS)
		}
	}

	if err := Preload(ctx, Troupe{}, eps, "plain/", 3, 100, 1); err == nil {
		t.Error("plain HTTP writes to the TLS cluster succeeded")
	}
	noCert := store.TLSConfig().Clone()
	noCert.Certificates = nil
	if err := Preload(ctx, Troupe{TLS: noCert}, eps, "nocert/", 3, 100, 1); err == nil {
		t.Error("writes without a client certificate succeeded")
	}
}
