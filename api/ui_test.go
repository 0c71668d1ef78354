package api

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/timeline"
)

// fakeConsole is a real timeline with a fixed phi history.
type fakeConsole struct{ log *timeline.Log }

func newFakeConsole(node string) *fakeConsole {
	return &fakeConsole{log: timeline.NewLog(node, 16)}
}

func (c *fakeConsole) Events(ctx context.Context, index uint64) ([]timeline.Event, uint64) {
	return c.log.Wait(ctx, index)
}

func (c *fakeConsole) PhiHistory() map[string][]timeline.Sample {
	return map[string][]timeline.Sample{"n2": {{T: 1, Phi: 0.5, State: "alive"}}}
}

var _ Console = (*fakeConsole)(nil)

func consoleOf(s *Server) *fakeConsole { return s.b.Console.(*fakeConsole) }

func TestUIFilesServedWithAStrictPolicy(t *testing.T) {
	s, _ := newAPI(t)
	w := call(t, s, "GET", "/ui/", nil)
	wantStatus(t, w, 200)
	if !strings.Contains(w.Body.String(), "app.js") {
		t.Fatalf("index does not load the app: %q", w.Body.String())
	}
	csp := w.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Fatalf("CSP %q", csp)
	}
	for _, f := range []string{"/ui/app.js", "/ui/app.css"} {
		wantStatus(t, call(t, s, "GET", f, nil), 200)
	}
	if w := call(t, s, "GET", "/", nil); w.Code != 302 || w.Header().Get("Location") != "/ui/" {
		t.Fatalf("/ answered %d to %q", w.Code, w.Header().Get("Location"))
	}
	wantStatus(t, call(t, s, "GET", "/ui/nothing-here.js", nil), 404)
}

// The timeline is a blocking query: ?index past the newest waits for the
// next event; X-Consul-Index is the newest event's index.
func TestUIEventsBlock(t *testing.T) {
	s, _ := newAPI(t)
	c := consoleOf(s)
	c.log.Add(timeline.Event{Kind: timeline.KindNode})
	w := call(t, s, "GET", "/v1/ui/events", nil)
	wantStatus(t, w, 200)
	if headerIndex(t, w) != 1 {
		t.Fatalf("index %d", headerIndex(t, w))
	}
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- call(t, s, "GET", "/v1/ui/events?index=1&wait=30s", nil) }()
	select {
	case w := <-done:
		t.Fatalf("answered with nothing new: %d %q", w.Code, w.Body.String())
	case <-time.After(100 * time.Millisecond):
	}
	c.log.Add(timeline.Event{Kind: timeline.KindPeer, Subject: "n2", From: "alive", To: "dead"})
	select {
	case w := <-done:
		wantStatus(t, w, 200)
		var got struct {
			Node   string
			Events []timeline.Event
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got.Node != "n1" || len(got.Events) != 1 || got.Events[0].To != "dead" || headerIndex(t, w) != 2 {
			t.Fatalf("woke with %q (%v)", w.Body.String(), err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the blocking query did not wake on an event")
	}
	wantStatus(t, call(t, s, "GET", "/v1/ui/events?index=x", nil), 400)
	wantStatus(t, call(t, s, "GET", "/v1/ui/events?index=1&wait=forever", nil), 400)
	// Drain answers held queries at once.
	go func() { done <- call(t, s, "GET", "/v1/ui/events?index=2&wait=60s", nil) }()
	time.Sleep(50 * time.Millisecond)
	s.Drain()
	select {
	case w := <-done:
		wantStatus(t, w, 200)
	case <-time.After(20 * time.Second):
		t.Fatal("Drain did not answer a held timeline query")
	}
}

// Two real API servers: the one asked gathers the other's view over HTTP,
// and a partition from the console lands on both as faultplan builds it.
func TestUIClusterGathersViewsAndInstallsPlans(t *testing.T) {
	a, fa := newAPI(t, withChaos)
	b, fb := newAPI(t, withChaos, func(c *apiConfig) { c.opts.NodeID = "n2" })
	fb.set(func(f *fakeBackend) {
		f.net = faultnet.New("n2")
		f.status = cluster.Status{ID: "n2", State: "Follower", Term: 3, LeaderID: "n1"}
	})
	srv := httptest.NewServer(b)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	fa.set(func(f *fakeBackend) {
		f.members = []cluster.Member{
			{ID: "n1", HTTPAddr: "127.0.0.1:1", Voter: true, Leader: true},
			{ID: "n2", HTTPAddr: addr, Voter: true},
			{ID: "n3", HTTPAddr: "127.0.0.1:1", Voter: true},
		}
	})
	fb.set(func(f *fakeBackend) { f.members = fa.members })
	consoleOf(b).log.Add(timeline.Event{Kind: timeline.KindLeader, To: "n1"})

	w := call(t, a, "GET", "/v1/ui/cluster", nil)
	wantStatus(t, w, 200)
	var cv ClusterView
	if err := json.Unmarshal(w.Body.Bytes(), &cv); err != nil {
		t.Fatal(err)
	}
	if cv.ServedBy != "n1" || !cv.Chaos || len(cv.Members) != 3 {
		t.Fatalf("cluster view %+v", cv)
	}
	if v := cv.Views["n2"]; v.Error != "" || v.Status == nil || v.Status.State != "Follower" || len(v.Events) != 1 || v.Events[0].Node != "n2" || len(v.History["n2"]) != 1 {
		t.Fatalf("n2's view, fetched over HTTP: %+v", v)
	}
	if v := cv.Views["n1"]; v.Status == nil || v.Status.State != "Leader" || v.Health == nil {
		t.Fatalf("own view %+v", v)
	}
	if v := cv.Views["n3"]; v.Error == "" || v.Status != nil {
		t.Fatalf("an unreachable member's view: %+v", v)
	}

	w = call(t, a, "POST", "/v1/ui/chaos", []byte(`{"action":"partition","a":["n1"],"b":["n2"]}`))
	wantStatus(t, w, 200)
	if r := fa.Faults(); len(r.Rules) != 1 || r.Rules[0].Peer != "n2" || !r.Rules[0].Cut {
		t.Fatalf("n1's rules after the partition: %+v", r)
	}
	if r := fb.Faults(); len(r.Rules) != 1 || r.Rules[0].Peer != "n1" || !r.Rules[0].Cut {
		t.Fatalf("n2's rules after the partition (installed over HTTP): %+v", r)
	}
	// A heal reaches every member; n3 does not answer, so 502 naming it,
	// while the others are healed.
	w = call(t, a, "POST", "/v1/ui/chaos", []byte(`{"action":"heal"}`))
	if w.Code != 502 || !strings.Contains(w.Body.String(), `"node":"n3"`) {
		t.Fatalf("heal with n3 down: %d %s", w.Code, w.Body.String())
	}
	if len(fa.Faults().Rules)+len(fb.Faults().Rules) != 0 {
		t.Fatalf("not healed: %+v %+v", fa.Faults(), fb.Faults())
	}
	w = call(t, a, "POST", "/v1/ui/chaos", []byte(`{"action":"crash","nodes":["n2"],"actor":"raft"}`))
	wantStatus(t, w, 200)
	if fb.crashes[len(fb.crashes)-1] != "raft" {
		t.Fatalf("crash did not reach n2: %v", fb.crashes)
	}

	// Bad actions: 400 with a reason, nothing installed.
	for _, body := range []string{
		`{"action":"partition","a":["n1"],"b":["n1"]}`,
		`{"action":"isolate","nodes":["n9"]}`,
		`{"action":"degrade","drop":2}`,
		`{"action":"explode"}`,
		`{"action":"crash","nodes":["n1","n2"],"actor":"raft"}`,
		`{"action":"crash","nodes":["n9"],"actor":"raft"}`,
		`{"action":"heal","extra":1}`,
		`not json`,
	} {
		w := call(t, a, "POST", "/v1/ui/chaos", []byte(body))
		if w.Code != 400 || !strings.Contains(w.Body.String(), "error") {
			t.Errorf("%s: %d %q", body, w.Code, w.Body.String())
		}
	}
	if len(fa.Faults().Rules)+len(fb.Faults().Rules) != 0 {
		t.Fatalf("a refused action installed rules: %+v %+v", fa.Faults(), fb.Faults())
	}
}

// Without chaos the console's chaos endpoint is not there at all.
func TestUIChaosOnlyWithChaos(t *testing.T) {
	s, _ := newAPI(t)
	if w := call(t, s, "POST", "/v1/ui/chaos", []byte(`{"action":"heal"}`)); w.Code != 404 && w.Code != 405 {
		t.Fatalf("chaos off: %d", w.Code)
	}
}
