package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/internal/inproc"
)

// TestSnapshotCommands: save a snapshot through a follower, inspect it
// offline, restore it over changed data, and see a damaged file refused
// before it reaches the cluster; bare "snapshot" still compacts.
func TestSnapshotCommands(t *testing.T) {
	nodes := leaderFirst(t, startCluster(t, 3, inproc.Options{}))
	follower := nodes[1:]
	seed(t, nodes[0], "app/a", "1")
	seed(t, nodes[0], "app/b", "2")
	file := filepath.Join(t.TempDir(), "b.snap")

	r := on(t, follower, "snapshot", "save", file)
	r.succeeds(t)
	m := regexp.MustCompile(`^saved snapshot of index (\d+) to .*: 2 keys, \d+ bytes, sha256 [0-9a-f]{64}\n$`).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("save: %q", r.stdout)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*")); len(leftovers) != 0 {
		t.Fatalf("save left %v behind", leftovers)
	}

	r = kvctl(t, "", nil, "snapshot", "inspect", file)
	r.succeeds(t)
	for _, want := range []string{`Index +` + m[1] + `\n`, `Keys +2\n`, `Checksum +ok\n`, `Node +n\d\n`, `Term +\d+\n`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Fatalf("inspect lacks %q:\n%s", want, r.stdout)
		}
	}

	seed(t, nodes[0], "app/a", "changed")
	seed(t, nodes[0], "app/c", "new")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.snap")
	if err := os.WriteFile(bad, data[:len(data)-10], 0o600); err != nil {
		t.Fatal(err)
	}
	kvctl(t, "", nil, "snapshot", "inspect", bad).expectErr(t, 2, "truncated")
	on(t, follower, "snapshot", "restore", bad).expectErr(t, 2, "nothing was sent to the cluster")
	if v, _, _, _ := stored(t, nodes[0], "app/a"); v != "changed" {
		t.Fatalf("a refused restore changed app/a to %q", v)
	}

	r = on(t, follower, "snapshot", "restore", file)
	r.succeeds(t)
	if !strings.HasPrefix(r.stdout, "restored the snapshot of index "+m[1]+" (2 keys)") {
		t.Fatalf("restore: %q", r.stdout)
	}
	on(t, nodes, "get", "app/a").expect(t, 0, "1\n")
	on(t, nodes, "get", "app/c").expect(t, 1, "")

	r = on(t, nodes, "snapshot")
	r.succeeds(t)
	if !strings.HasPrefix(r.stdout, "snapshot taken at index ") {
		t.Fatalf("bare snapshot: %q", r.stdout)
	}
	on(t, nodes, "snapshot", "compact").succeeds(t)
}

// TestKVExportImport: export is consul kv export's JSON; import writes it
// back, is idempotent, and refuses a malformed file without writing.
func TestKVExportImport(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	seed(t, nodes[0], "app/a", "hello")
	on(t, nodes, "put", "--flags", "42", "app/b", "").succeeds(t)
	seed(t, nodes[0], "other", "x")

	r := on(t, nodes, "kv", "export", "app/")
	r.succeeds(t)
	want := "[\n\t{\n\t\t\"key\": \"app/a\",\n\t\t\"flags\": 0,\n\t\t\"value\": \"aGVsbG8=\"\n\t},\n\t{\n\t\t\"key\": \"app/b\",\n\t\t\"flags\": 42,\n\t\t\"value\": \"\"\n\t}\n]\n"
	if r.stdout != want {
		t.Fatalf("export:\n%s\nwant\n%s", r.stdout, want)
	}

	// 300 keys in batches of 128, from stdin; twice.
	var pairs []exportedPair
	for i := 0; i < 300; i++ {
		pairs = append(pairs, exportedPair{Key: "imp/" + strings.Repeat("k", i%7) + string(rune('a'+i%26)) + "/" + fmt.Sprint(i), Flags: uint64(i), Value: "dg=="})
	}
	in, _ := json.Marshal(pairs)
	for range 2 {
		r := kvctl(t, string(in), nil, "--addr", nodes[0].HTTPAddr, "kv", "import", "--batch", "128", "-")
		r.succeeds(t)
		if r.stdout != "imported 300 keys\n" {
			t.Fatalf("import: %q", r.stdout)
		}
	}
	var back []exportedPair
	decodeJSON(t, on(t, nodes, "kv", "export", "imp/"), &back)
	if len(back) != 300 {
		t.Fatalf("%d keys after importing 300 twice", len(back))
	}

	for _, body := range []string{
		"{", // not JSON
		`[{"key":"z/1","flags":0,"value":"dg=="},{"key":"z/2","flags":0,"value":"%%%"}]`, // bad base64
		`[{"key":"z/1","flags":0,"value":"dg==","session":"x"}]`,                         // an unknown field
		`[{"key":"z/1","flags":0,"value":"dg=="},{"flags":0,"value":"dg=="}]`,            // no key
	} {
		kvctl(t, body, nil, "--addr", nodes[0].HTTPAddr, "kv", "import").expectErr(t, 2, "nothing was written")
	}
	on(t, nodes, "get", "z/1").expect(t, 1, "")
}
