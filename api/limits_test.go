package api

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// callFrom sends a request as if from addr, with extra headers.
func callFrom(s http.Handler, addr, method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.RemoteAddr = addr
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w
}

// TestRateLimitPerClient: each client (address, or token when it sends
// one) gets its own bucket; past it 429 with Retry-After and a reason,
// and other clients and other nodes' requests are not affected.
func TestRateLimitPerClient(t *testing.T) {
	s, _ := newAPI(t, func(c *apiConfig) { c.opts.RateLimit, c.opts.RateBurst = 1, 3 })
	for i := 0; i < 3; i++ {
		if w := callFrom(s, "10.0.0.1:5000", "GET", "/v1/kv/k?stale"); w.Code != 404 {
			t.Fatalf("request %d within the burst: %d", i, w.Code)
		}
	}
	w := callFrom(s, "10.0.0.1:5001", "GET", "/v1/kv/k?stale")
	wantPlainError(t, w, 429, "rate limit", "per client")
	if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", w.Header().Get("Retry-After"))
	}
	// Another address, and the same address with a token, have their own
	// buckets.
	if w := callFrom(s, "10.0.0.2:5000", "GET", "/v1/kv/k?stale"); w.Code != 404 {
		t.Fatalf("another client was limited: %d", w.Code)
	}
	if w := callFrom(s, "10.0.0.1:5000", "GET", "/v1/kv/k?stale", "X-Consul-Token", "t1"); w.Code != 404 {
		t.Fatalf("a client with its own token was limited: %d", w.Code)
	}
	// A header that once marked a peer's request earns nothing.
	if w := callFrom(s, "10.0.0.1:5001", "GET", "/v1/kv/k?stale", "X-Troupe-Forwarded-By", "n2"); w.Code != 429 {
		t.Fatalf("a request claiming to come from a node escaped the limit: %d", w.Code)
	}
}

func TestRateLimitOffByDefault(t *testing.T) {
	s, _ := newAPI(t)
	for i := 0; i < 200; i++ {
		if w := callFrom(s, "10.0.0.1:5000", "GET", "/v1/kv/k?stale"); w.Code != 404 {
			t.Fatalf("request %d: %d", i, w.Code)
		}
	}
}

// TestBlockingQueryCap: past the cap a blocking query gets 429 at once;
// plain reads still pass, and a slot frees when a query answers.
func TestBlockingQueryCap(t *testing.T) {
	s, _ := newAPI(t, func(c *apiConfig) { c.opts.MaxBlockingQueries = 1 })
	idx := put(t, s, "k", "v")
	held := make(chan *httptest.ResponseRecorder)
	go func() { held <- call(t, s, "GET", "/v1/kv/k?index="+strconv.FormatUint(idx, 10)+"&wait=1s", nil) }()
	waitFor(t, "the first blocking query to be held", func() bool { return s.blocking.Load() == 1 })
	wantPlainError(t, call(t, s, "GET", "/v1/kv/k?index="+strconv.FormatUint(idx, 10)+"&wait=1s", nil), 429, "too many blocking queries")
	if w := call(t, s, "GET", "/v1/kv/k", nil); w.Code != 200 {
		t.Fatalf("a plain read past the cap: %d", w.Code)
	}
	select {
	case w := <-held:
		if w.Code != 200 {
			t.Fatalf("held query: %d", w.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("held query never answered")
	}
	if n := s.blocking.Load(); n != 0 {
		t.Fatalf("%d blocking queries still counted after they answered", n)
	}
}
