package actors

import (
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/storage"
)

// The messages of the tree are unexported: outside the package, Client is
// the only way in, so the protocol between actors can change without
// touching the HTTP layer.

// asked is embedded in every request the tree answers. The answer goes
// into reply, a channel with room for exactly one: the actor never waits
// for a requester that may have given up, and no future has to be
// registered per request (protoactor's futures cost a registry entry and
// a timer each, which showed in read latency).
type asked struct {
	reply chan any
}

func newAsked() asked { return asked{reply: make(chan any, 1)} }

// answer delivers the answer to the request. There is one; should a bug
// answer twice, the second is dropped rather than block an actor.
func (a asked) answer(v any) {
	select {
	case a.reply <- v:
	default:
	}
}

// answerer is any request; an actor that cannot serve requests at all
// answers whatever it was asked with an error.
type answerer interface{ answer(any) }

// propose asks the raft actor to replicate an encoded storage.Command. The
// leader proposes it; a follower hands it to the forward actor, which
// carries it to the leader. The reply is a *proposeResult.
type propose struct {
	asked
	data     []byte
	deadline time.Time
	// fromPeer marks a command another node forwarded: only a leader takes
	// it, and it is never forwarded again, so forwarding is one hop.
	fromPeer bool
}

// proposeResult answers a propose. leaderChanged, set with a "no leader"
// error, closes at the next leader change: the moment to try again.
type proposeResult struct {
	res           storage.Result
	err           error
	leaderChanged <-chan struct{}
}

// readIndex asks for an index every write acknowledged before the request
// is at or below (see cluster.Node.ReadIndex). The reply is a
// *readIndexResult.
type readIndex struct {
	asked
	deadline time.Time
	fromPeer bool
}

type readIndexResult struct {
	index         uint64
	err           error
	leaderChanged <-chan struct{}
}

// membership asks for a member to be added or removed through the leader
// (see peerlink.MembershipRequest). The reply is a *done.
type membership struct {
	asked
	req      peerlink.MembershipRequest
	deadline time.Time
	fromPeer bool
}

// done answers requests that return nothing but an error.
type done struct {
	err           error
	leaderChanged <-chan struct{}
}

// getStatus, getMembers and getReady are answered at once by the raft
// actor from its Raft instance.
type (
	getStatus  struct{ asked }
	getMembers struct{ asked }
	getReady   struct{ asked }
)

type statusReply struct {
	status cluster.Status
	err    error
}

type membersReply struct {
	members []cluster.Member
	index   uint64 // of the configuration
	err     error
}

// takeSnapshot asks the raft actor to snapshot now. The reply is a
// *snapshotTaken.
type takeSnapshot struct{ asked }

type snapshotTaken struct {
	index uint64
	err   error
}

// transferLeadership asks a leading raft actor to hand over before the
// node stops. The reply is a *handedOver.
type transferLeadership struct{ asked }

// handedOver answers transferLeadership: wasLeader says whether this node
// led when asked, to the voter that took over (when known), term the term
// this node led in.
type handedOver struct {
	wasLeader bool
	to        string
	term      uint64
	err       error
}

// getHealth asks the peers actor for a *cluster.Health.
type getHealth struct{ asked }

// crash makes the receiving actor fail on purpose, so supervision can be
// exercised from outside (chaos mode only). fault names how (see
// CrashFaults).
type crash struct {
	fault  string
	reason string
}

// giveUp tells the node actor to stop the node for good: a failure no
// restart can cure.
type giveUp struct {
	err error
}
