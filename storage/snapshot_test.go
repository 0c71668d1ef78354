package storage

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// snapshotBytes is what a snapshot of s persists.
// rawSnapshotBytes copies s's file as it is, without the checks of
// Snapshot.WriteTo (which refuses a damaged state), to make bad snapshots.
func rawSnapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	if _, err := sn.tx.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func snapshotBytes(t testing.TB, s *Store) []byte {
	t.Helper()
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	n, err := sn.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo reported %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func requireNoRestoreLeftovers(t testing.TB, s *Store) {
	t.Helper()
	if _, err := os.Stat(s.Path() + ".restore"); !os.IsNotExist(err) {
		t.Fatalf("restore left its side file behind: %v", err)
	}
}

func TestSnapshot_RestoreRoundTrip(t *testing.T) {
	src := openStore(t)
	mustApplyBatch(t, src, history()) // keys, tombstones, nodes, a nil entry
	apply(t, src, 13, &Command{Op: OpRegisterNode, Key: "n2", Value: []byte("addr2")})
	sn, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	if sn.Index() != 13 {
		t.Fatalf("snapshot Index = %d, want 13", sn.Index())
	}
	want := dumpRaw(t, src)

	// The snapshot pins its state while the store moves on.
	apply(t, src, 14, set("a", "3", 0))
	apply(t, src, 15, &Command{Op: OpRegisterNode, Key: "n3", Value: []byte("addr3")})
	apply(t, src, 16, &Command{Op: OpDeleteTree, Key: ""})
	if sn.Index() != 13 {
		t.Fatalf("snapshot Index moved to %d", sn.Index())
	}
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	sn.Release()
	sn.Release() // idempotent: a second RUnlock would be fatal
	data := buf.Bytes()

	// Into another store, far ahead of the snapshot.
	dst := openStore(t)
	for i := uint64(1); i <= 50; i++ {
		apply(t, dst, i, set(fmt.Sprintf("other/%d", i), "x", 0))
	}
	ch := dst.Changed()
	if err := dst.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, dumpRaw(t, dst), want)
	if dst.AppliedIndex() != 13 {
		t.Fatalf("AppliedIndex after restore = %d, want 13", dst.AppliedIndex())
	}
	if !isClosed(ch) {
		t.Fatal("restore did not signal a change")
	}
	if e, found, idx := mustGet(t, dst, "a"); !found || string(e.Value) != "2" || idx != 4 {
		t.Fatalf("restored a = %+v found=%v idx=%d", e, found, idx)
	}
	if got := dst.NodeAddr("n2"); got != "addr2" {
		t.Fatalf("restored NodeAddr(n2) = %q", got)
	}
	requireNoRestoreLeftovers(t, dst)

	// The restored store is live and durable.
	apply(t, dst, 14, set("after", "restore", 0))
	path := dst.Path()
	dst.Close()
	dst = openAt(t, path)
	if dst.AppliedIndex() != 14 {
		t.Fatalf("AppliedIndex after reopen = %d, want 14", dst.AppliedIndex())
	}
	if _, found, _ := mustGet(t, dst, "after"); !found {
		t.Fatal("write after restore lost at reopen")
	}
	if _, found, _ := mustGet(t, dst, "other/1"); found {
		t.Fatal("pre-restore state came back at reopen")
	}

	// Into the very store it came from, which has moved on.
	if err := src.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	requireSameState(t, dumpRaw(t, src), want)
	if src.AppliedIndex() != 13 {
		t.Fatalf("AppliedIndex = %d, want 13", src.AppliedIndex())
	}
	requireNoRestoreLeftovers(t, src)
}

func TestRestore_WakesWaiters(t *testing.T) {
	src := openStore(t)
	mustApplyBatch(t, src, history())
	data := snapshotBytes(t, src)
	dst := openStore(t)
	done := make(chan error, 1)
	go func() { done <- dst.WaitApplied(context.Background(), 12) }()
	if err := dst.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// badSnapshots are streams Restore must refuse. A truncated or corrupt state
// file used to crash the process inside bbolt (SIGBUS, or a panic in a bbolt
// goroutine), and an empty one used to wipe the state.
func badSnapshots(t *testing.T) map[string][]byte {
	src := openStore(t)
	batch := make([]Applied, 0, 2000)
	for i := range 2000 {
		batch = append(batch, Applied{Index: uint64(i + 1), Cmd: set(fmt.Sprintf("key-%05d", i), string(bytes.Repeat([]byte("v"), 100)), 0)})
	}
	mustApplyBatch(t, src, batch)
	good := snapshotBytes(t, src)
	if len(good) < 64<<10 {
		t.Fatalf("snapshot of %d bytes is too small to truncate meaningfully", len(good))
	}

	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3*4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	corrupt := bytes.Clone(good)
	for i := 2 * 4096; i < len(corrupt); i += 7 {
		corrupt[i] ^= 0x5a // every page header is hit
	}

	// A well-formed bbolt file that is not a state file.
	foreignPath := filepath.Join(t.TempDir(), "foreign.db")
	fdb, err := bolt.Open(foreignPath, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = fdb.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("logs"))
		if err != nil {
			return err
		}
		return b.Put([]byte("k"), []byte("v"))
	})
	if err != nil {
		t.Fatal(err)
	}
	fdb.Close()
	foreign, err := os.ReadFile(foreignPath)
	if err != nil {
		t.Fatal(err)
	}

	// A state file holding an entry the store cannot decode.
	badEntry := openStore(t)
	apply(t, badEntry, 1, set("good", "v", 0))
	err = badEntry.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKV).Put([]byte("bad"), []byte{9, 9}) })
	if err != nil {
		t.Fatal(err)
	}

	return map[string][]byte{
		"empty":            nil,
		"short garbage":    []byte("this is not a snapshot"),
		"random pages":     random,
		"meta pages only":  good[:2*4096],
		"half":             good[:len(good)/2],
		"one byte short":   good[:len(good)-1],
		"corrupt pages":    corrupt,
		"foreign bbolt":    foreign,
		"undecodable kv":   rawSnapshotBytes(t, badEntry),
		"zeroed meta page": append(make([]byte, 2*4096), good[2*4096:]...),
	}
}

func TestRestore_BadSnapshotLeavesStateIntact(t *testing.T) {
	for name, data := range badSnapshots(t) {
		t.Run(name, func(t *testing.T) {
			s := openStore(t)
			mustApplyBatch(t, s, history())
			before := dumpRaw(t, s)
			if err := s.Restore(bytes.NewReader(data)); err == nil {
				t.Fatal("Restore accepted a bad snapshot")
			} else {
				t.Logf("refused: %v", err)
			}
			requireSameState(t, dumpRaw(t, s), before)
			if s.AppliedIndex() != 12 {
				t.Fatalf("AppliedIndex = %d, want 12", s.AppliedIndex())
			}
			if e, found, _ := mustGet(t, s, "a"); !found || string(e.Value) != "2" {
				t.Fatalf("a = %+v found=%v", e, found)
			}
			if !apply(t, s, 13, set("still", "writable", 0)) {
				t.Fatal("store not writable after a failed restore")
			}
			requireNoRestoreLeftovers(t, s)
		})
	}
}

// TestRestore_ConcurrentReaders swaps the state back and forth under busy
// readers: each read must succeed and see one whole state, never a mix.
// Run with -race.
func TestRestore_ConcurrentReaders(t *testing.T) {
	const n = 200
	src := openStore(t)
	idx := uint64(0)
	fill := func(gen string) []byte {
		batch := make([]Applied, 0, n+1)
		for i := range n {
			idx++
			batch = append(batch, Applied{Index: idx, Cmd: set(fmt.Sprintf("k%03d", i), gen, 0)})
		}
		idx++
		batch = append(batch, Applied{Index: idx, Cmd: set("gen", gen, 0)})
		mustApplyBatch(t, src, batch)
		return snapshotBytes(t, src)
	}
	snaps := map[string][]byte{"A": fill("A"), "B": fill("B")}
	applied := map[uint64]string{n + 1: "A", 2*n + 2: "B"}

	s := openStore(t)
	if err := s.Restore(bytes.NewReader(snaps["A"])); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var started, wg sync.WaitGroup
	reader := func(read func() error) {
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			for {
				if err := read(); err != nil {
					t.Error(err)
					if first {
						started.Done()
					}
					return
				}
				if first {
					started.Done()
					first = false
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	reader(func() error {
		entries, _, err := s.List("k")
		if err != nil {
			return fmt.Errorf("List: %v", err)
		}
		if len(entries) != n {
			return fmt.Errorf("List saw %d entries, want %d", len(entries), n)
		}
		for _, e := range entries {
			if !bytes.Equal(e.Value, entries[0].Value) {
				return fmt.Errorf("List saw a mixed state: %q and %q", entries[0].Value, e.Value)
			}
		}
		return nil
	})
	reader(func() error {
		e, found, _, err := s.Get("gen")
		if err != nil || !found {
			return fmt.Errorf("Get(gen): found=%v err=%v", found, err)
		}
		if g := string(e.Value); g != "A" && g != "B" {
			return fmt.Errorf("Get(gen) = %q", g)
		}
		return nil
	})
	reader(func() error {
		keys, idx, err := s.Keys("", "/")
		if err != nil || len(keys) != n+1 || (idx != n+1 && idx != 2*n+2) {
			return fmt.Errorf("Keys: %d keys, index %d, err %v", len(keys), idx, err)
		}
		if _, ok := applied[s.AppliedIndex()]; !ok {
			return fmt.Errorf("AppliedIndex %d is neither snapshot's", s.AppliedIndex())
		}
		return nil
	})
	reader(func() error {
		sn, err := s.Snapshot()
		if err != nil {
			return fmt.Errorf("Snapshot: %v", err)
		}
		defer sn.Release()
		if _, ok := applied[sn.Index()]; !ok {
			return fmt.Errorf("snapshot Index %d is neither snapshot's", sn.Index())
		}
		return nil
	})
	started.Wait()
	for i := range 20 {
		gen := "B"
		if i%2 == 1 {
			gen = "A"
		}
		if err := s.Restore(bytes.NewReader(snaps[gen])); err != nil {
			t.Fatal(err)
		}
		if e, _, _ := mustGet(t, s, "gen"); string(e.Value) != gen {
			t.Fatalf("after restore %d: gen = %q, want %s", i, e.Value, gen)
		}
	}
	close(stop)
	wg.Wait()
}

// applyingWriter applies a batch of writes each time the snapshot hands it a
// chunk, so the snapshot is persisted while the store changes under it.
type applyingWriter struct {
	s      *Store
	idx    uint64
	writes int
	buf    bytes.Buffer
}

func (w *applyingWriter) Write(p []byte) (int, error) {
	batch := make([]Applied, 0, 100)
	for i := range 100 {
		w.idx++
		k := fmt.Sprintf("key-%05d", (int(w.idx)*31+i)%2000)
		var c *Command
		if i%5 == 0 {
			c = &Command{Op: OpDelete, Key: k}
		} else {
			c = set(k, fmt.Sprintf("rewritten at %d %s", w.idx, bytes.Repeat([]byte("x"), 200)), 0)
		}
		batch = append(batch, Applied{Index: w.idx, Cmd: c})
	}
	if _, err := w.s.ApplyBatch(batch); err != nil {
		return 0, err
	}
	w.writes++
	return w.buf.Write(p)
}

func TestSnapshot_PersistWhileApplying(t *testing.T) {
	s := openStore(t)
	batch := make([]Applied, 0, 2000)
	for i := range 2000 {
		batch = append(batch, Applied{Index: uint64(i + 1), Cmd: set(fmt.Sprintf("key-%05d", i), string(bytes.Repeat([]byte("v"), 100)), 0)})
	}
	mustApplyBatch(t, s, batch)

	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want := dumpRaw(t, s)
	w := &applyingWriter{s: s, idx: 2000}
	if _, err := sn.WriteTo(w); err != nil {
		t.Fatal(err)
	}
	if sn.Index() != 2000 {
		t.Fatalf("snapshot Index = %d, want 2000", sn.Index())
	}
	sn.Release()
	if w.writes < 3 || s.AppliedIndex() != w.idx {
		t.Fatalf("only %d batches applied during the snapshot (applied %d, want %d)", w.writes, s.AppliedIndex(), w.idx)
	}

	// The same with a concurrent writer goroutine, for the race detector.
	sn2, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	want2 := dumpRaw(t, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		w2 := &applyingWriter{s: s, idx: w.idx}
		for range 20 {
			w2.Write(nil)
		}
	}()
	var buf2 bytes.Buffer
	if _, err := sn2.WriteTo(&buf2); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("writes blocked behind an open snapshot")
	}
	sn2.Release()

	for i, tc := range []struct {
		data []byte
		want rawState
	}{{w.buf.Bytes(), want}, {buf2.Bytes(), want2}} {
		dst := openStore(t)
		if err := dst.Restore(bytes.NewReader(tc.data)); err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		requireSameState(t, dumpRaw(t, dst), tc.want)
	}
}

// FuzzRestore: whatever bytes arrive as a snapshot, Restore either takes
// them as a whole state that reads back without error, or refuses them and
// leaves the state as it was, still writable.
func FuzzRestore(f *testing.F) {
	seed := openStore(f)
	mustApplyBatch(f, seed, history())
	good := snapshotBytes(f, seed)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("not a snapshot"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s := openStore(t)
		mustApplyBatch(t, s, history())
		before := dumpRaw(t, s)
		if err := s.Restore(bytes.NewReader(data)); err != nil {
			requireSameState(t, dumpRaw(t, s), before)
			if !apply(t, s, 13, set("still", "writable", 0)) {
				t.Fatal("store not writable after a refused snapshot")
			}
			return
		}
		if _, _, err := s.List(""); err != nil {
			t.Fatalf("a restored snapshot does not read back: %v", err)
		}
	})
}
