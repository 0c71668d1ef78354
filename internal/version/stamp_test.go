package version_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestStampedBinaries builds kvnode and kvctl the way `make release`
// stamps them (-X on this package's variables) and checks that --version
// prints what was stamped: the variable paths in the Makefile and the
// flag handling of both commands are what this guards.
func TestStampedBinaries(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if p, err := exec.LookPath("go"); err == nil {
		gobin = p
	}
	const pkg = "github.com/troupe-kv/troupe/internal/version"
	ldflags := "-X " + pkg + ".Version=v1.2.3-test -X " + pkg + ".Commit=0123abc"
	dir := t.TempDir()
	for _, cmd := range []string{"kvnode", "kvctl"} {
		bin := filepath.Join(dir, cmd)
		build := exec.Command(gobin, "build", "-ldflags", ldflags, "-o", bin, "github.com/troupe-kv/troupe/cmd/"+cmd)
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", cmd, err, out)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		want := cmd + " v1.2.3-test (commit 0123abc, " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
		if err != nil || string(out) != want {
			t.Errorf("%s --version = %q (%v), want %q", cmd, out, err, want)
		}
	}
}
