package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestOpenLogStoreMigratesBoltLog: a data directory from before the WAL
// (a raft-boltdb raft.db) comes up with every entry, the term and the vote
// moved into the WAL, the old file kept as a backup, and a copy left
// half-done by an earlier crash thrown away. Reopening does not copy again.
func TestOpenLogStoreMigratesBoltLog(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, legacyLogFileName)
	old, err := raftboltdb.NewBoltStore(legacy)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 300; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/100, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry-%d", i)})
	}
	if err := old.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	// A compacted prefix: the WAL must start where the old log did.
	if err := old.DeleteRange(1, 40); err != nil {
		t.Fatal(err)
	}
	if err := old.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := old.Set([]byte("LastVoteCand"), []byte("n2")); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// Debris of a migration that crashed part-way.
	if err := os.MkdirAll(filepath.Join(dir, walDirName+".migrating", "junk"), 0o700); err != nil {
		t.Fatal(err)
	}

	check := func(s logStore) {
		t.Helper()
		first, _ := s.FirstIndex()
		last, _ := s.LastIndex()
		if first != 41 || last != 300 {
			t.Fatalf("log spans %d..%d, want 41..300", first, last)
		}
		for _, i := range []uint64{41, 150, 300} {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if l.Term != 1+i/100 || !bytes.Equal(l.Data, fmt.Appendf(nil, "entry-%d", i)) {
				t.Fatalf("entry %d: term %d data %q", i, l.Term, l.Data)
			}
		}
		if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
			t.Fatalf("CurrentTerm %d, %v; want 7", term, err)
		}
		if vote, err := s.Get([]byte("LastVoteCand")); err != nil || string(vote) != "n2" {
			t.Fatalf("LastVoteCand %q, %v; want n2", vote, err)
		}
	}

	s, err := openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	s.Close()
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Fatalf("raft.db still in place after migration: %v", err)
	}
	if _, err := os.Stat(legacy + migratedSuffix); err != nil {
		t.Fatalf("no backup of the old log: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, walDirName+".migrating")); !os.IsNotExist(err) {
		t.Fatalf("migration left its work directory: %v", err)
	}

	// A second start opens the WAL as it is.
	s, err = openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
}

// TestLogStoreSurvivesSuffixTruncation: a follower whose log conflicts with
// a new leader's drops its tail (DeleteRange up to the last index), and the
// log must still open afterwards. raft-wal v0.4.0 sealed the segment without
// its index block there, and the node could never start again (found by
// the chaos smoke test: kill-leader, then restart).
func TestLogStoreSurvivesSuffixTruncation(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := uint64(1); i <= 20; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry-%d", i)})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(18, 20); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: 18, Term: 2, Type: raft.LogCommand, Data: []byte("new-18")}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, i := range []uint64{1, 17, 18} {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil {
			t.Fatalf("after reopening, entry %d: %v", i, err)
		}
	}
	var l raft.Log
	if err := s.GetLog(18, &l); err != nil || l.Term != 2 || string(l.Data) != "new-18" {
		t.Fatalf("entry 18 after the truncation: term %d %q %v", l.Term, l.Data, err)
	}
	if last, _ := s.LastIndex(); last != 18 {
		t.Fatalf("last index %d, want 18", last)
	}
}
