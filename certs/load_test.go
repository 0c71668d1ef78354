package certs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	p := newPKI(t, "ca")
	r := mustLoad(t, p.node("n1", "localhost"))
	if r.NodeID() != "n1" {
		t.Fatalf("NodeID %q", r.NodeID())
	}
	if d := time.Until(r.NotAfter()); d <= 0 || d > time.Hour {
		t.Fatalf("NotAfter in %v, want within the hour", d)
	}
	if c := mustLoad(t, p.client("ops")); c.NodeID() != "" {
		t.Fatalf("client certificate loaded as node %q", c.NodeID())
	}
}

// Every refusal names the file at fault and what is wrong with it.
func TestLoadRefuses(t *testing.T) {
	p := newPKI(t, "ca")
	good := p.node("n1")
	other := newPKI(t, "other")
	foreign := other.node("n1")
	garbage := filepath.Join(p.dir, "garbage.pem")
	write(t, garbage, []byte("this is not PEM\n"))
	keyOnly := filepath.Join(p.dir, "keyonly.pem")
	data, err := os.ReadFile(good.Key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, keyOnly, data)

	past := time.Now().Add(-48 * time.Hour)
	oldCACert, oldCAKey, err := newCA("Old CA", past, time.Now().Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	old := savePKI(t, "old", oldCACert, oldCAKey)
	cert, key, err := issue(oldCACert, oldCAKey, leafSpec{nodeID: "n1"}, past, past.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	expired := old.save("n1", cert, key)
	cert, key, err = issue(oldCACert, oldCAKey, leafSpec{nodeID: "n1"}, time.Now().Add(30*time.Minute), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	future := old.save("future", cert, key)

	// A CA that is not valid yet (a clock set wrong where it was made).
	youngCert, youngKey, err := newCA("Young CA", time.Now().Add(time.Hour), time.Now().Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err = issue(youngCert, youngKey, leafSpec{nodeID: "n1"}, time.Now().Add(-time.Hour), time.Now().Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	youngCA := savePKI(t, "young", youngCert, youngKey).save("n1", cert, key)

	missing := filepath.Join(p.dir, "missing.pem")
	for _, tc := range []struct {
		name   string
		f      Files
		reason error
		want   []string
	}{
		{"missing CA", Files{missing, good.Cert, good.Key}, nil, []string{"CA file", missing, "does not exist"}},
		{"missing cert", Files{good.CA, missing, good.Key}, nil, []string{"certificate file", missing, "does not exist"}},
		{"missing key", Files{good.CA, good.Cert, missing}, nil, []string{"key file", missing, "does not exist"}},
		{"no cert given", Files{good.CA, "", good.Key}, nil, []string{"no certificate file given"}},
		{"CA not PEM", Files{garbage, good.Cert, good.Key}, nil, []string{"CA file", garbage, "not PEM"}},
		{"cert not PEM", Files{good.CA, garbage, good.Key}, nil, []string{"certificate file", garbage, "not PEM"}},
		{"cert file holds a key", Files{good.CA, keyOnly, good.Key}, nil, []string{"certificate file", keyOnly, "no CERTIFICATE block"}},
		{"key not PEM", Files{good.CA, good.Cert, garbage}, nil, []string{"key file", garbage, "not PEM"}},
		{"key of another cert", Files{good.CA, good.Cert, foreign.Key}, nil, []string{"key file", foreign.Key, "does not match the certificate in", good.Cert}},
		{"foreign CA", Files{good.CA, foreign.Cert, foreign.Key}, ErrUnknownAuthority, []string{"certificate file", foreign.Cert, `issued by "other"`, `trusted CA "ca"`}},
		{"expired", expired, ErrExpired, []string{"certificate file", expired.Cert, "expired at"}},
		{"not yet valid", future, ErrNotYetValid, []string{"certificate file", future.Cert, "valid from"}},
		{"CA not yet valid", youngCA, ErrNotYetValid, []string{"certificate file", youngCA.Cert, `CA certificate "Young CA": certificate not yet valid`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Load(tc.f)
			if err == nil {
				t.Fatalf("loaded (node %q)", r.NodeID())
			}
			if tc.reason != nil && !errors.Is(err, tc.reason) {
				t.Errorf("error %v does not wrap %q", err, tc.reason)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestReloadKeepsOldMaterialOnError(t *testing.T) {
	p := newPKI(t, "ca")
	f := p.node("n1")
	r := mustLoad(t, f)
	before := r.Leaf().SerialNumber

	write(t, f.Cert, []byte("truncated"))
	err := r.Reload()
	if err == nil || !strings.Contains(err.Error(), f.Cert) || !strings.Contains(err.Error(), "not PEM") {
		t.Fatalf("Reload of a bad file: %v", err)
	}
	if r.Leaf().SerialNumber.Cmp(before) != 0 || r.NodeID() != "n1" {
		t.Fatal("a failed reload changed the material")
	}

	// A certificate for another node is refused: a reload renews, it
	// does not change who this node is.
	n2 := p.node("n2")
	data, _ := os.ReadFile(n2.Cert)
	write(t, f.Cert, data)
	data, _ = os.ReadFile(n2.Key)
	write(t, f.Key, data)
	if err := r.Reload(); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("Reload to node n2: %v; want ErrWrongNode", err)
	}
	if r.NodeID() != "n1" {
		t.Fatalf("node id became %q", r.NodeID())
	}

	p.node("n1") // rewrites f's files with a fresh n1 certificate
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if r.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("Reload kept the old certificate")
	}
}

// Reloads and handshakes may overlap; run with -race to make this mean
// something.
func TestReloadConcurrentWithHandshakes(t *testing.T) {
	p := newPKI(t, "ca")
	srv := mustLoad(t, p.node("n1"))
	cli := mustLoad(t, p.node("n2"))
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 10 {
			if err := srv.Reload(); err != nil {
				t.Error(err)
			}
		}
	})
	for range 10 {
		handshake(t, cli.PeerClientConfig("n1"), srv.PeerServerConfig()).ok(t)
	}
	wg.Wait()
}
