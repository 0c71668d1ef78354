//go:build race

package storage

// raceEnabled: the race detector slows long tests down tenfold.
const raceEnabled = true
