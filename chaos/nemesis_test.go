package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

// fakeTarget is a cluster of chaos endpoints that only record the rules
// they are given, so the nemeses' rules can be checked node by node
// without starting kvnode.
type fakeTarget struct {
	nodes  []Node
	leader string

	mu    sync.Mutex
	rules map[string]faultnet.Rules
	down  map[string]bool
}

func newFakeTarget(t *testing.T, n int, leader string) *fakeTarget {
	f := &fakeTarget{leader: leader, rules: map[string]faultnet.Rules{}, down: map[string]bool{}}
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("n%d", i)
		srv := httptest.NewServer(f.handler(id))
		t.Cleanup(srv.Close)
		f.nodes = append(f.nodes, Node{ID: id, HTTPAddr: strings.TrimPrefix(srv.URL, "http://")})
	}
	return f
}

func (f *fakeTarget) handler(id string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/cluster/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"leader_id": f.leader})
	})
	mux.HandleFunc("PUT /v1/chaos/faults", func(w http.ResponseWriter, r *http.Request) {
		var rs faultnet.Rules
		if err := json.NewDecoder(r.Body).Decode(&rs); err != nil || rs.Validate() != nil {
			http.Error(w, fmt.Sprint("bad rules: ", err, rs.Validate()), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.rules[id] = rs
		f.mu.Unlock()
		json.NewEncoder(w).Encode(rs)
	})
	mux.HandleFunc("DELETE /v1/chaos/faults", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		delete(f.rules, id)
		f.mu.Unlock()
		json.NewEncoder(w).Encode(faultnet.Rules{})
	})
	return mux
}

func (f *fakeTarget) Nodes() []Node        { return append([]Node(nil), f.nodes...) }
func (f *fakeTarget) Kill(string) error    { return nil }
func (f *fakeTarget) Restart(string) error { return nil }
func (f *fakeTarget) Pause(string) error   { return nil }
func (f *fakeTarget) Resume(string) error  { return nil }
func (f *fakeTarget) NetNS() bool          { return false }
func (f *fakeTarget) Close() error         { return nil }
func (f *fakeTarget) Running(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.down[id]
}

func (f *fakeTarget) installed() map[string]faultnet.Rules {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]faultnet.Rules{}
	for id, rs := range f.rules {
		out[id] = rs
	}
	return out
}

func cutsTo(peers ...string) faultnet.Rules {
	var rs faultnet.Rules
	for _, p := range peers {
		rs.Rules = append(rs.Rules, faultnet.Rule{Peer: p, Direction: faultnet.Both, Cut: true})
	}
	return rs
}

// startNemesis starts the named nemesis against f, checks what every node
// got, then stops it and checks that every rule is gone.
func startNemesis(t *testing.T, f *fakeTarget, name string, want func(detail string) map[string]faultnet.Rules) {
	t.Helper()
	e := &Env{Target: f, Rand: rand.New(rand.NewPCG(1, 2)), HTTP: &http.Client{Timeout: 5 * time.Second}, Logf: t.Logf}
	n := Nemeses[name]()
	detail, err := n.Start(context.Background(), e)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if got, w := f.installed(), want(detail); !reflect.DeepEqual(got, w) {
		t.Fatalf("%s (%s) installed\n%+v\nwant\n%+v", name, detail, got, w)
	}
	if err := n.Stop(context.Background(), e); err != nil {
		t.Fatalf("%s: stop: %v", name, err)
	}
	if got := f.installed(); len(got) != 0 {
		t.Fatalf("%s left rules after stopping: %+v", name, got)
	}
}

// sidesOf reads a partition's detail, "a,b | c | d,e", back into sides.
func sidesOf(detail string) [][]string {
	var sides [][]string
	for _, s := range strings.Split(detail, " | ") {
		sides = append(sides, strings.Split(s, ","))
	}
	return sides
}

// cutApart is what a partition between sides a and b installs.
func cutApart(a, b []string) map[string]faultnet.Rules {
	want := map[string]faultnet.Rules{}
	for _, id := range a {
		want[id] = cutsTo(b...)
	}
	for _, id := range b {
		want[id] = cutsTo(a...)
	}
	return want
}

func TestNetworkNemesesInstallTheirPlans(t *testing.T) {
	f := newFakeTarget(t, 5, "n2")

	startNemesis(t, f, "partition-leader", func(detail string) map[string]faultnet.Rules {
		s := sidesOf(detail)
		if len(s) != 2 || !reflect.DeepEqual(s[0], []string{"n2"}) {
			t.Fatalf("partition-leader: %q", detail)
		}
		return cutApart(s[0], s[1])
	})
	startNemesis(t, f, "partition-half", func(detail string) map[string]faultnet.Rules {
		s := sidesOf(detail)
		if len(s) != 2 || len(s[0]) != 2 || len(s[1]) != 3 {
			t.Fatalf("partition-half: %q", detail)
		}
		return cutApart(s[0], s[1])
	})
	startNemesis(t, f, "partition-bridge", func(detail string) map[string]faultnet.Rules {
		s := sidesOf(detail)
		if len(s) != 3 || len(s[0]) != 2 || len(s[1]) != 1 || len(s[2]) != 2 {
			t.Fatalf("partition-bridge: %q", detail)
		}
		return cutApart(s[0], s[2])
	})
	startNemesis(t, f, "oneway", func(detail string) map[string]faultnet.Rules {
		from, to, ok := strings.Cut(detail, " -x-> ")
		if !ok || from == to {
			t.Fatalf("oneway: %q", detail)
		}
		return map[string]faultnet.Rules{from: {Rules: []faultnet.Rule{{Peer: to, Direction: faultnet.Out, Cut: true}}}}
	})

	// netem: every running node's outgoing messages, one seed for all; a
	// node that is down is left out.
	f.down["n4"] = true
	startNemesis(t, f, "netem", func(detail string) map[string]faultnet.Rules {
		got := f.installed()
		seed := got["n1"].Seed
		lossy := faultnet.Rules{Seed: seed, Rules: []faultnet.Rule{{Peer: "*", Direction: faultnet.Out, Drop: 0.2,
			Delay: faultnet.Duration(50 * time.Millisecond), Jitter: faultnet.Duration(50 * time.Millisecond)}}}
		return map[string]faultnet.Rules{"n1": lossy, "n2": lossy, "n3": lossy, "n5": lossy}
	})
}

func TestPartitionBridgeNeedsFiveNodes(t *testing.T) {
	f := newFakeTarget(t, 3, "n1")
	e := &Env{Target: f, Rand: rand.New(rand.NewPCG(1, 2)), HTTP: http.DefaultClient, Logf: t.Logf}
	if _, err := Nemeses["partition-bridge"]().Start(context.Background(), e); err == nil || err.Error() != "a bridge needs 5 nodes" {
		t.Fatalf("partition-bridge on 3 nodes: %v", err)
	}
	if got := f.installed(); len(got) != 0 {
		t.Fatalf("rules installed anyway: %+v", got)
	}
}
