package storage

import (
	"bytes"
	"fmt"
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

// TestTrimMemoryReleasesMappedPages: after reading every key the state
// file is mapped into the process; TrimMemory gives those pages back, and
// the data reads back the same afterwards.
func TestTrimMemoryReleasesMappedPages(t *testing.T) {
	s := openStore(t)
	value := bytes.Repeat([]byte("v"), 1000)
	var batch []Applied
	for i := 1; i <= 16000; i++ {
		batch = append(batch, Applied{Index: uint64(i), Cmd: &Command{Op: OpSet, Key: fmt.Sprintf("k%06d", i), Value: value}})
		if len(batch) == 1000 {
			mustApplyBatch(t, s, batch)
			batch = nil
		}
	}
	if _, _, err := s.List(""); err != nil { // map every page
		t.Fatal(err)
	}
	before := rssFile(t)
	s.TrimMemory()
	after := rssFile(t)
	if before-after < 8<<20 {
		t.Fatalf("RssFile %d -> %d bytes: less than 8 MiB released from a %d byte file", before, after, s.FileSize())
	}
	e, found, _, err := s.Get("k008000")
	if err != nil || !found || !bytes.Equal(e.Value, value) {
		t.Fatalf("read after trim: %v %v", found, err)
	}
	s.Close()
	s.TrimMemory() // a closed store is left alone
}
