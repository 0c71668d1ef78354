package chaos

import (
	"encoding/json"
	"fmt"
	"sort"
)

// LockSummary is what the lock workload did and what its checker found;
// it is part of summary.json.
type LockSummary struct {
	Clients int `json:"clients"`
	// Verdict is "ok" or "violation" ("unknown" when the resource could
	// not be read back after healing).
	Verdict    string   `json:"verdict"`
	Violations []string `json:"violations,omitempty"`
	// Acquire attempts, successful acquisitions with their token read
	// back, and acquires whose outcome is unknown.
	Acquires       int `json:"acquires"`
	Acquisitions   int `json:"acquisitions"`
	AcquireUnknown int `json:"acquire_unknown"`
	Releases       int `json:"releases"`
	// Pauses: holders frozen past their session's life.
	Pauses int `json:"pauses"`
	// Fenced writes: attempted, and by result.
	Writes       int `json:"fenced_writes"`
	Accepted     int `json:"accepted"`
	Refused      int `json:"refused"`
	Conflicts    int `json:"conflicts"`
	WriteFailed  int `json:"write_failed"`
	WriteUnknown int `json:"write_unknown"`
	// HighestToken is the highest token of an accepted write; FinalToken
	// the token in the resource after healing.
	HighestToken uint64 `json:"highest_token"`
	FinalValue   string `json:"final_value"`
	FinalToken   uint64 `json:"final_token"`
}

func sortLockOps(ops []LockOp) {
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
}

// CheckLock checks the lock history and the resource's final value (final
// is "" when the resource does not exist; finalKnown false when it could
// not be read back):
//
//   - a. At most one holder per LockIndex: no two sessions read back the
//     same token; and a token read back before another acquire began is
//     below that acquire's token (LockIndex only rises). Acquires with an
//     unknown outcome, or whose token was not learned, say nothing.
//   - b. No fenced write was accepted with a token lower than that of a
//     write accepted (acknowledged) before it began.
//   - c. The resource ends with the highest accepted token, in a value
//     some write wrote: an accepted one, or one whose outcome is unknown
//     (which may have landed, but only with a token at least as high).
func CheckLock(ops []LockOp, final string, finalKnown bool) LockSummary {
	ops = append([]LockOp(nil), ops...)
	sortLockOps(ops)
	var s LockSummary
	bad := func(format string, args ...any) { s.Violations = append(s.Violations, fmt.Sprintf(format, args...)) }
	var acqs, accepted []LockOp
	written := map[string]LockOp{} // values that may be in the resource
	clients := map[int]bool{}
	for _, o := range ops {
		clients[o.Client] = true
		switch o.Kind {
		case LockAcquire:
			s.Acquires++
			switch {
			case o.Outcome == Unknown:
				s.AcquireUnknown++
			case o.Outcome == OK && o.Acquired && o.Token > 0:
				s.Acquisitions++
				acqs = append(acqs, o)
			}
		case LockRelease:
			s.Releases++
		case LockPause:
			s.Pauses++
		case LockWrite:
			s.Writes++
			switch {
			case o.Outcome == Failed:
				s.WriteFailed++
			case o.Outcome == Unknown:
				s.WriteUnknown++
				written[o.Value] = o
			case o.Result == Accepted:
				s.Accepted++
				accepted = append(accepted, o)
				written[o.Value] = o
				s.HighestToken = max(s.HighestToken, o.Token)
			case o.Result == Refused:
				s.Refused++
			case o.Result == Conflict:
				s.Conflicts++
			}
		}
	}
	s.Clients = len(clients)

	// a. One holder per LockIndex.
	holder := map[uint64]LockOp{}
	for _, a := range acqs {
		if h, ok := holder[a.Token]; ok && h.Session != a.Session {
			bad("LockIndex %d held by two sessions: %s (client %d, acquired at %s) and %s (client %d, at %s)",
				a.Token, h.Session, h.Client, secs(h.Call), a.Session, a.Client, secs(a.Call))
			continue
		}
		holder[a.Token] = a
	}
	// a, in real time, and b: each against the highest of those that
	// returned before it began.
	risesAfter(acqs, func(a LockOp, prev LockOp) {
		if a.Token <= prev.Token {
			bad("client %d acquired LockIndex %d at %s, after client %d had read back LockIndex %d (by %s): LockIndex went back",
				a.Client, a.Token, secs(a.Call), prev.Client, prev.Token, secs(prev.Return))
		}
	})
	risesAfter(accepted, func(w LockOp, prev LockOp) {
		if w.Token < prev.Token {
			bad("a write with token %d (client %d, at %s) was accepted after one with token %d (client %d, acknowledged at %s): a stale token got through",
				w.Token, w.Client, secs(w.Call), prev.Token, prev.Client, secs(prev.Return))
		}
	})

	// c. The resource's final value.
	s.FinalValue = final
	switch {
	case !finalKnown:
	case final == "":
		if len(accepted) > 0 {
			bad("the resource is missing at the end, after %d accepted writes", len(accepted))
		}
	default:
		var v fencedValue
		if err := json.Unmarshal([]byte(final), &v); err != nil {
			bad("the resource holds %q, not a fenced value", final)
			break
		}
		s.FinalToken = v.Token
		w, ok := written[final]
		switch {
		case !ok:
			bad("the resource holds %q, which no accepted or unknown write wrote", final)
		case v.Token < s.HighestToken:
			bad("the resource ends with token %d (client %d's write at %s) below the highest accepted token %d", v.Token, w.Client, secs(w.Call), s.HighestToken)
		}
	}
	switch {
	case len(s.Violations) > 0:
		s.Verdict = "violation"
	case !finalKnown:
		s.Verdict = "unknown"
	default:
		s.Verdict = "ok"
	}
	return s
}

// risesAfter calls check(o, prev) for each op o and prev the op of the
// highest token among those that returned before o was invoked.
func risesAfter(ops []LockOp, check func(o, prev LockOp)) {
	byReturn := append([]LockOp(nil), ops...)
	sort.SliceStable(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := append([]LockOp(nil), ops...)
	sortLockOps(byCall)
	var best *LockOp
	i := 0
	for _, o := range byCall {
		for ; i < len(byReturn) && byReturn[i].Return < o.Call; i++ {
			if best == nil || byReturn[i].Token > best.Token {
				best = &byReturn[i]
			}
		}
		if best != nil {
			check(o, *best)
		}
	}
}

func secs(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }
