package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestClaimDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nested", "data")

	// A new directory is created and claimed.
	if err := claimDataDir(dir, "n1"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_id"))
	if err != nil || strings.TrimSpace(string(b)) != "n1" {
		t.Fatalf("node_id file %q (%v)", b, err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("data dir mode %v (%v), want private", fi.Mode(), err)
	}

	// The same node may come back.
	if err := claimDataDir(dir, "n1"); err != nil {
		t.Errorf("reclaiming by the owner: %v", err)
	}

	// Another node may not.
	err = claimDataDir(dir, "n2")
	if err == nil {
		t.Fatal("a directory owned by n1 was claimed by n2")
	}
	for _, want := range []string{"data_dir", `"n1"`, `"n2"`, dir} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	// The refusal leaves the claim as it was.
	if b, _ := os.ReadFile(filepath.Join(dir, "node_id")); strings.TrimSpace(string(b)) != "n1" {
		t.Errorf("node_id rewritten to %q", b)
	}

	// An existing directory with data but no claim yet (an older release) is
	// claimed.
	old := t.TempDir()
	os.WriteFile(filepath.Join(old, "kv.db"), []byte("x"), 0o600)
	if err := claimDataDir(old, "n3"); err != nil {
		t.Errorf("unclaimed directory: %v", err)
	}

	// An unreadable claim is an error, not a silent takeover.
	weird := t.TempDir()
	if err := os.Mkdir(filepath.Join(weird, "node_id"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := claimDataDir(weird, "n1"); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("node_id is a directory: %v", err)
	}

	// A data_dir that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if err := claimDataDir(filepath.Join(file, "sub"), "n1"); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("data_dir under a file: %v", err)
	}
}
