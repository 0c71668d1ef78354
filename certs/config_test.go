package certs

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPeerMutualTLS(t *testing.T) {
	p := newPKI(t, "ca")
	n1, n2 := mustLoad(t, p.node("n1")), mustLoad(t, p.node("n2"))
	o := handshake(t, n2.PeerClientConfig("n1"), n1.PeerServerConfig())
	o.ok(t)
	if o.serverState.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", o.serverState.Version)
	}
	if id, err := PeerID(o.serverState); err != nil || id != "n2" {
		t.Errorf("server sees peer %q, %v; want n2", id, err)
	}
	if id, err := PeerID(o.clientState); err != nil || id != "n1" {
		t.Errorf("client sees peer %q, %v; want n1", id, err)
	}
	// Any node will do when the dialler does not know whom it reaches.
	handshake(t, n2.PeerClientConfig(""), n1.PeerServerConfig()).ok(t)
}

func TestPeerFromOtherCARefused(t *testing.T) {
	ours, theirs := newPKI(t, "ours"), newPKI(t, "theirs")
	server := mustLoad(t, ours.node("n1"))
	// The intruder trusts both CAs, so only the server's check can stop it.
	both := theirs.node("n2")
	write(t, both.CA, append(append([]byte{}, ours.caCert...), theirs.caCert...))
	intruder := mustLoad(t, both)

	o := handshake(t, intruder.PeerClientConfig("n1"), server.PeerServerConfig())
	err := o.refusedBy(t, "server", ErrUnknownAuthority)
	if !strings.Contains(err.Error(), `peer client certificate "n2" (node n2)`) || !strings.Contains(err.Error(), `issued by "theirs"`) {
		t.Errorf("server's error does not say who and why: %v", err)
	}
	if !errors.Is(Explain(o.clientErr), ErrRefused) {
		t.Errorf("client error %v; Explain does not see a refusal", o.clientErr)
	}
}

func TestPeerServerFromOtherCARefused(t *testing.T) {
	ours, theirs := newPKI(t, "ours"), newPKI(t, "theirs")
	client := mustLoad(t, ours.node("n2"))
	both := theirs.node("n1")
	write(t, both.CA, append(append([]byte{}, ours.caCert...), theirs.caCert...))
	impostor := mustLoad(t, both)

	o := handshake(t, client.PeerClientConfig("n1"), impostor.PeerServerConfig())
	err := o.refusedBy(t, "client", ErrUnknownAuthority)
	if !strings.Contains(err.Error(), "peer server certificate") {
		t.Errorf("client's error does not say whose certificate: %v", err)
	}
}

// expiredNode makes a Reloader holding a certificate that expired an hour
// ago; Load would refuse it, so it is loaded as of a time it was valid.
func expiredNode(t *testing.T, p *pki, id string) *Reloader {
	t.Helper()
	now := time.Now()
	cert, key, err := issue(p.caCert, p.caKey, leafSpec{nodeID: id}, now.Add(-3*time.Hour), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	f := p.save(id+"-expired", cert, key)
	m, err := load(f, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r := &Reloader{files: f}
	r.cur.Store(m)
	return r
}

func TestExpiredPeerRefused(t *testing.T) {
	now := time.Now()
	caCert, caKey, err := newCA("ca", now.Add(-24*time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := savePKI(t, "ca", caCert, caKey)
	fresh := mustLoad(t, p.node("n1"))
	stale := expiredNode(t, p, "n2")

	// An expired client is refused by the server...
	o := handshake(t, stale.PeerClientConfig("n1"), fresh.PeerServerConfig())
	err = o.refusedBy(t, "server", ErrExpired)
	if !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "(node n2)") {
		t.Errorf("server's error: %v", err)
	}
	// ...and an expired server by the client.
	o = handshake(t, fresh.PeerClientConfig("n2"), stale.PeerServerConfig())
	o.refusedBy(t, "client", ErrExpired)
}

func TestClientCertIsNoPeer(t *testing.T) {
	p := newPKI(t, "ca")
	server := mustLoad(t, p.node("n1"))
	ops := p.client("ops")

	// Presented by hand, since PeerClientConfig will not send it.
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{pair(t, ops)}}
	o := handshake(t, cfg, server.PeerServerConfig())
	err := o.refusedBy(t, "server", ErrNoNodeID)
	if !strings.Contains(err.Error(), `"ops"`) {
		t.Errorf("server's error does not name the certificate: %v", err)
	}

	// A Reloader holding a client certificate refuses to act as a node,
	// on either side.
	opsR := mustLoad(t, ops)
	o = handshake(t, opsR.PeerClientConfig("n1"), server.PeerServerConfig())
	if !errors.Is(o.clientErr, ErrNoNodeID) && !errors.Is(o.serverErr, ErrNoCertificate) {
		t.Errorf("client %v, server %v; want the client to refuse to send a non-node certificate", o.clientErr, o.serverErr)
	}
	client := mustLoad(t, p.node("n2"))
	o = handshake(t, client.PeerClientConfig(""), opsR.PeerServerConfig())
	o.refusedBy(t, "server", ErrNoNodeID)

	// A client certificate served as a peer server lacks ServerAuth.
	srv := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair(t, ops)}}
	o = handshake(t, client.PeerClientConfig(""), srv)
	o.refusedBy(t, "client", ErrWrongUsage)
}

func TestPeerExpectIDMismatch(t *testing.T) {
	p := newPKI(t, "ca")
	n1, n2 := mustLoad(t, p.node("n1")), mustLoad(t, p.node("n2"))
	o := handshake(t, n2.PeerClientConfig("n3"), n1.PeerServerConfig())
	err := o.refusedBy(t, "client", ErrWrongNode)
	if !strings.Contains(err.Error(), `expected node "n3"`) || !strings.Contains(err.Error(), "(node n1)") {
		t.Errorf("client's error: %v", err)
	}
}

func TestPeerWithoutCertificateRefused(t *testing.T) {
	p := newPKI(t, "ca")
	n1 := mustLoad(t, p.node("n1"))
	o := handshake(t, &tls.Config{InsecureSkipVerify: true}, n1.PeerServerConfig())
	o.refusedBy(t, "server", ErrNoCertificate)
}

// A reload changes what new handshakes use, certificate and CA alike,
// without a new tls.Config; a failed reload changes nothing.
func TestReloadTakesEffectForNewHandshakes(t *testing.T) {
	p := newPKI(t, "ca")
	f := p.node("n1")
	server := mustLoad(t, f)
	client := mustLoad(t, p.node("n2"))
	scfg, ccfg := server.PeerServerConfig(), client.PeerClientConfig("n1")

	o := handshake(t, ccfg, scfg)
	o.ok(t)
	first := o.clientState.PeerCertificates[0].SerialNumber

	p.node("n1") // a renewed certificate in the same files
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	o = handshake(t, ccfg, scfg)
	o.ok(t)
	second := o.clientState.PeerCertificates[0].SerialNumber
	if second.Cmp(first) == 0 {
		t.Fatal("the server still serves the old certificate after Reload")
	}

	write(t, f.Key, []byte("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"))
	if err := server.Reload(); err == nil || !strings.Contains(err.Error(), f.Key) {
		t.Fatalf("Reload with a broken key: %v", err)
	}
	o = handshake(t, ccfg, scfg)
	o.ok(t)
	if o.clientState.PeerCertificates[0].SerialNumber.Cmp(second) != 0 {
		t.Fatal("a failed reload changed the served certificate")
	}

	// Rotating to a new CA: the server trusts it only once reloaded.
	rotated := newPKI(t, "rotated")
	newcomer := rotated.node("n3")
	write(t, newcomer.CA, append(append([]byte{}, p.caCert...), rotated.caCert...))
	nc := mustLoad(t, newcomer)
	handshake(t, nc.PeerClientConfig("n1"), scfg).refusedBy(t, "server", ErrUnknownAuthority)
	f = p.node("n1")
	write(t, f.CA, append(append([]byte{}, p.caCert...), rotated.caCert...))
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	handshake(t, nc.PeerClientConfig("n1"), scfg).ok(t)
}

func TestAPIServerClientCertificates(t *testing.T) {
	p := newPKI(t, "ca")
	server := mustLoad(t, p.node("n1", "localhost", "127.0.0.1"))
	ops := p.client("ops")
	anon, err := ClientConfig(p.caFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	anon.ServerName = "localhost"
	withCert, err := ClientConfig(p.caFile, ops.Cert, ops.Key)
	if err != nil {
		t.Fatal(err)
	}
	withCert.ServerName = "localhost"

	handshake(t, anon, server.APIServerConfig(false)).ok(t)
	handshake(t, withCert, server.APIServerConfig(true)).ok(t)
	o := handshake(t, anon, server.APIServerConfig(true))
	err = o.refusedBy(t, "server", ErrNoCertificate)
	if !strings.Contains(err.Error(), "API client") {
		t.Errorf("server's error: %v", err)
	}
	// A node certificate is a client certificate too.
	n2 := p.node("n2")
	asNode, err := ClientConfig(p.caFile, n2.Cert, n2.Key)
	if err != nil {
		t.Fatal(err)
	}
	asNode.ServerName = "127.0.0.1"
	handshake(t, asNode, server.APIServerConfig(true)).ok(t)

	// The client checks the host name as usual.
	anon.ServerName = "db.example.com"
	o = handshake(t, anon, server.APIServerConfig(false))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "db.example.com") {
		t.Errorf("host name mismatch: client error %v", o.clientErr)
	}

	// A client certificate from another CA is refused.
	foreign := newPKI(t, "foreign").client("mallory")
	bad, err := ClientConfig(p.caFile, foreign.Cert, foreign.Key)
	if err != nil {
		t.Fatal(err)
	}
	bad.ServerName = "localhost"
	handshake(t, bad, server.APIServerConfig(true)).refusedBy(t, "server", ErrUnknownAuthority)
}

func TestClientConfigRefuses(t *testing.T) {
	p := newPKI(t, "ca")
	ops := p.client("ops")
	for _, tc := range []struct {
		name          string
		ca, cert, key string
		want          string
	}{
		{"cert without key", "", ops.Cert, "", "without its key file"},
		{"key without cert", "", "", ops.Key, "without its certificate file"},
		{"missing CA", p.dir + "/nope.pem", "", "", "does not exist"},
		{"CA is a key", ops.Key, "", "", "no CERTIFICATE block"},
		{"swapped", "", ops.Key, ops.Cert, "certificate file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ClientConfig(tc.ca, tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
	cfg, err := ClientConfig("", "", "")
	if err != nil || cfg.RootCAs != nil || cfg.MinVersion < tls.VersionTLS12 {
		t.Fatalf("no files: %+v, %v; want system roots", cfg, err)
	}
}

// A client that does not speak TLS fails on the server with ErrNotTLS, and
// a TLS client that reaches a plaintext server fails the same way.
func TestPlaintextAgainstTLS(t *testing.T) {
	p := newPKI(t, "ca")
	n1 := mustLoad(t, p.node("n1"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		serverErr <- tls.Server(c, n1.PeerServerConfig()).Handshake()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	reply, _ := io.ReadAll(c)
	c.Close()
	err = Explain(<-serverErr)
	if !errors.Is(err, ErrNotTLS) || !strings.Contains(err.Error(), "does not speak TLS") {
		t.Fatalf("server: %v; want ErrNotTLS", err)
	}
	if bytes.Contains(reply, []byte("HTTP/1.1 200")) {
		t.Fatalf("the plaintext client got an answer: %q", reply)
	}

	// The other way round: a TLS client dialling a plaintext server.
	cs, ss := net.Pipe()
	go func() { _, _ = io.Copy(io.Discard, ss) }()
	go func() { _, _ = io.WriteString(ss, "HTTP/1.1 400 Bad Request\r\n\r\n") }()
	defer ss.Close()
	_ = cs.SetDeadline(time.Now().Add(5 * time.Second))
	err = Explain(tls.Client(cs, n1.PeerClientConfig("")).Handshake())
	if !errors.Is(err, ErrNotTLS) {
		t.Fatalf("client: %v; want ErrNotTLS", err)
	}
	if Explain(nil) != nil || Explain(os.ErrClosed) != os.ErrClosed {
		t.Fatal("Explain changed an error it does not know")
	}
}

func TestPeerIDNeedsACompleteHandshake(t *testing.T) {
	if _, err := PeerID(tls.ConnectionState{}); err == nil {
		t.Fatal("PeerID of no handshake")
	}
	if _, err := PeerID(tls.ConnectionState{HandshakeComplete: true}); !errors.Is(err, ErrNoCertificate) {
		t.Fatalf("PeerID without certificates: %v", err)
	}
}

// A resumed TLS session skips the certificate exchange, but not the
// check: a reload that stops trusting a peer's CA refuses it even when it
// resumes an earlier session.
func TestResumedPeerSessionIsCheckedAgain(t *testing.T) {
	old, rotated := newPKI(t, "old"), newPKI(t, "rotated")
	f := old.node("n1")
	server := mustLoad(t, f)
	cf := old.node("n2")
	write(t, cf.CA, append(append([]byte{}, old.caCert...), rotated.caCert...))
	client := mustLoad(t, cf)

	ccfg := client.PeerClientConfig("n1")
	ccfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	// The cache is keyed by server name, else by address, which is new
	// on every handshake here.
	ccfg.ServerName = "n1"
	scfg := server.PeerServerConfig()
	handshake(t, ccfg, scfg).ok(t)
	o := handshake(t, ccfg, scfg)
	o.ok(t)
	if !o.serverState.DidResume {
		t.Fatal("the second handshake did not resume, so this test proves nothing")
	}
	if id, err := PeerID(o.serverState); err != nil || id != "n2" {
		t.Fatalf("resumed session: peer %q, %v", id, err)
	}

	// The server moves to the rotated CA alone.
	nf := rotated.node("n1")
	for _, c := range [][2]string{{nf.CA, f.CA}, {nf.Cert, f.Cert}, {nf.Key, f.Key}} {
		data, err := os.ReadFile(c[0])
		if err != nil {
			t.Fatal(err)
		}
		write(t, c[1], data)
	}
	if err := server.Reload(); err != nil {
		t.Fatal(err)
	}
	handshake(t, ccfg, scfg).refusedBy(t, "server", ErrUnknownAuthority)
}
