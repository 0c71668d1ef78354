// Package client talks to a Troupe cluster over its HTTP API (Consul's KV
// dialect plus the native /v1/cluster endpoints).
//
// It exists so that kvctl, the tests, the chaos suite and the benchmarks all
// share one answer to the question a Raft-backed store forces on every
// caller: when a request fails, did it happen? Every failure is an *Error
// whose Outcome says whether the request certainly had no effect
// (OutcomeNotApplied, safe to send again anywhere) or may have been applied
// (OutcomeUnknown, which a CAS caller must resolve by reading back). The
// client fails over to another endpoint only when that is safe: reads on any
// transport error or 5xx, writes only when the outcome is not-applied.
//
// Some answers are one node's own view: Status and Health say which node
// answered. The fault-injection calls (Faults, SetFaults, ClearFaults,
// Crash) act on one node only, so they take that node's endpoint and never
// fail over; a node without --chaos makes them fail with ErrChaosDisabled.
//
// WithTLS makes every request use TLS (bare host:port endpoints become
// https); package certs builds the configuration from PEM files.
package client
