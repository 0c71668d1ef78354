// Package chaos is Troupe's fault-injection test suite: a workload of
// concurrent clients on a small key set records every operation with its
// outcome (ok, failed or unknown), nemeses kill, pause and partition nodes
// on a seeded schedule while it runs, and checkers decide afterwards
// whether the history was linearizable (porcupine, key by key), whether any
// acknowledged write was lost, and how available the cluster stayed.
package chaos
