package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pki is a CA on disk in a test's temporary directory, able to issue
// node and client certificates next to it.
type pki struct {
	t             *testing.T
	dir           string
	caFile        string
	caCert, caKey []byte
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	cert, key, err := NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return savePKI(t, name, cert, key)
}

func savePKI(t *testing.T, name string, cert, key []byte) *pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: dir, caCert: cert, caKey: key, caFile: filepath.Join(dir, "ca.pem")}
	write(t, p.caFile, cert)
	return p
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// node issues a certificate for node id and returns its files, trusting
// this CA.
func (p *pki) node(id string, hosts ...string) Files {
	p.t.Helper()
	cert, key, err := NewNodeCert(p.caCert, p.caKey, id, hosts, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.save(id, cert, key)
}

// client issues a client certificate.
func (p *pki) client(name string) Files {
	p.t.Helper()
	cert, key, err := NewClientCert(p.caCert, p.caKey, name, time.Hour)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.save(name, cert, key)
}

func (p *pki) save(name string, cert, key []byte) Files {
	p.t.Helper()
	f := Files{CA: p.caFile, Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem")}
	write(p.t, f.Cert, cert)
	write(p.t, f.Key, key)
	return f
}

func mustLoad(t *testing.T, f Files) *Reloader {
	t.Helper()
	r, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pair loads a certificate and key for configs built by hand.
func pair(t *testing.T, f Files) tls.Certificate {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// outcome is both ends of one handshake.
type outcome struct {
	clientErr, serverErr     error
	clientState, serverState tls.ConnectionState
}

// handshake runs a TLS handshake over loopback TCP and then has the server
// send one byte, because with TLS 1.3 a client learns that the server
// refused its certificate only when it next reads. (An in-memory pipe
// would not do: it has no buffer, so a side that refuses mid-flight and
// sends an alert deadlocks against the other side's unread records.)
func handshake(t *testing.T, client, server *tls.Config) outcome {
	t.Helper()
	c, s := tcpPair(t)
	deadline := time.Now().Add(5 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = s.SetDeadline(deadline)
	tc, ts := tls.Client(c, client), tls.Server(s, server)
	var o outcome
	done := make(chan struct{})
	go func() {
		defer close(done)
		o.serverErr = ts.Handshake()
		if o.serverErr == nil {
			o.serverState = ts.ConnectionState()
			_, o.serverErr = ts.Write([]byte{1})
		}
		ts.Close()
	}()
	o.clientErr = tc.Handshake()
	if o.clientErr == nil {
		o.clientState = tc.ConnectionState()
		var b [1]byte
		_, o.clientErr = tc.Read(b[:])
	}
	tc.Close()
	<-done
	return o
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return client, server
}

func (o outcome) ok(t *testing.T) {
	t.Helper()
	if o.clientErr != nil || o.serverErr != nil {
		t.Fatalf("handshake failed: client: %v; server: %v", o.clientErr, o.serverErr)
	}
}

// refusedBy checks that side ("client" or "server") refused the
// handshake for reason, and that the other side failed too.
func (o outcome) refusedBy(t *testing.T, side string, reason error) error {
	t.Helper()
	refuser, other := o.serverErr, o.clientErr
	if side == "client" {
		refuser, other = o.clientErr, o.serverErr
	}
	if !errors.Is(refuser, reason) {
		t.Fatalf("%s error %v; want one wrapping %q (other side: %v)", side, refuser, reason, other)
	}
	if other == nil {
		t.Fatalf("%s refused (%v) but the other side saw no error", side, refuser)
	}
	return refuser
}
