package client

import (
	"errors"
	"fmt"
	"strings"
)

// Outcome values, as the server's X-Troupe-Outcome header spells them. A
// caller deciding whether to resend a write needs exactly this distinction,
// not the HTTP status.
const (
	// OutcomeNotApplied means the request certainly had no effect: it never
	// reached a server, or a server refused it before replicating anything.
	// Sending it again, to any node, is safe.
	OutcomeNotApplied = "not-applied"
	// OutcomeUnknown means a write may or may not have been applied (the
	// connection broke after the request was sent, or the leader lost its
	// quorum mid-commit). Resending a CAS could apply it twice; read the key
	// back instead.
	OutcomeUnknown = "unknown"
)

// OutcomeHeader is the response header in which the server classifies a
// failed request; the client mirrors it into Error.Outcome.
const OutcomeHeader = "X-Troupe-Outcome"

// Error is every failure the client reports, so that callers can make retry
// decisions with errors.As instead of parsing messages.
type Error struct {
	// Status is the HTTP status, or 0 when no complete response arrived
	// (dial failure, reset connection, timeout).
	Status int
	// Message is the server's error text, or the transport error's.
	Message string
	// Outcome is OutcomeNotApplied or OutcomeUnknown. Reads are always
	// not-applied: they change nothing, whatever happened.
	Outcome string
	// Endpoint is the base URL of the node that produced the error (the
	// last one tried, after failover).
	Endpoint string
	// Code is the machine-readable code of the native endpoints' JSON
	// errors ("not-leader", "no-leader", "busy", "unknown-outcome"), empty
	// for the KV endpoints, which answer plain text as Consul does.
	Code string
	// Attempts is how many requests were made before giving up, so a
	// message can say that failover was tried.
	Attempts int
	// Err is the underlying transport error, if any, so errors.Is works
	// for context.DeadlineExceeded and friends.
	Err error
	// Previous is the last answer a server gave before the final attempt,
	// kept when that attempt got no answer at all (timeout, refused
	// connection): "no leader" from a live node explains more than the
	// deadline that cut the retry short.
	Previous *Error
}

// Error renders one line meant for humans: where, what and, when it matters,
// that the write may have happened.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Attempts > 1 {
		fmt.Fprintf(&b, "gave up after %d attempts, last: ", e.Attempts)
	}
	if e.Endpoint != "" {
		b.WriteString(strings.TrimPrefix(e.Endpoint, "http://"))
		b.WriteString(": ")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d: ", e.Status)
	}
	msg := e.Message
	if msg == "" {
		msg = "no error message"
	}
	b.WriteString(msg)
	// The server's own unknown-outcome message already says so.
	if e.Outcome == OutcomeUnknown && !strings.Contains(msg, "may or may not have been applied") {
		b.WriteString(" (outcome unknown: the write may or may not have been applied)")
	}
	if p := e.Previous; p != nil {
		fmt.Fprintf(&b, "; before that, %s answered HTTP %d: %s", strings.TrimPrefix(p.Endpoint, "http://"), p.Status, p.Message)
	}
	return b.String()
}

// Unwrap exposes the transport error so callers can test for
// context.DeadlineExceeded or net errors.
func (e *Error) Unwrap() error { return e.Err }

// IsNotApplied reports whether err certainly had no effect on the store, so
// the request may be sent again. A nil or foreign error is not classified.
func IsNotApplied(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Outcome == OutcomeNotApplied
}

// IsUnknownOutcome reports whether a failed write may nevertheless have been
// applied. Callers must not blindly resend a CAS in that case: read the key
// and compare its ModifyIndex instead.
func IsUnknownOutcome(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Outcome == OutcomeUnknown
}

// StatusCode returns the HTTP status behind err, or 0 when there was none,
// so callers can tell e.g. a 400 (their fault) from a 503 (the cluster's).
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}
