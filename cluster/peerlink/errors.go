package peerlink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/troupe-kv/troupe/storage"
)

// Errors that cross the channel. They say whether a write may have been
// applied, which is what a client needs to know to retry safely; package
// cluster re-exports them as its own.
var (
	// ErrNotLeader: this node is not the leader; nothing was applied.
	ErrNotLeader = errors.New("this node is not the leader")
	// ErrNoLeader: no leader is known or reachable (no quorum, or an election
	// is running); nothing was applied.
	ErrNoLeader = errors.New("no leader: the cluster has no quorum or is electing one")
	// ErrUnknownOutcome: the write was handed to Raft but its fate is
	// unknown (leadership was lost, or the node stopped); it may still commit.
	ErrUnknownOutcome = errors.New("outcome unknown: the write may or may not have been applied")
	// ErrBusy: too many requests are in flight; nothing was applied.
	ErrBusy = errors.New("node is overloaded, try again")
)

// Error codes carried between nodes, one per sentinel error.
const (
	codeNotLeader = "not-leader"
	codeNoLeader  = "no-leader"
	codeUnknown   = "unknown-outcome"
	codeBusy      = "busy"
	// codeNoSpace is storage.ErrNoSpace: the write was refused, nothing
	// applied, because a NOSPACE alarm is raised.
	codeNoSpace = "nospace"
)

// ErrorCode names err for the wire; "" for errors without a code.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, ErrNotLeader):
		return codeNotLeader
	case errors.Is(err, ErrNoLeader):
		return codeNoLeader
	case errors.Is(err, ErrUnknownOutcome):
		return codeUnknown
	case errors.Is(err, ErrBusy):
		return codeBusy
	case errors.Is(err, storage.ErrNoSpace):
		return codeNoSpace
	}
	return ""
}

// errorFromCode turns a wire error code back into the sentinel error.
func errorFromCode(code, msg string) error {
	switch code {
	case codeNotLeader:
		return ErrNotLeader
	case codeNoLeader:
		return ErrNoLeader
	case codeUnknown:
		return fmt.Errorf("%w (at the leader: %s)", ErrUnknownOutcome, msg)
	case codeBusy:
		return ErrBusy
	case codeNoSpace:
		return &remoteNoSpace{msg: msg}
	}
	return errors.New(msg)
}

// RemoteError is a refusal from the leader that carries no error code,
// e.g. a 413 because the leader's value limit is smaller than this node's,
// or a 403 for a command the sender may not send. A 4xx from the leader
// means it did not apply anything.
type RemoteError struct {
	Status  int
	Message string
}

// Error names the leader's status and message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("the leader answered %d: %s", e.Status, e.Message)
}

// errorBody is the JSON body of a failed request.
type errorBody struct {
	Code  string `json:"code,omitempty"`
	Error string `json:"error"`
}

// remoteError turns a non-200 answer into an error: one of the sentinel
// errors when the body carries a code, a *RemoteError otherwise.
func remoteError(status int, body []byte) error {
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		switch eb.Code {
		case codeNotLeader, codeNoLeader, codeUnknown, codeBusy, codeNoSpace:
			return errorFromCode(eb.Code, eb.Error)
		}
		return &RemoteError{Status: status, Message: eb.Error}
	}
	return &RemoteError{Status: status, Message: string(bytes.TrimSpace(body))}
}

// remoteNoSpace is the leader's refusal of a write while a NOSPACE alarm
// is raised, carried between nodes: its message is the leader's, naming
// the alarms, and it still matches storage.ErrNoSpace.
type remoteNoSpace struct{ msg string }

func (e *remoteNoSpace) Error() string { return e.msg }
func (e *remoteNoSpace) Unwrap() error { return storage.ErrNoSpace }
