package storage

// Tombstones remember the index at which each deleted key (or deleted
// prefix) went, so that a deletion raises the index of every prefix above
// it and wakes blocked listers (Consul's graveyard). Kept for ever, they
// would grow with every key ever deleted: session churn, lock keys and
// api.Semaphore's per-session contender keys make that fast. They are
// reaped through the log (OpReapTombstones), so every node reaps exactly
// the same set; which ones are old enough is the leader's call, made with
// its own clock (see actors' tombstone reaper), as Consul's tombstone GC
// does: the command carries only an index.
//
// Reaping must not move a prefix's index backwards (a blocked lister
// would then sleep through later changes: Consul's own reaping has that
// flaw, reference §3.3). So the state keeps the highest index of any
// tombstone ever reaped (metaTombsReaped), and a prefix with live keys
// reports at least that (prefixIndex): whatever a reaped tombstone
// contributed to a prefix's index, the floor still does. A prefix with
// neither keys nor tombstones reports the KV-wide index, as before. The
// price is that a blocked lister of a quiet prefix may wake once after a
// reap, with nothing changed, which Consul's clients expect of any
// blocking query.

var metaTombsReaped = []byte("tombs_reaped")

// reapTombstones deletes, in key order, at most limit tombstones (0: all)
// whose index is at most upTo, and raises the reaped floor to the highest
// index it removed. Result.OK false means it stopped at the limit: more
// may be left at or below upTo.
func (w writer) reapTombstones(upTo, limit uint64) (bool, error) {
	var doomed [][]byte
	floor := getUint(w.meta, metaTombsReaped)
	c := w.tombs.Cursor()
	for k, v := c.First(); k != nil && (limit == 0 || uint64(len(doomed)) < limit); k, v = c.Next() {
		if idx := decodeUint(v); idx <= upTo {
			doomed = append(doomed, append([]byte(nil), k...))
			floor = max(floor, idx)
		}
	}
	for _, k := range doomed {
		if err := w.tombs.Delete(k); err != nil {
			return false, err
		}
	}
	if len(doomed) == 0 {
		return true, nil
	}
	return limit == 0 || uint64(len(doomed)) < limit, putUint(w.meta, metaTombsReaped, floor)
}

// Tombstones reports how many tombstones the state holds and the highest
// index of any reaped so far (the floor of every non-empty prefix's
// index).
func (s *Store) Tombstones() (count int, reapedFloor uint64, err error) {
	err = s.view(func(r reader) error {
		reapedFloor = getUint(r.table(bucketMeta), metaTombsReaped)
		c := r.table(bucketTombs).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			count++
		}
		return nil
	})
	return count, reapedFloor, err
}
