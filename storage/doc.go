// Package storage is Troupe's replicated state machine state: a bbolt file
// with the keys and their Consul-style indexes, tombstones of deleted keys,
// the registry of each node's HTTP address, and the index of the last applied
// log entry. It knows nothing of Raft, actors or HTTP: cluster/ feeds it
// committed commands, api/ reads from it.
package storage
