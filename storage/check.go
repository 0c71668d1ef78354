package storage

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DamagedError reports a state file that cannot be opened safely: cut
// short, with no valid metadata page, or with pages that point past its
// end. bbolt maps the file and would stop the whole process with a memory
// fault when it touches such a page; checking first turns that into an
// error that names the file.
type DamagedError struct {
	Path string
	Err  error
}

// Error names the file and what is wrong with it.
func (e *DamagedError) Error() string {
	if c, ok := e.Err.(*CorruptError); ok {
		return fmt.Sprintf("state file %s is damaged: %s", e.Path, c.detail())
	}
	return fmt.Sprintf("state file %s is damaged: %v", e.Path, e.Err)
}

// Unwrap returns the cause.
func (e *DamagedError) Unwrap() error { return e.Err }

// checkWhole checks, before the state file is opened for writing, that
// it is whole: bbolt can read its metadata (which it validates with a
// checksum), the file holds every page the metadata says is in use, and
// every value passes its seal (verifyState). bbolt has no checksums on
// its data pages: a damaged value found only when a client asks for it
// would be a wrong answer waiting to happen, and a damaged page met by
// the freelist rebuild of a writable open stops the process from one of
// bbolt's own goroutines. The pass over the file costs about what that
// rebuild costs anyway. A missing or empty file is fine: bbolt creates it.
func checkWhole(path string) error {
	fi, err := os.Stat(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	if err := checkPages(path); err != nil {
		return &DamagedError{Path: path, Err: err}
	}
	_, err = openGuarded(path, func() (struct{}, error) {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return struct{}{}, err
		}
		defer db.Close()
		return struct{}{}, db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return fmt.Errorf("truncated: %d bytes, but its metadata says %d", fi.Size(), tx.Size())
			}
			_, err := verifyState(tx, path, fi.Size())
			return err
		})
	})
	if err != nil {
		if _, ok := err.(*DamagedError); ok {
			return err
		}
		var cerr *CorruptError
		if errors.As(err, &cerr) {
			err = cerr
		}
		return &DamagedError{Path: path, Err: err}
	}
	return nil
}

// openGuarded runs open with memory faults turned into panics, and those
// into a DamagedError, so a page that points past the end of the file
// stops the open, not the process.
func openGuarded[T any](path string, open func() (T, error)) (v T, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &DamagedError{Path: path, Err: fmt.Errorf("reading it failed: %v", r)}
		}
	}()
	return open()
}
