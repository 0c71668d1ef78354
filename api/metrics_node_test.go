package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	consul "github.com/hashicorp/consul/api"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/metricnames"
)

// do sends one request to a real node and returns its status and body.
func do(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape parses a node's exposition.
func scrape(t *testing.T, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := do(t, http.MethodGet, url, token, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return fams
}

// series finds the series of family name whose labels are exactly want.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if maps.Equal(got, want) {
			return m
		}
	}
	return nil
}

func reqLabels(route, method, code string) map[string]string {
	return map[string]string{"route": route, "method": method, "code": code}
}

// Requests are counted by the route they took, never by their path: a
// thousand missing keys are one series, a bad request shows as 400 under
// its route, a path nothing serves is "unmatched"; and blocking queries
// are counted but left out of the latency histogram.
func TestHTTPMetricsByRouteAndCode(t *testing.T) {
	nodes := inproc.Start(t, 1, inproc.Options{})
	inproc.Leader(t, nodes)
	base := "http://" + nodes[0].HTTPAddr
	if code, body := do(t, http.MethodPut, base+"/v1/kv/app/a", "", "1"); code != http.StatusOK {
		t.Fatalf("put: %d %s", code, body)
	}
	const missing = 20
	for i := range missing {
		if code, _ := do(t, http.MethodGet, fmt.Sprintf("%s/v1/kv/missing/%d", base, i), "", ""); code != http.StatusNotFound {
			t.Fatalf("a missing key answered %d", code)
		}
	}
	if code, _ := do(t, http.MethodPut, base+"/v1/kv/app/b?cas=x", "", "1"); code != http.StatusBadRequest {
		t.Fatalf("a bad cas answered %d", code)
	}
	if code, _ := do(t, http.MethodGet, base+"/v1/status/leader", "", ""); code != http.StatusOK {
		t.Fatalf("status/leader answered %d", code)
	}
	if code, _ := do(t, http.MethodGet, base+"/no/such/path", "", ""); code != http.StatusNotFound {
		t.Fatalf("an unknown path answered %d", code)
	}
	// A method of the client's invention is no new series.
	for _, m := range []string{"BREW", "WHEN"} {
		do(t, m, base+"/v1/status/leader", "", "")
	}
	// Behind the key's index already, so it answers at once; it still
	// counts as blocking.
	if code, _ := do(t, http.MethodGet, base+"/v1/kv/app/a?index=1", "", ""); code != http.StatusOK {
		t.Fatalf("blocking read answered %d", code)
	}

	fams := scrape(t, base+"/metrics", "")
	const kv = "/v1/kv/{key...}"
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{reqLabels(kv, "PUT", "200"), 1},
		{reqLabels(kv, "GET", "404"), missing},
		{reqLabels(kv, "PUT", "400"), 1},
		{reqLabels(kv, "GET", "200"), 1},
		{reqLabels("/v1/status/leader", "GET", "200"), 1},
		{reqLabels("unmatched", "GET", "404"), 1},
		{reqLabels("unmatched", "other", "405"), 2},
	} {
		m := series(fams, "troupe_http_requests_total", c.labels)
		if got := m.GetCounter().GetValue(); got != c.want {
			t.Errorf("troupe_http_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	for _, m := range fams["troupe_http_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if strings.Contains(l.GetValue(), "missing") || strings.Contains(l.GetValue(), "app/") {
				t.Errorf("a label holds a raw path: %v", m.GetLabel())
			}
		}
	}
	if h := series(fams, "troupe_http_request_duration_seconds", reqLabels(kv, "GET", "404")); h.GetHistogram().GetSampleCount() != missing {
		t.Errorf("latency of the 404s: %d observations, want %d", h.GetHistogram().GetSampleCount(), missing)
	}
	if h := series(fams, "troupe_http_request_duration_seconds", reqLabels(kv, "GET", "200")); h != nil {
		t.Errorf("the blocking query was timed: %v", h)
	}
}

// GET /v1/agent/metrics serves the same exposition as /metrics with
// ?format=prometheus, and otherwise a summary consul/api decodes.
func TestAgentMetrics(t *testing.T) {
	nodes := inproc.Start(t, 1, inproc.Options{})
	inproc.Leader(t, nodes)
	base := "http://" + nodes[0].HTTPAddr
	if code, _ := do(t, http.MethodPut, base+"/v1/kv/k", "", "v"); code != http.StatusOK {
		t.Fatalf("put: %d", code)
	}
	names := func(url string) []string {
		code, body := do(t, http.MethodGet, url, "", "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, code, body)
		}
		set, err := metricnames.Exposed(strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return slices.Sorted(maps.Keys(set))
	}
	plain, agent := names(base+"/metrics"), names(base+"/v1/agent/metrics?format=prometheus")
	if !slices.Equal(plain, agent) || !slices.Contains(agent, "troupe_raft_leader") {
		t.Fatalf("/metrics names %d series names, /v1/agent/metrics?format=prometheus %d:\n%v\n%v", len(plain), len(agent), plain, agent)
	}

	c, err := consul.NewClient(&consul.Config{Address: nodes[0].HTTPAddr})
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Agent().Metrics()
	if err != nil {
		t.Fatal(err)
	}
	gauge := func(name string) (float64, bool) {
		for _, g := range info.Gauges {
			if g.Name == name {
				return float64(g.Value), true
			}
		}
		return 0, false
	}
	if v, ok := gauge("troupe_raft_leader"); !ok || v != 1 {
		t.Errorf("troupe_raft_leader in the summary: %v %v", v, ok)
	}
	var put, apply bool
	for _, s := range info.Counters {
		put = put || (s.Name == "troupe_http_requests_total" && s.Labels["method"] == "PUT" && s.Labels["code"] == "200" && s.Count >= 1)
	}
	for _, s := range info.Samples {
		apply = apply || (s.Name == "troupe_raft_fsm_apply_duration_seconds" && s.Count >= 1 && s.Mean > 0)
	}
	if !put || !apply || info.Timestamp == "" {
		t.Errorf("summary lacks the PUT's counter (%v) or the apply histogram (%v): %+v", put, apply, info)
	}
	// Anything but GET is refused, as Consul refuses it.
	if code, _ := do(t, http.MethodPut, base+"/v1/agent/metrics", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT /v1/agent/metrics: %d", code)
	}
}

// With ACLs on both metrics endpoints need a token, any valid one: a
// token with no policy at all (what a Prometheus scrape should hold)
// reads the metrics and nothing else.
func TestMetricsNeedAToken(t *testing.T) {
	nodes := inproc.Start(t, 1, inproc.Options{ACLEnabled: true})
	inproc.Leader(t, nodes)
	base := "http://" + nodes[0].HTTPAddr
	code, body := do(t, http.MethodPut, base+"/v1/acl/bootstrap", "", "")
	var boot struct{ SecretID string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &boot) != nil || boot.SecretID == "" {
		t.Fatalf("bootstrap: %d %s", code, body)
	}
	code, body = do(t, http.MethodPut, base+"/v1/acl/token", boot.SecretID, `{"Description":"prometheus scrape"}`)
	var scrapeTok struct{ SecretID string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &scrapeTok) != nil || scrapeTok.SecretID == "" {
		t.Fatalf("a token without policies: %d %s", code, body)
	}
	for _, path := range []string{"/metrics", "/v1/agent/metrics?format=prometheus", "/v1/agent/metrics"} {
		if code, _ := do(t, http.MethodGet, base+path, "", ""); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d, want 401", path, code)
		}
		if code, _ := do(t, http.MethodGet, base+path, "not-a-token", ""); code != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: %d, want 401", path, code)
		}
		if code, body := do(t, http.MethodGet, base+path, scrapeTok.SecretID, ""); code != http.StatusOK {
			t.Errorf("%s with the scrape token: %d %s", path, code, body)
		}
	}
	if code, _ := do(t, http.MethodGet, base+"/v1/kv/k", scrapeTok.SecretID, ""); code != http.StatusForbidden {
		t.Errorf("the scrape token read a key: %d, want 403", code)
	}
	if code, _ := do(t, http.MethodPost, base+"/v1/cluster/snapshot", scrapeTok.SecretID, ""); code != http.StatusForbidden {
		t.Errorf("the scrape token took a snapshot: %d, want 403", code)
	}
	// Refused requests count under the route they asked for.
	fams := scrape(t, base+"/metrics", boot.SecretID)
	if m := series(fams, "troupe_http_requests_total", reqLabels("/metrics", "GET", "401")); m.GetCounter().GetValue() != 2 {
		t.Errorf("refused scrapes: %v, want 2", m.GetCounter().GetValue())
	}
	if m := series(fams, "troupe_http_requests_total", reqLabels("/v1/kv/{key...}", "GET", "403")); m.GetCounter().GetValue() != 1 {
		t.Errorf("refused read: %v, want 1", m.GetCounter().GetValue())
	}
}
