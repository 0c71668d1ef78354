package peerlink

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"

	"github.com/troupe-kv/troupe/storage"
)

// Paths of the forwarding protocol. They exist only on the peer channel;
// the client port has no such routes.
const (
	pathApply      = "/apply"
	pathApplyBatch = "/apply-batch"
	pathReadIndex  = "/read-index"
	pathPing       = "/ping"
	pathMembership = "/membership"
	// pathSessionRenew renews a session on the leader: the body is the
	// session id. A renewal is no Raft entry: it resets the leader's
	// timer, and only the leader keeps timers.
	pathSessionRenew = "/session-renew"
	// pathSnapshotRestore takes a backup (storage's format) as a stream
	// for the leader to restore; the client's token travels in
	// tokenHeader.
	pathSnapshotRestore = "/snapshot-restore"
)

// tokenHeader carries a client's ACL token on a forwarded request.
const tokenHeader = "X-Consul-Token"

// sessionRenewReply answers a renewal: the session as stored, or Found
// false when there is no such session.
type sessionRenewReply struct {
	Found   bool            `json:"found"`
	Session storage.Session `json:"session"`
}

// applyReply answers one forwarded write.
type applyReply struct {
	Index uint64 `json:"index"`
	OK    bool   `json:"ok"`
	// Txn is a transaction's outcome, computed by the leader's state
	// machine; absent for every other command.
	Txn *storage.TxnResult `json:"txn,omitempty"`
}

// readIndexReply answers a read-index request.
type readIndexReply struct {
	Index uint64 `json:"index"`
}

// PingReply answers a probe: the callee's node id, and why its client
// port cannot serve, if it cannot (descriptors exhausted, at its
// connection limit): a node whose peers hear it fine may still be
// useless to clients, and its peers should say so.
type PingReply struct {
	ID string `json:"id"`
	// HTTPAddr is the client address the callee advertises.
	HTTPAddr        string `json:"http_addr,omitempty"`
	ClientPortError string `json:"client_port_error,omitempty"`
	// DiskError is why the callee cannot write its Raft log, if it cannot.
	DiskError string `json:"disk_error,omitempty"`
	// Version is the release the callee runs (internal/version); empty
	// from a node older than the field.
	Version string `json:"version,omitempty"`
	// StateCheck is the callee's newest hash of its state at a
	// checkpoint, so every node can compare its own with the others'.
	StateCheck *StateCheck `json:"state_check,omitempty"`
	// AppliedIndex is the last log index the callee's state machine has
	// applied: the leader promotes a non-voter only once it has caught
	// up. 0 from a node older than the field.
	AppliedIndex uint64 `json:"applied_index,omitempty"`
}

// StateCheck is a node's hash of its whole state as of one checkpoint
// (a log index every node applies): nodes that applied the same log hold
// the same state, so their hashes at one index agree.
type StateCheck struct {
	Index uint64 `json:"index"`
	Hash  string `json:"hash"`
}

// JoinRequest adds a member: its node id and the Raft address its peers
// reach it at, and whether it votes. The new node registers its own
// client address once it is a member; no other node may do that for it.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// Suffrage is SuffrageVoter (also when empty) or SuffrageNonvoter: a
	// non-voter replicates the log and serves reads but does not count
	// towards any quorum, until it is promoted.
	Suffrage string `json:"suffrage,omitempty"`
}

// The suffrages a member can have (JoinRequest.Suffrage).
const (
	SuffrageVoter    = "voter"
	SuffrageNonvoter = "nonvoter"
)

// Nonvoter reports whether the request adds a non-voting member.
func (j *JoinRequest) Nonvoter() bool { return j.Suffrage == SuffrageNonvoter }

// MembershipRequest is a membership change, made by the leader on behalf
// of a client: exactly one of Join, Remove and Promote is set. Promote
// names a non-voter to make a voter. Token is the client's ACL token, so
// the leader can check it again when a member passes the change on.
// Force skips the check that the change leaves the reachable voters a
// quorum, and (for Promote) the check that the non-voter has caught up.
type MembershipRequest struct {
	Join    *JoinRequest `json:"join,omitempty"`
	Remove  string       `json:"remove,omitempty"`
	Promote string       `json:"promote,omitempty"`
	// TransferLeader asks the leader to hand leadership over (Consul's
	// operator transfer-leader); it changes no membership.
	TransferLeader *TransferRequest `json:"transfer_leader,omitempty"`
	Token          string           `json:"token,omitempty"`
	Force          bool             `json:"force,omitempty"`
}

// TransferRequest names the voter to hand leadership to; To empty lets
// the leader pick a live one.
type TransferRequest struct {
	To string `json:"to,omitempty"`
}

// validate checks that exactly one change is asked for.
func (m MembershipRequest) validate() error {
	n := 0
	for _, set := range []bool{m.Join != nil, m.Remove != "", m.Promote != "", m.TransferLeader != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("a membership request names exactly one of join, remove, promote and transfer_leader")
	}
	if m.Join != nil && m.Join.Suffrage != "" && m.Join.Suffrage != SuffrageVoter && m.Join.Suffrage != SuffrageNonvoter {
		return fmt.Errorf("suffrage %q must be %s or %s", m.Join.Suffrage, SuffrageVoter, SuffrageNonvoter)
	}
	return nil
}

// MaxBatch is the most commands one forwarded batch may carry, and
// MaxBatchBytes the most bytes a follower puts in one (a single command
// may exceed it and then travels alone).
const (
	MaxBatch      = 1024
	MaxBatchBytes = 4 << 20
)

// encodeBatch frames encoded commands: each is a uvarint length followed
// by the command.
func encodeBatch(cmds [][]byte) []byte {
	n := 0
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	b := make([]byte, 0, n)
	for _, c := range cmds {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	return b
}

// decodeBatch splits an encodeBatch body. The commands alias b.
func decodeBatch(b []byte) ([][]byte, error) {
	var cmds [][]byte
	for len(b) > 0 {
		if len(cmds) == MaxBatch {
			return nil, fmt.Errorf("batch holds more than %d commands", MaxBatch)
		}
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, errors.New("malformed batch framing")
		}
		cmds = append(cmds, b[k:k+int(n)])
		b = b[k+int(n):]
	}
	return cmds, nil
}

// BatchItemReply is the leader's answer for one command of a batch.
type BatchItemReply struct {
	Index uint64             `json:"index,omitempty"`
	OK    bool               `json:"ok,omitempty"`
	Txn   *storage.TxnResult `json:"txn,omitempty"` // as in applyReply
	Code  string             `json:"code,omitempty"`
	Error string             `json:"error,omitempty"`
	// Status is the HTTP-like status of a refusal without a code (a
	// command the sender may not send is 403, a malformed one 400).
	Status int `json:"status,omitempty"`
}

// Result turns the reply back into the command's result or error.
func (r BatchItemReply) Result() (storage.Result, error) {
	if r.Error != "" {
		if r.Code == "" {
			return storage.Result{}, &RemoteError{Status: cmp.Or(r.Status, http.StatusBadRequest), Message: r.Error}
		}
		return storage.Result{}, errorFromCode(r.Code, r.Error)
	}
	return storage.Result{Index: r.Index, OK: r.OK, Txn: r.Txn}, nil
}

// ReplyFor is the batch reply for one command's outcome.
func ReplyFor(res storage.Result, err error) BatchItemReply {
	if err != nil {
		r := BatchItemReply{Code: ErrorCode(err), Error: err.Error()}
		var re *RemoteError
		if r.Code == "" && errors.As(err, &re) {
			r.Status = re.Status
		}
		return r
	}
	return BatchItemReply{Index: res.Index, OK: res.OK, Txn: res.Txn}
}
