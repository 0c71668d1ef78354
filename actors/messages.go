package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupe-kv/troupe/storage"
)

// Propose asks the raft actor to replicate an encoded storage.Command. The
// reply is a *ProposeResult, sent once the command is applied or has failed.
type Propose struct {
	Data []byte
}

// ProposeResult answers a Propose.
type ProposeResult struct {
	Result storage.Result
	Err    error
}

// ReadIndex asks the raft actor for a linearizable read index. Requests
// arriving together share one leadership confirmation. The reply is a
// *ReadIndexResult.
type ReadIndex struct{}

// ReadIndexResult answers a ReadIndex.
type ReadIndexResult struct {
	Index uint64
	Err   error
}

// Join asks the raft actor (on the leader) to add a voting member and record
// its HTTP address. The reply is a *Done.
type Join struct {
	ID       string
	RaftAddr string
	HTTPAddr string
}

// Remove asks the raft actor (on the leader) to remove a member. The reply
// is a *Done.
type Remove struct {
	ID string
}

// TakeSnapshot asks the raft actor to snapshot now. The reply is a
// *SnapshotTaken.
type TakeSnapshot struct{}

// SnapshotTaken answers a TakeSnapshot.
type SnapshotTaken struct {
	Index uint64
	Err   error
}

// Done answers requests that return nothing but an error.
type Done struct {
	Err error
}

// Crash makes the receiving actor panic, so supervision can be exercised
// from outside (chaos mode only).
type Crash struct {
	Reason string
}

// readRoundDone reports the end of one shared read-index confirmation.
type readRoundDone struct {
	round   *readRound
	index   uint64
	err     error
	waiters []*actor.PID
}

type readRound struct{}

// serveFailed tells the http actor that its server stopped on its own.
type serveFailed struct {
	err error
}

// childGaveUp tells main, through the app actor, that the node stopped for
// good.
type nodeStopped struct{}
