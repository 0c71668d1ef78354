package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/hashicorp/raft"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
)

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

// crashBetweenSealAndRotation writes single-entry batches to a fresh log
// until one fills the tail segment, and leaves the directory as a crash
// right after that write would: the full segment sealed on disk (raft-wal
// seals in the same fsync as the write), but raft-wal's metadata, which a
// goroutine updates after the write returns, still calling it the open
// tail and naming no next segment. It returns the index of the write that
// sealed the segment and the sealed segment's file.
func crashBetweenSealAndRotation(t *testing.T, dir string) (uint64, string) {
	t.Helper()
	walDir := filepath.Join(dir, walDirName)
	meta := filepath.Join(walDir, metadb.FileName)
	segments := func() []string {
		m, _ := filepath.Glob(filepath.Join(walDir, "*.wal"))
		sort.Strings(m)
		return m
	}
	for i := uint64(1); i <= 1000; i++ {
		s, err := openLogStore(dir, 64<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		before, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.StoreLogs([]*raft.Log{testEntry(i, 1)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil { // waits for the rotation
			t.Fatal(err)
		}
		if files := segments(); len(files) == 2 {
			if err := os.WriteFile(meta, before, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(files[1]); err != nil {
				t.Fatal(err)
			}
			return i, files[0]
		}
	}
	t.Fatal("no segment filled in 1000 entries")
	return 0, ""
}

func testEntry(i, term uint64) *raft.Log {
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: fmt.Appendf(make([]byte, 0, 1000), "entry-%d-%0900d", i, 0)}
}

// TestLogStoreWritesAfterACrashBetweenSealAndRotation: raft-wal v0.4.2
// reopened such a log and then refused every append with "segment is
// sealed", for good, so a node killed at that moment could never write
// again. It must reopen with every entry and take the next one.
func TestLogStoreWritesAfterACrashBetweenSealAndRotation(t *testing.T) {
	dir := t.TempDir()
	sealedAt, _ := crashBetweenSealAndRotation(t, dir)
	for round := 0; round < 2; round++ { // and it stays right across reopens
		s, err := openLogStore(dir, 64<<10, nil)
		if err != nil {
			t.Fatal(err)
		}
		next := sealedAt + 1 + uint64(round)
		if err := s.StoreLogs([]*raft.Log{testEntry(next, 1)}); err != nil {
			t.Fatalf("round %d: appending %d after a crash between seal and rotation: %v", round, next, err)
		}
		for i := uint64(1); i <= next; i++ {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil || string(l.Data) != string(testEntry(i, 1).Data) {
				t.Fatalf("round %d: entry %d: %q %v", round, i, l.Data, err)
			}
		}
		if last, _ := s.LastIndex(); last != next {
			t.Fatalf("round %d: last index %d, want %d", round, last, next)
		}
		s.Close()
	}
}

// TestLogStoreWritesAfterATornSeal: the crash tore the batch that sealed
// the segment (its commit frame never reached the disk). That entry was
// never acknowledged, so it is gone; everything before it is kept and the
// log takes appends again from there.
func TestLogStoreWritesAfterATornSeal(t *testing.T) {
	dir := t.TempDir()
	sealedAt, file := crashBetweenSealAndRotation(t, dir)
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	// The commit frame is the last 8 bytes written; cut into it.
	if err := os.Truncate(file, info.Size()-4); err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(dir, 64<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if last, _ := s.LastIndex(); last != sealedAt-1 {
		t.Fatalf("last index %d after the torn seal of %d, want %d", last, sealedAt, sealedAt-1)
	}
	if err := s.StoreLogs([]*raft.Log{testEntry(sealedAt, 2)}); err != nil {
		t.Fatalf("appending %d again after a torn seal: %v", sealedAt, err)
	}
	var l raft.Log
	if err := s.GetLog(sealedAt, &l); err != nil || l.Term != 2 {
		t.Fatalf("entry %d: term %d %v", sealedAt, l.Term, err)
	}
}

// TestLogStoreRefusesASealWhoseIndexIsWrong: if the crash left an index
// block that does not find the segment's entries, recording the seal would
// serve wrong entries; the log refuses to open, naming the file.
func TestLogStoreRefusesASealWhoseIndexIsWrong(t *testing.T) {
	dir := t.TempDir()
	_, file := crashBetweenSealAndRotation(t, dir)
	walDir := filepath.Join(dir, walDirName)
	meta := &metadb.BoltMetaDB{}
	st, err := meta.Load(walDir)
	meta.Close()
	if err != nil {
		t.Fatal(err)
	}
	w, err := segment.NewFiler(walDir, walfs.New()).RecoverTail(st.Segments[len(st.Segments)-1])
	if err != nil {
		t.Fatal(err)
	}
	sealed, indexStart, _ := w.Sealed()
	w.Close()
	if !sealed {
		t.Fatal("the tail is not sealed on disk")
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The first entry's offset in the index block now points elsewhere.
	if _, err := f.WriteAt([]byte{0xff, 0xff, 0, 0}, int64(indexStart)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err := openLogStore(dir, 64<<10, nil)
	var corrupt *LogCorruptError
	if !errors.As(err, &corrupt) || corrupt.File != file {
		if err == nil {
			s.Close()
		}
		t.Fatalf("opened with a wrong index block: %v", err)
	}
}
