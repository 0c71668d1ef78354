package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// stateFileWith writes a state file with n keys and returns its path.
func stateFileWith(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kv.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var batch []Applied
	for i := 0; i < n; i++ {
		batch = append(batch, Applied{Index: uint64(i + 1), Cmd: &Command{Op: OpSet, Key: fmt.Sprintf("k%05d", i), Value: make([]byte, 200)}})
	}
	if _, err := s.ApplyBatch(batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDamagedStateFileIsReported: a state file cut short or overwritten
// is refused with an error naming it, never with a crash; the file is
// left as it was for the operator.
func TestDamagedStateFileIsReported(t *testing.T) {
	for name, damage := range map[string]func(t *testing.T, path string){
		"truncated to half of what is in use": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var used int64
			db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
			db.Close()
			if err := os.Truncate(path, used/2); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to one page": func(t *testing.T, path string) {
			if err := os.Truncate(path, 4096); err != nil {
				t.Fatal(err)
			}
		},
		"random bytes": func(t *testing.T, path string) {
			b := make([]byte, 64<<10)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"both metadata pages zeroed": func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt(make([]byte, 2*4096), 0); err != nil {
				t.Fatal(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			path := stateFileWith(t, 2000)
			damage(t, path)
			before, _ := os.ReadFile(path)
			s, err := Open(path)
			if err == nil {
				s.Close()
				t.Fatal("a damaged state file was opened")
			}
			var de *DamagedError
			if !errors.As(err, &de) || de.Path != path || !strings.Contains(err.Error(), path) {
				t.Fatalf("error %T %v, want a DamagedError naming %s", err, err, path)
			}
			if after, _ := os.ReadFile(path); string(after) != string(before) {
				t.Fatal("the damaged file was changed")
			}
		})
	}
	// A whole file still opens, and an empty one is a new store.
	s, err := Open(stateFileWith(t, 10))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	empty := filepath.Join(t.TempDir(), "kv.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(empty); err != nil {
		t.Fatalf("empty file: %v", err)
	}
	s.Close()
}
