package chaos

import (
	"testing"
	"time"
)

// op builds a history entry; times are in milliseconds for readability.
func op(p int, kind Kind, key, value string, outcome Outcome, call, ret int64) Op {
	return Op{Process: p, Kind: kind, Key: key, Value: value, Outcome: outcome, Call: call * 1e6, Return: ret * 1e6}
}

func cas(p int, key, from, to string, swapped bool, outcome Outcome, call, ret int64) Op {
	return Op{Process: p, Kind: CAS, Key: key, From: from, To: to, Swapped: swapped, Outcome: outcome, Call: call * 1e6, Return: ret * 1e6}
}

func lin(t *testing.T, ops []Op) string {
	t.Helper()
	v, _, _ := CheckLinearizable(ops, 10*time.Second)
	return v
}

func TestLinearizableHistoriesPass(t *testing.T) {
	cases := map[string][]Op{
		"sequential": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(1, Read, "k", "a", OK, 20, 30),
			cas(0, "k", "a", "b", true, OK, 40, 50),
			op(1, Read, "k", "b", OK, 60, 70),
			cas(2, "k", "a", "c", false, OK, 80, 90),
		},
		"concurrent read sees old or new": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(0, Write, "k", "b", OK, 20, 40),
			op(1, Read, "k", "a", OK, 25, 30),
			op(2, Read, "k", "b", OK, 35, 45),
		},
		"unknown write may appear later": {
			op(0, Write, "k", "a", Unknown, 0, 10),
			op(1, Read, "k", "", OK, 20, 30),
			op(1, Read, "k", "a", OK, 500, 510),
		},
		"unknown write may never appear": {
			op(0, Write, "k", "a", Unknown, 0, 10),
			op(1, Read, "k", "", OK, 20, 30),
			op(1, Read, "k", "", OK, 500, 510),
		},
		"unknown cas may apply": {
			op(0, Write, "k", "a", OK, 0, 10),
			cas(1, "k", "a", "b", false, Unknown, 20, 30),
			op(2, Read, "k", "b", OK, 40, 50),
		},
		"failed write has no effect": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(1, Write, "k", "zzz", Failed, 20, 30),
			op(2, Read, "k", "a", OK, 40, 50),
		},
		"keys are independent": {
			op(0, Write, "x", "a", OK, 0, 10),
			op(1, Read, "y", "", OK, 20, 30),
		},
	}
	for name, ops := range cases {
		if v := lin(t, ops); v != "ok" {
			t.Errorf("%s: %s, want ok", name, v)
		}
	}
}

// TestCheckerCatchesBadHistories shows the checker can fail: each history
// here breaks linearizability in a way a broken store could.
func TestCheckerCatchesBadHistories(t *testing.T) {
	cases := map[string][]Op{
		"stale read after an acknowledged write": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(0, Write, "k", "b", OK, 20, 30),
			op(1, Read, "k", "a", OK, 40, 50),
		},
		"read of a value never written": {
			op(1, Read, "k", "ghost", OK, 0, 10),
		},
		"read sees a write before it began": {
			op(1, Read, "k", "a", OK, 0, 10),
			op(0, Write, "k", "a", OK, 20, 30),
		},
		"unknown write seen before its invocation": {
			op(1, Read, "k", "a", OK, 0, 10),
			op(0, Write, "k", "a", Unknown, 20, 30),
		},
		"cas succeeded on a stale value": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(0, Write, "k", "b", OK, 20, 30),
			cas(1, "k", "a", "c", true, OK, 40, 50),
		},
		"cas failed although it matched": {
			op(0, Write, "k", "a", OK, 0, 10),
			cas(1, "k", "a", "c", false, OK, 20, 30),
			op(2, Read, "k", "a", OK, 40, 50),
			cas(1, "k", "a", "d", false, OK, 60, 70),
		},
		"failed write became visible": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(1, Write, "k", "zzz", Failed, 20, 30),
			op(2, Read, "k", "zzz", OK, 40, 50),
		},
		"reads go back in time": {
			op(0, Write, "k", "a", OK, 0, 10),
			op(0, Write, "k", "b", OK, 20, 100),
			op(1, Read, "k", "b", OK, 30, 40),
			op(2, Read, "k", "a", OK, 50, 60),
		},
	}
	for name, ops := range cases {
		v, keys, _ := CheckLinearizable(ops, 10*time.Second)
		if v != "violation" || len(keys) != 1 || keys[0] != "k" {
			t.Errorf("%s: %s %v, want a violation on k", name, v, keys)
		}
	}
}

func TestFindLostWrites(t *testing.T) {
	ops := []Op{
		op(0, Write, "k", "a", OK, 0, 10),
		op(1, Write, "k", "b", OK, 20, 30), // acknowledged, then "a" is final: lost
		op(0, Write, "j", "x", OK, 0, 10),
		op(1, Write, "j", "y", OK, 5, 15), // concurrent with x: x may win legitimately
		op(2, Write, "m", "p", OK, 0, 10), // m ends empty: lost
		op(2, Write, "u", "q", OK, 0, 10),
		op(3, Write, "u", "r", Unknown, 20, 30), // unknown may legitimately win
		op(4, Write, "v", "s", OK, 0, 10),
		cas(4, "v", "s", "t", true, OK, 20, 30), // final is s, written before: lost
	}
	final := map[string]string{"k": "a", "j": "x", "m": "", "u": "r", "v": "s"}
	lost := FindLostWrites(ops, final)
	got := map[string]bool{}
	for _, o := range lost {
		got[o.Key+"="+o.Value+o.To] = true
	}
	want := map[string]bool{"k=b": true, "m=p": true, "v=t": true}
	if len(got) != len(want) {
		t.Fatalf("lost %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("lost %v, want %v", got, want)
		}
	}
}

func TestMeasure(t *testing.T) {
	ops := []Op{
		op(0, Write, "k", "a", OK, 100, 110),
		op(0, Write, "k", "b", Failed, 1100, 1200),
		op(0, Write, "k", "c", Unknown, 1300, 1400),
		op(0, Write, "k", "d", OK, 2600, 2610),
	}
	faults := []FaultWindow{{Nemesis: "kill", Start: 1000 * 1e6, End: 2000 * 1e6}}
	a := Measure(ops, faults, 3000*1e6)
	if len(a.Buckets) != 4 || a.Buckets[0].OK != 1 || a.Buckets[1].Failed != 1 || a.Buckets[1].Unknown != 1 || a.Buckets[2].OK != 1 {
		t.Fatalf("buckets %+v", a.Buckets)
	}
	f := a.Faults[0]
	if f.Failed != 1 || f.Unknown != 1 || f.OK != 0 {
		t.Fatalf("fault counts %+v", f)
	}
	// No success from 1000ms until 2610ms.
	if f.UnavailableMS != 1610 || f.RecoveryMS != 610 {
		t.Fatalf("unavailable %.0fms recovery %.0fms", f.UnavailableMS, f.RecoveryMS)
	}
}
