package localcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvKVNode names the environment variable that points tools and tests at
// a kvnode binary ('make test' sets it to bin/kvnode).
const EnvKVNode = "TROUPE_KVNODE"

// FindKVNode returns the kvnode binary to run: explicit when given, else
// $TROUPE_KVNODE, else a kvnode beside the running executable (so
// bin/troupe-chaos finds bin/kvnode wherever it is started from). Nothing
// is built: a binary that is not there is an error that says how to get one.
func FindKVNode(explicit string) (string, error) {
	if explicit != "" {
		return checkExecutable(explicit, "the given kvnode")
	}
	if p := os.Getenv(EnvKVNode); p != "" {
		return checkExecutable(p, EnvKVNode)
	}
	self, err := os.Executable()
	if err == nil {
		beside := filepath.Join(filepath.Dir(self), "kvnode")
		if _, statErr := os.Stat(beside); statErr == nil {
			return checkExecutable(beside, "the kvnode beside "+self)
		}
		err = fmt.Errorf("no kvnode beside %s", self)
	}
	return "", fmt.Errorf("no kvnode binary: %v; build one (make build, or go build -o bin/kvnode ./cmd/kvnode) and pass its path (--kvnode) or set %s", err, EnvKVNode)
}

// checkExecutable returns path made absolute, so that it still names the
// same file for a wrapped command or after a change of directory, once it
// is known to be an executable file.
func checkExecutable(path, what string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s (%s) does not exist; build it with make build (or go build -o bin/kvnode ./cmd/kvnode)", what, path)
	case err != nil:
		return "", err
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return "", fmt.Errorf("%s (%s) is not an executable file", what, path)
	}
	return abs, nil
}
