package storage

import (
	"bytes"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func raise(member, reason string) *Command {
	return &Command{Op: OpAlarmRaise, Key: AlarmKey(AlarmNoSpace, member), Value: []byte(reason)}
}

// TestNoSpaceAlarmRefusesGrowth: while a NOSPACE alarm is raised, every
// command that writes a value is refused (Result.NoSpace, nothing
// changes), and deletes, delete-trees, delete-only transactions and the
// cluster's own bookkeeping go on. Disarmed, writes work again.
func TestNoSpaceAlarmRefusesGrowth(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a", "1", 0))
	apply(t, s, 2, set("b", "2", 0))
	apply(t, s, 3, set("c/x", "3", 0))
	if s.NoSpace() {
		t.Fatal("an alarm before any was raised")
	}
	if !apply(t, s, 4, raise("n2", "the state file uses 3 MB of its 2 MB quota")) {
		t.Fatal("raise refused")
	}
	if !s.NoSpace() {
		t.Fatal("the alarm is not raised")
	}
	want := []Alarm{{Type: AlarmNoSpace, Member: "n2", Reason: "the state file uses 3 MB of its 2 MB quota", Index: 4}}
	if got := s.Alarms(); !reflect.DeepEqual(got, want) {
		t.Fatalf("alarms %+v, want %+v", got, want)
	}

	refused := []*Command{
		set("a", "changed", 0),
		set("new", "v", 0),
		{Op: OpCAS, Key: "a", Value: []byte("x"), Index: 1},
		{Op: OpTxn, Txn: []TxnOp{{Verb: TxnDelete, Key: "b"}, {Verb: TxnSet, Key: "d", Value: []byte("v")}}},
		{Op: OpTxn, Txn: []TxnOp{{Verb: TxnLock, Key: "l", Session: "s"}}},
	}
	for i, c := range refused {
		r := mustApply(t, s, uint64(5+i), c)
		if !r.NoSpace || r.OK {
			t.Fatalf("%v under the alarm: %+v", c.Op, r)
		}
	}
	if e, _, _ := mustGet(t, s, "a"); string(e.Value) != "1" {
		t.Fatalf("a refused write changed a: %q", e.Value)
	}
	if _, found, _ := mustGet(t, s, "new"); found {
		t.Fatal("a refused write created a key")
	}
	if _, found, _ := mustGet(t, s, "b"); !found {
		t.Fatal("a refused transaction deleted b")
	}
	if got := s.AppliedIndex(); got != 9 {
		t.Fatalf("applied %d: refused entries are still applied (as no-ops)", got)
	}

	allowed := []*Command{
		{Op: OpDelete, Key: "a"},
		{Op: OpDeleteTree, Key: "c/"},
		{Op: OpTxn, Txn: []TxnOp{{Verb: TxnDelete, Key: "b"}}},
		{Op: OpRegisterNode, Key: "n4", Value: []byte("127.0.0.1:8504")},
		{Op: OpNoop},
		raise("n3", "3 MB free on /data, below min_free_bytes"),
	}
	for i, c := range allowed {
		if r := mustApply(t, s, uint64(10+i), c); r.NoSpace || !r.OK {
			t.Fatalf("%v under the alarm: %+v", c.Op, r)
		}
	}
	for _, k := range []string{"a", "b", "c/x"} {
		if _, found, _ := mustGet(t, s, k); found {
			t.Fatalf("%s survived its delete", k)
		}
	}
	if len(s.Alarms()) != 2 {
		t.Fatalf("alarms %+v", s.Alarms())
	}

	// Disarming one member's alarm leaves the other's in force.
	if !apply(t, s, 16, &Command{Op: OpAlarmClear, Key: AlarmKey(AlarmNoSpace, "n2")}) {
		t.Fatal("disarming a raised alarm reported none")
	}
	if r := mustApply(t, s, 17, set("a", "again", 0)); !r.NoSpace {
		t.Fatalf("a write with n3's alarm still raised: %+v", r)
	}
	if !apply(t, s, 18, &Command{Op: OpAlarmClear}) {
		t.Fatal("disarming every alarm reported none")
	}
	if s.NoSpace() || len(s.Alarms()) != 0 {
		t.Fatalf("alarms after disarming them all: %+v", s.Alarms())
	}
	if apply(t, s, 19, &Command{Op: OpAlarmClear}) {
		t.Fatal("disarming with no alarm raised reported one")
	}
	if r := mustApply(t, s, 20, set("a", "again", 0)); r.NoSpace || !r.OK {
		t.Fatalf("a write after the disarm: %+v", r)
	}
}

// TestAlarmWithinOneBatch: a raise or a disarm takes effect for the very
// next entry of the same batch, as it would one batch later: every node
// refuses the same writes whatever its batches.
func TestAlarmWithinOneBatch(t *testing.T) {
	s := openStore(t)
	res := mustApplyBatch(t, s, []Applied{
		{Index: 1, Cmd: set("a", "1", 0)},
		{Index: 2, Cmd: raise("n1", "full")},
		{Index: 3, Cmd: set("b", "2", 0)},
		{Index: 4, Cmd: &Command{Op: OpAlarmClear, Key: AlarmKey(AlarmNoSpace, "")}},
		{Index: 5, Cmd: set("c", "3", 0)},
	})
	if !res[0].OK || res[0].NoSpace || !res[2].NoSpace || res[4].NoSpace || !res[4].OK {
		t.Fatalf("results %+v", res)
	}
}

// TestAlarmRaiseKeepsTheFirst: raising a raised alarm again changes
// nothing (its index and reason stay), and malformed alarm keys are
// refused identically on every node rather than failing the commit.
func TestAlarmRaiseKeepsTheFirst(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, raise("n1", "first"))
	if !apply(t, s, 2, raise("n1", "second")) {
		t.Fatal("a repeated raise was refused")
	}
	if a := s.Alarms(); len(a) != 1 || a[0].Reason != "first" || a[0].Index != 1 {
		t.Fatalf("alarms %+v", a)
	}
	for i, key := range []string{"", "nospace", "nospace/", "/n1", "nospace/n1/x"} {
		if apply(t, s, uint64(3+i), &Command{Op: OpAlarmRaise, Key: key}) {
			t.Fatalf("raise of %q accepted", key)
		}
	}
	if apply(t, s, 10, &Command{Op: OpAlarmClear, Key: "nospace/n1/x"}) {
		t.Fatal("a malformed disarm reported an alarm")
	}
	if len(s.Alarms()) != 1 {
		t.Fatalf("alarms %+v", s.Alarms())
	}
}

// TestAlarmsSurviveReopenAndSnapshots: alarms are part of the replicated
// state: they are in the state file, in its snapshots and its hash.
func TestAlarmsSurviveReopenAndSnapshots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, s, 1, set("a", "1", 0))
	apply(t, s, 2, raise("n2", "full"))
	before, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path)
	if !s.NoSpace() {
		t.Fatal("the alarm did not survive a reopen")
	}
	fresh := openStore(t)
	if err := fresh.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if !fresh.NoSpace() || !reflect.DeepEqual(fresh.Alarms(), s.Alarms()) {
		t.Fatalf("restored alarms %+v, want %+v", fresh.Alarms(), s.Alarms())
	}
	after, err := fresh.Verify()
	if err != nil || after != before {
		t.Fatalf("hash after restore %+v (%v), before %+v", after, err, before)
	}
}

func TestNoSpaceErrorSaysWhatToDo(t *testing.T) {
	err := error(&NoSpaceError{Alarms: []Alarm{{Type: AlarmNoSpace, Member: "n2", Reason: "the state file uses 3 MB of its 2 MB quota"}}})
	if !errors.Is(err, ErrNoSpace) {
		t.Fatal("not ErrNoSpace")
	}
	for _, part := range []string{"database space exceeded", "n2: the state file uses 3 MB", "delete", "kvctl alarm disarm"} {
		if !strings.Contains(err.Error(), part) {
			t.Fatalf("%q does not say %q", err, part)
		}
	}
}

// TestUsageFallsWhenKeysAreDeleted: the quota compares the bytes the live
// data takes, which deletes lower, not the file's size, which bbolt never
// shrinks.
func TestUsageFallsWhenKeysAreDeleted(t *testing.T) {
	s := openStore(t)
	empty, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("v", 64<<10)
	for i := range 64 {
		apply(t, s, uint64(1+i), set("k/"+string(rune('a'+i%26))+string(rune('a'+i/26)), value, 0))
	}
	full, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if full.UsedBytes < 4<<20 || full.FileBytes < full.UsedBytes {
		t.Fatalf("after 4 MiB of values: %+v (empty: %+v)", full, empty)
	}
	apply(t, s, 100, &Command{Op: OpDeleteTree, Key: "k/"})
	apply(t, s, 101, &Command{Op: OpNoop}) // frees the pages the delete left pending
	freed, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if freed.UsedBytes > empty.UsedBytes+1<<20 || freed.FileBytes < full.FileBytes {
		t.Fatalf("after deleting everything: %+v (full %+v, empty %+v)", freed, full, empty)
	}
}

func TestGrows(t *testing.T) {
	for _, c := range []struct {
		cmd  *Command
		want bool
	}{
		{set("a", "1", 0), true},
		{&Command{Op: OpCAS, Key: "a"}, true},
		{&Command{Op: OpTxn, Txn: []TxnOp{{Verb: TxnGet, Key: "a"}, {Verb: TxnUnlock, Key: "a"}}}, true},
		{&Command{Op: OpTxn, Txn: []TxnOp{{Verb: TxnDeleteCAS, Key: "a"}, {Verb: TxnCheckIndex, Key: "a"}}}, false},
		{&Command{Op: OpDelete, Key: "a"}, false},
		{&Command{Op: OpDeleteCAS, Key: "a"}, false},
		{&Command{Op: OpACLSetToken, Key: "a"}, false},
		{&Command{Op: OpRegisterNode, Key: "a"}, false},
		{&Command{Op: OpSessionCreate, Key: "s"}, true},
		{&Command{Op: OpSessionDestroy, Key: "s"}, false},
		{&Command{Op: OpReapTombstones, Index: 9}, false},
		{raise("n1", ""), false},
	} {
		if got := c.cmd.Grows(); got != c.want {
			t.Errorf("%v %+v grows: %v", c.cmd.Op, c.cmd.Txn, got)
		}
	}
}
