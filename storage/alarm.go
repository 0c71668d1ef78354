package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Alarms are replicated facts about the cluster's health that change what
// the state machine accepts, as etcd's are: every node applies the same
// raise and the same disarm at the same log index, so every node refuses
// (or accepts) the same writes. A member raises an alarm about itself
// (OpAlarmRaise); an operator disarms it (OpAlarmClear). They live in the
// meta bucket, one key per alarm:
//
//	alarm/<type>/<member>  ->  uvarint(index raised at) reason
var metaAlarmPrefix = []byte("alarm/")

// AlarmNoSpace is raised by a member whose state file uses more than its
// quota, or whose data directory's file system is short of free space.
// While any member's is raised, commands that would grow the state (see
// Command.Grows) are refused on every node; reads and deletes go on, so
// that space can be freed.
const AlarmNoSpace = "nospace"

// Alarm is one raised alarm.
type Alarm struct {
	Type   string `json:"type"`
	Member string `json:"member"`
	// Reason is what the member measured when it raised the alarm.
	Reason string `json:"reason"`
	// Index is the log index the alarm was raised at.
	Index uint64 `json:"index"`
}

// AlarmKey is the Key of an OpAlarmRaise or OpAlarmClear: the alarm of
// type typ about member. For OpAlarmClear, an empty type or member
// matches any, and the empty key clears every alarm.
func AlarmKey(typ, member string) string {
	if typ == "" && member == "" {
		return ""
	}
	return typ + "/" + member
}

// parseAlarmKey splits an AlarmKey. Neither part may hold a '/'.
func parseAlarmKey(key string) (typ, member string, ok bool) {
	if key == "" {
		return "", "", true
	}
	typ, member, ok = strings.Cut(key, "/")
	return typ, member, ok && !strings.Contains(member, "/")
}

// ErrNoSpace is what every refusal for want of space matches with
// errors.Is: etcd's "database space exceeded".
var ErrNoSpace = errors.New("database space exceeded")

// NoSpaceError refuses a write that would grow the state while a NOSPACE
// alarm is raised; it names the alarms and what to do.
type NoSpaceError struct {
	Alarms []Alarm
}

// Error says why and what to do, in one line.
func (e *NoSpaceError) Error() string {
	var why []string
	for _, a := range e.Alarms {
		if a.Type == AlarmNoSpace {
			why = append(why, a.Member+": "+a.Reason)
		}
	}
	cause := ""
	if len(why) > 0 {
		cause = " (" + strings.Join(why, "; ") + ")"
	}
	return fmt.Sprintf("%v: the NOSPACE alarm is raised%s; reads and deletes still work: free space (delete keys), then disarm the alarm (kvctl alarm disarm)", ErrNoSpace, cause)
}

// Unwrap lets errors.Is(err, ErrNoSpace) hold.
func (e *NoSpaceError) Unwrap() error { return ErrNoSpace }

// Grows reports whether c may make the state larger: a write of a value
// (set, CAS, and a transaction holding one, locks included) and a new
// session (as etcd refuses new leases). A NOSPACE alarm refuses these.
// Deletes, destroying sessions, reaping tombstones, the cluster's own
// bookkeeping (node addresses, the cluster id, no-ops, checkpoints,
// alarms) and ACL changes (small, and an operator may need a token to
// clean up) are never refused.
func (c *Command) Grows() bool {
	switch c.Op {
	case OpSet, OpCAS, OpSessionCreate:
		return true
	case OpTxn:
		for i := range c.Txn {
			switch c.Txn[i].Verb {
			case TxnSet, TxnCAS, TxnLock, TxnUnlock:
				return true
			}
		}
	}
	return false
}

func alarmMetaKey(typ, member string) []byte {
	return append(append(append([]byte(nil), metaAlarmPrefix...), typ+"/"...), member...)
}

func encodeAlarm(index uint64, reason string) []byte {
	return append(binary.AppendUvarint(nil, index), reason...)
}

// decodeAlarm reads the alarm stored under meta key k.
func decodeAlarm(k, v []byte) (Alarm, error) {
	typ, member, ok := parseAlarmKey(string(k[len(metaAlarmPrefix):]))
	if !ok || typ == "" || member == "" {
		return Alarm{}, fmt.Errorf("a malformed alarm key %q", k)
	}
	idx, n := binary.Uvarint(v)
	if n <= 0 {
		return Alarm{}, errors.New("an alarm without its index")
	}
	return Alarm{Type: typ, Member: member, Index: idx, Reason: string(v[n:])}, nil
}

// alarmRaise records the alarm c.Key with reason c.Value, raised at idx.
// An alarm already raised keeps its index and reason.
func (w writer) alarmRaise(idx uint64, c *Command) (bool, error) {
	typ, member, ok := parseAlarmKey(c.Key)
	if !ok || typ == "" || member == "" {
		return false, nil
	}
	k := alarmMetaKey(typ, member)
	if w.meta.Get(k) != nil {
		return true, nil
	}
	if typ == AlarmNoSpace {
		*w.noSpace = true
	}
	return true, w.meta.Put(k, encodeAlarm(idx, string(c.Value)))
}

// alarmClear removes the alarms c.Key matches (see AlarmKey); OK reports
// whether there was any.
func (w writer) alarmClear(c *Command) (bool, error) {
	typ, member, ok := parseAlarmKey(c.Key)
	if !ok {
		return false, nil
	}
	var doomed [][]byte
	for _, k := range keysWithPrefix(w.meta, metaAlarmPrefix) {
		a, err := decodeAlarm(k, w.meta.Get(k))
		if err != nil {
			return false, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if (typ == "" || a.Type == typ) && (member == "" || a.Member == member) {
			doomed = append(doomed, k)
		}
	}
	for _, k := range doomed {
		if err := w.meta.Delete(k); err != nil {
			return false, err
		}
	}
	*w.noSpace = hasAlarm(w.meta, AlarmNoSpace)
	return len(doomed) > 0, nil
}

// hasAlarm reports whether any alarm of type typ is raised in meta.
func hasAlarm(meta table, typ string) bool {
	p := append(append([]byte(nil), metaAlarmPrefix...), typ+"/"...)
	k, _ := meta.Cursor().Seek(p)
	return k != nil && bytes.HasPrefix(k, p)
}

// loadAlarms refreshes the cache of the raised alarms from db.
func (s *Store) loadAlarms(db *bolt.DB) {
	var alarms []Alarm
	_ = db.View(func(tx *bolt.Tx) error {
		meta := newReader(tx, db.Path()).table(bucketMeta)
		c := meta.Cursor()
		for k, v := c.Seek(metaAlarmPrefix); k != nil && bytes.HasPrefix(k, metaAlarmPrefix); k, v = c.Next() {
			if a, err := decodeAlarm(k, v); err == nil {
				alarms = append(alarms, a)
			}
		}
		return nil
	})
	s.alarms.Store(&alarms)
}

// Alarms lists the raised alarms, by type and member.
func (s *Store) Alarms() []Alarm {
	if p := s.alarms.Load(); p != nil {
		return append([]Alarm(nil), (*p)...)
	}
	return nil
}

// NoSpace reports whether a NOSPACE alarm is raised: commands that grow
// the state are refused (Result.NoSpace).
func (s *Store) NoSpace() bool {
	if p := s.alarms.Load(); p != nil {
		for _, a := range *p {
			if a.Type == AlarmNoSpace {
				return true
			}
		}
	}
	return false
}

// Usage is how much room the state file takes.
type Usage struct {
	// FileBytes is the size of the file on disk.
	FileBytes int64 `json:"file_bytes"`
	// UsedBytes is what its live pages take: the file up to its
	// high-water mark, less the free pages bbolt reuses before it grows
	// the file. Deleting keys lowers it; the file itself never shrinks.
	UsedBytes int64 `json:"used_bytes"`
}

// Usage measures the state file. The quota (see AlarmNoSpace) compares
// UsedBytes: a bbolt file does not shrink when keys are deleted, but its
// freed pages are reused, so the file grows again only once the live data
// outgrows them.
func (s *Store) Usage() (Usage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return Usage{}, ErrClosed
	}
	var u Usage
	if err := s.db.View(func(tx *bolt.Tx) error {
		u.UsedBytes = tx.Size()
		return nil
	}); err != nil {
		return u, err
	}
	st := s.db.Stats()
	u.UsedBytes -= int64(st.FreePageN+st.PendingPageN) * int64(s.db.Info().PageSize)
	u.FileBytes = s.FileSize()
	return u, nil
}
