package testcluster

import (
	"fmt"
	"os"
)

// ToolTB lets a long-running tool (the chaos runner, the benchmark) drive
// the harness: a harness failure aborts the current step with an error the
// tool can handle, instead of failing a test. Wrap each call that may fail
// with a deferred Recover.
type ToolTB struct {
	dir    string
	logf   func(string, ...any)
	failed bool
}

// NewToolTB returns a ToolTB that keeps temporary files under dir.
func NewToolTB(dir string, logf func(string, ...any)) *ToolTB {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &ToolTB{dir: dir, logf: logf}
}

type harnessError struct{ msg string }

// Helper does nothing.
func (t *ToolTB) Helper() {}

// Logf logs through the tool's logger.
func (t *ToolTB) Logf(format string, args ...any) { t.logf(format, args...) }

// Cleanup does nothing: the tool cleans up itself.
func (t *ToolTB) Cleanup(func()) {}

// TempDir makes a directory under the tool's directory.
func (t *ToolTB) TempDir() string {
	d, _ := os.MkdirTemp(t.dir, "tmp")
	return d
}

// Failed reports whether a harness call failed.
func (t *ToolTB) Failed() bool { return t.failed }

// Fatal aborts the current step; Recover turns it into an error.
func (t *ToolTB) Fatal(args ...any) {
	t.failed = true
	panic(harnessError{fmt.Sprint(args...)})
}

// Fatalf aborts the current step with a formatted message.
func (t *ToolTB) Fatalf(format string, args ...any) { t.Fatal(fmt.Sprintf(format, args...)) }

// Recover, deferred, turns an aborted step into *err.
func (t *ToolTB) Recover(err *error) {
	if r := recover(); r != nil {
		if he, ok := r.(harnessError); ok {
			*err = fmt.Errorf("%s", he.msg)
			return
		}
		panic(r)
	}
}
