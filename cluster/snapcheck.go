package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/troupe-kv/troupe/storage"
)

// damagedSnapshotsDir is where snapshots that fail their check are moved,
// beside the snapshot directory rather than inside it: raft lists every
// directory in there with a readable meta.json, and with
// NoSnapshotRestoreOnStart it takes the newest one's index as applied
// without opening it.
const damagedSnapshotsDir = "snapshots-damaged"

// SnapshotCorruptError reports a snapshot that failed its check (its
// state file's CRC, or an unreadable meta.json) when nothing else on the
// node can stand in for it: no older valid snapshot from which the log
// reaches on to where the damaged one ended.
type SnapshotCorruptError struct {
	// Dir is the snapshot's directory, DataDir/snapshots/<id>.
	Dir string
	// Node is this node's id, for the advice; empty when unknown.
	Node string
	// Err is what is wrong, and why the node cannot do without it.
	Err error
}

// Error is one line: what, where, and what to do.
func (e *SnapshotCorruptError) Error() string {
	return fmt.Sprintf("raft snapshot %s is corrupt (%v); %s", e.Dir, e.Err, replaceAdvice(e.Node))
}

// Unwrap returns the cause.
func (e *SnapshotCorruptError) Unwrap() error { return e.Err }

// snapshotOnDisk is one snapshot directory: from raft's listing, or found
// beside it with a meta.json raft could not read (index from its name).
type snapshotOnDisk struct {
	id    string
	index uint64
	meta  *raft.SnapshotMeta // nil: unreadable
	err   error              // why it is damaged; nil if not (yet) found so
}

// settleSnapshots checks the node's snapshots before Raft starts, and
// leaves it only ones it may use. Raft is told not to restore a snapshot
// on start (the state file persists itself), so nothing else would read
// them until a follower needs one or the state file is lost.
//
// The newest snapshot is opened, which verifies its state file's CRC. If
// it fails (or its meta.json cannot be read), the next older one is tried,
// and so on. A damaged snapshot may be done without only if the log
// bridges the gap: it starts at or before the entry after the valid
// snapshot and reaches at least to where the damaged one ended, so that
// no committed entry this node held exists only in the damaged file. Then
// the damaged ones are moved to DataDir/snapshots-damaged with an error
// in the log; otherwise the node refuses to start (*SnapshotCorruptError)
// and nothing is moved. A snapshot that fails its CRC is never restored.
//
// If the state file is behind the snapshot chosen (it was lost, or
// repaired), the snapshot is restored into it. Last, the state file may
// not be ahead of both the log and the snapshot: what it applied was
// committed, and this node held it in its log first, so the log has lost
// committed entries (raft-wal drops a tail batch that fails its CRC as
// if its write had been torn by a crash).
func settleSnapshots(dataDir, node string, snaps raft.SnapshotStore, logs raft.LogStore, store *storage.Store, logger hclog.Logger) error {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	dir := filepath.Join(dataDir, "snapshots")
	all, err := snapshotsOnDisk(dir, snaps)
	if err != nil {
		return err
	}
	var chosen *snapshotOnDisk
	var rc io.ReadCloser
	var damaged []*snapshotOnDisk
	for _, s := range all {
		if s.meta == nil {
			damaged = append(damaged, s)
			continue
		}
		if chosen != nil {
			continue
		}
		_, r, err := snaps.Open(s.id)
		if err != nil {
			s.err = fmt.Errorf("its state file: %w", err)
			damaged = append(damaged, s)
			continue
		}
		chosen, rc = s, r
	}
	if rc != nil {
		defer rc.Close()
	}
	var snapIndex uint64
	if chosen != nil {
		snapIndex = chosen.index
	}
	first, last, err := logBounds(logs)
	if err != nil {
		return err
	}
	// A damaged snapshot newer than the chosen one held entries the log
	// must still have.
	for _, d := range damaged {
		if d.index <= snapIndex {
			continue
		}
		if last < d.index || first > snapIndex+1 {
			return &SnapshotCorruptError{Dir: filepath.Join(dir, d.id), Node: node,
				Err: fmt.Errorf("%v; nothing on this node can take its place: %s", d.err, coverage(first, last, chosen))}
		}
	}
	if last > 0 && first > snapIndex+1 {
		return &SnapshotCorruptError{Dir: dir, Node: node,
			Err: fmt.Errorf("no snapshot holds the entries before the log's first: %s", coverage(first, last, chosen))}
	}
	for _, d := range damaged {
		if err := moveAside(dataDir, dir, d, logger); err != nil {
			return err
		}
	}
	if chosen != nil && chosen.index > store.AppliedIndex() {
		if err := store.Restore(rc); err != nil {
			return fmt.Errorf("restore snapshot %s: %w", filepath.Join(dir, chosen.id), err)
		}
	}
	if applied := store.AppliedIndex(); applied > max(last, snapIndex) {
		return &LogCorruptError{File: filepath.Join(dataDir, walDirName), Index: max(last, snapIndex) + 1, Node: node,
			Err: fmt.Errorf("the log ends at entry %d and the newest snapshot at %d, but the state file has applied entry %d: the log lost entries this node had committed", last, snapIndex, applied)}
	}
	return nil
}

// snapshotsOnDisk lists the snapshots newest first: raft's listing, and
// directories it skipped because their meta.json could not be read (with
// the index from the name raft gave them, "<term>-<index>-<ms>").
func snapshotsOnDisk(dir string, snaps raft.SnapshotStore) ([]*snapshotOnDisk, error) {
	list, err := snaps.List()
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	listed := map[string]bool{}
	var all []*snapshotOnDisk
	for _, m := range list {
		listed[m.ID] = true
		s := &snapshotOnDisk{id: m.ID, index: m.Index, meta: m}
		// meta.json has no checksum, and raft takes the index and term
		// in it on trust (as applied, with NoSnapshotRestoreOnStart):
		// check them against the name raft gave the directory.
		if term, index, ok := parseSnapshotName(m.ID); ok && (term != m.Term || index != m.Index) {
			s.meta, s.index = nil, index
			s.err = fmt.Errorf("its meta.json says term %d index %d, its name term %d index %d", m.Term, m.Index, term, index)
		}
		all = append(all, s)
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("snapshot directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || listed[name] || strings.HasSuffix(name, ".tmp") {
			continue
		}
		_, index, _ := parseSnapshotName(name)
		all = append(all, &snapshotOnDisk{id: name, index: index, err: errors.New("its meta.json cannot be read")})
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].index > all[j].index })
	return all, nil
}

// parseSnapshotName reads the term and index from the name raft gives a
// snapshot directory, "<term>-<index>-<unix ms>".
func parseSnapshotName(name string) (term, index uint64, ok bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 {
		return 0, 0, false
	}
	term, err1 := strconv.ParseUint(parts[0], 10, 64)
	index, err2 := strconv.ParseUint(parts[1], 10, 64)
	_, err3 := strconv.ParseUint(parts[2], 10, 64)
	return term, index, err1 == nil && err2 == nil && err3 == nil
}

func logBounds(logs raft.LogStore) (first, last uint64, err error) {
	if first, err = logs.FirstIndex(); err != nil {
		return 0, 0, err
	}
	if last, err = logs.LastIndex(); err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// coverage says what the node holds, for errors.
func coverage(first, last uint64, chosen *snapshotOnDisk) string {
	s := "no valid snapshot"
	if chosen != nil {
		s = fmt.Sprintf("the newest valid snapshot ends at entry %d", chosen.index)
	}
	if last == 0 {
		return s + " and the log is empty"
	}
	return fmt.Sprintf("%s and the log holds entries %d to %d", s, first, last)
}

// moveAside moves a damaged snapshot out of raft's sight, keeping it for
// the operator to inspect or delete.
func moveAside(dataDir, dir string, d *snapshotOnDisk, logger hclog.Logger) error {
	from := filepath.Join(dir, d.id)
	toDir := filepath.Join(dataDir, damagedSnapshotsDir)
	if err := os.MkdirAll(toDir, 0o700); err != nil {
		return fmt.Errorf("moving the damaged snapshot %s aside: %w", from, err)
	}
	to := filepath.Join(toDir, d.id)
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("moving the damaged snapshot %s aside: %w", from, err)
	}
	logger.Error("a snapshot is corrupt: moved aside; the node goes on from an older snapshot and its log, which still hold everything the damaged one did",
		"snapshot", from, "error", d.err, "moved_to", to)
	return nil
}
