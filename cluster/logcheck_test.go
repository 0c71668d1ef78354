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
	"sync"
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

// findInWAL returns the segment file and offset where s is stored.
func findInWAL(t *testing.T, dataDir, s string) (string, int64) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dataDir, walDirName, "*.wal"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(s)); i >= 0 {
			return f, int64(i)
		}
	}
	t.Fatalf("%q is in none of %v", s, files)
	return "", 0
}

// TestCorruptLogEntryIsNeverApplied is issue 12's "bytes corrupted in a
// WAL segment go unnoticed while kv.db is intact; after the documented
// repair (delete kv.db, rebuild from snapshot + log) the bad entry is
// replayed and served as data". A follower's entry, in a sealed segment,
// gets a flipped byte in its value while the follower is stopped. The
// follower refuses to start, with kv.db intact and again after kv.db is
// deleted, naming the file and the entry and what to do, and the entry is
// never applied. What it says to do (remove, empty, join) brings the
// value back as it was written.
func TestCorruptLogEntryIsNeverApplied(t *testing.T) {
	c := startClusterWith(t, 3, testTiming(), func(cfg *Config) { cfg.LogSegmentSize = 4096 })
	leader := waitLeader(t, c.members)
	f := c.others(leader)[0]
	for i := 0; i < 30; i++ {
		apply(t, leader, setCmd(fmt.Sprintf("before%d", i), "v"))
	}
	const value = "the-value-as-written"
	target := apply(t, leader, setCmd("target", value)).Index
	var last uint64
	for i := 0; i < 80; i++ {
		last = apply(t, leader, setCmd(fmt.Sprintf("after%d", i), strings.Repeat("v", 50))).Index
	}
	waitApplied(t, f.store, last, f.id)
	f.close(t)

	file, off := findInWAL(t, f.cfg.DataDir, value)
	if segs := segmentFiles(t, filepath.Join(f.cfg.DataDir, walDirName)); file == segs[len(segs)-1] {
		t.Fatalf("the entry is in the tail segment %s; the test wants a sealed one", file)
	}
	flipByte(t, file, off+4, 0x20) // "the-Value-as-written": well-formed, and wrong
	// raft-wal alone hands the flipped value over as data.
	raw, err := openWAL(filepath.Join(f.cfg.DataDir, walDirName), 4096, nil)
	if err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := raw.GetLog(target, &l); err != nil || !bytes.Contains(l.Data, []byte("the-Value-as-written")) {
		t.Fatalf("raft-wal read entry %d as %q, %v: the flip did not land in its value", target, l.Data, err)
	}
	raw.Close()

	refused := func(when string) {
		t.Helper()
		n, err := Open(f.cfg, f.store)
		if err == nil {
			n.Close()
			t.Fatalf("%s: a node with a corrupt log entry started", when)
		}
		var lc *LogCorruptError
		if !errors.As(err, &lc) || lc.File != file || lc.Index != target {
			t.Fatalf("%s: %v, want a *LogCorruptError for entry %d in %s", when, err, target, file)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "kvctl remove "+f.id) || !strings.Contains(msg, "--join") {
			t.Fatalf("%s: the refusal is not one line saying what to do: %s", when, msg)
		}
	}
	refused("kv.db intact")
	t.Logf("the refusal: %v", func() error { _, err := Open(f.cfg, f.store); return err }())

	// The documented repair of a state file: delete it; the node would
	// rebuild it from its snapshot and log.
	statePath := filepath.Join(f.dir, "kv.db")
	f.store.Close()
	if err := os.Remove(statePath); err != nil {
		t.Fatal(err)
	}
	f.store = openStore(t, statePath)
	refused("kv.db deleted")
	if _, found := getValue(t, f.store, "target"); found || f.store.AppliedIndex() != 0 {
		t.Fatalf("the refused node applied entries: applied %d", f.store.AppliedIndex())
	}

	// What the error says to do: remove the member, empty its data
	// directory, start it again and have it join.
	if err := leader.node.RemoveServer(f.id, patience); err != nil {
		t.Fatal(err)
	}
	f.store.Close()
	for _, p := range []string{f.cfg.DataDir, statePath} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	f.store = openStore(t, statePath)
	f.cfg.InitialCluster = nil
	f.open(t)
	if err := leader.node.AddVoter(f.id, f.addr, patience); err != nil {
		t.Fatal(err)
	}
	final := apply(t, leader, setCmd("rejoined", "1")).Index
	waitApplied(t, f.store, final, f.id)
	expectValue(t, f.store, "target", value, f.id+" (rejoined)")
}

// TestCorruptEntryMetWhileRunning: a byte flipped in a running leader's
// sealed segment, in an entry it has to send to a follower that lost its
// data: the read fails with a *LogCorruptError, the node's fault path
// hears of it once, and the follower never receives the entry.
func TestCorruptEntryMetWhileRunning(t *testing.T) {
	var mu sync.Mutex
	faults := map[string][]error{}
	c := startClusterWith(t, 3, testTiming(), func(cfg *Config) {
		id := cfg.NodeID
		cfg.LogSegmentSize = 4096
		cfg.OnFault = func(err error) {
			mu.Lock()
			faults[id] = append(faults[id], err)
			mu.Unlock()
		}
	})
	leader := waitLeader(t, c.members)
	f := c.others(leader)[0]
	const value = "sent-to-followers"
	target := apply(t, leader, setCmd("target", value)).Index
	var last uint64
	for i := 0; i < 600; i++ { // past raft's LogCache of 512 entries
		last = apply(t, leader, setCmd(fmt.Sprintf("k%d", i), "v")).Index
	}
	waitApplied(t, f.store, last, f.id)

	// The follower loses everything, so the leader must send the log
	// from the start, reading it from disk.
	f.close(t)
	statePath := filepath.Join(f.dir, "kv.db")
	f.store.Close()
	for _, p := range []string{f.cfg.DataDir, statePath} {
		if err := os.RemoveAll(p); err != nil {
			t.Fatal(err)
		}
	}
	file, off := findInWAL(t, leader.cfg.DataDir, value)
	flipByte(t, file, off, 0x01)

	f.store = openStore(t, statePath)
	f.open(t)
	eventually(t, "the leader to report the corrupt entry", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(faults[leader.id]) > 0
	})
	mu.Lock()
	got := faults[leader.id]
	mu.Unlock()
	var lc *LogCorruptError
	if len(got) != 1 || !errors.As(got[0], &lc) || lc.Index != target || lc.File != file || lc.Node != leader.id {
		t.Fatalf("faults on the leader: %v, want one *LogCorruptError for entry %d in %s", got, target, file)
	}
	time.Sleep(500 * time.Millisecond) // the leader keeps retrying the follower meanwhile
	if f.store.AppliedIndex() >= target {
		t.Fatalf("the follower applied up to %d, past the corrupt entry %d", f.store.AppliedIndex(), target)
	}
	if _, found := getValue(t, f.store, "target"); found {
		t.Fatal("the corrupt entry reached the follower")
	}
}

// TestLogWrittenBeforeChecksums: a data directory from a build without
// checksums opens; its entries read back as written, unverified; entries
// appended after carry checksums. A checksummed entry whose trailer lost
// its magic is refused, never taken for an old one: the boundary between
// old and new is an index recorded at the first open, not a mark in each
// entry. And when Raft cuts the old tail and writes it again, the new
// entries are checksummed and verified.
func TestLogWrittenBeforeChecksums(t *testing.T) {
	dir := t.TempDir()
	walDir := filepath.Join(dir, walDirName)
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		t.Fatal(err)
	}
	old, err := openWAL(walDir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	legacy := testEntries(1, 20)
	if err := old.StoreLogs(legacy); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatalf("a log from before checksums: %v", err)
	}
	if got := s.from.Load(); got != 21 {
		t.Fatalf("checksums recorded from %d, want 21", got)
	}
	fresh := testEntries(21, 10)
	if err := s.StoreLogs(fresh); err != nil {
		t.Fatal(err)
	}
	want := cloneLogs(append(append([]*raft.Log(nil), legacy...), fresh...))
	check := func(s *checkedLog, upto uint64) {
		t.Helper()
		for i := uint64(1); i <= upto; i++ {
			var l raft.Log
			if err := s.GetLog(i, &l); err != nil || !sameEntry(&l, &want[i-1]) {
				t.Fatalf("entry %d: %+v %v, want %+v", i, l, err, want[i-1])
			}
		}
	}
	check(s, 30)
	s.Close()

	// Raft cuts the tail back into the old entries and writes it again.
	s, err = openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(s, 30)
	if err := s.DeleteRange(15, 30); err != nil {
		t.Fatal(err)
	}
	again := testEntries(15, 16)
	for _, l := range again {
		l.Term = 9
	}
	if err := s.StoreLogs(again); err != nil {
		t.Fatal(err)
	}
	if got := s.from.Load(); got != 15 {
		t.Fatalf("checksums recorded from %d after rewriting from 15", got)
	}
	more := testEntries(31, 10)
	if err := s.StoreLogs(more); err != nil {
		t.Fatal(err)
	}
	want = cloneLogs(append(append(append([]*raft.Log(nil), legacy[:14]...), again...), more...))
	s.Close()
	s, err = openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	check(s, 40)
	s.Close()

	// The magic of a checksummed entry's trailer, flipped: refused, not
	// read as an old entry. raft-wal started a segment at 15 when the
	// tail was cut; the first trailer in it is entry 15's, in a batch
	// before the last (whose CRC raft-wal checks at open).
	file := filepath.Join(walDir, fmt.Sprintf("%020d-%016x.wal", 15, 1))
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(b, []byte(trailerMagic+string(rune(trailerVersion))))
	if off < 0 {
		t.Fatalf("no trailer in %s", file)
	}
	flipByte(t, file, int64(off), 0x01)
	_, err = openLogStore(dir, 0, nil)
	var lc *LogCorruptError
	if !errors.As(err, &lc) || lc.Index != 15 || lc.File != file || !errors.Is(err, errNoTrailer) {
		t.Fatalf("a checksummed entry without its magic: %v, want entry 15 refused for its trailer", err)
	}
}

// TestLogCutsAreNotTakenForLosses: the log records how far it was written,
// and refuses to open shorter; Raft's own cuts must not trip that. Its
// compaction (the head), a conflict with a new leader (the tail), and an
// installed snapshot or kvnode recover (the whole log, then appends after
// the snapshot) all reopen, and a tail lost behind Raft's back does not.
func TestLogCutsAreNotTakenForLosses(t *testing.T) {
	dir := t.TempDir()
	reopen := func(s *checkedLog, wantLast uint64) *checkedLog {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := openLogStore(dir, 0, nil)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if last, _ := s.LastIndex(); last != wantLast {
			t.Fatalf("last index %d after reopening, want %d", last, wantLast)
		}
		return s
	}
	s, err := openLogStore(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(testEntries(1, 50)); err != nil {
		t.Fatal(err)
	}
	s = reopen(s, 50)
	if err := s.DeleteRange(1, 20); err != nil { // compaction
		t.Fatal(err)
	}
	s = reopen(s, 50)
	if err := s.DeleteRange(40, 50); err != nil { // a conflicting tail
		t.Fatal(err)
	}
	s = reopen(s, 39)
	if err := s.DeleteRange(21, 39); err != nil { // a snapshot installed
		t.Fatal(err)
	}
	s = reopen(s, 0)
	if err := s.StoreLogs(testEntries(101, 10)); err != nil { // after the snapshot
		t.Fatal(err)
	}
	s = reopen(s, 110)

	// Entries lost behind Raft's back: the tail batch dropped as if torn.
	if err := s.StoreLogs(testEntries(111, 5)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, walDirName, "*.wal"))
	slices.Sort(segs)
	tail := segs[len(segs)-1]
	flipByte(t, tail, writtenLen(t, tail)-12, 0x01) // inside the last batch
	_, err = openLogStore(dir, 0, nil)
	var lc *LogCorruptError
	if !errors.As(err, &lc) || lc.Index != 111 || lc.File != tail {
		t.Fatalf("a log that lost its last batch: %v, want entry 111 refused in %s", err, tail)
	}
}
