// Package deploy holds the test of the monitoring files: the Grafana
// dashboard (grafana/troupe-dashboard.json) and the Prometheus alert
// rules (prometheus/troupe-alerts.yml) reference only metric names that
// a real node exposes, at /metrics and at Consul's
// /v1/agent/metrics?format=prometheus.
package deploy

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/internal/inproc"
	"github.com/troupe-kv/troupe/internal/metricnames"
)

func dashboardExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("grafana/troupe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	exprs, err := metricnames.DashboardExprs(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 20 {
		t.Fatalf("the dashboard holds %d expressions: the walk missed its panels", len(exprs))
	}
	return exprs
}

func alertRules(t *testing.T) *metricnames.Rules {
	t.Helper()
	f, err := os.Open("prometheus/troupe-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, err := metricnames.ParseRules(f)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// The rules file holds the groups and alerts the operations guide
// promises, each complete enough to page someone usefully.
func TestAlertRules(t *testing.T) {
	rules := alertRules(t)
	var groups []string
	alerts := map[string]metricnames.Rule{}
	for _, g := range rules.Groups {
		groups = append(groups, g.Name)
		for _, r := range g.Rules {
			if _, dup := alerts[r.Alert]; dup {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			alerts[r.Alert] = r
		}
	}
	if want := []string{"troupe-availability", "troupe-capacity", "troupe-performance"}; !slices.Equal(groups, want) {
		t.Errorf("groups %q, want %q", groups, want)
	}
	for _, name := range []string{"TroupeNoLeader", "TroupePeerDead", "TroupeDiskNearlyFull", "TroupeApplyLag", "TroupeStateFenced", "TroupeStateDiverged", "TroupeNoSpaceAlarm"} {
		if _, ok := alerts[name]; !ok {
			t.Errorf("no alert %s", name)
		}
	}
	duration := regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	for name, r := range alerts {
		if r.Labels["severity"] != "critical" && r.Labels["severity"] != "warning" {
			t.Errorf("%s: severity %q", name, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("%s: no summary or description", name)
		}
		if !duration.MatchString(r.For) {
			t.Errorf("%s: for %q is no Prometheus duration", name, r.For)
		}
	}
}

// Every name the dashboard and the rules use is in a real node's
// exposition, at both paths, and is the node's own (troupe_*, or the Go
// and process collectors').
func TestMonitoringNamesExist(t *testing.T) {
	exprs := append(dashboardExprs(t), alertRules(t).Exprs()...)
	for _, e := range exprs {
		for _, n := range metricnames.Referenced(e) {
			if !strings.HasPrefix(n, "troupe_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				t.Errorf("%q uses %s, which no node exposes", e, n)
			}
		}
	}

	nodes := inproc.Start(t, 3, inproc.Options{})
	nd := inproc.Leader(t, nodes)
	base := "http://" + nd.HTTPAddr
	// Some series appear with their first event: a request, a peer
	// judged alive.
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	get("/v1/kv/missing")
	var missing []string
	deadline := time.Now().Add(15 * time.Second)
	for {
		missing = nil
		for _, path := range []string{"/metrics", "/v1/agent/metrics?format=prometheus"} {
			code, body := get(path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			exposed, err := metricnames.Exposed(strings.NewReader(body))
			if err != nil {
				t.Fatalf("GET %s: %v", path, err)
			}
			for _, m := range metricnames.Missing(exprs, exposed) {
				missing = append(missing, path+": "+m)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, m := range missing {
		t.Errorf("not exposed: %s", m)
	}
}

// The dashboard is one Grafana can import: unique panel ids, a data
// source on every query panel, the variables its queries use.
func TestDashboardShape(t *testing.T) {
	raw, err := os.ReadFile("grafana/troupe-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		ID         int             `json:"id"`
		Type       string          `json:"type"`
		Title      string          `json:"title"`
		Datasource json.RawMessage `json:"datasource"`
		Targets    []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var d struct {
		UID        string  `json:"uid"`
		Title      string  `json:"title"`
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name string `json:"name"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 || !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("panel %q: %d targets, data source %s", p.Title, len(p.Targets), p.Datasource)
		}
		for _, tg := range p.Targets {
			for _, v := range regexp.MustCompile(`\$([a-z_]+)`).FindAllStringSubmatch(tg.Expr, -1) {
				if !slices.Contains(vars, v[1]) && !strings.HasPrefix(v[1], "__") {
					t.Errorf("panel %q uses $%s, which is no variable", p.Title, v[1])
				}
			}
		}
	}
}
