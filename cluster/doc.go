// Package cluster runs Troupe's Raft: hashicorp/raft over TCP with its log
// in segment files (hashicorp/raft-wal, under wal/), file snapshots,
// bootstrap from a static member list, membership changes, linearizable
// read indexes, and one-hop forwarding of writes and read-index requests
// from followers to the leader. It drives the state machine in storage and
// knows nothing of actors or HTTP handlers.
package cluster
