package api

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

type blockedResult struct {
	w       *httptest.ResponseRecorder
	elapsed time.Duration
}

// startGet runs a GET in the background; the result arrives on the channel.
func startGet(t *testing.T, s *Server, target string) <-chan blockedResult {
	t.Helper()
	ch := make(chan blockedResult, 1)
	req := httptest.NewRequest("GET", target, nil)
	go func() {
		start := time.Now()
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		ch <- blockedResult{w, time.Since(start)}
	}()
	return ch
}

func await(t *testing.T, ch <-chan blockedResult, within time.Duration) blockedResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(within):
		t.Fatalf("blocking query did not return within %s", within)
	}
	return blockedResult{}
}

// stillBlocked fails if the query has already answered.
func stillBlocked(t *testing.T, ch <-chan blockedResult, for_ time.Duration) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("blocking query returned early: %d %q index %s", r.w.Code, r.w.Body.String(), r.w.Header().Get("X-Consul-Index"))
	case <-time.After(for_):
	}
}

func u(n uint64) string { return strconv.FormatUint(n, 10) }

func TestBlockingReturnsAtOnceWhenIndexIsBehind(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v")
	put(t, s, "other", "v")
	for _, target := range []string{
		"/v1/kv/k?index=" + u(idx-1) + "&wait=10s",
		"/v1/kv/k?index=0&wait=10s",
		"/v1/kv/?recurse&index=1&wait=10s",
		"/v1/kv/?keys&index=1&wait=10s",
		"/v1/kv/missing?index=1&wait=10s", // KV-wide index is past 1
	} {
		r := await(t, startGet(t, s, target), 2*time.Second)
		if r.elapsed > time.Second {
			t.Errorf("%s took %s", target, r.elapsed)
		}
	}
}

func TestBlockingWakesOnWrite(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v1")
	ch := startGet(t, s, "/v1/kv/k?index="+u(idx)+"&wait=30s")
	stillBlocked(t, ch, 50*time.Millisecond)
	next := put(t, s, "k", "v2")
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 200)
	if got := headerIndex(t, r.w); got != next {
		t.Errorf("woke with index %d, want %d", got, next)
	}
	if p := decodePairs(t, r.w)[0]; string(p.Value) != "v2" {
		t.Errorf("woke with value %q", p.Value)
	}
}

func TestBlockingWakesOnDeleteWith404(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v1")
	ch := startGet(t, s, "/v1/kv/k?index="+u(idx)+"&wait=30s")
	stillBlocked(t, ch, 50*time.Millisecond)
	w := call(t, s, "DELETE", "/v1/kv/k", nil)
	del := headerIndex(t, w)
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 404)
	if got := headerIndex(t, r.w); got != del {
		t.Errorf("woke with index %d, want the delete's %d", got, del)
	}
}

func TestBlockingIgnoresNoopWrite(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "same")
	ch := startGet(t, s, "/v1/kv/k?index="+u(idx)+"&wait=300ms")
	stillBlocked(t, ch, 50*time.Millisecond)
	put(t, s, "k", "same") // changes nothing: ModifyIndex stays
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 200)
	if got := headerIndex(t, r.w); got != idx {
		t.Errorf("index %d, want the unchanged %d", got, idx)
	}
	if r.elapsed < 250*time.Millisecond {
		t.Errorf("returned after %s, before the wait", r.elapsed)
	}
}

func TestBlockingTimesOutWithSameIndex(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v")
	for _, c := range []struct {
		target string
		status int
	}{
		{"/v1/kv/k?index=" + u(idx) + "&wait=200ms", 200},
		{"/v1/kv/k?index=" + u(idx) + "&wait=200ms&stale", 200},
		{"/v1/kv/k?index=" + u(idx) + "&wait=200ms&raw", 200},
		{"/v1/kv/?recurse&index=" + u(idx) + "&wait=200ms", 200},
		{"/v1/kv/?keys&index=" + u(idx) + "&wait=200ms", 200},
		{"/v1/kv/nope?index=" + u(idx) + "&wait=200ms", 404},
	} {
		r := await(t, startGet(t, s, c.target), 5*time.Second)
		wantStatus(t, r.w, c.status)
		if got := headerIndex(t, r.w); got != idx {
			t.Errorf("%s: timed out with index %d, want %d", c.target, got, idx)
		}
		// wait plus at most 1/16 of jitter.
		if r.elapsed < 200*time.Millisecond || r.elapsed > 2*time.Second {
			t.Errorf("%s: returned after %s for a 200ms wait", c.target, r.elapsed)
		}
	}
}

// A client ahead of the server (e.g. after a restore) blocks until timeout.
func TestBlockingIndexAheadOfServerWaits(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v")
	r := await(t, startGet(t, s, "/v1/kv/k?index="+u(idx+100)+"&wait=150ms"), 5*time.Second)
	wantStatus(t, r.w, 200)
	if r.elapsed < 150*time.Millisecond {
		t.Errorf("returned after %s", r.elapsed)
	}
}

// Consul's rule: once a blocking read has seen the key missing, unrelated
// writes (which raise the KV-wide index a missing key reports) do not end
// the wait; only the key's appearance does.
func TestBlockingMissingKeyIgnoresUnrelatedWrites(t *testing.T) {
	s, b := newAPI(t)
	idx := put(t, s, "unrelated", "0")
	before := b.barrierCalls.Load()
	ch := startGet(t, s, "/v1/kv/wanted?index="+u(idx)+"&wait=30s")
	// Let the first pass see the key missing at the client's index.
	waitFor(t, "the first pass", func() bool { return b.barrierCalls.Load() > before })
	stillBlocked(t, ch, 50*time.Millisecond)
	for i := 1; i <= 3; i++ {
		put(t, s, "unrelated", strconv.Itoa(i))
		put(t, s, "wantedX", strconv.Itoa(i)) // shares a prefix, still another key
	}
	stillBlocked(t, ch, 150*time.Millisecond)
	if b.barrierCalls.Load() < before+2 {
		t.Fatalf("the unrelated writes did not wake the query at all (barrier calls %d)", b.barrierCalls.Load()-before)
	}
	appeared := put(t, s, "wanted", "here")
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 200)
	if got := headerIndex(t, r.w); got != appeared {
		t.Errorf("index %d, want %d", got, appeared)
	}
}

func TestBlockingMissingKeyTimesOutAs404(t *testing.T) {
	s, b := newAPI(t)
	idx := put(t, s, "unrelated", "0")
	before := b.barrierCalls.Load()
	ch := startGet(t, s, "/v1/kv/wanted?index="+u(idx)+"&wait=300ms")
	waitFor(t, "the first pass", func() bool { return b.barrierCalls.Load() > before })
	time.Sleep(20 * time.Millisecond)
	last := put(t, s, "unrelated", "1")
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 404)
	if r.elapsed < 300*time.Millisecond {
		t.Errorf("returned after %s, before the wait ended", r.elapsed)
	}
	if got := headerIndex(t, r.w); got != last && got != idx {
		t.Errorf("index %d, want %d or %d", got, idx, last)
	}
}

func TestBlockingRecurseWakesOnDeleteUnderPrefix(t *testing.T) {
	s, _ := newAPI(t)
	put(t, s, "sem/a", "1")
	idx := put(t, s, "sem/b", "2")
	put(t, s, "elsewhere", "x")
	ch := startGet(t, s, "/v1/kv/sem/?recurse&index="+u(idx)+"&wait=30s")
	stillBlocked(t, ch, 50*time.Millisecond)
	put(t, s, "elsewhere", "y") // outside the prefix: no wake-up answer
	stillBlocked(t, ch, 100*time.Millisecond)
	// Delete the older key: the prefix index must still move (tombstone).
	w := call(t, s, "DELETE", "/v1/kv/sem/a", nil)
	del := headerIndex(t, w)
	r := await(t, ch, 5*time.Second)
	wantStatus(t, r.w, 200)
	if got := headerIndex(t, r.w); got != del {
		t.Errorf("index %d, want %d", got, del)
	}
	if pairs := decodePairs(t, r.w); len(pairs) != 1 || pairs[0].Key != "sem/b" {
		t.Errorf("pairs %+v", pairs)
	}
}

func TestBlockingStopsWhenClientGoesAway(t *testing.T) {
	s, _ := newAPI(t)
	idx := put(t, s, "k", "v")
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/v1/kv/k?index="+u(idx)+"&wait=5m", nil).WithContext(ctx)
	done := make(chan struct{})
	go func() {
		s.ServeHTTP(httptest.NewRecorder(), req)
		close(done)
	}()
	time.Sleep(30 * time.Millisecond)
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("handler kept blocking after the client left")
	}
}

func TestBlockingRechecksLeaderEveryPass(t *testing.T) {
	s, b := newAPI(t)
	idx := put(t, s, "k", "v")
	ch := startGet(t, s, "/v1/kv/k?index="+u(idx)+"&wait=30s")
	stillBlocked(t, ch, 50*time.Millisecond)
	before := b.barrierCalls.Load()
	put(t, s, "k", "v2")
	await(t, ch, 5*time.Second)
	if b.barrierCalls.Load() <= before {
		t.Error("the pass after a wake-up skipped the read barrier")
	}
}

func TestBlockingParamsValidation(t *testing.T) {
	s, b := newAPI(t)
	put(t, s, "k", "v")
	for _, c := range []struct{ query, want string }{
		{"index=abc", "Invalid index"},
		{"index=-1", "Invalid index"},
		{"index=1.5", "Invalid index"},
		{"index=18446744073709551616", "Invalid index"},
		{"index=1&wait=10", "Invalid wait time"},
		{"index=1&wait=abc", "Invalid wait time"},
		{"index=1&wait=5x", "Invalid wait time"},
		{"wait=soon", "Invalid wait time"},
	} {
		before := b.barrierCalls.Load()
		for _, target := range []string{"/v1/kv/k?" + c.query, "/v1/kv/?recurse&" + c.query, "/v1/kv/?keys&" + c.query} {
			wantPlainError(t, call(t, s, "GET", target, nil), 400, c.want)
		}
		if b.barrierCalls.Load() != before {
			t.Errorf("%s: invalid parameters still ran the barrier", c.query)
		}
	}
}

func TestBlockingWaitClamp(t *testing.T) {
	for _, c := range []struct {
		query    string
		min, max time.Duration
	}{
		{"", defaultWait, defaultWait + defaultWait/16},
		{"wait=0s", defaultWait, defaultWait + defaultWait/16},
		{"wait=-5s", defaultWait, defaultWait + defaultWait/16},
		{"wait=15000ms", 15 * time.Second, 15*time.Second + 15*time.Second/16},
		{"wait=1h", maxWait, maxWait + maxWait/16},
		{"wait=10m", maxWait, maxWait + maxWait/16},
		{"wait=1ms", time.Millisecond, time.Millisecond + time.Millisecond/16},
	} {
		for range 20 {
			w := httptest.NewRecorder()
			_, wait, ok := blockingParams(w, httptest.NewRequest("GET", "/v1/kv/k?index=5&"+c.query, nil).URL.Query())
			if !ok {
				t.Fatalf("%s: rejected", c.query)
			}
			if wait < c.min || wait > c.max {
				t.Errorf("%s: wait %s outside [%s, %s]", c.query, wait, c.min, c.max)
			}
		}
	}
}
