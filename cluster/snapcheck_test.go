package cluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

// snapshotFixture is a data directory as a node leaves it: a WAL holding
// entries from..upto (commands setting k<i> to v<i>), and snapshots of
// the state at the given indexes, oldest first.
type snapshotFixture struct {
	dataDir string
	snaps   *raft.FileSnapshotStore
	ids     []string // by snapshot, oldest first
}

func newSnapshotFixture(t *testing.T, logFrom, upto uint64, at ...uint64) *snapshotFixture {
	t.Helper()
	f := &snapshotFixture{dataDir: t.TempDir()}
	var err error
	f.snaps, err = raft.NewFileSnapshotStoreWithLogger(f.dataDir, 5, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	src := &fsm{store: openStore(t, filepath.Join(t.TempDir(), "src.db"))}
	logs, err := openLogStore(f.dataDir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for i := uint64(1); i <= upto; i++ {
		l := &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: setCmd(fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))}
		src.ApplyBatch([]*raft.Log{l})
		if i >= logFrom {
			if err := logs.StoreLog(l); err != nil {
				t.Fatal(err)
			}
		}
		if next < len(at) && at[next] == i {
			sn, err := src.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			sink, err := f.snaps.Create(raft.SnapshotVersionMax, i, 1, raft.Configuration{}, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := sn.Persist(sink); err != nil {
				t.Fatal(err)
			}
			sn.Release()
			f.ids = append(f.ids, sink.ID())
			next++
		}
	}
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *snapshotFixture) dir(i int) string {
	return filepath.Join(f.dataDir, "snapshots", f.ids[i])
}

// settle runs settleSnapshots on the fixture with store as the state file.
func (f *snapshotFixture) settle(t *testing.T, store *storage.Store) error {
	t.Helper()
	logs, err := openLogStore(f.dataDir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	return settleSnapshots(f.dataDir, "n2", f.snaps, logs, store, nil)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestDamagedSnapshotFallsBackToAnOlderOne: the newest snapshot's state
// file, flipped at many offsets (fixed seed), is never restored. The state
// file (lost: empty) is rebuilt from the older snapshot, from which the log
// reaches past where the damaged one ended, and the damaged one is moved
// out of raft's sight.
func TestDamagedSnapshotFallsBackToAnOlderOne(t *testing.T) {
	f := newSnapshotFixture(t, 1, 30, 10, 20)
	state := filepath.Join(f.dir(1), "state.bin")
	pristine, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	moved := filepath.Join(f.dataDir, damagedSnapshotsDir, f.ids[1])
	rng := rand.New(rand.NewPCG(56, 78))
	for trial := 0; trial < 40; trial++ {
		// Put the pristine snapshot back, then damage it.
		if exists(moved) {
			if err := os.Rename(moved, f.dir(1)); err != nil {
				t.Fatal(err)
			}
		}
		b := append([]byte(nil), pristine...)
		off := rng.IntN(len(b))
		b[off] ^= byte(1 + rng.IntN(255))
		if err := os.WriteFile(state, b, 0o600); err != nil {
			t.Fatal(err)
		}
		store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
		if err := f.settle(t, store); err != nil {
			t.Fatalf("flip at %d: %v", off, err)
		}
		if store.AppliedIndex() != 10 {
			t.Fatalf("flip at %d: applied %d after the restore, want the older snapshot's 10", off, store.AppliedIndex())
		}
		expectValue(t, store, "k10", "v10", "restored")
		if _, found := getValue(t, store, "k11"); found {
			t.Fatalf("flip at %d: a key of the damaged snapshot was restored", off)
		}
		if exists(f.dir(1)) || !exists(moved) || !exists(f.dir(0)) {
			t.Fatalf("flip at %d: the damaged snapshot was not moved aside (or the good one went too)", off)
		}
		list, err := f.snaps.List()
		if err != nil || len(list) != 1 || list[0].ID != f.ids[0] {
			t.Fatalf("flip at %d: raft lists %v %v, want only the older snapshot", off, list, err)
		}
		store.Close()
	}
}

// TestDamagedSnapshotWithoutCoverIsRefused: when the log no longer reaches
// back to the older snapshot (compacted), nothing can stand in for the
// damaged one: the node refuses, naming its directory, and nothing moves.
func TestDamagedSnapshotWithoutCoverIsRefused(t *testing.T) {
	f := newSnapshotFixture(t, 15, 30, 10, 20)
	flipByte(t, filepath.Join(f.dir(1), "state.bin"), 100, 0x40)
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	err := f.settle(t, store)
	var sc *SnapshotCorruptError
	if !errors.As(err, &sc) || sc.Dir != f.dir(1) {
		t.Fatalf("settle: %v, want a *SnapshotCorruptError naming %s", err, f.dir(1))
	}
	t.Logf("the refusal: %v", err)
	if !exists(f.dir(1)) || exists(filepath.Join(f.dataDir, damagedSnapshotsDir)) || store.AppliedIndex() != 0 {
		t.Fatalf("a refusal changed something: applied %d", store.AppliedIndex())
	}

	// No snapshot at all, and a log that starts after the first entry.
	f = newSnapshotFixture(t, 15, 30)
	if err := f.settle(t, store); !errors.As(err, &sc) {
		t.Fatalf("a log starting at 15 with no snapshot: %v, want a *SnapshotCorruptError", err)
	}
}

// TestSnapshotMetaMustMatchItsName: meta.json carries no checksum, and a
// flipped digit in its index would make raft take entries as applied that
// never were. An index or term that disagrees with the directory's name
// makes the snapshot damaged; the older one takes its place.
func TestSnapshotMetaMustMatchItsName(t *testing.T) {
	f := newSnapshotFixture(t, 1, 30, 10, 20)
	meta := filepath.Join(f.dir(1), "meta.json")
	b, err := os.ReadFile(meta)
	if err != nil {
		t.Fatal(err)
	}
	b2 := []byte(nil)
	for i := 0; i+len(`"Index":20`) <= len(b); i++ {
		if string(b[i:i+len(`"Index":20`)]) == `"Index":20` {
			b2 = append(append(append([]byte(nil), b[:i]...), `"Index":90`...), b[i+len(`"Index":20`):]...)
			break
		}
	}
	if b2 == nil {
		t.Fatalf("no index in %s", b)
	}
	if err := os.WriteFile(meta, b2, 0o600); err != nil {
		t.Fatal(err)
	}
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	if err := f.settle(t, store); err != nil {
		t.Fatal(err)
	}
	if store.AppliedIndex() != 10 || exists(f.dir(1)) {
		t.Fatalf("applied %d, damaged snapshot still in place %v", store.AppliedIndex(), exists(f.dir(1)))
	}
}

// TestDamagedSnapshotWithStateFileAhead: a state file ahead of every
// snapshot needs no restore, but the damaged snapshot still goes: raft
// would otherwise take its index as applied, and send it to followers.
func TestDamagedSnapshotWithStateFileAhead(t *testing.T) {
	f := newSnapshotFixture(t, 1, 30, 10, 20)
	flipByte(t, filepath.Join(f.dir(1), "state.bin"), 64, 0x01)
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	sm := &fsm{store: store}
	for i := uint64(1); i <= 25; i++ {
		sm.ApplyBatch([]*raft.Log{{Index: i, Type: raft.LogCommand, Data: setCmd("mine", fmt.Sprint(i))}})
	}
	if err := f.settle(t, store); err != nil {
		t.Fatal(err)
	}
	if store.AppliedIndex() != 25 || exists(f.dir(1)) {
		t.Fatalf("applied %d (want 25, untouched), damaged snapshot in place: %v", store.AppliedIndex(), exists(f.dir(1)))
	}
	expectValue(t, store, "mine", "25", "ahead")
}

// TestStateFileAheadOfTheLogIsRefused: a state file that applied entries
// the log no longer holds (nor any snapshot) means the log lost committed
// entries.
func TestStateFileAheadOfTheLogIsRefused(t *testing.T) {
	f := newSnapshotFixture(t, 1, 10)
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	sm := &fsm{store: store}
	for i := uint64(1); i <= 12; i++ {
		sm.ApplyBatch([]*raft.Log{{Index: i, Type: raft.LogCommand, Data: setCmd("k", fmt.Sprint(i))}})
	}
	var lc *LogCorruptError
	if err := f.settle(t, store); !errors.As(err, &lc) || lc.Index != 11 {
		t.Fatalf("settle: %v, want a *LogCorruptError at entry 11", err)
	}
}

// TestNodeWithDamagedSnapshotUsesTheOlderOne: a follower with two
// snapshots loses its state file, and its newest snapshot's state file has
// a flipped byte. It starts from the older snapshot and its log, serves
// every write as it was made, and keeps following.
func TestNodeWithDamagedSnapshotUsesTheOlderOne(t *testing.T) {
	c := startCluster(t, 3, testTiming())
	leader := waitLeader(t, c.members)
	f := c.others(leader)[0]
	var last uint64
	write := func(from, to int) {
		for i := from; i < to; i++ {
			last = apply(t, leader, setCmd(fmt.Sprintf("k%d", i), fmt.Sprint(i))).Index
		}
		waitApplied(t, f.store, last, f.id)
	}
	write(0, 10)
	if _, err := f.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	write(10, 20)
	if _, err := f.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	write(20, 25)
	f.close(t)

	snapDir := filepath.Join(f.cfg.DataDir, "snapshots")
	entries, err := os.ReadDir(snapDir)
	if err != nil || len(entries) != 2 {
		t.Fatalf("snapshots %v %v, want two", entries, err)
	}
	newest := entries[0].Name()
	if mustIndex(t, entries[1].Name()) > mustIndex(t, newest) {
		newest = entries[1].Name()
	}
	flipByte(t, filepath.Join(snapDir, newest, "state.bin"), 200, 0x10)
	statePath := filepath.Join(f.dir, "kv.db")
	f.store.Close()
	if err := os.Remove(statePath); err != nil {
		t.Fatal(err)
	}
	f.store = openStore(t, statePath)
	f.open(t)
	if exists(filepath.Join(snapDir, newest)) || !exists(filepath.Join(f.cfg.DataDir, damagedSnapshotsDir, newest)) {
		t.Fatal("the damaged snapshot was not moved aside")
	}
	write(25, 30)
	for i := 0; i < 30; i++ {
		expectValue(t, f.store, fmt.Sprintf("k%d", i), fmt.Sprint(i), f.id)
	}
}

func mustIndex(t *testing.T, name string) uint64 {
	t.Helper()
	_, idx, ok := parseSnapshotName(name)
	if !ok {
		t.Fatalf("snapshot name %q", name)
	}
	return idx
}

// TestRecoverRefusesDamagedData: kvnode recover applies the whole log to
// the state file, so it checks first, as a start does: a corrupt entry or
// a damaged snapshot the log cannot stand in for is refused before the
// state file is touched, with advice that fits a cluster without quorum.
func TestRecoverRefusesDamagedData(t *testing.T) {
	f := newSnapshotFixture(t, 1, 30, 10)
	file, off := findInWAL(t, f.dataDir, "v25")
	flipByte(t, file, off, 0x01)
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	err := Recover("n1", f.dataDir, store, []Server{{ID: "n1", Addr: "127.0.0.1:1"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "entry 25 in "+file) || !strings.Contains(err.Error(), "recover another survivor") {
		t.Fatalf("recover on a corrupt log: %v", err)
	}
	if store.AppliedIndex() != 0 {
		t.Fatalf("the refused recovery applied up to %d", store.AppliedIndex())
	}

	f = newSnapshotFixture(t, 15, 30, 10, 20)
	flipByte(t, filepath.Join(f.dir(1), "state.bin"), 80, 0x04)
	err = Recover("n1", f.dataDir, store, []Server{{ID: "n1", Addr: "127.0.0.1:1"}}, nil)
	if err == nil || !strings.Contains(err.Error(), f.dir(1)) || !strings.Contains(err.Error(), "recover another survivor") {
		t.Fatalf("recover with a damaged snapshot and no cover: %v", err)
	}
	if store.AppliedIndex() != 0 {
		t.Fatalf("the refused recovery applied up to %d", store.AppliedIndex())
	}
}
