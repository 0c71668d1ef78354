// Package metricnames checks monitoring files against a node's metrics:
// which metric names the PromQL expressions of a Grafana dashboard or a
// Prometheus rules file reference, and which of them a node's exposition
// lacks. A dashboard panel or an alert on a name that no longer exists
// shows nothing and fires never, silently; this turns that into a failed
// test.
//
// The PromQL tokenizer is deliberately small (Prometheus' own parser
// would pull in most of Prometheus). It reads an expression left to right
// and takes as a metric name every identifier ([a-zA-Z_:][a-zA-Z0-9_:]*)
// that is not
//
//   - inside a string literal ('...', "...", `...`), a comment (# to the
//     end of the line), a label matcher block {...} or a range or
//     subquery [...] (a {__name__="x"} matcher names the metric x);
//   - followed by "(" (a function or an aggregation: rate(, sum(, ...);
//   - a keyword or aggregation operator (and, or, unless, bool, offset,
//     sum, topk, ...); the label list after by, without, on, ignoring,
//     group_left and group_right is skipped with it;
//   - part of a number or duration (5m, 1e3, 0x1f), or a Grafana
//     variable ($instance, ${var}, $__rate_interval).
//
// That is all a well-formed expression needs; on a malformed one it still
// returns some identifiers and never fails, which is enough here, since
// Prometheus and Grafana reject malformed expressions themselves.
package metricnames

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// keywords are PromQL words that are not metric names when they stand
// without "(" after them.
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "start": true, "end": true,
	// Aggregation operators, which may be followed by "by (...)" before
	// their "(".
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
	"group": true, "limitk": true, "limit_ratio": true,
}

// labelLists are keywords followed by a parenthesized list of label
// names.
var labelLists = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// Referenced returns the metric names expr references, each once, in the
// order they first appear.
func Referenced(expr string) []string {
	var names []string
	add := func(n string) {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	s := expr
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			_, i = stringLit(s, i)
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '{':
			var n string
			n, i = matchers(s, i)
			add(n)
		case c == '[':
			i = skipBlock(s, i, '[', ']')
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				i = skipBlock(s, i, '{', '}')
			}
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number or a duration: digits, letters, dots, exponents.
			for i < len(s) && (isIdentChar(s[i]) || s[i] == '.' || ((s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E'))) {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
			word := s[start:i]
			lower := strings.ToLower(word) // keywords are case-insensitive
			next := skipSpace(s, i)
			switch {
			case labelLists[lower]:
				if next < len(s) && s[next] == '(' {
					i = skipBlock(s, next, '(', ')')
				}
			case next < len(s) && s[next] == '(':
				// A function or an aggregation.
			case keywords[lower]:
			default:
				add(word)
			}
		default:
			i++
		}
	}
	return names
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// stringLit returns the literal's value (escapes kept as written) and
// the index after it; an unterminated literal runs to the end.
func stringLit(s string, i int) (string, int) {
	q := s[i]
	i++
	start := i
	for i < len(s) && s[i] != q {
		if s[i] == '\\' && q != '`' {
			i++
		}
		i++
	}
	end := min(i, len(s))
	return s[start:end], min(i+1, len(s))
}

// skipBlock returns the index after the block that opens at s[i],
// stepping over string literals and nested blocks of the same kind.
func skipBlock(s string, i int, open, close byte) int {
	depth := 0
	for i < len(s) {
		switch c := s[i]; {
		case c == '"' || c == '\'' || c == '`':
			_, i = stringLit(s, i)
			continue
		case c == open:
			depth++
		case c == close:
			depth--
			if depth == 0 {
				return i + 1
			}
		}
		i++
	}
	return i
}

// matchers skips the label matcher block at s[i] and returns the metric
// it names with __name__="..." ("" for none) and the index after it.
func matchers(s string, i int) (string, int) {
	end := skipBlock(s, i, '{', '}')
	block := s[i:end]
	name := ""
	for j := 0; j < len(block); {
		switch c := block[j]; {
		case c == '"' || c == '\'' || c == '`':
			_, j = stringLit(block, j)
		case isIdentStart(c):
			k := j
			for k < len(block) && isIdentChar(block[k]) {
				k++
			}
			word := block[j:k]
			k = skipSpace(block, k)
			if word == "__name__" && k+1 < len(block) && block[k] == '=' && block[k+1] != '~' {
				k = skipSpace(block, k+1)
				if k < len(block) && (block[k] == '"' || block[k] == '\'' || block[k] == '`') {
					name, k = stringLit(block, k)
				}
			}
			j = k
		default:
			j++
		}
	}
	return name, end
}

// Exposed returns the sample names of a Prometheus text exposition: the
// names Prometheus stores, so a histogram appears as its _bucket, _sum
// and _count series, as PromQL must name it.
func Exposed(r io.Reader) (map[string]bool, error) {
	names := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end <= 0 {
			return nil, fmt.Errorf("not a sample line: %q", line)
		}
		names[line[:end]] = true
	}
	return names, sc.Err()
}

// Missing returns, sorted, the names the expressions reference that
// exposed lacks, each with the first expression that uses it.
func Missing(exprs []string, exposed map[string]bool) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range exprs {
		for _, n := range Referenced(e) {
			if !exposed[n] && !seen[n] {
				seen[n] = true
				out = append(out, fmt.Sprintf("%s (in %q)", n, e))
			}
		}
	}
	slices.Sort(out)
	return out
}

// DashboardExprs returns the PromQL of a Grafana dashboard: every "expr"
// of a panel's targets, however deeply nested (rows hold panels), and
// the query of every templating variable of type "query" (the others,
// a data source's plugin name, a constant, a list, hold no PromQL).
func DashboardExprs(dashboard []byte) ([]string, error) {
	var doc struct {
		Templating struct {
			List []struct {
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboard, &doc); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	var tree any
	_ = json.Unmarshal(dashboard, &tree)
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if e, ok := x.(string); ok && k == "expr" && strings.TrimSpace(e) != "" {
					out = append(out, e)
				} else if k != "templating" {
					walk(x)
				}
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(tree)
	for _, v := range doc.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(string)
		if m, isObj := v.Query.(map[string]any); isObj {
			q, ok = m["query"].(string)
		}
		if ok {
			if q = variableExpr(q); q != "" {
				out = append(out, q)
			}
		}
	}
	return out, nil
}

// variableExpr is the PromQL of a templating variable's query: Grafana's
// label_values(expr, label) holds the expression expr, and
// label_values(label) none; any other query is PromQL itself.
func variableExpr(q string) string {
	q = strings.TrimSpace(q)
	inner, ok := strings.CutPrefix(q, "label_values(")
	if !ok {
		return q
	}
	inner = strings.TrimSuffix(inner, ")")
	if i := strings.LastIndexByte(inner, ','); i >= 0 {
		return strings.TrimSpace(inner[:i])
	}
	return ""
}

// Rules is a Prometheus rules file, as far as the checks read it.
type Rules struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is one group of a rules file.
type RuleGroup struct {
	Name  string `yaml:"name"`
	Rules []Rule `yaml:"rules"`
}

// Rule is an alerting (Alert set) or recording (Record set) rule.
type Rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// ParseRules reads a rules file strictly: a misspelt field is an error,
// as it is for promtool.
func ParseRules(r io.Reader) (*Rules, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var rules Rules
	if err := dec.Decode(&rules); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if (r.Alert == "") == (r.Record == "") || strings.TrimSpace(r.Expr) == "" {
				return nil, fmt.Errorf("rules: group %q: a rule needs exactly one of alert and record, and an expr: %+v", g.Name, r)
			}
		}
	}
	return &rules, nil
}

// Exprs are the expressions of every rule.
func (r *Rules) Exprs() []string {
	var out []string
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			out = append(out, rule.Expr)
		}
	}
	return out
}
