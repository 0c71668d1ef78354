package chaos

import (
	"encoding/json"
	"strings"
	"testing"
)

// Times in milliseconds, as in check_test.go.
func acq(c int, session string, token uint64, call, ret int64) LockOp {
	return LockOp{Client: c, Session: session, Kind: LockAcquire, Outcome: OK, Acquired: true, Token: token, Call: call * 1e6, Return: ret * 1e6}
}

func fenced(c int, token uint64, seq int, result string, outcome Outcome, call, ret int64) LockOp {
	v, _ := json.Marshal(fencedValue{Token: token, Client: c, Seq: seq})
	return LockOp{Client: c, Kind: LockWrite, Token: token, Value: string(v), Result: result, Outcome: outcome, Call: call * 1e6, Return: ret * 1e6}
}

func value(c int, token uint64, seq int) string {
	v, _ := json.Marshal(fencedValue{Token: token, Client: c, Seq: seq})
	return string(v)
}

// goodLockHistory: A holds token 5 and writes, is frozen, B takes token 7
// and writes, A wakes and is refused; an unknown acquire and an unknown
// write with a higher token that may have landed.
func goodLockHistory() []LockOp {
	return []LockOp{
		acq(0, "sA", 5, 0, 10),
		fenced(0, 5, 1, Accepted, OK, 20, 30),
		{Client: 0, Session: "sA", Kind: LockPause, Outcome: OK, Call: 40e6, Return: 500e6},
		{Client: 2, Session: "sC", Kind: LockAcquire, Outcome: Unknown, Call: 45e6, Return: 60e6},
		acq(1, "sB", 7, 100, 120),
		fenced(1, 7, 1, Accepted, OK, 130, 140),
		fenced(1, 7, 2, Conflict, OK, 150, 160),
		fenced(0, 5, 2, Refused, OK, 510, 520),
		fenced(1, 7, 3, "", Unknown, 530, 540),
		acq(2, "sD", 9, 600, 610),
		fenced(2, 9, 1, "", Unknown, 620, 630),
	}
}

func TestCheckLockPassesAGoodHistory(t *testing.T) {
	for _, final := range []string{value(1, 7, 1), value(1, 7, 3), value(2, 9, 1)} {
		s := CheckLock(goodLockHistory(), final, true)
		if s.Verdict != "ok" {
			t.Fatalf("final %s: %s %v", final, s.Verdict, s.Violations)
		}
		if s.Acquisitions != 3 || s.AcquireUnknown != 1 || s.Accepted != 2 || s.Refused != 1 || s.Conflicts != 1 || s.WriteUnknown != 2 || s.Pauses != 1 || s.HighestToken != 7 {
			t.Fatalf("counts %+v", s)
		}
	}
	if s := CheckLock(nil, "", true); s.Verdict != "ok" {
		t.Fatalf("an empty history: %s %v", s.Verdict, s.Violations)
	}
	if s := CheckLock(goodLockHistory(), "", false); s.Verdict != "unknown" {
		t.Fatalf("an unread resource: %s", s.Verdict)
	}
}

// TestCheckLockCatchesBadHistories: each rule, broken on purpose.
func TestCheckLockCatchesBadHistories(t *testing.T) {
	good := value(1, 7, 1)
	cases := map[string]struct {
		ops   []LockOp
		final string
		want  string
	}{
		"two sessions hold the same LockIndex": {
			ops:   append(goodLockHistory(), acq(3, "sE", 7, 700, 710)),
			final: good, want: "LockIndex 7 held by two sessions",
		},
		"two sessions hold the same LockIndex concurrently": {
			ops:   []LockOp{acq(0, "sA", 4, 0, 100), acq(1, "sB", 4, 50, 150)},
			want:  "LockIndex 4 held by two sessions",
			final: "",
		},
		"LockIndex goes back after a read-back": {
			ops:   append(goodLockHistory(), acq(3, "sE", 6, 700, 710)),
			final: good, want: "LockIndex went back",
		},
		"a stale token accepted": {
			ops:   append(goodLockHistory(), fenced(0, 5, 3, Accepted, OK, 700, 710)),
			final: good, want: "token 5 (client 0, at 0.700s) was accepted after one with token 7",
		},
		"final token below the highest accepted": {
			ops:   goodLockHistory(),
			final: value(0, 5, 1), want: "ends with token 5",
		},
		"final value never written": {
			ops:   goodLockHistory(),
			final: value(3, 7, 1), want: "which no accepted or unknown write wrote",
		},
		"resource gone after accepted writes": {
			ops:   goodLockHistory(),
			final: "", want: "missing at the end",
		},
		"resource garbled": {
			ops:   goodLockHistory(),
			final: "zzz", want: "not a fenced value",
		},
	}
	for name, c := range cases {
		s := CheckLock(c.ops, c.final, true)
		if s.Verdict != "violation" || !strings.Contains(strings.Join(s.Violations, "\n"), c.want) {
			t.Errorf("%s: %s %q, want a violation saying %q", name, s.Verdict, s.Violations, c.want)
		}
	}
}

// Concurrent acquisitions and writes (neither returned before the other
// began) may come in either order; an unknown or tokenless acquire says
// nothing.
func TestCheckLockAllowsConcurrency(t *testing.T) {
	ops := []LockOp{
		acq(0, "sA", 8, 0, 100),
		acq(1, "sB", 6, 50, 150), // overlaps A: may have been first
		{Client: 2, Session: "sC", Kind: LockAcquire, Outcome: OK, Acquired: true, Call: 200e6, Return: 210e6}, // token not learned
		fenced(0, 8, 1, Accepted, OK, 300, 400),
		fenced(1, 6, 1, Accepted, OK, 350, 450), // overlaps: may have landed first
	}
	if s := CheckLock(ops, value(0, 8, 1), true); s.Verdict != "ok" {
		t.Fatalf("%s %v", s.Verdict, s.Violations)
	}
}
