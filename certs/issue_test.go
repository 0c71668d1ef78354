package certs

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func parseOne(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestNewCA(t *testing.T) {
	certPEM, keyPEM, err := NewCA("Test CA", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := parseOne(t, certPEM)
	if !ca.IsCA || ca.MaxPathLen != 0 || !ca.MaxPathLenZero || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatalf("not a path-length-0 signing CA: IsCA %v MaxPathLen %d KeyUsage %b", ca.IsCA, ca.MaxPathLen, ca.KeyUsage)
	}
	if ca.Subject.CommonName != "Test CA" || ca.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("CN %q, key %v", ca.Subject.CommonName, ca.PublicKeyAlgorithm)
	}
	if d := time.Until(ca.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Fatalf("expires in %v, want 48h", d)
	}
	if _, err := parseKey(keyPEM); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewCA("Test CA", 0); err == nil {
		t.Fatal("zero validity accepted")
	}
	if _, _, err := NewCA(" ", time.Hour); err == nil {
		t.Fatal("blank name accepted")
	}
}

func TestNewNodeCert(t *testing.T) {
	caCert, caKey, err := NewCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := NewNodeCert(caCert, caKey, "n1", []string{"db1.example.com", "LOCALHOST", "127.0.0.1", "[::1]", "localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parseOne(t, certPEM)
	if id, ok := NodeID(c); !ok || id != "n1" {
		t.Fatalf("NodeID = %q, %v; want n1", id, ok)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "troupe://node/n1" {
		t.Fatalf("URIs %v, want [troupe://node/n1]", c.URIs)
	}
	if !slices.Equal(c.DNSNames, []string{"db1.example.com", "localhost"}) {
		t.Fatalf("DNS SANs %v (the node id must not be one, duplicates folded)", c.DNSNames)
	}
	if len(c.IPAddresses) != 2 || !c.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) || !c.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Fatalf("IP SANs %v", c.IPAddresses)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Fatalf("ExtKeyUsage %v", c.ExtKeyUsage)
	}
	if c.Subject.CommonName != "n1" || c.IsCA {
		t.Fatalf("CN %q, IsCA %v", c.Subject.CommonName, c.IsCA)
	}
	if err := c.CheckSignatureFrom(parseOne(t, caCert)); err != nil {
		t.Fatalf("not signed by the CA: %v", err)
	}
	if err := c.VerifyHostname("db1.example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.VerifyHostname("n1"); err == nil {
		t.Fatal("the node id vouches for host n1")
	}
	key, err := parseKey(keyPEM)
	if err != nil || !samePublicKey(key.Public(), c.PublicKey) {
		t.Fatalf("key does not match: %v", err)
	}
}

func TestNewNodeCertRefuses(t *testing.T) {
	caCert, caKey, err := NewCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey, err := NewCA("Other CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf, leafKey, err := NewNodeCert(caCert, caKey, "n1", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name          string
		caCert, caKey []byte
		id            string
		hosts         []string
		validFor      time.Duration
		wantInMessage string
	}{
		{"empty id", caCert, caKey, "", nil, time.Hour, "node id is empty"},
		{"slash in id", caCert, caKey, "a/b", nil, time.Hour, "'/'"},
		{"space in id", caCert, caKey, "a b", nil, time.Hour, "white space"},
		{"long id", caCert, caKey, strings.Repeat("x", 256), nil, time.Hour, "more than 255"},
		{"bad host", caCert, caKey, "n1", []string{"not a host"}, time.Hour, `host "not a host"`},
		{"empty host", caCert, caKey, "n1", []string{""}, time.Hour, "empty host"},
		{"zero validity", caCert, caKey, "n1", nil, 0, "not positive"},
		{"outlives CA", caCert, caKey, "n1", nil, 48 * time.Hour, "outlive its CA"},
		{"key of another CA", caCert, otherKey, "n1", nil, time.Hour, "does not match the CA certificate"},
		{"CA is no CA", leaf, leafKey, "n2", nil, time.Minute, "is not a CA"},
		{"CA not PEM", []byte("hello"), caKey, "n1", nil, time.Hour, "not PEM"},
		{"key not PEM", otherCert, []byte("hello"), "n1", nil, time.Hour, "not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := NewNodeCert(tc.caCert, tc.caKey, tc.id, tc.hosts, tc.validFor)
			if err == nil || !strings.Contains(err.Error(), tc.wantInMessage) {
				t.Fatalf("error %v; want one containing %q", err, tc.wantInMessage)
			}
		})
	}
}

func TestNewClientCertIsNoNode(t *testing.T) {
	caCert, caKey, err := NewCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := NewClientCert(caCert, caKey, "ops", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := parseOne(t, certPEM)
	if id, ok := NodeID(c); ok || len(c.URIs) != 0 {
		t.Fatalf("client certificate names node %q (URIs %v)", id, c.URIs)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || c.Subject.CommonName != "ops" {
		t.Fatalf("ExtKeyUsage %v, CN %q", c.ExtKeyUsage, c.Subject.CommonName)
	}
	if _, _, err := NewClientCert(caCert, caKey, "", time.Hour); err == nil {
		t.Fatal("empty client name accepted")
	}
}

func TestNodeIDRoundTrip(t *testing.T) {
	caCert, caKey, err := NewCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Characters that mean something in a URI must survive encoding.
	for _, id := range []string{"n1", "db-2.eu", "a?b#c%d", "ünïcode", "x:y@z", strings.Repeat("x", MaxNodeIDLen)} {
		certPEM, _, err := NewNodeCert(caCert, caKey, id, nil, time.Hour)
		if err != nil {
			t.Fatalf("%q: %v", id, err)
		}
		if got, ok := NodeID(parseOne(t, certPEM)); !ok || got != id {
			t.Fatalf("NodeID = %q, %v; want %q", got, ok, id)
		}
	}
}

func TestNodeIDRejectsOtherURIs(t *testing.T) {
	uri := func(s ...string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, one := range s {
			u, err := url.Parse(one)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, u)
		}
		return c
	}
	for _, tc := range []struct {
		uris []string
		want string
	}{
		{[]string{"troupe://node/n1"}, "n1"},
		{[]string{"spiffe://example.org/x", "troupe://node/n1"}, "n1"},
		{nil, ""},
		{[]string{"troupe://client/n1"}, ""},
		{[]string{"https://node/n1"}, ""},
		{[]string{"troupe://node/"}, ""},
		{[]string{"troupe://node/a/b"}, ""},
		{[]string{"troupe://node/n1?x=1"}, ""},
		{[]string{"troupe://node/n1", "troupe://node/n2"}, ""},
	} {
		got, ok := NodeID(uri(tc.uris...))
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("NodeID(%v) = %q, %v; want %q", tc.uris, got, ok, tc.want)
		}
	}
	if _, ok := NodeID(nil); ok {
		t.Error("NodeID(nil) found a node")
	}
}

func TestValidateNodeID(t *testing.T) {
	for _, ok := range []string{"n1", "node-7", "db_2.eu", "ä"} {
		if err := ValidateNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "a\tb", "a=b", "a,b", "a\x00b", "\xff", strings.Repeat("x", 256)} {
		if err := ValidateNodeID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
