package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/troupe-kv/troupe/chaos/faultplan"
	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/timeline"
	"github.com/troupe-kv/troupe/ui"
)

// Console is what the web console's data endpoints (/v1/ui/*) need of the
// node besides Cluster: its recent past, kept in memory (see
// cluster/timeline).
type Console interface {
	// Events returns the events after index and the newest index,
	// waiting until ctx ends when there is nothing newer.
	Events(ctx context.Context, index uint64) ([]timeline.Event, uint64)
	// PhiHistory is every peer's recent phi.
	PhiHistory() map[string][]timeline.Sample
}

// consoleFetchTimeout bounds how long /v1/ui/cluster waits for another
// node's view: a node that does not answer in time is shown unreachable
// rather than holding up the page.
const consoleFetchTimeout = 1500 * time.Millisecond

// consoleEventsPerNode is how many of each node's newest events
// /v1/ui/cluster carries.
const consoleEventsPerNode = 200

// consoleRoutes mounts the console's files (open: they hold no data) and,
// when the node has a Console, its data endpoints.
func (s *Server) consoleRoutes() {
	m := s.mux
	m.Handle("GET /ui/", http.StripPrefix("/ui", ui.Handler()))
	m.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	if s.b.Console == nil {
		return
	}
	m.HandleFunc("GET /v1/ui/events", s.uiEvents)
	m.HandleFunc("GET /v1/ui/peers", s.uiPeers)
	m.HandleFunc("GET /v1/ui/cluster", s.uiCluster)
	if s.b.Chaos != nil {
		m.HandleFunc("POST /v1/ui/chaos", s.uiChaos)
	}
}

// uiEvents is this node's timeline as a blocking query: ?index and ?wait
// as on /v1/kv, X-Consul-Index the newest event's index.
func (s *Server) uiEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	index, wait, release, ok := s.admitBlocking(w, q)
	if !ok {
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	go func() {
		select {
		case <-s.draining:
			cancel()
		case <-ctx.Done():
		}
	}()
	evs, last := s.b.Console.Events(ctx, index)
	w.Header().Set("X-Consul-Index", strconv.FormatUint(max(last, 1), 10))
	writeJSON(w, http.StatusOK, map[string]any{"node": s.opts.NodeID, "events": evs})
}

// NodeView is one node's own account of itself and of its peers, as
// GET /v1/ui/peers answers it; /v1/ui/cluster gathers every member's.
type NodeView struct {
	Node   string          `json:"node"`
	Status *cluster.Status `json:"status,omitempty"`
	Health *cluster.Health `json:"health,omitempty"`
	// History is each peer's recent phi, oldest first.
	History map[string][]timeline.Sample `json:"history,omitempty"`
	// Events are the node's newest events, oldest first; LastEvent the
	// newest's index.
	Events    []timeline.Event `json:"events,omitempty"`
	LastEvent uint64           `json:"last_event"`
	// Error says why the view is missing or partial (the node did not
	// answer, or answered with an error).
	Error string `json:"error,omitempty"`
}

func (s *Server) localView(ctx context.Context) NodeView {
	v := NodeView{Node: s.opts.NodeID, History: s.b.Console.PhiHistory()}
	var errs []string
	if st, err := s.b.Cluster.Status(); err == nil {
		v.Status = &st
	} else {
		errs = append(errs, "status: "+err.Error())
	}
	if h, err := s.b.Cluster.Health(ctx); err == nil {
		v.Health = h
	} else {
		errs = append(errs, "health: "+err.Error())
	}
	evs, last := s.b.Console.Events(ctx, 0)
	if len(evs) > consoleEventsPerNode {
		evs = evs[len(evs)-consoleEventsPerNode:]
	}
	v.Events, v.LastEvent = evs, last
	v.Error = strings.Join(errs, "; ")
	return v
}

// uiPeers is this node's view: status, failure detector, phi history and
// newest events.
func (s *Server) uiPeers(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	writeJSON(w, http.StatusOK, s.localView(ctx))
}

// ClusterView is GET /v1/ui/cluster: the members as the serving node
// knows them, and every member's own view, fetched by the serving node.
type ClusterView struct {
	ServedBy string              `json:"served_by"`
	Chaos    bool                `json:"chaos"`
	Members  []cluster.Member    `json:"members"`
	Views    map[string]NodeView `json:"views"`
}

// uiCluster gathers every member's view through the serving node, so the
// browser talks to one origin only: with TLS on, the browser may trust
// this node's certificate and not reach the others at all. The serving
// node calls each member's client port with the caller's own token, so a
// member answers only what that token may see there.
func (s *Server) uiCluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.requestContext(r)
	defer cancel()
	members, err := s.b.Cluster.Members()
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	out := ClusterView{ServedBy: s.opts.NodeID, Chaos: s.b.Chaos != nil, Members: members, Views: map[string]NodeView{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v NodeView
			if m.ID == s.opts.NodeID {
				v = s.localView(ctx)
			} else {
				v = s.remoteView(ctx, m, requestToken(r))
			}
			mu.Lock()
			out.Views[m.ID] = v
			mu.Unlock()
		}()
	}
	wg.Wait()
	if out.Members == nil {
		out.Members = []cluster.Member{}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) remoteView(ctx context.Context, m cluster.Member, token string) NodeView {
	v := NodeView{Node: m.ID}
	if m.HTTPAddr == "" {
		v.Error = "no client address known"
		return v
	}
	ctx, cancel := context.WithTimeout(ctx, consoleFetchTimeout)
	defer cancel()
	body, err := s.callMember(ctx, http.MethodGet, m.HTTPAddr, "/v1/ui/peers", token, nil)
	if err == nil {
		err = json.Unmarshal(body, &v)
	}
	if err != nil {
		v = NodeView{Node: m.ID, Error: err.Error()}
	}
	return v
}

// callMember sends one request to another node's client port, with the
// caller's token, over TLS when this node serves TLS (trusting the
// cluster CA), and returns the body of a 2xx answer.
func (s *Server) callMember(ctx context.Context, method, addr, path, token string, body []byte) ([]byte, error) {
	scheme := "http"
	if s.opts.MemberTLS != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+"://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := s.memberClient().Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer from %s within %s", addr, consoleFetchTimeout)
		}
		return nil, fmt.Errorf("unreachable: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("%s answered %d: %s", addr, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

func (s *Server) memberClient() *http.Client {
	s.memberOnce.Do(func() {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = s.opts.MemberTLS
		if tr.TLSClientConfig != nil {
			tr.TLSClientConfig = tr.TLSClientConfig.Clone()
		}
		tr.MaxIdleConnsPerHost = 4
		s.memberHTTP = &http.Client{Transport: tr}
	})
	return s.memberHTTP
}

// ChaosAction is a request to POST /v1/ui/chaos: one fault plan, built by
// chaos/faultplan as kvctl builds it, installed on every node it names;
// or one actor crashed on one node.
type ChaosAction struct {
	// Action is isolate, partition, oneway, degrade, heal or crash.
	Action string `json:"action"`
	// Nodes: isolate, degrade (none: every member), crash (exactly one).
	Nodes []string `json:"nodes,omitempty"`
	// A and B are a partition's sides.
	A []string `json:"a,omitempty"`
	B []string `json:"b,omitempty"`
	// From and To are a one-way cut's ends ("*" for any).
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Delay, Jitter, Drop: a degradation's effect.
	Delay  faultnet.Duration `json:"delay,omitempty"`
	Jitter faultnet.Duration `json:"jitter,omitempty"`
	Drop   float64           `json:"drop,omitempty"`
	// Actor and Fault: what crash makes fail, and how ("" is a panic).
	Actor string `json:"actor,omitempty"`
	Fault string `json:"fault,omitempty"`
}

// ChaosStep is what one node did with its part of an action.
type ChaosStep struct {
	Node  string          `json:"node"`
	Rules *faultnet.Rules `json:"rules,omitempty"`
	Error string          `json:"error,omitempty"`
}

// uiChaos builds a plan for the current members and installs it node by
// node, as kvctl chaos does; a heal goes to every member and tries them
// all. The answer lists each node's outcome; any failure makes it 502.
func (s *Server) uiChaos(w http.ResponseWriter, r *http.Request) {
	var a ChaosAction
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		writeJSONError(w, http.StatusBadRequest, fmt.Errorf("bad chaos action: %v", err))
		return
	}
	members, err := s.b.Cluster.Members()
	if err != nil {
		writeJSONError(w, 0, err)
		return
	}
	ids := make([]string, len(members))
	addr := map[string]string{}
	for i, m := range members {
		ids[i] = m.ID
		addr[m.ID] = m.HTTPAddr
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	token := requestToken(r)
	if a.Action == "crash" {
		if len(a.Nodes) != 1 || a.Actor == "" {
			writeJSONError(w, http.StatusBadRequest, errors.New("crash needs exactly one node and an actor"))
			return
		}
		step := ChaosStep{Node: a.Nodes[0]}
		if _, ok := addr[step.Node]; !ok {
			writeJSONError(w, http.StatusBadRequest, &faultplan.UnknownNodeError{ID: step.Node, Members: ids})
			return
		}
		if step.Node == s.opts.NodeID {
			err = s.b.Chaos.Crash(a.Actor, a.Fault, "requested through the web console")
		} else {
			_, err = s.callMember(ctx, http.MethodPost, addr[step.Node], "/v1/chaos/crash?actor="+url.QueryEscape(a.Actor)+"&fault="+url.QueryEscape(a.Fault), token, nil)
		}
		s.finishChaos(w, []ChaosStep{step}, err)
		return
	}
	plan, err := buildPlan(a, ids)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	var steps []ChaosStep
	failed := false
	for _, st := range plan {
		res := ChaosStep{Node: st.Node, Rules: st.Rules}
		if err := s.installStep(ctx, st, addr[st.Node], token); err != nil {
			res.Error, failed = err.Error(), true
		}
		steps = append(steps, res)
	}
	status := http.StatusOK
	if failed {
		status = http.StatusBadGateway
	}
	writeJSON(w, status, map[string]any{"action": a.Action, "steps": steps})
}

func (s *Server) finishChaos(w http.ResponseWriter, steps []ChaosStep, err error) {
	if err != nil {
		steps[0].Error = err.Error()
		writeJSON(w, http.StatusBadGateway, map[string]any{"action": "crash", "steps": steps})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"action": "crash", "steps": steps})
}

// buildPlan turns an action into faultplan's plan for members.
func buildPlan(a ChaosAction, members []string) (faultplan.Plan, error) {
	switch a.Action {
	case "isolate":
		return faultplan.Isolate(members, a.Nodes...)
	case "partition":
		return faultplan.Partition(members, a.A, a.B)
	case "oneway":
		return faultplan.OneWay(members, a.From, a.To)
	case "degrade":
		if a.Drop < 0 || a.Drop > 1 {
			return nil, fmt.Errorf("drop %g is not a probability (0..1)", a.Drop)
		}
		return faultplan.Degrade(members, a.Nodes, faultnet.Rule{Delay: a.Delay, Jitter: a.Jitter, Drop: a.Drop}, uint64(time.Now().UnixNano()))
	case "heal":
		return faultplan.Heal(members), nil
	}
	return nil, fmt.Errorf("unknown action %q (isolate, partition, oneway, degrade, heal or crash)", a.Action)
}

// installStep puts one node's rules in place: on this node directly, on
// another through its /v1/chaos/faults.
func (s *Server) installStep(ctx context.Context, st faultplan.Step, addr, token string) error {
	if st.Node == s.opts.NodeID {
		rs := faultnet.Rules{}
		if st.Rules != nil {
			rs = *st.Rules
		}
		return s.b.Chaos.SetFaults(rs)
	}
	if addr == "" {
		return errors.New("no client address known")
	}
	if st.Rules == nil {
		_, err := s.callMember(ctx, http.MethodDelete, addr, "/v1/chaos/faults", token, nil)
		return err
	}
	body, err := json.Marshal(st.Rules)
	if err != nil {
		return err
	}
	_, err = s.callMember(ctx, http.MethodPut, addr, "/v1/chaos/faults", token, body)
	return err
}
