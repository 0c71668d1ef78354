package main

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/certs"
)

func TestTLSCAAndCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	r := kvctl(t, "", nil, "tls", "ca", "--dir", dir, "--name", "Test CA", "--days", "30")
	r.succeeds(t)
	ca, caKey := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if !strings.Contains(r.stdout, ca) || !strings.Contains(r.stdout, caKey) || !strings.Contains(r.stdout, "expires "+time.Now().AddDate(0, 0, 30).UTC().Format("2006-01-02")) {
		t.Fatalf("output does not say what was written and when it expires: %q", r.stdout)
	}
	for path, mode := range map[string]os.FileMode{ca: 0o644, caKey: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", path, st.Mode().Perm(), mode)
		}
	}

	// Existing files are kept unless --force.
	before, _ := os.ReadFile(caKey)
	kvctl(t, "", nil, "tls", "ca", "--dir", dir).expectErr(t, exitError, "exists; not overwriting it without --force")
	if after, _ := os.ReadFile(caKey); string(after) != string(before) {
		t.Fatal("the CA key was overwritten without --force")
	}

	// The default 365 days would outlive this 30-day CA, so the
	// certificate gets the CA's remaining lifetime, and kvctl says so.
	r = kvctl(t, "", nil, "tls", "cert", "--dir", dir, "--node", "n1", "--hosts", "localhost,127.0.0.1")
	r.succeeds(t)
	if !strings.Contains(r.stdout, filepath.Join(dir, "n1.pem")) || !strings.Contains(r.stdout, "hosts: localhost, 127.0.0.1") || !strings.Contains(r.stdout, "expires "+time.Now().AddDate(0, 0, 30).UTC().Format("2006-01-02")) || !strings.Contains(r.stdout, "the CA's expiry") {
		t.Fatalf("output: %q", r.stdout)
	}
	node, err := certs.Load(certs.Files{CA: ca, Cert: filepath.Join(dir, "n1.pem"), Key: filepath.Join(dir, "n1-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if node.NodeID() != "n1" {
		t.Fatalf("node id %q, want n1", node.NodeID())
	}
	if err := node.Leaf().VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "n1-key.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("node key mode %v", st.Mode().Perm())
	}

	// A client certificate, with the CA named explicitly and JSON output.
	out := filepath.Join(t.TempDir(), "clients")
	r = kvctl(t, "", nil, "-o", "json", "tls", "cert", "--client", "ops", "--ca", ca, "--ca-key", caKey, "--dir", out, "--days", "7")
	r.succeeds(t)
	var w written
	if err := json.Unmarshal([]byte(r.stdout), &w); err != nil || w.Kind != "client" || w.Cert != filepath.Join(out, "ops.pem") || w.Expires == "" {
		t.Fatalf("JSON %q: %+v, %v", r.stdout, w, err)
	}
	cl, err := certs.Load(certs.Files{CA: ca, Cert: w.Cert, Key: w.Key})
	if err != nil {
		t.Fatal(err)
	}
	if cl.NodeID() != "" {
		t.Fatalf("client certificate carries node id %q", cl.NodeID())
	}

	// --force replaces a certificate, and the new one differs.
	old := node.Leaf().SerialNumber
	kvctl(t, "", nil, "tls", "cert", "--dir", dir, "--node", "n1").expectErr(t, exitError, "without --force")
	kvctl(t, "", nil, "tls", "cert", "--dir", dir, "--node", "n1", "--hosts", "localhost", "--force").succeeds(t)
	if err := node.Reload(); err != nil || node.Leaf().SerialNumber.Cmp(old) == 0 {
		t.Fatalf("after --force: %v; serial unchanged: %v", err, node.Leaf().SerialNumber.Cmp(old) == 0)
	}
}

func TestTLSCertUsage(t *testing.T) {
	dir := t.TempDir()
	kvctl(t, "", nil, "tls", "ca", "--dir", dir).succeeds(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--dir", dir}, "exactly one of --node ID and --client NAME"},
		{[]string{"--dir", dir, "--node", "n1", "--client", "ops"}, "exactly one of"},
		{[]string{"--dir", dir, "--client", "ops", "--hosts", "x"}, "--hosts is for node certificates"},
		{[]string{"--dir", dir, "--node", "a/b"}, "--node: node id"},
		{[]string{"--dir", dir, "--node", "n1", "--days", "0"}, "--days must be positive"},
		{[]string{"--dir", dir, "--node", "n1", "--hosts", "bad host"}, `host "bad host"`},
		{[]string{"--dir", dir, "--node", "n1", "--days", "4000"}, "outlive its CA"},
		{[]string{"--dir", filepath.Join(dir, "empty"), "--node", "n1"}, "does not exist (make a CA with 'kvctl tls ca'"},
	} {
		kvctl(t, "", nil, append([]string{"tls", "cert"}, tc.args...)...).expectErr(t, exitError, tc.want)
	}
	// The tls commands read no connection settings: a broken config file
	// does not stop them.
	kvctl(t, "", map[string]string{"TROUPE_CONFIG": filepath.Join(dir, "missing.yaml")}, "tls", "cert", "--dir", dir, "--client", "ops").succeeds(t)
}

// httpsNode is an HTTPS server with a node certificate from a CA made by
// kvctl tls, answering /v1/status/peers, so kvctl's TLS settings can be
// tested without a cluster. It returns its host:port and the tls directory
// (ca.pem, ops.pem, ops-key.pem and an unrelated other-ca.pem).
func httpsNode(t *testing.T, verifyClients bool) (addr, dir string) {
	t.Helper()
	dir = t.TempDir()
	kvctl(t, "", nil, "tls", "ca", "--dir", dir).succeeds(t)
	kvctl(t, "", nil, "tls", "cert", "--dir", dir, "--node", "n1", "--hosts", "127.0.0.1").succeeds(t)
	kvctl(t, "", nil, "tls", "cert", "--dir", dir, "--client", "ops").succeeds(t)
	other := filepath.Join(dir, "other")
	kvctl(t, "", nil, "tls", "ca", "--dir", other).succeeds(t)
	r, err := certs.Load(certs.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "n1.pem"), Key: filepath.Join(dir, "n1-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`["10.0.0.1:8300"]`))
	}))
	// By hand, not StartTLS: StartTLS would put httptest's own
	// certificate in front of ours for clients that send no server name.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.Listener = tls.NewListener(srv.Listener, r.APIServerConfig(verifyClients))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), dir
}

func TestTLSAgainstHTTPSNode(t *testing.T) {
	addr, dir := httpsNode(t, false)
	ca := filepath.Join(dir, "ca.pem")

	// A CA file makes a bare address https.
	kvctl(t, "", nil, "--addr", addr, "--ca-file", ca, "peers").expect(t, exitOK, "10.0.0.1:8300\n")
	kvctl(t, "", nil, "--addr", "https://"+addr, "--ca-file", ca, "peers").expect(t, exitOK, "10.0.0.1:8300\n")

	// Without it, plain HTTP is refused, and https does not trust the
	// node; both say what to do.
	kvctl(t, "", nil, "--addr", addr, "--timeout", "2s", "peers").expectErr(t, exitError, "HTTP request to an HTTPS server. (the node serves HTTPS: use https://host:port, or set --ca-file)")
	kvctl(t, "", nil, "--addr", "https://"+addr, "--timeout", "2s", "peers").expectErr(t, exitError, "certificate signed by unknown authority (pass the cluster's CA with --ca-file")
	kvctl(t, "", nil, "--addr", addr, "--timeout", "2s", "--ca-file", filepath.Join(dir, "other", "ca.pem"), "peers").expectErr(t, exitError, "unknown authority")
	// The node's certificate lists 127.0.0.1, not localhost.
	port := addr[strings.LastIndex(addr, ":"):]
	kvctl(t, "", nil, "--addr", "localhost"+port, "--timeout", "2s", "--ca-file", ca, "peers").expectErr(t, exitError, "reissue it with kvctl tls cert --hosts")
	// Bad TLS files stop kvctl before it sends anything.
	kvctl(t, "", nil, "--addr", addr, "--ca-file", filepath.Join(dir, "nope.pem"), "peers").expectErr(t, exitError, "nope.pem does not exist")
	kvctl(t, "", nil, "--addr", addr, "--cert-file", filepath.Join(dir, "ops.pem"), "peers").expectErr(t, exitError, "without its key file")
}

func TestTLSClientCertificate(t *testing.T) {
	addr, dir := httpsNode(t, true)
	ca := filepath.Join(dir, "ca.pem")
	kvctl(t, "", nil, "--addr", addr, "--timeout", "2s", "--ca-file", ca, "peers").expectErr(t, exitError, "(the node wants a client certificate from its CA: --cert-file and --key-file)")
	kvctl(t, "", nil, "--addr", addr, "--ca-file", ca, "--cert-file", filepath.Join(dir, "ops.pem"), "--key-file", filepath.Join(dir, "ops-key.pem"), "peers").expect(t, exitOK, "10.0.0.1:8300\n")
}

func TestTLSSettingsFromEnvAndConfigFile(t *testing.T) {
	addr, dir := httpsNode(t, true)
	ca, otherCA := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other", "ca.pem")
	cert, key := filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem")

	env := map[string]string{"TROUPE_ADDR": addr, "TROUPE_CA_FILE": ca, "TROUPE_CERT_FILE": cert, "TROUPE_KEY_FILE": key}
	kvctl(t, "", env, "peers").expect(t, exitOK, "10.0.0.1:8300\n")

	config := filepath.Join(dir, "kvctl.yaml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("addr: [" + addr + "]\nca_file: " + ca + "\ncert_file: " + cert + "\nkey_file: " + key + "\ntimeout: 3s\n")
	kvctl(t, "", nil, "--config", config, "peers").expect(t, exitOK, "10.0.0.1:8300\n")
	kvctl(t, "", map[string]string{"TROUPE_CONFIG": config}, "peers").expect(t, exitOK, "10.0.0.1:8300\n")

	// The environment beats the file, and a flag beats both.
	withEnv := map[string]string{"TROUPE_CONFIG": config, "TROUPE_CA_FILE": otherCA}
	kvctl(t, "", withEnv, "peers").expectErr(t, exitError, "unknown authority")
	kvctl(t, "", withEnv, "--ca-file", ca, "peers").expect(t, exitOK, "10.0.0.1:8300\n")
	kvctl(t, "", map[string]string{"TROUPE_CONFIG": config, "TROUPE_ADDR": "127.0.0.1:1"}, "--addr", addr, "peers").expect(t, exitOK, "10.0.0.1:8300\n")
	// --config beats $TROUPE_CONFIG.
	kvctl(t, "", map[string]string{"TROUPE_CONFIG": filepath.Join(dir, "missing.yaml")}, "--config", config, "peers").expect(t, exitOK, "10.0.0.1:8300\n")

	// Addresses may be a comma-separated string too; timeout takes effect.
	write("addr: " + addr + ",127.0.0.1:1\nca_file: " + ca + "\ncert_file: " + cert + "\nkey_file: " + key + "\ntimeout: 1ns\n")
	kvctl(t, "", nil, "--config", config, "peers").expectErr(t, exitError, "timed out after 1ns")

	// Mistakes in the file are named.
	write("ca_fiel: " + ca + "\n")
	kvctl(t, "", nil, "--config", config, "peers").expectErr(t, exitError, `unknown setting "ca_fiel"`)
	write("timeout: 5\n")
	kvctl(t, "", nil, "--config", config, "peers").expectErr(t, exitError, config+": timeout: 5 is not a duration")
	kvctl(t, "", map[string]string{"TROUPE_TIMEOUT": "soon"}, "peers").expectErr(t, exitError, `$TROUPE_TIMEOUT: "soon" is not a duration`)
	kvctl(t, "", map[string]string{"TROUPE_CONFIG": filepath.Join(dir, "missing.yaml")}, "peers").expectErr(t, exitError, "from $TROUPE_CONFIG")
}
