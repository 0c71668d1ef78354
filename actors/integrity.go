package actors

import (
	"errors"
	"fmt"
	"sync"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// Integrity of this node's state: bbolt does not checksum data pages and a
// node's state can go wrong in ways its own checks cannot see (a bug, a
// file restored by hand, bytes damaged between two writes of the same
// page). So every node checks its state two ways:
//
//   - Every value read from the state file passes its seal (storage's
//     CRC). A value that fails is never served: the node fences itself at
//     once and stops, so its supervisor restarts it and the state file is
//     checked whole at open (and rebuilt when repair_state_file allows).
//   - At every checkpoint (an OpCheckpoint entry the leader proposes each
//     StateCheckInterval) every node hashes its whole state as of that
//     index and reports the hash in its probe answers. A node whose hash
//     differs from the one a majority of the voters hold is fenced off:
//     unready, and it answers every request with ErrStateDiverged.
//
// The verdict is read on every request, so it lives in a mutex-guarded
// value rather than behind a mailbox.
type stateIntegrity struct {
	mu      sync.Mutex
	verdict cluster.Integrity
	// fenced is the error every request gets while the node may not
	// serve; nil otherwise.
	fenced error
}

// err is why this node may not serve, or nil.
func (s *stateIntegrity) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fenced
}

func (s *stateIntegrity) get() cluster.Integrity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.verdict
}

// set records a verdict and reports whether the fencing changed.
func (s *stateIntegrity) set(v cluster.Integrity) (changed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verdict.State == cluster.StateCorrupt {
		return false // final: the node is stopping
	}
	was := s.fenced != nil
	s.verdict = v
	if v.State == cluster.StateDiverged {
		s.fenced = fmt.Errorf("%w: %s", cluster.ErrStateDiverged, v.Reason)
	} else {
		s.fenced = nil
	}
	return was != (s.fenced != nil)
}

// markCorrupt fences the node for good and reports whether this was the
// first corruption found (only the first stops the node).
func (s *stateIntegrity) markCorrupt(err error) (first bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verdict.State == cluster.StateCorrupt {
		return false
	}
	s.verdict = cluster.Integrity{State: cluster.StateCorrupt, Check: s.verdict.Check, Reason: err.Error()}
	s.fenced = fmt.Errorf("%w (this node is stopping: %v)", storage.ErrCorrupt, err)
	return true
}

// corrupted fences the node for good after a value failed its seal, and
// stops it: its state file must be checked whole, at open, before it
// serves again.
func (t *Tree) corrupted(err error) {
	if !errors.Is(err, storage.ErrCorrupt) {
		return
	}
	if !t.integrity.markCorrupt(err) {
		return
	}
	t.send("node", &giveUp{err: fmt.Errorf("%w; the node stops: at the next start the state file is checked whole, and with repair_state_file: true it is rebuilt from the newest snapshot and the Raft log (docs/operations.md: a damaged state file)", err)})
}

// judgeState compares this node's recent checkpoint hashes with the
// newest hash each peer reported, newest checkpoint first. At the newest
// index where some hash is held by a majority of the voters, this node
// agrees if that hash is its own and has diverged otherwise. Below a
// majority nothing is decided: a node cannot tell whether it or its
// peers are wrong, and fencing on a guess would cost availability.
func judgeState(self string, own []storage.StateCheck, peers map[string]*cluster.StateCheck, voters map[string]bool) cluster.Integrity {
	var newest *cluster.StateCheck
	for i := len(own) - 1; i >= 0; i-- {
		if own[i].Err == nil {
			newest = &cluster.StateCheck{Index: own[i].Index, Hash: hashString(own[i].Hash)}
			break
		}
	}
	if newest == nil {
		return cluster.Integrity{State: cluster.StateUnchecked}
	}
	quorum := len(voters)/2 + 1
	for i := len(own) - 1; i >= 0; i-- {
		c := own[i]
		if c.Err != nil {
			continue
		}
		mine := hashString(c.Hash)
		counts := map[string]int{}
		if voters[self] {
			counts[mine]++
		}
		holders := map[string][]string{}
		for id, r := range peers {
			if voters[id] && r != nil && r.Index == c.Index {
				counts[r.Hash]++
				holders[r.Hash] = append(holders[r.Hash], id)
			}
		}
		for h, n := range counts {
			if n < quorum {
				continue
			}
			if h == mine {
				return cluster.Integrity{State: cluster.StateAgrees, Check: newest, Index: c.Index}
			}
			return cluster.Integrity{State: cluster.StateDiverged, Check: newest, Index: c.Index,
				Reason: fmt.Sprintf("at index %d this node's state hashes to %s, but %d of %d voters (%v) hold %s", c.Index, mine, n, len(voters), holders[h], h)}
		}
	}
	return cluster.Integrity{State: cluster.StateUndecided, Check: newest}
}

func hashString(h uint64) string { return fmt.Sprintf("%016x", h) }

// newestStateCheck is this node's newest successful hash, for its probe
// answers; nil before the first.
func newestStateCheck(checks []storage.StateCheck) *cluster.StateCheck {
	for i := len(checks) - 1; i >= 0; i-- {
		if checks[i].Err == nil {
			return &cluster.StateCheck{Index: checks[i].Index, Hash: hashString(checks[i].Hash)}
		}
	}
	return nil
}
