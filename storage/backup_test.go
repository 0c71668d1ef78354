package storage

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// backupOf writes s's backup to a buffer.
func backupOf(t testing.TB, s *Store) ([]byte, BackupInfo) {
	t.Helper()
	var buf bytes.Buffer
	info, err := s.WriteBackup(&buf, BackupHeader{Node: "n1", Term: 3})
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(buf.Len()) {
		t.Fatalf("WriteBackup reported %d bytes, wrote %d", info.Size, buf.Len())
	}
	return buf.Bytes(), info
}

// backupSource is a store with keys, a tombstone, a node, a cluster id and
// a session, at applied index 40.
func backupSource(t testing.TB) *Store {
	s := openStore(t)
	for i := 1; i <= 30; i++ {
		mustApply(t, s, uint64(i), set(fmt.Sprintf("k/%02d", i), fmt.Sprintf("v%d", i), uint64(i)))
	}
	mustApply(t, s, 31, &Command{Op: OpDelete, Key: "k/05"})
	mustApply(t, s, 32, &Command{Op: OpRegisterNode, Key: "old", Value: []byte("10.0.0.1:8500")})
	mustApply(t, s, 33, &Command{Op: OpSetClusterID, Key: "old-cluster"})
	mustApply(t, s, 40, &Command{Op: OpNoop})
	return s
}

func TestBackup_RoundTripThroughRestore(t *testing.T) {
	src := backupSource(t)
	data, info := backupOf(t, src)
	if info.Index != 40 || info.Keys != 29 || info.ClusterID != "old-cluster" || info.Term != 3 {
		t.Fatalf("info %+v", info)
	}
	read, err := ReadBackup(bytes.NewReader(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	if read.Index != 40 || read.Keys != 29 || read.SHA256 != info.SHA256 || read.Size != info.Size {
		t.Fatalf("read %+v, wrote %+v", read, info)
	}

	// The target: another cluster, with its own id, members and more
	// history (index 100), and keys the restore must replace.
	dst := openStore(t)
	mustApply(t, dst, 50, &Command{Op: OpSetClusterID, Key: "new-cluster"})
	mustApply(t, dst, 51, &Command{Op: OpRegisterNode, Key: "n1", Value: []byte("127.0.0.1:8500")})
	mustApply(t, dst, 100, set("other", "x", 0))
	built := filepath.Join(t.TempDir(), "built.db")
	if _, err := dst.BuildRestore(bytes.NewReader(data), built, 101); err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(openFile(t, built)); err != nil {
		t.Fatal(err)
	}
	if dst.AppliedIndex() != 101 {
		t.Fatalf("applied %d after restore, want 101", dst.AppliedIndex())
	}
	if _, found, _ := mustGet(t, dst, "other"); found {
		t.Fatal("a key of the old state survived the restore")
	}
	if _, found, _ := mustGet(t, dst, "k/05"); found {
		t.Fatal("a deleted key came back")
	}
	for i := 1; i <= 30; i++ {
		if i == 5 {
			continue
		}
		e, found, idx := mustGet(t, dst, fmt.Sprintf("k/%02d", i))
		if !found || string(e.Value) != fmt.Sprintf("v%d", i) || e.Flags != uint64(i) {
			t.Fatalf("k/%02d: %+v found=%v", i, e, found)
		}
		if e.ModifyIndex != 101 || idx != 101 || e.CreateIndex != uint64(i) {
			t.Fatalf("k/%02d: indexes %+v (reported %d), want modify 101 and create %d", i, e, idx, i)
		}
	}
	if got := mustKVIndex(t, dst); got != 101 {
		t.Fatalf("kv index %d, want 101", got)
	}
	if got := listIndex(t, dst, "k/05"); got != 101 {
		t.Fatalf("index of a deleted key's prefix %d, want 101", got)
	}
	if dst.ClusterID() != "new-cluster" || dst.NodeAddr("n1") != "127.0.0.1:8500" || dst.NodeAddr("old") != "" {
		t.Fatalf("cluster id %q, nodes n1=%q old=%q: the cluster's own records must stay", dst.ClusterID(), dst.NodeAddr("n1"), dst.NodeAddr("old"))
	}
	if _, err := dst.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestBackup_DamageIsRefused(t *testing.T) {
	src := backupSource(t)
	data, _ := backupOf(t, src)
	dst := openStore(t)
	mustApply(t, dst, 100, set("keep", "me", 0))
	check := func(what string, bad []byte) {
		t.Helper()
		if _, err := ReadBackup(bytes.NewReader(bad), nil); !errors.Is(err, ErrBadBackup) {
			t.Fatalf("%s: ReadBackup: %v, want ErrBadBackup", what, err)
		}
		built := filepath.Join(t.TempDir(), "built.db")
		if _, err := dst.BuildRestore(bytes.NewReader(bad), built, 200); !errors.Is(err, ErrBadBackup) {
			t.Fatalf("%s: BuildRestore: %v, want ErrBadBackup", what, err)
		}
		if fileExists(built) {
			t.Fatalf("%s: BuildRestore left %s behind", what, built)
		}
	}
	for i := 0; i < len(data); i += 1 + len(data)/97 {
		flipped := bytes.Clone(data)
		flipped[i] ^= 0x10
		check(fmt.Sprintf("byte %d flipped", i), flipped)
	}
	for _, n := range []int{0, 5, len(backupMagic), len(data) / 2, len(data) - 33, len(data) - 32, len(data) - 1} {
		check(fmt.Sprintf("cut to %d bytes", n), data[:n])
	}
	check("a byte appended", append(bytes.Clone(data), 0))
	if e, found, _ := mustGet(t, dst, "keep"); !found || string(e.Value) != "me" {
		t.Fatal("a refused snapshot changed the store")
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func openFile(t testing.TB, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// FuzzReadBackup feeds the reader damaged and arbitrary streams: it must
// never panic, and whatever it accepts must be a backup it can write
// again identically.
func FuzzReadBackup(f *testing.F) {
	s := backupSource(f)
	data, _ := backupOf(f, s)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte(backupMagic))
	f.Fuzz(func(t *testing.T, in []byte) {
		n := 0
		info, err := ReadBackup(bytes.NewReader(in), func(bucket string, key, value []byte) error {
			n++
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrBadBackup) {
				t.Fatalf("an error that is not ErrBadBackup: %v", err)
			}
			return
		}
		total := 0
		for _, c := range info.Records {
			total += c
		}
		if total != n || info.Size != int64(len(in)) {
			t.Fatalf("accepted %d bytes with %d records, info says %d records, %d bytes", len(in), n, total, info.Size)
		}
	})
}
