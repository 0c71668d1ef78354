package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/storage"
)

func TestSpaceOver(t *testing.T) {
	for _, c := range []struct {
		s    Space
		want string
	}{
		{Space{StateUsedBytes: 3 << 20, QuotaBytes: 2 << 20}, "holds 3.0 MiB of live data, over quota_bytes (2.0 MiB)"},
		{Space{StateUsedBytes: 3 << 20}, ""},
		{Space{StateUsedBytes: 1 << 20, QuotaBytes: 2 << 20, DataDirFreeBytes: 10 << 20, MinFreeBytes: 64 << 20}, "has 10.0 MiB free, below min_free_bytes (64.0 MiB)"},
		{Space{DataDirFreeBytes: 10 << 20, MinFreeBytes: 64 << 20, Error: "statfs: no such file"}, ""},
		{Space{DataDirFreeBytes: 10 << 20}, ""},
	} {
		got := c.s.Over()
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}

func TestMeasureSpace(t *testing.T) {
	dir := t.TempDir()
	store, err := storage.Open(filepath.Join(dir, "kv.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s := MeasureSpace(store, dir, 1, 1<<62)
	if s.Error != "" || s.StateUsedBytes <= 0 || s.StateFileBytes < s.StateUsedBytes || s.DataDirFreeBytes <= 0 {
		t.Fatalf("%+v", s)
	}
	if s.DataDirSizeBytes < s.DataDirFreeBytes || s.WALBytes != 0 || s.SnapshotBytes != 0 {
		t.Fatalf("an empty data directory: %+v", s)
	}
	// The Raft log's and the snapshots' files are counted apart, however
	// deep they lie, and kv.db is in neither.
	for path, size := range map[string]int{"wal/00001.wal": 1000, "wal/wal-meta.db": 24, "snapshots/2-10-1/state.bin": 500, "snapshots/2-10-1/meta.json": 7} {
		full := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if s := MeasureSpace(store, dir, 0, 0); s.WALBytes != 1024 || s.SnapshotBytes != 507 {
		t.Fatalf("wal %d bytes (want 1024), snapshots %d (want 507)", s.WALBytes, s.SnapshotBytes)
	}
	if !strings.Contains(s.Over(), "over quota_bytes") {
		t.Fatalf("a 1-byte quota is not exceeded: %q", s.Over())
	}
	if s := MeasureSpace(store, filepath.Join(dir, "missing"), 0, 1); s.Error == "" || s.Over() != "" {
		t.Fatalf("an unmeasurable directory: %+v, %q", s, s.Over())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 3 << 29: "1.5 GiB", 2 << 30: "2.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
