package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// syncBuffer collects the HTTP server's own error log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Every backend error becomes exactly one status (no second WriteHeader, no
// doubled body) with the outcome header clients use to decide on retries.
func TestBackendErrorsMapToStatus(t *testing.T) {
	cases := []struct {
		name       string
		err        error
		status     int
		outcome    string
		retryAfter bool
	}{
		{"no leader", cluster.ErrNoLeader, 503, OutcomeNotApplied, true},
		{"no leader wrapped", fmt.Errorf("%w (raft is restarting)", cluster.ErrNoLeader), 503, OutcomeNotApplied, true},
		{"not leader", cluster.ErrNotLeader, 503, OutcomeNotApplied, true},
		{"unknown outcome", cluster.ErrUnknownOutcome, 503, OutcomeUnknown, true},
		{"unknown outcome wrapped", fmt.Errorf("%w (at the leader: timeout)", cluster.ErrUnknownOutcome), 503, OutcomeUnknown, true},
		{"busy", cluster.ErrBusy, 429, OutcomeNotApplied, true},
		{"no space", &storage.NoSpaceError{Alarms: []storage.Alarm{{Type: storage.AlarmNoSpace, Member: "n2", Reason: "over quota"}}}, 507, OutcomeNotApplied, false},
		{"bad command", fmt.Errorf("%w: bad varint", storage.ErrBadCommand), 400, OutcomeNotApplied, false},
		{"canceled", context.Canceled, 499, OutcomeUnknown, false},
		{"anything else", errors.New("disk on fire"), 500, OutcomeUnknown, false},
	}
	requests := []struct {
		method, target string
		body           string
		viaBarrier     bool
	}{
		{"PUT", "/v1/kv/k", "v", false},
		{"PUT", "/v1/kv/k?cas=0", "v", false},
		{"PUT", "/v1/kv/k?flags=3", "v", false},
		{"DELETE", "/v1/kv/k", "", false},
		{"DELETE", "/v1/kv/k?cas=1", "", false},
		{"DELETE", "/v1/kv/?recurse", "", false},
		{"GET", "/v1/kv/k", "", true},
		{"GET", "/v1/kv/k?raw", "", true},
		{"GET", "/v1/kv/?recurse", "", true},
		{"GET", "/v1/kv/?keys", "", true},
		{"GET", "/v1/kv/k?consistent", "", true},
		{"GET", "/v1/kv/k?index=1&wait=10s", "", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, b := newAPI(t)
			put(t, s, "k", "v")
			logs := &syncBuffer{}
			srv := httptest.NewUnstartedServer(s)
			srv.Config.ErrorLog = log.New(logs, "", 0)
			srv.Start()
			defer srv.Close()
			b.set(func(f *fakeBackend) { f.applyErr, f.barrierErr = c.err, c.err })

			for _, r := range requests {
				b.storeUnchanged(t, r.method+" "+r.target, func() {
					req, _ := http.NewRequest(r.method, srv.URL+r.target, strings.NewReader(r.body))
					resp, err := srv.Client().Do(req)
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != c.status {
						t.Errorf("%s %s: status %d, want %d (%q)", r.method, r.target, resp.StatusCode, c.status, body)
					}
					if got := resp.Header.Get(OutcomeHeader); got != c.outcome {
						t.Errorf("%s %s: %s %q, want %q", r.method, r.target, OutcomeHeader, got, c.outcome)
					}
					if got := resp.Header.Get("Retry-After") != ""; got != c.retryAfter {
						t.Errorf("%s %s: Retry-After present %v, want %v", r.method, r.target, got, c.retryAfter)
					}
					if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
						t.Errorf("%s %s: Content-Type %q, want plain text", r.method, r.target, ct)
					}
					if n := strings.Count(string(body), c.err.Error()); n != 1 {
						t.Errorf("%s %s: body %q carries the error %d times", r.method, r.target, body, n)
					}
					if resp.Header.Get("X-Consul-Index") != "" && c.status >= 400 {
						t.Errorf("%s %s: error answer carries X-Consul-Index", r.method, r.target)
					}
				})
			}
			// The barrier is only consulted by non-stale reads; a stale read
			// still works.
			resp, err := srv.Client().Get(srv.URL + "/v1/kv/k?stale")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("stale read with a failing barrier: %d", resp.StatusCode)
			}
			srv.Close()
			if l := logs.String(); strings.Contains(l, "superfluous") || strings.Contains(l, "panic") {
				t.Errorf("server log:\n%s", l)
			}
		})
	}
}

func TestErrorStatusTable(t *testing.T) {
	// errorStatus is the one mapping; check the wrapped forms resolve to the
	// most specific sentinel.
	both := fmt.Errorf("%w then %w", cluster.ErrNoLeader, cluster.ErrUnknownOutcome)
	if st, out := errorStatus(both); st != 503 || out != OutcomeUnknown {
		t.Errorf("no leader + unknown outcome: %d %s, want 503 unknown (never claim not-applied when unsure)", st, out)
	}
}
