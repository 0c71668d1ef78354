package cluster

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// benchStores are the log with and without checksums, over real raft-wal
// directories, so one run compares them.
func benchStores(b *testing.B) map[string]logStore {
	raw := filepath.Join(b.TempDir(), walDirName)
	if err := os.MkdirAll(raw, 0o700); err != nil {
		b.Fatal(err)
	}
	w, err := openWAL(raw, 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := openLogStore(b.TempDir(), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { w.Close(); c.Close() })
	return map[string]logStore{"raw": w, "checked": c}
}

// benchBatch is a batch as the leader writes it under load: 64 commands
// of about 100 bytes.
func benchBatch(from uint64) []*raft.Log {
	logs := make([]*raft.Log, 64)
	for i := range logs {
		logs[i] = &raft.Log{Index: from + uint64(i), Term: 1, Type: raft.LogCommand, Data: setCmd(fmt.Sprintf("bench/key/%08d", from+uint64(i)), "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")}
	}
	return logs
}

// BenchmarkLogStoreLogs: one batch of 64 entries per op, with its fsync.
func BenchmarkLogStoreLogs(b *testing.B) {
	for _, name := range []string{"raw", "checked"} {
		b.Run("log="+name, func(b *testing.B) {
			s := benchStores(b)[name]
			next := uint64(1)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.StoreLogs(benchBatch(next)); err != nil {
					b.Fatal(err)
				}
				next += 64
			}
		})
	}
}

// BenchmarkLogGetLog: one entry read back per op (not in raft's cache:
// what a follower catching up, or a restart's replay, costs).
func BenchmarkLogGetLog(b *testing.B) {
	const n = 64 * 64
	for _, name := range []string{"raw", "checked"} {
		b.Run("log="+name, func(b *testing.B) {
			s := benchStores(b)[name]
			for i := uint64(1); i <= n; i += 64 {
				if err := s.StoreLogs(benchBatch(i)); err != nil {
					b.Fatal(err)
				}
			}
			var l raft.Log
			i := uint64(0)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.GetLog(1+i%n, &l); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkLogOpen: opening a log of n entries, as a node does at every
// start: raft-wal alone ("raw"), and with every entry read and verified
// ("verified", what Open does). 18432 is the most the default timing
// keeps between snapshots (SnapshotThreshold 8192 + TrailingLogs 10240).
func BenchmarkLogOpen(b *testing.B) {
	for _, n := range []uint64{DefaultTiming().SnapshotThreshold + DefaultTiming().TrailingLogs, 100_000} {
		dir := b.TempDir()
		s, err := openLogStore(dir, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		for i := uint64(1); i <= n; i += 64 {
			if err := s.StoreLogs(benchBatch(i)); err != nil {
				b.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("entries=%d/log=raw", n), func(b *testing.B) {
			for b.Loop() {
				w, err := openWAL(filepath.Join(dir, walDirName), 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				w.Close()
			}
		})
		b.Run(fmt.Sprintf("entries=%d/log=verified", n), func(b *testing.B) {
			for b.Loop() {
				c, err := openLogStore(dir, 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkLogChecksum: the checksum's own CPU per entry of the batch
// above, without the disk: computing the trailer (StoreLogs) and checking
// it (GetLog).
func BenchmarkLogChecksum(b *testing.B) {
	l := benchBatch(1)[0]
	var h sumHeader
	ext := appendTrailer(nil, l, &h)
	b.Run("trailer", func(b *testing.B) {
		buf := make([]byte, 0, trailerLen)
		for b.Loop() {
			buf = appendTrailer(buf[:0], l, &h)
		}
	})
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			if entrySum(l, ext[:0], &h) != binary.LittleEndian.Uint32(ext[trailerLen-4:]) {
				b.Fatal("mismatch")
			}
		}
	})
}
