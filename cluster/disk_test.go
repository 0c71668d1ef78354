package cluster

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// failingLog fails its writes while broken.
type failingLog struct {
	logStore
	broken bool
}

func (f *failingLog) StoreLogs(logs []*raft.Log) error {
	if f.broken {
		return errors.New("no space left on device")
	}
	return nil
}

func TestDiskHealthFollowsLogWrites(t *testing.T) {
	wal, err := openLogStore(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wal.Close()
	var h DiskHealth
	// The wrapper must not hide that raft-wal's log is monotonic.
	if !(watchedLogStore{logStore: wal, health: &h}).IsMonotonic() {
		t.Fatal("the watched WAL does not say it is monotonic")
	}
	f := &failingLog{logStore: wal, broken: true}
	s := watchedLogStore{logStore: f, health: &h}
	if err := s.StoreLogs([]*raft.Log{{Index: 1}}); err == nil {
		t.Fatal("the failure was swallowed")
	}
	if err := h.Err(); !errors.Is(err, ErrDisk) || err.Error() != "this node cannot write its Raft log: no space left on device" {
		t.Fatalf("health after a failed write: %v", err)
	}
	// A write of the term that succeeds says nothing of the log.
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if h.Err() == nil {
		t.Fatal("a stable-store write cleared the log's failure")
	}
	f.broken = false
	if err := s.StoreLogs([]*raft.Log{{Index: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := h.Err(); err != nil {
		t.Fatalf("health after a good write: %v", err)
	}
	var none *DiskHealth
	if none.Err() != nil {
		t.Fatal("a nil DiskHealth reports trouble")
	}
}
