package metricnames

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestReferenced(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`troupe_raft_leader`, []string{"troupe_raft_leader"}},
		{`sum(troupe_raft_leader) == 0`, []string{"troupe_raft_leader"}},
		{`sum by (route, code) (rate(troupe_http_requests_total{code=~"5..", route!="x"}[5m]))`, []string{"troupe_http_requests_total"}},
		{`histogram_quantile(0.99, sum without(instance) (rate(troupe_http_request_duration_seconds_bucket[$__rate_interval])))`, []string{"troupe_http_request_duration_seconds_bucket"}},
		{`troupe_raft_commit_index - on(instance) group_left() troupe_raft_applied_index > 1000`, []string{"troupe_raft_commit_index", "troupe_raft_applied_index"}},
		{`a / ignoring(x) b or c unless d and e`, []string{"a", "b", "c", "d", "e"}},
		{`max_over_time(x[5m:30s] offset 1h) > bool 1e3`, []string{"x"}},
		{`{__name__="troupe_peer_phi", peer="n2"}`, []string{"troupe_peer_phi"}},
		{`{__name__=~"troupe_.*"}`, nil}, // a regexp names no one metric
		{`count by (version) (troupe_build_info{instance="$instance"})`, []string{"troupe_build_info"}},
		{`SUM BY (le) (y) # a comment naming z`, []string{"y"}},
		{`label_replace(up, "dst", "$1", "src", "(.*)")`, []string{"up"}},
		{`rate(x[${interval}]) * 100 + Inf - NaN`, []string{"x"}},
		{`troupe_data_dir_free_bytes / troupe_data_dir_size_bytes < 0.1`, []string{"troupe_data_dir_free_bytes", "troupe_data_dir_size_bytes"}},
		{`job:request_rate:5m`, []string{"job:request_rate:5m"}},
		{`topk(3, q) @ end()`, []string{"q"}},
		{`x{a="}"} + y{b='{'}`, []string{"x", "y"}},
	} {
		if got := Referenced(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("Referenced(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}

// The checker fails a dashboard and a rules file that name a metric the
// exposition lacks, the test of deploy/ relies on that.
func TestMissingCatchesAnUnknownMetric(t *testing.T) {
	exposed, err := Exposed(strings.NewReader(`# HELP troupe_raft_leader 1 while leading.
# TYPE troupe_raft_leader gauge
troupe_raft_leader 1
troupe_http_request_duration_seconds_bucket{route="/v1/kv/{key...}",le="0.005"} 3
troupe_http_request_duration_seconds_count{route="/v1/kv/{key...}"} 3
`))
	if err != nil {
		t.Fatal(err)
	}
	dashboard := []byte(`{"panels": [
	  {"type": "row", "panels": [{"targets": [{"expr": "sum(troupe_raft_leader)"}]}]},
	  {"targets": [{"expr": "histogram_quantile(0.9, rate(troupe_http_request_duration_seconds_bucket[5m]))"},
	               {"expr": "rate(troupe_no_such_metric_total[5m])"}]},
	  {"targets": [{"expr": "troupe_http_request_duration_seconds"}]}
	],
	"templating": {"list": [
	  {"name": "datasource", "type": "datasource", "query": "prometheus"},
	  {"name": "instance", "type": "query", "query": {"query": "label_values(troupe_build_info, instance)"}},
	  {"name": "peer", "type": "query", "query": "label_values(peer)"},
	  {"name": "job", "type": "query", "query": "sum by (job) (troupe_raft_leader)"}
	]}}`)
	exprs, err := DashboardExprs(dashboard)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) != 6 {
		t.Fatalf("expressions %q: want the 4 targets' and the instance and job variables'", exprs)
	}
	missing := Missing(exprs, exposed)
	var names []string
	for _, m := range missing {
		names = append(names, strings.Fields(m)[0])
	}
	// A histogram's base name is no series: PromQL must name _bucket,
	// _sum or _count.
	want := []string{"troupe_build_info", "troupe_http_request_duration_seconds", "troupe_no_such_metric_total"}
	if !slices.Equal(names, want) {
		t.Fatalf("missing %q, want %q", missing, want)
	}

	rules, err := ParseRules(strings.NewReader(`groups:
- name: g
  rules:
  - alert: A
    expr: troupe_raft_leader == 0 and absent(troupe_gone)
    for: 1m
`))
	if err != nil {
		t.Fatal(err)
	}
	if m := Missing(rules.Exprs(), exposed); len(m) != 1 || !strings.HasPrefix(m[0], "troupe_gone ") {
		t.Fatalf("rules: missing %q, want troupe_gone", m)
	}
}

func TestParseRulesIsStrict(t *testing.T) {
	for name, text := range map[string]string{
		"misspelt field":   "groups:\n- name: g\n  rules:\n  - alert: A\n    exp: up == 0\n",
		"no expr":          "groups:\n- name: g\n  rules:\n  - alert: A\n",
		"alert and record": "groups:\n- name: g\n  rules:\n  - alert: A\n    record: r\n    expr: up\n",
		"not yaml":         "groups: [\n",
	} {
		if _, err := ParseRules(strings.NewReader(text)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestExposedRefusesGarbage(t *testing.T) {
	if _, err := Exposed(strings.NewReader("{oops} 1\n")); err == nil {
		t.Fatal("a sample line without a name was accepted")
	}
}

var identifier = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// FuzzReferenced: whatever the input, the tokenizer ends, and what it
// returns are identifiers that occur in it.
func FuzzReferenced(f *testing.F) {
	for _, s := range []string{
		`sum by (a) (rate(x{a="b"}[5m]))`, `{__name__="m"}`, `"unterminated`, `{[(`,
		`a offset 1h @ start()`, "x # c\ny", `$__rate_interval ${a} $b`, `1e+3 + .5 - 0x1F`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		for _, n := range Referenced(expr) {
			if !identifier.MatchString(n) && !strings.Contains(expr, `__name__`) {
				t.Fatalf("Referenced(%q) returned %q", expr, n)
			}
			if !strings.Contains(expr, n) {
				t.Fatalf("Referenced(%q) returned %q, which it does not hold", expr, n)
			}
		}
	})
}

// FuzzFiles: the readers of whole files (a dashboard, an exposition, a
// rules file) return an error or a result on any input, never a panic,
// and every expression they return yields names the tokenizer accepts.
func FuzzFiles(f *testing.F) {
	f.Add([]byte(`{"panels":[{"targets":[{"expr":"rate(x[5m])"}]}],"templating":{"list":[{"type":"query","query":"label_values(y, i)"}]}}`))
	f.Add([]byte("# HELP a b\na{b=\"c\"} 1\n"))
	f.Add([]byte("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if exprs, err := DashboardExprs(in); err == nil {
			for _, e := range exprs {
				Referenced(e)
			}
		}
		_, _ = Exposed(strings.NewReader(string(in)))
		if r, err := ParseRules(strings.NewReader(string(in))); err == nil {
			for _, e := range r.Exprs() {
				Referenced(e)
			}
		}
		variableExpr(string(in))
	})
}
