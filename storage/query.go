package storage

import (
	"context"
	"time"
)

// QueryKind is what a Query reads.
type QueryKind int

// The reads the KV API offers.
const (
	QueryGet      QueryKind = iota // one key
	QueryList                      // every entry under a prefix (?recurse)
	QueryKeys                      // the keys under a prefix (?keys), folded at Separator
	QueryTxn                       // a read-only transaction (Txn), run against one consistent state
	QuerySession                   // one session (Key is its id)
	QuerySessions                  // every session, or those of node Key
)

// Query is one read of the state file.
type Query struct {
	Kind      QueryKind
	Key       string // the key, the prefix for QueryList and QueryKeys, a session id or a node
	Separator string // QueryKeys only
	// Txn is QueryTxn's operations; a write among them is refused
	// (ErrBadCommand): writes go through Raft as an OpTxn.
	Txn []TxnOp
}

// QueryResult is what a Query found. Index is the index a reader reports
// and a blocking reader waits past (see Get, List and Keys).
type QueryResult struct {
	Entries []Entry    // QueryGet (at most one) and QueryList
	Keys    []string   // QueryKeys
	Txn     *TxnResult // QueryTxn
	// Sessions is QuerySession's (at most one) and QuerySessions'.
	Sessions []Session
	Found    bool
	Index    uint64
}

// Query runs q once.
func (s *Store) Query(q Query) (QueryResult, error) {
	var r QueryResult
	var err error
	switch q.Kind {
	case QuerySession:
		var sess Session
		sess, r.Found, r.Index, err = s.Session(q.Key)
		if r.Found {
			r.Sessions = []Session{sess}
		}
	case QuerySessions:
		r.Sessions, r.Index, err = s.Sessions(q.Key)
		r.Found = true
	case QueryTxn:
		r.Txn, err = s.readTxn(q.Txn)
		r.Found = err == nil
	case QueryKeys:
		r.Keys, r.Index, err = s.Keys(q.Key, q.Separator)
		// An empty prefix is the root, which always exists.
		r.Found = len(r.Keys) > 0 || q.Key == ""
	case QueryList:
		r.Entries, r.Index, err = s.List(q.Key)
		r.Found = len(r.Entries) > 0
	default:
		var e Entry
		e, r.Found, r.Index, err = s.Get(q.Key)
		if r.Found {
			r.Entries = []Entry{e}
		}
	}
	return r, err
}

// Block is how long and past which index a blocking read waits, as
// Consul's ?index and ?wait ask.
type Block struct {
	// MinIndex: answer once the result's index passes it. Zero answers at
	// once.
	MinIndex uint64
	// Wait bounds the wait; when it passes, the current result is the
	// answer.
	Wait time.Duration
	// Drain, when closed, ends the wait with the current result (a node
	// shutting down answers its long polls rather than cutting them off).
	Drain <-chan struct{}
}

// BlockingQuery runs q, and while its index has not passed b.MinIndex,
// waits for the next commit and runs it again, until b.Wait runs out or b
// drains. before, when set, runs ahead of every evaluation: the caller's
// read barrier, so each answer is as fresh as the caller promises.
//
// For one key or one session, Consul's rule applies: once it has been
// seen missing, only its appearance ends the wait, not writes to others.
func (s *Store) BlockingQuery(ctx context.Context, q Query, b Block, before func(context.Context) error) (QueryResult, error) {
	minIndex := b.MinIndex
	var deadline time.Time
	if minIndex > 0 {
		deadline = time.Now().Add(b.Wait)
	}
	missingBefore := false
	for {
		// Taken before reading, so no commit between the read and the
		// wait is missed.
		changed := s.Changed()
		if before != nil {
			if err := before(ctx); err != nil {
				return QueryResult{}, err
			}
		}
		r, err := s.Query(q)
		if err != nil {
			return QueryResult{}, err
		}
		if q.Kind == QueryGet || q.Kind == QuerySession {
			if !r.Found && missingBefore {
				minIndex = max(minIndex, r.Index)
			}
			missingBefore = missingBefore || !r.Found
		}
		if minIndex == 0 || r.Index > minIndex || !time.Now().Before(deadline) {
			return r, nil
		}
		timer := time.NewTimer(time.Until(deadline))
		select {
		case <-changed:
		case <-timer.C:
		case <-b.Drain:
			deadline = time.Now()
		case <-ctx.Done():
			timer.Stop()
			return QueryResult{}, ctx.Err()
		}
		timer.Stop()
	}
}
