package cluster

import (
	"fmt"
	"testing"

	"github.com/hashicorp/raft"
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
