package cluster

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

func openStore(t *testing.T, path string) *storage.Store {
	t.Helper()
	s, err := storage.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func setCmd(key, value string) []byte {
	return (&storage.Command{Op: storage.OpSet, Key: key, Value: []byte(value)}).Encode()
}

func getValue(t *testing.T, s *storage.Store, key string) (string, bool) {
	t.Helper()
	e, found, _, err := s.Get(key)
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	return string(e.Value), found
}

// TestFSMConfigurationEntryOnlyAdvancesIndex: a membership change reaches
// the FSM and moves the applied index, nothing else; command entries
// around it in the same batch apply normally.
func TestFSMConfigurationEntryOnlyAdvancesIndex(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	f := &fsm{store: store}

	conf := raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "127.0.0.1:1", Suffrage: raft.Voter}}})
	out := f.ApplyBatch([]*raft.Log{{Index: 3, Term: 1, Type: raft.LogConfiguration, Data: conf}})
	if len(out) != 1 {
		t.Fatalf("%d results for one entry", len(out))
	}
	if res, ok := out[0].(storage.Result); !ok || res.Index != 3 {
		t.Fatalf("result %#v, want storage.Result at index 3", out[0])
	}
	if got := store.AppliedIndex(); got != 3 {
		t.Fatalf("applied index %d after a configuration entry at 3", got)
	}
	if keys, _, err := store.Keys("", ""); err != nil || len(keys) != 0 {
		t.Fatalf("a configuration entry wrote keys: %v %v", keys, err)
	}

	out = f.ApplyBatch([]*raft.Log{
		{Index: 4, Type: raft.LogCommand, Data: setCmd("a", "1")},
		{Index: 5, Type: raft.LogConfiguration, Data: conf},
		{Index: 6, Type: raft.LogCommand, Data: setCmd("b", "2")},
	})
	for i, want := range []storage.Result{{Index: 4, OK: true}, {Index: 5}, {Index: 6, OK: true}} {
		if out[i] != want {
			t.Fatalf("result %d: %#v, want %#v", i, out[i], want)
		}
	}
	if store.AppliedIndex() != 6 {
		t.Fatalf("applied index %d, want 6", store.AppliedIndex())
	}
	for k, v := range map[string]string{"a": "1", "b": "2"} {
		if got, found := getValue(t, store, k); !found || got != v {
			t.Fatalf("%s = %q (found %v), want %q", k, got, found, v)
		}
	}

	// Apply is ApplyBatch of one.
	if res := f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: setCmd("c", "3")}); res != (storage.Result{Index: 7, OK: true}) {
		t.Fatalf("Apply: %#v", res)
	}
}

// TestFSMStopsOnUndecodableCommand: a corrupt command is corrupt on every
// replica and every replay, so the FSM reports a permanent fault naming
// the entry, applies nothing of its batch, answers every entry with
// ErrStateMachine, and applies nothing after it either (later entries on
// top of a missing one would diverge from the other nodes).
func TestFSMStopsOnUndecodableCommand(t *testing.T) {
	for _, data := range [][]byte{nil, {0xff}, {99, 1}, {1, 200}} {
		store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
		var faults []*ApplyFault
		f := &fsm{store: store, onFault: func(af *ApplyFault) { faults = append(faults, af) }}
		out := f.ApplyBatch([]*raft.Log{
			{Index: 1, Type: raft.LogCommand, Data: setCmd("before", "x")},
			{Index: 2, Type: raft.LogCommand, Data: data},
		})
		if len(faults) != 1 || !faults[0].Permanent || faults[0].Index != 2 || !strings.Contains(faults[0].Error(), "log entry 2") || !errors.Is(faults[0], storage.ErrBadCommand) {
			t.Fatalf("command bytes %x: faults %v, want one permanent fault naming entry 2", data, faults)
		}
		for i, r := range out {
			if r != ErrStateMachine {
				t.Fatalf("entry %d answered %v, want ErrStateMachine", i+1, r)
			}
		}
		if store.AppliedIndex() != 0 {
			t.Fatalf("a batch with a corrupt entry was partly applied: applied index %d", store.AppliedIndex())
		}
		if _, found := getValue(t, store, "before"); found {
			t.Fatal("the entry before the corrupt one was applied")
		}
		// Nothing after the fault is applied, and it is reported once.
		if res := f.Apply(&raft.Log{Index: 3, Type: raft.LogCommand, Data: setCmd("after", "y")}); res != ErrStateMachine {
			t.Fatalf("entry after the fault: %v, want ErrStateMachine", res)
		}
		if _, found := getValue(t, store, "after"); found || len(faults) != 1 {
			t.Fatalf("the fsm applied past its fault (found %v, %d faults)", found, len(faults))
		}
		if _, err := f.Snapshot(); !errors.Is(err, ErrStateMachine) {
			t.Fatalf("snapshot after a fault: %v, want ErrStateMachine", err)
		}
	}
}

// TestFSMFailedCommitIsNotPermanent: a state file that cannot take a batch
// (here: closed underneath) is reported as a fault a reopen may cure.
func TestFSMFailedCommitIsNotPermanent(t *testing.T) {
	store := openStore(t, filepath.Join(t.TempDir(), "kv.db"))
	var faults []*ApplyFault
	f := &fsm{store: store, onFault: func(af *ApplyFault) { faults = append(faults, af) }}
	store.Close()
	f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: setCmd("a", "1")})
	if len(faults) != 1 || faults[0].Permanent {
		t.Fatalf("faults %v, want one that is not permanent", faults)
	}
}

// TestCatchUpFromSnapshot: a state file behind the newest snapshot (e.g. a
// lost file replaced by an empty one) is restored from it; one at or ahead
// of it is left alone.
func TestCatchUpFromSnapshot(t *testing.T) {
	dir := t.TempDir()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	// The log the snapshots were taken from: it holds every entry the
	// state files below have applied.
	logs := raft.NewInmemStore()
	for i := uint64(1); i <= 4; i++ {
		if err := logs.StoreLog(&raft.Log{Index: i, Term: 1}); err != nil {
			t.Fatal(err)
		}
	}
	catchUpFromSnapshot := func(snaps raft.SnapshotStore, store *storage.Store) error {
		return settleSnapshots(dir, "n1", snaps, logs, store, nil)
	}

	// Nothing to restore from.
	empty := openStore(t, filepath.Join(dir, "empty.db"))
	if err := catchUpFromSnapshot(snaps, empty); err != nil || empty.AppliedIndex() != 0 {
		t.Fatalf("no snapshots: %v, applied %d", err, empty.AppliedIndex())
	}

	src := openStore(t, filepath.Join(dir, "src.db"))
	srcFSM := &fsm{store: src}
	takeSnapshot := func(index uint64) {
		t.Helper()
		fs, err := srcFSM.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer fs.Release()
		sink, err := snaps.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.Persist(sink); err != nil {
			t.Fatal(err)
		}
	}
	srcFSM.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: setCmd("k1", "old")},
		{Index: 2, Type: raft.LogCommand, Data: setCmd("k2", "v2")},
	})
	takeSnapshot(2)
	srcFSM.ApplyBatch([]*raft.Log{{Index: 3, Type: raft.LogCommand, Data: setCmd("k1", "new")}})
	takeSnapshot(3)

	lost := openStore(t, filepath.Join(dir, "lost.db"))
	if err := catchUpFromSnapshot(snaps, lost); err != nil {
		t.Fatal(err)
	}
	if lost.AppliedIndex() != 3 {
		t.Fatalf("restored applied index %d, want the newest snapshot's 3", lost.AppliedIndex())
	}
	if v, _ := getValue(t, lost, "k1"); v != "new" {
		t.Fatalf("k1 = %q after restore, want the newest snapshot's value", v)
	}

	// A file at or ahead of the snapshot keeps its own (newer) state.
	ahead := openStore(t, filepath.Join(dir, "ahead.db"))
	(&fsm{store: ahead}).ApplyBatch([]*raft.Log{
		{Index: 3, Type: raft.LogCommand, Data: setCmd("mine", "1")},
		{Index: 4, Type: raft.LogCommand, Data: setCmd("mine", "2")},
	})
	if err := catchUpFromSnapshot(snaps, ahead); err != nil {
		t.Fatal(err)
	}
	if v, _ := getValue(t, ahead, "mine"); v != "2" || ahead.AppliedIndex() != 4 {
		t.Fatalf("a file ahead of the snapshot was overwritten: mine=%q applied %d", v, ahead.AppliedIndex())
	}
	if _, found := getValue(t, ahead, "k2"); found {
		t.Fatal("a file ahead of the snapshot got the snapshot's keys")
	}
}
