package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

func TestTxnCommand(t *testing.T) {
	nodes := startCluster(t, 1, inproc.Options{})
	nd := nodes[0]
	addr := []string{"--addr", nd.HTTPAddr}
	run := func(stdin string, args ...string) result {
		t.Helper()
		return kvctl(t, stdin, nil, append(addr, args...)...)
	}
	idx := seed(t, nd, "tx/b", "old")

	t.Run("writes from stdin", func(t *testing.T) {
		ops := `[{"KV":{"Verb":"set","Key":"tx/a","Value":"MQ=="}},
		         {"KV":{"Verb":"cas","Key":"tx/b","Value":"bmV3","Index":` + itoa(idx) + `}},
		         {"KV":{"Verb":"get","Key":"tx/a"}}]`
		r := run(ops, "txn")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("%+v", r)
		}
		_, _, mod, _ := stored(t, nd, "tx/a")
		want := "applied 3 operations (index " + itoa(mod) + ")\n" + table([]string{"KEY", "VALUE"}, []string{"tx/a", ""}, []string{"tx/b", ""}, []string{"tx/a", "1"})
		if r.stdout != want {
			t.Fatalf("stdout\n%s\nwant\n%s", r.stdout, want)
		}
		if v, _, bmod, _ := stored(t, nd, "tx/b"); v != "new" || bmod != mod {
			t.Fatalf("tx/b = %q at %d, want new at the txn's %d", v, bmod, mod)
		}
	})

	t.Run("reads from a file, stale", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "ops.json")
		if err := os.WriteFile(f, []byte(`[{"KV":{"Verb":"get-tree","Key":"tx/"}}]`), 0o600); err != nil {
			t.Fatal(err)
		}
		run("", "txn", "--stale", f).expect(t, 0, table([]string{"KEY", "VALUE"}, []string{"tx/a", "1"}, []string{"tx/b", "new"}))
		run("", "txn", f).expect(t, 0, table([]string{"KEY", "VALUE"}, []string{"tx/a", "1"}, []string{"tx/b", "new"}))
	})

	t.Run("rollback", func(t *testing.T) {
		_, _, before, _ := stored(t, nd, "tx/a")
		r := run(`[{"KV":{"Verb":"set","Key":"tx/a","Value":"Mg=="}},{"KV":{"Verb":"check-index","Key":"tx/b","Index":1}}]`, "txn")
		r.expectErr(t, 1, `transaction rolled back, nothing applied: op 1 (check-index tx/b): failed index check for key "tx/b"`)
		if v, _, mod, _ := stored(t, nd, "tx/a"); v != "1" || mod != before {
			t.Fatalf("rolled back txn wrote tx/a: %q at %d", v, mod)
		}
		// -o json prints the server's answer, and still exits 1.
		r = run(`[{"KV":{"Verb":"get","Key":"tx/none"}}]`, "-o", "json", "txn")
		var resp client.TxnResponse
		decodeJSON(t, r, &resp)
		if r.code != 1 || len(resp.Errors) != 1 || !strings.Contains(resp.Errors[0].What, `"tx/none" doesn't exist`) {
			t.Fatalf("%+v %+v", r, resp)
		}
	})

	t.Run("json success", func(t *testing.T) {
		r := run(`[{"KV":{"Verb":"get","Key":"tx/b"}}]`, "-o", "json", "txn")
		var resp client.TxnResponse
		decodeJSON(t, r, &resp)
		if r.code != 0 || len(resp.Results) != 1 || string(resp.Results[0].KV.Value) != "new" {
			t.Fatalf("%+v %+v", r, resp)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		run("not json", "txn").expectErr(t, 2, "stdin: not a transaction in /v1/txn's JSON form")
		run(`[{"KV":{"Verb":"get","Key":"a","Valeu":""}}]`, "txn").expectErr(t, 2, "Valeu")
		run(`[{"KV":{"Verb":"get","Key":"a"},"Node":null,"Service":null,"Check":null},{"Node":{}}]`, "txn").expectErr(t, 2, "operation 1 is a catalog operation")
		run(`[{}]`, "txn").expectErr(t, 2, "operation 0 has no KV member")
		run("", "txn", filepath.Join(t.TempDir(), "missing.json")).expectErr(t, 2, "no such file")
		// The server's 400 for an unknown verb, with its reason.
		r := run(`[{"KV":{"Verb":"put","Key":"tx/a"}}]`, "txn")
		if r.code != 2 || !regexp.MustCompile(`400.*unknown KV operation "put"`).MatchString(r.stderr) {
			t.Fatalf("%+v", r)
		}
		if v, _, _, _ := stored(t, nd, "tx/a"); v != "1" {
			t.Fatalf("tx/a changed to %q", v)
		}
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
