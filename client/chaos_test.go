package client_test

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// waitHealth polls nd's health until ok accepts it.
func waitHealth(t *testing.T, c *client.Client, nd *inproc.Node, what string, ok func(*client.Health) bool) *client.Health {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		h, err := c.Health(ctx(t))
		if err == nil && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s never happened; last health %+v, %v", nd.ID, what, h, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func peerState(h *client.Health, id string) client.PeerState {
	for _, p := range h.Peers {
		if p.ID == id {
			return p.State
		}
	}
	return ""
}

func allAlive(h *client.Health) bool {
	for _, p := range h.Peers {
		if p.State != client.PeerAlive {
			return false
		}
	}
	return len(h.Peers) > 0
}

// TestHealthAndChaos drives the failure detector and the fault endpoints
// of a real 3-node cluster: health from every node, per-node rules that
// never fail over, isolation seen by the detector, validation errors and
// crashes.
func TestHealthAndChaos(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{Chaos: true})
	leader := inproc.Leader(t, nodes)
	single := func(nd *inproc.Node) *client.Client {
		return newClient([]string{nd.HTTPAddr}, client.WithMaxAttempts(1))
	}

	for _, nd := range nodes {
		h := waitHealth(t, single(nd), nd, "every peer alive", allAlive)
		if h.Node != nd.ID || h.LeaderID != leader.ID || h.LeaderRaftAddr != leader.RaftAddr || len(h.Peers) != 2 {
			t.Fatalf("%s: Health = %+v", nd.ID, h)
		}
		for _, p := range h.Peers {
			var peer *inproc.Node
			for _, o := range nodes {
				if o.ID == p.ID {
					peer = o
				}
			}
			if peer == nil || peer == nd || p.HTTPAddr != peer.HTTPAddr || p.Probes == 0 || p.Probes < p.Failures ||
				p.LastHeard.IsZero() || time.Since(p.LastHeard) > 5*time.Second || p.StateSince.IsZero() || p.RTTMeanMS <= 0 {
				t.Fatalf("%s sees %+v", nd.ID, p)
			}
		}
	}

	// Rules land on the node named, whatever the client's own endpoints.
	far, near := nodes[2], nodes[0]
	c := newClient([]string{near.HTTPAddr})
	if rs, err := c.Faults(ctx(t), far.HTTPAddr); err != nil || rs.Seed != 0 || len(rs.Rules) != 0 {
		t.Fatalf("Faults of a fresh node = %+v, %v", rs, err)
	}
	want := faultnet.Rules{Seed: 42, Rules: []faultnet.Rule{
		{Peer: nodes[1].ID, Direction: faultnet.Out, Delay: faultnet.Duration(20 * time.Millisecond), Jitter: faultnet.Duration(5 * time.Millisecond)},
		{Peer: faultnet.AnyPeer, Direction: faultnet.In, Drop: 0.01, Bandwidth: 1 << 20},
	}}
	got, err := c.SetFaults(ctx(t), urlOf(far), want)
	if err != nil || !equalRules(got, want) {
		t.Fatalf("SetFaults = %+v, %v", got, err)
	}
	if got, err := c.Faults(ctx(t), far.HTTPAddr); err != nil || !equalRules(got, want) {
		t.Fatalf("Faults after SetFaults = %+v, %v", got, err)
	}
	if rs, err := c.Faults(ctx(t), near.HTTPAddr); err != nil || len(rs.Rules) != 0 {
		t.Fatalf("rules leaked to %s: %+v, %v", near.ID, rs, err)
	}
	// The wire format: durations as strings.
	resp, err := http.Get(urlOf(far) + "/v1/chaos/faults")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if !strings.Contains(body, `"delay":"20ms","jitter":"5ms"`) {
		t.Fatalf("GET faults = %s", body)
	}

	// Invalid rules: 400 with the server's reason, not applied, not
	// retried anywhere, and the installed set is untouched.
	for _, tc := range []struct {
		rules faultnet.Rules
		msg   string
	}{
		{faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n1", Direction: faultnet.Both, Delay: faultnet.Duration(time.Millisecond), Jitter: faultnet.Duration(time.Second)}}},
			"rule 0: jitter 1s must not exceed delay 1ms"},
		{faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n1", Direction: "sideways", Cut: true}}}, `rule 0: direction "sideways" must be in, out or both`},
		{faultnet.Rules{Rules: []faultnet.Rule{{Direction: faultnet.In, Cut: true}}}, `rule 0: peer is required`},
		{faultnet.Rules{Rules: []faultnet.Rule{{Peer: "*", Direction: faultnet.In}}}, `rule 0: does nothing`},
	} {
		_, err := c.SetFaults(ctx(t), far.HTTPAddr, tc.rules)
		if e := asError(t, err); e.Status != 400 || !strings.HasPrefix(e.Message, tc.msg) || e.Attempts != 1 || !client.IsNotApplied(err) || e.Endpoint != urlOf(far) {
			t.Fatalf("SetFaults(%+v) = %+v, want 400 %q", tc.rules, e, tc.msg)
		}
	}
	for body, msg := range map[string]string{
		`{"rules":[{"peer":"n1","direction":"in","cut":true,"color":"red"}]}`: `bad fault rules: json: unknown field "color"`,
		`{"rules":[`: `bad fault rules: unexpected EOF`,
		`{"rules":[{"peer":"n1","direction":"in","delay":"soon"}]}`: `bad fault rules: bad duration "soon"`,
	} {
		_, err := c.SetFaultsJSON(ctx(t), far.HTTPAddr, []byte(body))
		if e := asError(t, err); e.Status != 400 || e.Message != msg || e.Attempts != 1 {
			t.Fatalf("SetFaultsJSON(%s) = %+v, want %q", body, e, msg)
		}
	}
	if got, err := c.Faults(ctx(t), far.HTTPAddr); err != nil || !equalRules(got, want) {
		t.Fatalf("refused rules changed the installed set: %+v, %v", got, err)
	}
	if err := c.ClearFaults(ctx(t), far.HTTPAddr); err != nil {
		t.Fatal(err)
	}
	if rs, err := c.Faults(ctx(t), far.HTTPAddr); err != nil || len(rs.Rules) != 0 || rs.Seed != 0 {
		t.Fatalf("Faults after ClearFaults = %+v, %v", rs, err)
	}

	// No failover: a dead endpoint is one refused dial, even though the
	// client's own endpoint is alive.
	dead := deadAddr(t)
	_, err = c.Faults(ctx(t), dead)
	if e := asError(t, err); e.Status != 0 || e.Attempts != 1 || e.Endpoint != "http://"+dead || !strings.Contains(e.Message, "connection refused") {
		t.Fatalf("Faults(dead) = %+v", e)
	}
	if _, err := c.Faults(ctx(t), ""); err == nil || !strings.Contains(err.Error(), "empty endpoint") {
		t.Fatalf("Faults(\"\") = %v", err)
	}

	// Isolation, as the other nodes' detectors see it, and the way back.
	cut := nodes[1]
	if _, err := c.SetFaults(ctx(t), cut.HTTPAddr, faultnet.Rules{Rules: []faultnet.Rule{{Peer: faultnet.AnyPeer, Direction: faultnet.Both, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*inproc.Node{nodes[0], nodes[2]} {
		h := waitHealth(t, single(nd), nd, cut.ID+" dead", func(h *client.Health) bool { return peerState(h, cut.ID) == client.PeerDead })
		for _, p := range h.Peers {
			if p.ID == cut.ID && (p.Phi < 8 || p.Failures == 0) {
				t.Fatalf("%s sees the cut node as %+v", nd.ID, p)
			}
		}
	}
	waitHealth(t, single(cut), cut, "every peer dead", func(h *client.Health) bool {
		return peerState(h, nodes[0].ID) == client.PeerDead && peerState(h, nodes[2].ID) == client.PeerDead
	})
	if err := c.ClearFaults(ctx(t), cut.HTTPAddr); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		waitHealth(t, single(nd), nd, "every peer alive again", allAlive)
	}

	// Crashes: the actor restarts and the node keeps answering.
	if err := c.Crash(ctx(t), far.HTTPAddr, "peer/"+near.ID, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Crash(ctx(t), far.HTTPAddr, "peers", ""); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, single(far), far, "peers monitored again after a crash", allAlive)
	err = c.Crash(ctx(t), far.HTTPAddr, "bogus", "")
	if e := asError(t, err); e.Status != 400 || e.Message != `unknown actor "bogus" (want one of `+strings.Join(client.CrashActors, ", ")+")" || e.Attempts != 1 {
		t.Fatalf("Crash(bogus) = %+v", e)
	}
	err = c.Crash(ctx(t), far.HTTPAddr, "peer/"+far.ID, "")
	if e := asError(t, err); e.Status != 400 || !strings.Contains(e.Message, "not a member other than this node") {
		t.Fatalf("Crash(own monitor) = %+v", e)
	}
}

// TestChaosDisabled: a node without --chaos answers 404, which every chaos
// call reports as ErrChaosDisabled; health works regardless.
func TestChaosDisabled(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	nd := nodes[0]
	c := newClient([]string{nd.HTTPAddr})
	h, err := c.Health(ctx(t))
	if err != nil || h.Node != nd.ID || h.LeaderID != nd.ID || h.Peers == nil || len(h.Peers) != 0 {
		t.Fatalf("Health of a single node = %+v, %v", h, err)
	}
	calls := map[string]func() error{
		"Faults":        func() error { _, err := c.Faults(ctx(t), nd.HTTPAddr); return err },
		"SetFaults":     func() error { _, err := c.SetFaults(ctx(t), nd.HTTPAddr, faultnet.Rules{}); return err },
		"SetFaultsJSON": func() error { _, err := c.SetFaultsJSON(ctx(t), nd.HTTPAddr, []byte(`{}`)); return err },
		"ClearFaults":   func() error { return c.ClearFaults(ctx(t), nd.HTTPAddr) },
		"Crash":         func() error { return c.Crash(ctx(t), nd.HTTPAddr, "raft", "") },
	}
	for name, call := range calls {
		err := call()
		e := asError(t, err)
		if !errors.Is(err, client.ErrChaosDisabled) || e.Status != 404 || e.Attempts != 1 || !client.IsNotApplied(err) ||
			err.Error() != nd.HTTPAddr+": HTTP 404: chaos is not enabled on this node (start kvnode with --chaos)" {
			t.Fatalf("%s without --chaos = %v (%+v)", name, err, e)
		}
	}
}

func equalRules(a, b faultnet.Rules) bool {
	return a.Seed == b.Seed && slices.Equal(a.Rules, b.Rules)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
