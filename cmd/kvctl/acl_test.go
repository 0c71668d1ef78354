package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// The ACL workflow end to end through kvctl, on a 3-node cluster with ACLs
// on: bootstrap, a policy from a file, a token for it, the token used from
// each of the three sources, and what it may not do.
func TestACLCommands(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{ACLEnabled: true})
	addr := "--addr=" + strings.Join(inproc.Addrs(nodes), ",")
	run := func(env map[string]string, args ...string) result {
		t.Helper()
		return kvctl(t, "", env, append([]string{addr}, args...)...)
	}

	// Without a token nothing works, and kvctl says why.
	run(nil, "put", "app/x", "1").expectErr(t, 2, "ACL not found")

	var boot client.ACLToken
	decodeJSON(t, run(nil, "-o", "json", "acl", "bootstrap"), &boot)
	if boot.SecretID == "" || len(boot.Policies) != 1 || boot.Policies[0].Name != "global-management" {
		t.Fatalf("bootstrap token %+v", boot)
	}
	run(nil, "acl", "bootstrap").expectErr(t, 2, "ACL bootstrap no longer allowed")
	mgmt := map[string]string{envToken: boot.SecretID}

	rules := filepath.Join(t.TempDir(), "app.hcl")
	if err := os.WriteFile(rules, []byte("key_prefix \"app/\" {\n  policy = \"write\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var pol client.ACLPolicy
	decodeJSON(t, run(mgmt, "-o", "json", "acl", "policy", "create", "app-rw", "--rules-file", rules, "--description", "app"), &pol)
	if pol.ID == "" || pol.Name != "app-rw" || !strings.Contains(pol.Rules, `key_prefix "app/"`) {
		t.Fatalf("policy %+v", pol)
	}
	run(mgmt, "acl", "policy", "create", "bad", "--rules", `key "a" { policy = "sudo" }`).expectErr(t, 2, "invalid policy")
	if out := run(mgmt, "acl", "policy", "read", "app-rw"); !strings.Contains(out.stdout, pol.ID) {
		t.Fatalf("policy read by name: %+v", out)
	}
	if out := run(mgmt, "acl", "policy", "list"); !strings.Contains(out.stdout, "global-management") || !strings.Contains(out.stdout, "app-rw") {
		t.Fatalf("policy list: %+v", out)
	}

	var tok client.ACLToken
	decodeJSON(t, run(mgmt, "-o", "json", "acl", "token", "create", "--policy-name", "app-rw", "--description", "app servers"), &tok)
	if tok.SecretID == "" || tok.AccessorID == "" {
		t.Fatalf("token %+v", tok)
	}
	run(mgmt, "acl", "token", "create").expectErr(t, 2, "--policy-name")

	// The token from the flag, from TROUPE_TOKEN and from CONSUL_HTTP_TOKEN;
	// the flag wins over the environment.
	run(nil, "--token", tok.SecretID, "put", "app/x", "1").succeeds(t)
	run(map[string]string{envToken: tok.SecretID}, "put", "app/y", "2").succeeds(t)
	run(map[string]string{envConsulToken: tok.SecretID}, "get", "app/y").expect(t, 0, "2\n")
	run(map[string]string{envToken: "bogus"}, "--token", tok.SecretID, "get", "app/x").expect(t, 0, "1\n")
	run(map[string]string{envToken: tok.SecretID, envConsulToken: "bogus"}, "get", "app/x").expect(t, 0, "1\n")

	// What it may not do: another prefix, the cluster, the ACLs.
	app := map[string]string{envToken: tok.SecretID}
	run(app, "put", "other/x", "1").expectErr(t, 2, "Permission denied")
	run(app, "snapshot").expectErr(t, 2, "Permission denied")
	run(app, "acl", "token", "list").expectErr(t, 2, "Permission denied")
	run(app, "status", "--all").succeeds(t) // any valid token may look
	if out := run(app, "acl", "token", "read", "self"); !strings.Contains(out.stdout, tok.AccessorID) || strings.Contains(out.stdout, tok.SecretID) {
		t.Fatalf("token read self: %+v", out)
	}
	// Nothing of the refused writes is stored, on any node.
	for _, nd := range nodes {
		r := kvctl(t, "", mgmt, "--addr="+nd.HTTPAddr, "-o", "json", "ls", "--separator=", "")
		var keys []string
		if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || r.code != 0 {
			t.Fatalf("%s: ls: %+v", nd.ID, r)
		}
		if strings.Join(keys, " ") != "app/x app/y" {
			t.Fatalf("%s holds %v, want exactly app/x app/y", nd.ID, keys)
		}
	}

	// Deleting the token locks it out on every node once each has applied
	// the delete (tokens resolve locally, as in Consul).
	run(mgmt, "acl", "token", "delete", tok.AccessorID).succeeds(t)
	for _, nd := range nodes {
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := kvctl(t, "", app, "--addr="+nd.HTTPAddr, "get", "app/x")
			if r.code == 2 && strings.Contains(r.stderr, "ACL not found") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still serves a deleted token: %+v", nd.ID, r)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	run(mgmt, "acl", "policy", "delete", "app-rw").succeeds(t)
	if out := run(mgmt, "acl", "policy", "list"); strings.Contains(out.stdout, "app-rw") {
		t.Fatalf("deleted policy listed: %s", out.stdout)
	}
}
