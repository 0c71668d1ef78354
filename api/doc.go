// Package api is Troupe's HTTP interface: Consul's KV and status endpoints
// (so Consul's clients and tools work unchanged), Troupe's own cluster
// endpoints, and the internal endpoints followers use to reach the leader.
// It reaches the node only through the Backend interface.
package api
