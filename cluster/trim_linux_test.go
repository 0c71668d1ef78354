package cluster

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/troupe-kv/troupe/internal/procstat"
)

func rssFile(t *testing.T) int64 {
	t.Helper()
	v, ok := procstat.Status(0)["RssFile"]
	if !ok {
		t.Skip("no RssFile in /proc/self/status")
	}
	return v
}

// TestTrimLogMemoryReleasesMappedPages maps a 32 MiB raft.db read-only and
// shared, as bbolt does, and reads every page: TrimLogMemory hands the
// pages back, and the mapping still reads the file's bytes afterwards.
func TestTrimLogMemoryReleasesMappedPages(t *testing.T) {
	dir := t.TempDir()
	const size = 32 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i / 4096)
	}
	if err := os.WriteFile(filepath.Join(dir, logFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, logFileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	sum := 0
	for i := 0; i < size; i += 4096 {
		sum += int(m[i])
	}
	before := rssFile(t)
	t.Logf("checksum %d, RssFile %d bytes", sum, before)
	TrimLogMemory(dir)
	after := rssFile(t)
	if before-after < 16<<20 {
		t.Fatalf("RssFile %d -> %d bytes: less than 16 MiB of a 32 MiB mapping released", before, after)
	}
	for i := 0; i < size; i += 4096 {
		if m[i] != byte(i/4096) {
			t.Fatalf("page %d reads %d after trimming, want %d", i/4096, m[i], byte(i/4096))
		}
	}
	TrimLogMemory(filepath.Join(dir, "missing")) // no file: nothing to do, no harm
}
