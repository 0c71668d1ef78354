package storage

import (
	"fmt"
	"os"
	"testing"
)

func reap(upTo, limit uint64) *Command {
	return &Command{Op: OpReapTombstones, Index: upTo, Flags: limit}
}

func mustTombstones(t testing.TB, s *Store) (int, uint64) {
	t.Helper()
	n, floor, err := s.Tombstones()
	if err != nil {
		t.Fatal(err)
	}
	return n, floor
}

// Reaping removes the tombstones at or below an index, in key order up to
// a limit, identically wherever it is applied; and no prefix's index goes
// backwards across it.
func TestReapTombstones(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a/1", "x", 0))
	apply(t, s, 2, set("a/2", "x", 0))
	apply(t, s, 3, set("b/1", "x", 0))
	apply(t, s, 4, &Command{Op: OpDelete, Key: "a/2"})
	apply(t, s, 5, &Command{Op: OpDelete, Key: "b/1"})
	apply(t, s, 6, set("c", "x", 0))
	apply(t, s, 7, &Command{Op: OpDelete, Key: "c"})
	before := map[string]uint64{}
	for _, p := range []string{"", "a/", "a/2", "b/", "c", "z"} {
		before[p] = listIndex(t, s, p)
	}
	if n, floor := mustTombstones(t, s); n != 3 || floor != 0 {
		t.Fatalf("%d tombstones, floor %d", n, floor)
	}
	// At most one, in key order, at or below 5: a/2; it stopped at its
	// limit, so it says there may be more.
	if apply(t, s, 8, reap(5, 1)) {
		t.Fatal("a reap that stopped at its limit answered true")
	}
	if n, floor := mustTombstones(t, s); n != 2 || floor != 4 {
		t.Fatalf("after reaping one: %d tombstones, floor %d", n, floor)
	}
	// Everything at or below 5: b/1 too, not c (7).
	if !apply(t, s, 9, reap(5, 0)) {
		t.Fatal("a reap without a limit answered false")
	}
	if n, floor := mustTombstones(t, s); n != 1 || floor != 5 {
		t.Fatalf("after reaping up to 5: %d tombstones, floor %d", n, floor)
	}
	for p, was := range before {
		if now := listIndex(t, s, p); now < was {
			t.Errorf("prefix %q: index %d before the reap, %d after", p, was, now)
		}
	}
	// a/ still has a live key (1); without the floor it would report 1,
	// below the delete at 4 a blocked lister may have seen.
	if idx := listIndex(t, s, "a/"); idx != 5 {
		t.Fatalf("a/ reports %d, want the floor 5", idx)
	}
	// A missing key reports the KV-wide index, reap or not.
	if _, found, idx := mustGet(t, s, "a/2"); found || idx != 7 {
		t.Fatalf("Get of a reaped key: found %v, index %d", found, idx)
	}
	// The same commands on another store give the same bytes.
	other := openStore(t)
	for i, c := range []*Command{set("a/1", "x", 0), set("a/2", "x", 0), set("b/1", "x", 0), {Op: OpDelete, Key: "a/2"},
		{Op: OpDelete, Key: "b/1"}, set("c", "x", 0), {Op: OpDelete, Key: "c"}, reap(5, 1), reap(5, 0)} {
		apply(t, other, uint64(i+1), c)
	}
	requireSameState(t, dumpRaw(t, other), dumpRaw(t, s))
	if _, err := s.Verify(); err != nil {
		t.Fatal(err)
	}
}

// TestReapKeepsTheFileBounded: a million create/delete cycles of distinct
// keys (as api.Semaphore's per-session contender keys, or a lock key per
// job, make) leave the state file no bigger than the first few thousand
// did, when the tombstones are reaped as they age; without reaping they
// pile up. -short and -race run a tenth of it (the race detector makes a
// million cycles take minutes).
func TestReapKeepsTheFileBounded(t *testing.T) {
	cycles := 1_000_000
	if testing.Short() || raceEnabled {
		cycles = 100_000
	}
	const batch = 1000   // commands per commit, as a busy leader's batches
	const window = 20000 // cycles a tombstone lives before it is reaped
	s := openStore(t)
	idx := uint64(0)
	earlyAt := min(5*window, cycles/2) // well past the first reaps
	var sizeEarly int64
	cmds := make([]Applied, 0, batch)
	for i := 0; i < cycles; i += batch / 2 {
		cmds = cmds[:0]
		for j := 0; j < batch/2; j++ {
			key := fmt.Sprintf("sem/%08d", i+j)
			idx++
			cmds = append(cmds, Applied{Index: idx, Cmd: set(key, "contender", 0)})
			idx++
			cmds = append(cmds, Applied{Index: idx, Cmd: &Command{Op: OpDelete, Key: key}})
		}
		mustApplyBatch(t, s, cmds)
		// The leader reaps what is older than the window (here counted
		// in log entries instead of minutes).
		if idx > 2*window {
			idx++
			mustApply(t, s, idx, reap(idx-2*window, 0))
		}
		if i+batch/2 == earlyAt {
			sizeEarly = s.FileSize()
		}
	}
	n, floor := mustTombstones(t, s)
	if n > window+batch || floor == 0 {
		t.Fatalf("%d tombstones left after %d cycles (floor %d): reaping did not keep up", n, cycles, floor)
	}
	size := s.FileSize()
	t.Logf("%d cycles: %d tombstones left, state file %d KiB (%d KiB after %d cycles)", cycles, n, size>>10, sizeEarly>>10, earlyAt)
	if size > 2*sizeEarly {
		t.Fatalf("the state file grew from %d to %d bytes between %d and %d cycles", sizeEarly, size, earlyAt, cycles)
	}
	if fi, err := os.Stat(s.Path()); err != nil || fi.Size() != size {
		t.Fatal(err)
	}
}
