package cluster

import (
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"
)

// DiskHealth remembers the node's latest failure to write its Raft log
// (a full disk, an I/O error) until a write succeeds again. A node that
// cannot write its log cannot accept entries, so it must not call itself
// ready, nor let a read through it fail with a misleading "no quorum".
// It outlives Raft restarts: the actor tree owns it.
type DiskHealth struct {
	mu sync.Mutex
	// log and stable are the latest failures of each store: a small write
	// of the term that lands in space already allocated says nothing of
	// the log, so each is cleared only by a write of its own kind.
	log, stable error
}

// Err is the latest failure, nil once a write of the same kind has
// succeeded since.
func (h *DiskHealth) Err() error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.log != nil {
		return h.log
	}
	return h.stable
}

// ErrDisk is the error of a node that cannot write its Raft log.
var ErrDisk = errors.New("this node cannot write its Raft log")

func (h *DiskHealth) record(kind *error, err error) {
	if h == nil {
		return
	}
	h.mu.Lock()
	if err != nil {
		*kind = fmt.Errorf("%w: %v", ErrDisk, err)
	} else {
		*kind = nil
	}
	h.mu.Unlock()
}

func (h *DiskHealth) recordLog(err error) {
	if h != nil {
		h.record(&h.log, err)
	}
}

func (h *DiskHealth) recordStable(err error) {
	if h != nil {
		h.record(&h.stable, err)
	}
}

// watchedLogStore reports every write of the log and stable store to a
// DiskHealth.
type watchedLogStore struct {
	logStore
	health *DiskHealth
}

func (s watchedLogStore) StoreLog(l *raft.Log) error {
	err := s.logStore.StoreLog(l)
	s.health.recordLog(err)
	return err
}

func (s watchedLogStore) StoreLogs(logs []*raft.Log) error {
	err := s.logStore.StoreLogs(logs)
	s.health.recordLog(err)
	return err
}

func (s watchedLogStore) Set(key, val []byte) error {
	err := s.logStore.Set(key, val)
	s.health.recordStable(err)
	return err
}

func (s watchedLogStore) SetUint64(key []byte, val uint64) error {
	err := s.logStore.SetUint64(key, val)
	s.health.recordStable(err)
	return err
}

// IsMonotonic passes on raft-wal's answer: raft must know that the log
// cannot have gaps (it then empties the log after restoring a snapshot),
// and the wrapper would otherwise hide it.
func (s watchedLogStore) IsMonotonic() bool {
	m, ok := s.logStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}
