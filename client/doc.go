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
package client
