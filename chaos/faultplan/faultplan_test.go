package faultplan

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster/faultnet"
)

var members = []string{"n1", "n2", "n3", "n4", "n5"}

func rules(seed uint64, rs ...faultnet.Rule) *faultnet.Rules {
	return &faultnet.Rules{Seed: seed, Rules: rs}
}

func cutOf(peer string, d faultnet.Direction) faultnet.Rule {
	return faultnet.Rule{Peer: peer, Direction: d, Cut: true}
}

// expect compares a plan with the steps wanted, and checks that every rule
// set in it is one the server accepts.
func expect(t *testing.T, got Plan, err error, want Plan) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("plan\n%+v\nwant\n%+v", describe(got), describe(want))
	}
	for _, s := range got {
		if s.Rules != nil {
			if err := s.Rules.Validate(); err != nil {
				t.Fatalf("%s: the server would refuse %+v: %v", s.Node, *s.Rules, err)
			}
		}
	}
}

// describe renders a plan for failure messages: one "node: rules" per step.
func describe(p Plan) []string {
	var out []string
	for _, s := range p {
		if s.Rules == nil {
			out = append(out, s.Node+": clear")
			continue
		}
		out = append(out, fmt.Sprintf("%s: %+v", s.Node, *s.Rules))
	}
	return out
}

// expectErr checks a builder's refusal: the message, and whether it is the
// unknown-member kind.
func expectErr(t *testing.T, p Plan, err error, msg string, unknown bool) {
	t.Helper()
	var ue *UnknownNodeError
	if err == nil || err.Error() != msg || errors.As(err, &ue) != unknown || p != nil {
		t.Fatalf("got %v, %v; want error %q (unknown member: %v)", describe(p), err, msg, unknown)
	}
}

func TestIsolate(t *testing.T) {
	p, err := Isolate(members, "n3")
	expect(t, p, err, Plan{{"n3", rules(0, cutOf("*", faultnet.Both))}})
	p, err = Isolate(members, "n1", "n4")
	expect(t, p, err, Plan{{"n1", rules(0, cutOf("*", faultnet.Both))}, {"n4", rules(0, cutOf("*", faultnet.Both))}})

	p, err = Isolate(members)
	expectErr(t, p, err, "isolate needs a node", false)
	p, err = Isolate(members, "n1", "n1")
	expectErr(t, p, err, "node n1 is named twice", false)
	p, err = Isolate(members, "")
	expectErr(t, p, err, "empty node id", false)
	p, err = Isolate(members, "n9")
	expectErr(t, p, err, `no member with id "n9" (members: n1, n2, n3, n4, n5)`, true)
	p, err = Isolate(members, "*")
	expectErr(t, p, err, `no member with id "*" (members: n1, n2, n3, n4, n5)`, true)
}

func TestPartition(t *testing.T) {
	both := faultnet.Both
	p, err := Partition(members[:3], []string{"n1"}, []string{"n2", "n3"})
	expect(t, p, err, Plan{
		{"n1", rules(0, cutOf("n2", both), cutOf("n3", both))},
		{"n2", rules(0, cutOf("n1", both))},
		{"n3", rules(0, cutOf("n1", both))},
	})
	// n3 is on neither side: a bridge that keeps its rules.
	p, err = Partition(members, []string{"n1", "n2"}, []string{"n4", "n5"})
	expect(t, p, err, Plan{
		{"n1", rules(0, cutOf("n4", both), cutOf("n5", both))},
		{"n2", rules(0, cutOf("n4", both), cutOf("n5", both))},
		{"n4", rules(0, cutOf("n1", both), cutOf("n2", both))},
		{"n5", rules(0, cutOf("n1", both), cutOf("n2", both))},
	})

	for _, tc := range []struct {
		a, b    []string
		msg     string
		unknown bool
	}{
		{[]string{"n1", "n2"}, []string{"n2", "n3"}, "n2 is on both sides of the partition", false},
		{[]string{"n1"}, nil, "a partition needs a node on each side", false},
		{nil, []string{"n1"}, "a partition needs a node on each side", false},
		{[]string{"n1", ""}, []string{"n2"}, "empty node id", false},
		{[]string{"n1"}, []string{"n2", "n2"}, "node n2 is named twice", false},
		{[]string{"n1"}, []string{"n6"}, `no member with id "n6" (members: n1, n2, n3, n4, n5)`, true},
		// A mistake in the request is reported before an unknown id.
		{[]string{"n6", "n1"}, []string{"n1"}, "n1 is on both sides of the partition", false},
	} {
		p, err := Partition(members, tc.a, tc.b)
		expectErr(t, p, err, tc.msg, tc.unknown)
	}
}

func TestOneWay(t *testing.T) {
	p, err := OneWay(members, "n1", "n2")
	expect(t, p, err, Plan{{"n1", rules(0, cutOf("n2", faultnet.Out))}})
	// n1 hears nobody: the rule sits on n1.
	p, err = OneWay(members, "*", "n1")
	expect(t, p, err, Plan{{"n1", rules(0, cutOf("*", faultnet.In))}})
	// n1 reaches nobody.
	p, err = OneWay(members, "n1", "*")
	expect(t, p, err, Plan{{"n1", rules(0, cutOf("*", faultnet.Out))}})

	p, err = OneWay(members, "n2", "n2")
	expectErr(t, p, err, "a one-way cut needs two different nodes", false)
	p, err = OneWay(members, "*", "*")
	expectErr(t, p, err, "a one-way cut needs two different nodes", false)
	p, err = OneWay(members, "n1", "")
	expectErr(t, p, err, "empty node id", false)
	p, err = OneWay(members, "n1", "n7")
	expectErr(t, p, err, `no member with id "n7" (members: n1, n2, n3, n4, n5)`, true)
}

func TestDegrade(t *testing.T) {
	three := members[:3]
	effect := faultnet.Rule{Delay: faultnet.Duration(50 * time.Millisecond), Jitter: faultnet.Duration(20 * time.Millisecond), Drop: 0.05, Bandwidth: 1 << 20}
	with := func(peer string, d faultnet.Direction) faultnet.Rule {
		r := effect
		r.Peer, r.Direction = peer, d
		return r
	}
	out := rules(7, with("*", faultnet.Out))

	// Every member, named or by default: each one's outgoing messages.
	p, err := Degrade(three, nil, effect, 7)
	expect(t, p, err, Plan{{"n1", out}, {"n2", out}, {"n3", out}})
	p, err = Degrade(three, []string{"n3", "n1", "n2"}, effect, 7)
	expect(t, p, err, Plan{{"n3", out}, {"n1", out}, {"n2", out}})

	// One node: both ways, the others untouched.
	p, err = Degrade(three, []string{"n2"}, effect, 0)
	expect(t, p, err, Plan{{"n2", rules(0, with("*", faultnet.Both))}})

	// Some: out to everyone, in from each member left alone.
	p, err = Degrade(members, []string{"n1", "n3"}, effect, 3)
	two := rules(3, with("*", faultnet.Out), with("n2", faultnet.In), with("n4", faultnet.In), with("n5", faultnet.In))
	expect(t, p, err, Plan{{"n1", two}, {"n3", two}})

	// A Peer or Direction in the effect is the builder's to set.
	stray := effect
	stray.Peer, stray.Direction = "n9", faultnet.In
	p, err = Degrade(three, []string{"n2"}, stray, 0)
	expect(t, p, err, Plan{{"n2", rules(0, with("*", faultnet.Both))}})

	// One effect alone is enough.
	thin := faultnet.Rule{Bandwidth: 2048}
	p, err = Degrade(three, []string{"n3"}, thin, 0)
	expect(t, p, err, Plan{{"n3", rules(0, faultnet.Rule{Peer: "*", Direction: faultnet.Both, Bandwidth: 2048})}})

	p, err = Degrade(three, nil, faultnet.Rule{Jitter: faultnet.Duration(time.Millisecond)}, 0)
	expectErr(t, p, err, "degrading needs a delay, a drop rate or a bandwidth cap", false)
	p, err = Degrade(three, nil, faultnet.Rule{Cut: true, Drop: 0.5}, 0)
	expectErr(t, p, err, "degrading does not cut links (isolate, partition or cut one way instead)", false)
	p, err = Degrade(three, []string{"n1", "n1"}, effect, 0)
	expectErr(t, p, err, "node n1 is named twice", false)
	p, err = Degrade(three, []string{"n4"}, effect, 0)
	expectErr(t, p, err, `no member with id "n4" (members: n1, n2, n3)`, true)
}

func TestHeal(t *testing.T) {
	if got, want := Heal(members[:3]), (Plan{{Node: "n1"}, {Node: "n2"}, {Node: "n3"}}); !reflect.DeepEqual(got, want) {
		t.Fatalf("Heal = %v, want %v", describe(got), describe(want))
	}
	if got := Heal(nil); len(got) != 0 {
		t.Fatalf("Heal(nil) = %v", describe(got))
	}
}

func TestMust(t *testing.T) {
	if p := Must(Isolate(members, "n1")); len(p) != 1 || p[0].Node != "n1" {
		t.Fatalf("Must(Isolate) = %v", describe(p))
	}
	defer func() {
		if r := recover(); r != "faultplan: node n1 is named twice" {
			t.Fatalf("Must on an error panicked with %v", r)
		}
	}()
	Must(Isolate(members, "n1", "n1"))
}
