// Package version holds the build's version and commit, stamped at link
// time by `make release` and `make docker`:
//
//	go build -ldflags "-X github.com/troupe-kv/troupe/internal/version.Version=v1.2.3
//	                   -X github.com/troupe-kv/troupe/internal/version.Commit=abc1234"
//
// A plain `go build` leaves Version at "dev" and takes the commit from the
// VCS stamp Go embeds when it builds inside a git checkout. The package
// imports nothing of Troupe, so every layer may read it.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
)

// Version is the release this binary was built from (git describe), or
// "dev" for a build that was not stamped.
var Version = "dev"

// Commit is the git commit this binary was built from, set at link time;
// empty means unstamped (see Info).
var Commit = ""

// Build describes this binary: what `--version`, /v1/cluster/status and
// the troupe_build_info metric report.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go_version"`
}

var vcsCommit = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
})

// Info returns this binary's build. An unstamped Commit falls back to the
// revision Go recorded from the checkout, then to "unknown".
func Info() Build {
	commit := Commit
	if commit == "" {
		commit = vcsCommit()
	}
	if commit == "" {
		commit = "unknown"
	}
	return Build{Version: Version, Commit: commit, GoVersion: runtime.Version()}
}

// String is the one line `kvnode --version` and `kvctl --version` print
// after the program's name.
func (b Build) String() string {
	return fmt.Sprintf("%s (commit %s, %s %s/%s)", b.Version, b.Commit, b.GoVersion, runtime.GOOS, runtime.GOARCH)
}
