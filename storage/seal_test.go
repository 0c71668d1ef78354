package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// corruptValue overwrites key's stored value in the open store with
// bytes that do not pass the seal, as bit rot under a running node would.
func corruptValue(t *testing.T, s *Store, bucket []byte, key string) {
	t.Helper()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		v := bytes.Clone(b.Get([]byte(key)))
		v[len(v)/2] ^= 0x01
		return b.Put([]byte(key), v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A value that fails its seal is never returned by any read; the read
// fails with a CorruptError naming the bucket and key.
func TestSeal_ReadsRefuseACorruptValue(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("a/1", "one", 0))
	apply(t, s, 2, set("a/2", "two", 0))
	apply(t, s, 3, set("b", "bee", 0))
	corruptValue(t, s, bucketKV, "a/2")

	var cerr *CorruptError
	if _, found, _, err := s.Get("a/2"); !errors.As(err, &cerr) || found {
		t.Fatalf("Get of a corrupt value: found=%v err=%v", found, err)
	}
	if cerr.Bucket != "kv" || cerr.Key != "a/2" || cerr.Path != s.Path() {
		t.Fatalf("the error does not name what is corrupt: %+v", cerr)
	}
	if _, _, err := s.List("a/"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("List over a corrupt value: %v", err)
	}
	if _, _, err := s.Keys("", "/"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Keys over a corrupt value: %v", err)
	}
	if _, err := s.Query(Query{Kind: QueryTxn, Txn: []TxnOp{{Verb: TxnGet, Key: "a/2"}}}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a read transaction over a corrupt value: %v", err)
	}
	if _, err := s.Verify(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify: %v", err)
	}
	// Values the damage did not touch are still served.
	if e, found, _ := mustGet(t, s, "b"); !found || string(e.Value) != "bee" {
		t.Fatalf("Get(b) = %q %v", e.Value, found)
	}
}

// A batch that meets a corrupt value fails as a whole with ErrCorrupt and
// stores nothing, not even the entries before it: the state machine must
// stop rather than build on a value it cannot read.
func TestSeal_ApplyStopsAtACorruptValue(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("k", "v", 0))
	corruptValue(t, s, bucketKV, "k")
	before := dumpRaw(t, s)
	_, err := s.ApplyBatch([]Applied{
		{Index: 2, Cmd: set("other", "x", 0)},
		{Index: 3, Cmd: &Command{Op: OpCAS, Key: "k", Index: 1, Value: []byte("w")}},
	})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ApplyBatch over a corrupt value: %v", err)
	}
	if s.AppliedIndex() != 1 {
		t.Fatalf("applied index moved to %d", s.AppliedIndex())
	}
	requireSameState(t, dumpRaw(t, s), before)
}

// A state file damaged while the node was down is refused at Open with a
// DamagedError naming the file, the bucket and the key.
func TestSeal_OpenRefusesADamagedValue(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	s := openAt(t, path)
	apply(t, s, 1, set("config/db", "postgres://primary", 0))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("postgres://primary"))
	if i < 0 {
		t.Fatal("value not found in the file")
	}
	copy(data[i:], "postgres://evil!!!")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Open(path)
	var derr *DamagedError
	if !errors.As(err, &derr) || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open of a damaged file: %v", err)
	}
	want := fmt.Sprintf("state file %s is damaged: bucket \"kv\", key \"config/db\": the value fails its checksum", path)
	if err.Error() != want {
		t.Fatalf("error = %q\nwant    %q", err, want)
	}
}

// A file written before values were sealed opens, is sealed once, and
// reads back unchanged.
func TestSeal_MigratesALegacyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		e := Entry{CreateIndex: 3, ModifyIndex: 4, Value: []byte("old")}
		if err := tx.Bucket(bucketKV).Put([]byte("k"), encodeEntry(&e)); err != nil {
			return err
		}
		var b [8]byte
		b[7] = 4
		if err := tx.Bucket(bucketMeta).Put(metaApplied, b[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketTombs).Put([]byte("gone"), b[:])
	})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	s := openAt(t, path)
	if s.AppliedIndex() != 4 {
		t.Fatalf("applied index %d after migration, want 4", s.AppliedIndex())
	}
	if e, found, _ := mustGet(t, s, "k"); !found || string(e.Value) != "old" || e.ModifyIndex != 4 {
		t.Fatalf("migrated entry: %+v %v", e, found)
	}
	if _, err := s.Verify(); err != nil {
		t.Fatalf("Verify after migration: %v", err)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if isLegacy(tx) {
			return errors.New("still legacy")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// The state hash covers every value: two stores that applied the same
// commands agree, and one changed value changes it.
func TestStateHash_AgreesOnSameStateAndNotOtherwise(t *testing.T) {
	a, b := openStore(t), openStore(t)
	for i := uint64(1); i <= 50; i++ {
		cmd := set(fmt.Sprintf("k%02d", i), fmt.Sprint(i), 0)
		apply(t, a, i, cmd)
		apply(t, b, i, cmd)
	}
	ha, err := a.Verify()
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if ha != hb || ha.Index != 50 || ha.Values < 50 {
		t.Fatalf("hashes of the same state: %+v vs %+v", ha, hb)
	}
	apply(t, a, 51, set("k07", "seven", 0))
	apply(t, b, 51, set("k07", "7", 0))
	ha, _ = a.Verify()
	hb, _ = b.Verify()
	if ha.Hash == hb.Hash {
		t.Fatal("different states hash the same")
	}
}

// Bytes flipped at random offsets of a closed state file, over many
// seeds: the file is refused at Open, or every key reads back with its
// committed value. No flip ever makes a read answer a wrong value or
// lose a key.
func TestSeal_RandomCorruptionNeverServesWrongData(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s := openAt(t, path)
	want := map[string]string{}
	var batch []Applied
	for i := 1; i <= 500; i++ {
		k, v := fmt.Sprintf("svc/%04d/config", i), fmt.Sprintf("value-%d-%x", i, i*7919)
		want[k] = v
		batch = append(batch, Applied{Index: uint64(i), Cmd: set(k, v, uint64(i))})
	}
	mustApplyBatch(t, s, batch)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Flips land in the pages in use (a flip in a free page proves
	// nothing), half of them in the keys and values themselves.
	var used int64
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	db.Close()
	var data []int
	for i := 0; ; {
		j := bytes.Index(good[i:], []byte("svc/"))
		if j < 0 {
			break
		}
		data, i = append(data, i+j), i+j+1
	}
	// 100 seeds in the suite (the race detector makes each one slow);
	// SEAL_SEEDS=1000 for a longer run.
	seeds := 100
	if n, err := strconv.Atoi(os.Getenv("SEAL_SEEDS")); err == nil && n > 0 {
		seeds = n
	}
	refused, served := 0, 0
	for seed := range seeds {
		rng := rand.New(rand.NewPCG(uint64(seed), 12))
		file := bytes.Clone(good)
		for range 1 + rng.IntN(4) {
			off := rng.IntN(int(used))
			if seed%2 == 0 {
				off = data[rng.IntN(len(data))] + rng.IntN(40)
			}
			file[off] ^= byte(1 + rng.IntN(255))
		}
		p := filepath.Join(dir, fmt.Sprintf("c%d.db", seed))
		if err := os.WriteFile(p, file, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Open(p)
		if err != nil {
			var derr *DamagedError
			if !errors.As(err, &derr) || derr.Path != p {
				t.Fatalf("seed %d: Open failed without naming the file: %v", seed, err)
			}
			refused++
			os.Remove(p)
			continue
		}
		served++
		for k, v := range want {
			e, found, _, err := c.Get(k)
			if err != nil {
				continue // refusing a read is safe
			}
			if !found || string(e.Value) != v {
				t.Fatalf("seed %d: Get(%s) = %q (found %v), want %q", seed, k, e.Value, found, v)
			}
		}
		c.Close()
		os.Remove(p)
	}
	t.Logf("%d seeds: %d files refused at open, %d served only committed values", seeds, refused, served)
}

// A checkpoint in the middle of a batch is hashed as of its own index,
// not the batch's end: the hash equals that of a store that applied
// only the entries up to it.
func TestStateCheck_HashesTheStateAtTheCheckpoint(t *testing.T) {
	s, ref := openStore(t), openStore(t)
	var batch []Applied
	for i := uint64(1); i <= 10; i++ {
		batch = append(batch, Applied{Index: i, Cmd: set(fmt.Sprintf("k%d", i), "v", 0)})
	}
	mustApplyBatch(t, ref, batch[:5])
	mustApplyBatch(t, ref, []Applied{{Index: 6, Cmd: &Command{Op: OpCheckpoint}}})
	batch[5].Cmd = &Command{Op: OpCheckpoint}
	mustApplyBatch(t, s, batch)
	if s.AppliedIndex() != 10 {
		t.Fatalf("applied %d, want 10", s.AppliedIndex())
	}
	want, err := ref.Verify()
	if err != nil {
		t.Fatal(err)
	}
	var checks []StateCheck
	for deadline := time.Now().Add(10 * time.Second); len(checks) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		checks = s.StateChecks()
	}
	if len(checks) != 1 || checks[0].Err != nil {
		t.Fatalf("checks: %+v", checks)
	}
	if checks[0].StateHash != want || want.Index != 6 {
		t.Fatalf("checkpoint hash %+v, want %+v", checks[0].StateHash, want)
	}
	// A replayed checkpoint (at or below the applied index) hashes nothing.
	mustApplyBatch(t, s, []Applied{{Index: 6, Cmd: &Command{Op: OpCheckpoint}}})
	time.Sleep(50 * time.Millisecond)
	if n := len(s.StateChecks()); n != 1 {
		t.Fatalf("a replayed checkpoint was hashed: %d checks", n)
	}
}

// A snapshot of a state holding a corrupt value fails to be written.
func TestSeal_SnapshotOfCorruptStateFails(t *testing.T) {
	s := openStore(t)
	apply(t, s, 1, set("k", "v", 0))
	corruptValue(t, s, bucketKV, "k")
	sn, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Release()
	var buf bytes.Buffer
	if _, err := sn.WriteTo(&buf); !errors.Is(err, ErrCorrupt) || buf.Len() != 0 {
		t.Fatalf("WriteTo of a corrupt state: %v, %d bytes", err, buf.Len())
	}
}

// BenchmarkStateHash is one checkpoint's pass over a state of 100,000
// keys with 100-byte values (what state_check_interval costs each node).
func BenchmarkStateHash(b *testing.B) {
	s := openAt(b, filepath.Join(b.TempDir(), "state.db"))
	const keys = 100_000
	for i := 0; i < keys; i += 1000 {
		batch := make([]Applied, 0, 1000)
		for j := i; j < i+1000; j++ {
			batch = append(batch, Applied{Index: uint64(j + 1), Cmd: set(fmt.Sprintf("service/%06d/config", j), strings.Repeat("x", 100), 0)})
		}
		mustApplyBatch(b, s, batch)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Verify(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/keys, "ns/key")
}
