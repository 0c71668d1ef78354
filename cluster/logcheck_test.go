package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testEntries are entries of every shape the log holds: commands of
// assorted sizes, configuration entries, no-ops without data, and one
// with extensions of its own.
func testEntries(from, n uint64) []*raft.Log {
	var logs []*raft.Log
	for i := from; i < from+n; i++ {
		l := &raft.Log{Index: i, Term: 1 + i/50, Type: raft.LogCommand, AppendedAt: time.Unix(1700000000, int64(i)).UTC()}
		switch i % 7 {
		case 0:
			l.Type = raft.LogNoop
		case 3:
			l.Type = raft.LogConfiguration
			l.Data = raft.EncodeConfiguration(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: "127.0.0.1:1"}}})
		case 5:
			l.Data = setCmd(fmt.Sprintf("key-%d", i), strings.Repeat("v", int(i%300)))
			l.Extensions = []byte("ext")
		default:
			l.Data = setCmd(fmt.Sprintf("key-%d", i), strings.Repeat("x", int(i%90)))
		}
		logs = append(logs, l)
	}
	return logs
}

func cloneLogs(logs []*raft.Log) []raft.Log {
	out := make([]raft.Log, len(logs))
	for i, l := range logs {
		out[i] = *l
		out[i].Data = slices.Clone(l.Data)
		out[i].Extensions = slices.Clone(l.Extensions)
	}
	return out
}

// sameEntry compares what Raft cares about in an entry.
func sameEntry(a, b *raft.Log) bool {
	return a.Index == b.Index && a.Term == b.Term && a.Type == b.Type &&
		bytes.Equal(a.Data, b.Data) && bytes.Equal(a.Extensions, b.Extensions) && a.AppendedAt.Equal(b.AppendedAt)
}

// TestLogChecksumsRoundTrip: entries come back from the checksummed log
// exactly as they went in, across a reopen, and Raft's own structs are
// never changed by storing them.
func TestLogChecksumsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := testEntries(1, 200)
	before := cloneLogs(logs)
	for i := 0; i < len(logs); i += 16 {
		if err := s.StoreLogs(logs[i:min(i+16, len(logs))]); err != nil {
			t.Fatal(err)
		}
	}
	for i := range logs {
		if !sameEntry(logs[i], &before[i]) {
			t.Fatalf("StoreLogs changed raft's entry %d: %+v, was %+v", i+1, logs[i], before[i])
		}
	}
	if !s.IsMonotonic() {
		t.Fatal("the checked log hides that raft-wal is monotonic")
	}
	s.Close()
	s, err = openLogStore(dir, 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range before {
		var l raft.Log
		if err := s.GetLog(uint64(i+1), &l); err != nil || !sameEntry(&l, &before[i]) {
			t.Fatalf("entry %d read back as %+v (%v), want %+v", i+1, l, err, before[i])
		}
	}
	var l raft.Log
	if err := s.GetLog(201, &l); err != raft.ErrLogNotFound {
		t.Fatalf("an index past the end: %v, want raft.ErrLogNotFound", err)
	}
}

// writeTestLog writes n entries through the checked log in batches of 8,
// with segments small enough that most of them are sealed.
func writeTestLog(t *testing.T, dir string, n uint64) []raft.Log {
	t.Helper()
	s, err := openLogStore(dir, 2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := testEntries(1, n)
	for i := 0; i < len(logs); i += 8 {
		if err := s.StoreLogs(logs[i:min(i+8, len(logs))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return cloneLogs(logs)
}

// segmentFiles lists the WAL's segment files in order, the tail last.
func segmentFiles(t *testing.T, walDir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(walDir, "*.wal"))
	if err != nil || len(files) < 3 {
		t.Fatalf("segment files %v %v: want several", files, err)
	}
	slices.Sort(files)
	return files
}

// flipByte xors one byte of a file with a non-zero mask.
func flipByte(t *testing.T, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// writtenLen is how much of a segment file holds data: raft-wal
// preallocates segments, and the rest is zeros.
func writtenLen(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := len(bytes.TrimRight(b, "\x00"))
	return int64(n+7) &^ 7
}

// TestLogCorruptionIsNeverServed flips one byte at a time (fixed seed)
// at many offsets of the sealed segments and the tail segment of a real
// raft-wal log, and reopens it each time. Every outcome must be one of:
// the open fails with a *LogCorruptError naming the file that was
// changed; or the log opens whole and every entry it returns is the one
// that was written. raft-wal alone returns a flipped entry in a sealed
// segment as data, and drops tail entries after a flip in the tail as if
// their write had been torn.
func TestLogCorruptionIsNeverServed(t *testing.T) {
	pristine := t.TempDir()
	const n = 300
	want := writeTestLog(t, pristine, n)
	walDir := filepath.Join(pristine, walDirName)
	files := segmentFiles(t, walDir)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(12, 34))
	var refused, harmless int
	for _, file := range files {
		size := writtenLen(t, file)
		for k := 0; k < 60; k++ {
			off := rng.Int64N(size)
			mask := byte(1 + rng.IntN(255))
			resetTo(t, dir, pristine)
			flipped := filepath.Join(dir, walDirName, filepath.Base(file))
			flipByte(t, flipped, off, mask)
			what := fmt.Sprintf("%s offset %d ^%#x", filepath.Base(file), off, mask)

			s, err := openLogStore(dir, 2048, nil)
			if err != nil {
				var lc *LogCorruptError
				if !errors.As(err, &lc) {
					t.Fatalf("%s: open failed with %T %v, want a *LogCorruptError", what, err, err)
				}
				if lc.File != flipped {
					t.Fatalf("%s: the error names %s, not the file that was changed: %v", what, lc.File, err)
				}
				refused++
				continue
			}
			last, _ := s.LastIndex()
			first, _ := s.FirstIndex()
			for i := first; i <= last; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil {
					t.Fatalf("%s: the log opened but entry %d fails: %v", what, i, err)
				}
				if !sameEntry(&l, &want[i-1]) {
					t.Fatalf("%s: entry %d read back as %+v, want %+v", what, i, l, want[i-1])
				}
			}
			s.Close()
			if first != 1 || last != n {
				t.Fatalf("%s: the log opened holding %d to %d, but 1 to %d were written", what, first, last, n)
			}
			harmless++
		}
	}
	t.Logf("%d flips over %d segment files: %d refused at open naming the file, %d harmless", refused+harmless, len(files), refused, harmless)
	if refused == 0 {
		t.Fatal("no flip was caught: the test flips nothing that matters")
	}
}

// resetTo makes dir a copy of pristine again, rewriting only the files
// that differ: opening a damaged log may change files (raft-wal rewrites
// a tail segment it cannot recover, and may start a new one).
func resetTo(t *testing.T, dir, pristine string) {
	t.Helper()
	sub := filepath.Join(dir, walDirName)
	if err := os.MkdirAll(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	entries, err := os.ReadDir(filepath.Join(pristine, walDirName))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(pristine, walDirName, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		want[e.Name()] = b
	}
	have, err := os.ReadDir(sub)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range have {
		if _, ok := want[e.Name()]; !ok {
			if err := os.Remove(filepath.Join(sub, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, b := range want {
		path := filepath.Join(sub, name)
		if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, b) {
			continue
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
