package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// access is what a rule grants on the keys it covers. The order matters:
// merging the rules of several policies for the same name keeps the one
// that takes precedence, and deny takes precedence over everything, as in
// Consul, so one policy's deny cannot be lifted by another's write.
type access uint8

const (
	accessNone  access = iota // no rule: default deny
	accessRead                // read (and "list", which Troupe treats as read)
	accessWrite               // read and write
	accessDeny                // explicit deny
)

func (a access) canRead() bool  { return a == accessRead || a == accessWrite }
func (a access) canWrite() bool { return a == accessWrite }

func parseAccess(s string) (access, error) {
	switch s {
	case "read", "list":
		return accessRead, nil
	case "write":
		return accessWrite, nil
	case "deny":
		return accessDeny, nil
	}
	return accessNone, fmt.Errorf("invalid policy %q (want read, list, write or deny)", s)
}

func mergeAccess(a, b access) access { return max(a, b) }

// ruleSet is the parsed form of one or more policies' Rules: the key
// rules by exact name and by prefix, and the session rules (by node name)
// the same way.
type ruleSet struct {
	exact, prefix         map[string]access // key, key_prefix
	sessExact, sessPrefix map[string]access // session, session_prefix
}

func newRuleSet() *ruleSet {
	return &ruleSet{exact: map[string]access{}, prefix: map[string]access{}, sessExact: map[string]access{}, sessPrefix: map[string]access{}}
}

// ruleKinds are the rules Troupe reads; anything else is refused.
const ruleKinds = "key, key_prefix, session and session_prefix"

func knownRule(kind string) bool {
	return kind == "key" || kind == "key_prefix" || kind == "session" || kind == "session_prefix"
}

func (rs *ruleSet) table(kind string) map[string]access {
	switch kind {
	case "key_prefix":
		return rs.prefix
	case "session":
		return rs.sessExact
	case "session_prefix":
		return rs.sessPrefix
	}
	return rs.exact
}

func (rs *ruleSet) add(kind, name string, a access) {
	m := rs.table(kind)
	m[name] = mergeAccess(m[name], a)
}

// merge adds other's rules to rs.
func (rs *ruleSet) merge(other *ruleSet) {
	for _, kind := range []string{"key", "key_prefix", "session", "session_prefix"} {
		for k, a := range other.table(kind) {
			rs.add(kind, k, a)
		}
	}
}

// keyAccess is Consul's longest-match rule: an exact rule for key wins
// (it is as long as any prefix rule that could match), else the longest
// key_prefix rule that key starts with, else nothing (deny).
func (rs *ruleSet) keyAccess(key string) access { return longestMatch(rs.exact, rs.prefix, key) }

// sessionAccess is the same rule over the session rules, for sessions on
// node: Consul's session rules name the node a session belongs to.
func (rs *ruleSet) sessionAccess(node string) access {
	return longestMatch(rs.sessExact, rs.sessPrefix, node)
}

func longestMatch(exact, prefix map[string]access, name string) access {
	if a, ok := exact[name]; ok {
		return a
	}
	best, found := -1, accessNone
	for p, a := range prefix {
		if len(p) > best && strings.HasPrefix(name, p) {
			best, found = len(p), a
		}
	}
	return found
}

// canWritePrefix reports whether every key that starts with prefix, present
// or future, may be written: the longest key_prefix rule covering prefix
// grants write, and no rule on a name under prefix grants less. A recursive
// delete needs this, as in Consul.
func (rs *ruleSet) canWritePrefix(prefix string) bool {
	best, covering := -1, accessNone
	for p, a := range rs.prefix {
		if strings.HasPrefix(prefix, p) && len(p) > best {
			best, covering = len(p), a
		}
		if strings.HasPrefix(p, prefix) && !a.canWrite() {
			return false
		}
	}
	for k, a := range rs.exact {
		if strings.HasPrefix(k, prefix) && !a.canWrite() {
			return false
		}
	}
	return covering.canWrite()
}

// mayReadUnder reports whether some key starting with dir could be
// readable, so a folded directory in a ?keys listing is shown only to
// tokens that could read something inside it.
func (rs *ruleSet) mayReadUnder(dir string) bool {
	if rs.keyAccess(dir).canRead() {
		return true
	}
	for p, a := range rs.prefix {
		if strings.HasPrefix(p, dir) && a.canRead() {
			return true
		}
	}
	for k, a := range rs.exact {
		if strings.HasPrefix(k, dir) && a.canRead() {
			return true
		}
	}
	return false
}

// maxRulesSize bounds a policy's Rules text; Consul's own policies are a
// few kilobytes at most.
const maxRulesSize = 64 << 10

// parseRules parses Consul's rule language, in HCL or in its JSON form,
// strictly: only key, key_prefix, session and session_prefix rules with a
// policy are accepted, and
// anything else is an error naming what and where, so a policy that would
// silently grant less (or more) than its author meant is never stored.
// An empty text is a policy with no rules.
func parseRules(text string) (*ruleSet, error) {
	if len(text) > maxRulesSize {
		return nil, fmt.Errorf("rules are %d bytes, the limit is %d", len(text), maxRulesSize)
	}
	if !utf8.ValidString(text) {
		return nil, errors.New("rules are not valid UTF-8")
	}
	if t := strings.TrimSpace(text); strings.HasPrefix(t, "{") {
		return parseRulesJSON(t)
	}
	p := &hclParser{src: text, line: 1}
	return p.parse()
}

// parseRulesJSON reads the JSON form:
//
//	{"key": {"a": {"policy": "read"}}, "key_prefix": {"b/": {"policy": "write"}}}
//
// where each kind may also be a list of such objects, as HCL's JSON
// syntax allows.
func parseRulesJSON(text string) (*ruleSet, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(text), &top); err != nil {
		return nil, fmt.Errorf("rules: invalid JSON: %v", err)
	}
	rs := newRuleSet()
	kinds := make([]string, 0, len(top))
	for k := range top {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds) // the first error reported must not depend on map order
	for _, kind := range kinds {
		if !knownRule(kind) {
			return nil, fmt.Errorf("rules: unsupported rule %q (Troupe supports %s)", kind, ruleKinds)
		}
		raw := top[kind]
		var objs []map[string]json.RawMessage
		if strings.HasPrefix(strings.TrimSpace(string(raw)), "[") {
			if err := json.Unmarshal(raw, &objs); err != nil {
				return nil, fmt.Errorf("rules: %s: want an object or a list of objects: %v", kind, err)
			}
		} else {
			var one map[string]json.RawMessage
			if err := json.Unmarshal(raw, &one); err != nil {
				return nil, fmt.Errorf("rules: %s: want an object of names: %v", kind, err)
			}
			objs = append(objs, one)
		}
		for _, obj := range objs {
			for name, body := range obj {
				var attrs map[string]json.RawMessage
				if err := json.Unmarshal(body, &attrs); err != nil {
					return nil, fmt.Errorf("rules: %s %q: want an object with a policy: %v", kind, name, err)
				}
				a, err := jsonPolicy(kind, name, attrs)
				if err != nil {
					return nil, err
				}
				rs.add(kind, name, a)
			}
		}
	}
	return rs, nil
}

func jsonPolicy(kind, name string, attrs map[string]json.RawMessage) (access, error) {
	for k := range attrs {
		if k != "policy" {
			return accessNone, fmt.Errorf("rules: %s %q: unsupported attribute %q (only policy)", kind, name, k)
		}
	}
	raw, ok := attrs["policy"]
	if !ok {
		return accessNone, fmt.Errorf("rules: %s %q: missing policy", kind, name)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return accessNone, fmt.Errorf("rules: %s %q: policy must be a string", kind, name)
	}
	a, err := parseAccess(s)
	if err != nil {
		return accessNone, fmt.Errorf("rules: %s %q: %v", kind, name, err)
	}
	return a, nil
}

// hclParser reads the subset of HCL that key and session rules are
// written in:
//
//	# comment, // comment, /* comment */
//	key "name" { policy = "read" }
//	key_prefix "name/" {
//	  policy = "write"
//	}
//	session_prefix "" { policy = "write" }
//
// Attributes may be separated by newlines, commas or semicolons.
type hclParser struct {
	src  string
	pos  int
	line int
}

func (p *hclParser) errorf(format string, args ...any) error {
	return fmt.Errorf("rules: line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// skip passes over white space, separators (when seps) and comments.
func (p *hclParser) skip(seps bool) error {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r':
			p.pos++
		case seps && (c == ',' || c == ';'):
			p.pos++
		case c == '#' || strings.HasPrefix(p.src[p.pos:], "//"):
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		case strings.HasPrefix(p.src[p.pos:], "/*"):
			end := strings.Index(p.src[p.pos+2:], "*/")
			if end < 0 {
				return p.errorf("unterminated /* comment")
			}
			p.line += strings.Count(p.src[p.pos:p.pos+2+end], "\n")
			p.pos += end + 4
		default:
			return nil
		}
	}
	return nil
}

func (p *hclParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

// str reads a double-quoted string with Go-style escapes, which covers
// HCL's (\" \\ \n \t \uXXXX).
func (p *hclParser) str() (string, error) {
	if p.pos >= len(p.src) || p.src[p.pos] != '"' {
		return "", p.errorf("expected a quoted string")
	}
	i := p.pos + 1
	for i < len(p.src) && p.src[i] != '"' {
		switch p.src[i] {
		case '\\':
			i++
		case '\n':
			return "", p.errorf("newline in a quoted string")
		}
		i++
	}
	if i >= len(p.src) {
		return "", p.errorf("unterminated string")
	}
	s, err := strconv.Unquote(p.src[p.pos : i+1])
	if err != nil {
		return "", p.errorf("bad string %s: %v", p.src[p.pos:i+1], err)
	}
	if !utf8.ValidString(s) {
		// An escape (\200, \x80) can make bytes no key can hold: keys
		// are UTF-8 (the KV endpoints refuse others).
		return "", p.errorf("string %s is not valid UTF-8 once unescaped", p.src[p.pos:i+1])
	}
	p.pos = i + 1
	return s, nil
}

func (p *hclParser) expect(c byte) error {
	if p.pos >= len(p.src) || p.src[p.pos] != c {
		got := "end of input"
		if p.pos < len(p.src) {
			r, _ := utf8.DecodeRuneInString(p.src[p.pos:])
			got = strconv.QuoteRune(r)
		}
		return p.errorf("expected %q, found %s", c, got)
	}
	p.pos++
	return nil
}

func (p *hclParser) parse() (*ruleSet, error) {
	rs := newRuleSet()
	for {
		if err := p.skip(false); err != nil {
			return nil, err
		}
		if p.pos >= len(p.src) {
			return rs, nil
		}
		kind := p.ident()
		switch {
		case knownRule(kind):
		case kind == "":
			return nil, p.errorf("expected a rule, found %q", p.src[p.pos])
		default:
			return nil, p.errorf("unsupported rule %q (Troupe supports %s)", kind, ruleKinds)
		}
		if err := p.skip(false); err != nil {
			return nil, err
		}
		name, err := p.str()
		if err != nil {
			return nil, err
		}
		if err := p.skip(false); err != nil {
			return nil, err
		}
		// HCL also accepts `key "a" = { ... }`.
		if p.pos < len(p.src) && p.src[p.pos] == '=' {
			p.pos++
			if err := p.skip(false); err != nil {
				return nil, err
			}
		}
		a, err := p.block(kind, name)
		if err != nil {
			return nil, err
		}
		rs.add(kind, name, a)
	}
}

// block reads `{ policy = "..." }`.
func (p *hclParser) block(kind, name string) (access, error) {
	if err := p.expect('{'); err != nil {
		return accessNone, err
	}
	pol, seen := accessNone, false
	for {
		if err := p.skip(true); err != nil {
			return accessNone, err
		}
		if p.pos < len(p.src) && p.src[p.pos] == '}' {
			p.pos++
			break
		}
		attr := p.ident()
		if attr != "policy" {
			if attr == "" && p.pos >= len(p.src) {
				return accessNone, p.errorf("%s %q: missing '}'", kind, name)
			}
			return accessNone, p.errorf("%s %q: unsupported attribute %q (only policy)", kind, name, attr)
		}
		if seen {
			return accessNone, p.errorf("%s %q: policy given twice", kind, name)
		}
		if err := p.skip(false); err != nil {
			return accessNone, err
		}
		if err := p.expect('='); err != nil {
			return accessNone, err
		}
		if err := p.skip(false); err != nil {
			return accessNone, err
		}
		v, err := p.str()
		if err != nil {
			return accessNone, err
		}
		if pol, err = parseAccess(v); err != nil {
			return accessNone, p.errorf("%s %q: %v", kind, name, err)
		}
		seen = true
	}
	if !seen {
		return accessNone, p.errorf("%s %q: missing policy", kind, name)
	}
	return pol, nil
}
