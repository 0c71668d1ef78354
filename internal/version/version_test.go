package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestInfoDefaults(t *testing.T) {
	b := Info()
	if b.Version != Version || b.GoVersion != runtime.Version() || b.Commit == "" {
		t.Fatalf("Info() = %+v", b)
	}
}

func TestInfoStamped(t *testing.T) {
	oldV, oldC := Version, Commit
	t.Cleanup(func() { Version, Commit = oldV, oldC })
	Version, Commit = "v9.8.7", "abcdef0"
	b := Info()
	if b.Version != "v9.8.7" || b.Commit != "abcdef0" {
		t.Fatalf("Info() = %+v", b)
	}
	s := b.String()
	for _, want := range []string{"v9.8.7", "commit abcdef0", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %q, lacks %q", s, want)
		}
	}
}
