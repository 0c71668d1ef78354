//go:build !linux

package cluster

// TrimLogMemory does nothing where the Raft log's mapping cannot be found
// (see the Linux version).
func TrimLogMemory(dataDir string) {}
