package client

import (
	"context"
	"crypto/tls"
	"errors"
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

// tlsServer answers /v1/status/peers over HTTPS with a node certificate
// for 127.0.0.1 from a fresh CA, and returns its host:port and the CA file.
// The TLS listener is installed by hand rather than with StartTLS, which
// would slip httptest's own certificate in front of ours for clients that
// send no server name (an IP address).
func tlsServer(t *testing.T, verifyClients bool) (addr string, dir string) {
	t.Helper()
	return tlsServerWith(t, func(r *certs.Reloader) *tls.Config { return r.APIServerConfig(verifyClients) })
}

// tlsServerWith is tlsServer with the server's TLS config made by config.
func tlsServerWith(t *testing.T, config func(*certs.Reloader) *tls.Config) (addr string, dir string) {
	t.Helper()
	dir = t.TempDir()
	caCert, caKey, err := certs.NewCA("test CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := certs.NewNodeCert(caCert, caKey, "n1", []string{"127.0.0.1"}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ccert, ckey, err := certs.NewClientCert(caCert, caKey, "ops", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"ca.pem": caCert, "n1.pem": cert, "n1-key.pem": key, "ops.pem": ccert, "ops-key.pem": ckey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r, err := certs.Load(certs.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "n1.pem"), Key: filepath.Join(dir, "n1-key.pem")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`["10.0.0.1:8300"]`))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.Listener = tls.NewListener(srv.Listener, config(r))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), dir
}

func clientTLS(t *testing.T, dir string, withCert bool) *tls.Config {
	t.Helper()
	var cert, key string
	if withCert {
		cert, key = filepath.Join(dir, "ops.pem"), filepath.Join(dir, "ops-key.pem")
	}
	cfg, err := certs.ClientConfig(filepath.Join(dir, "ca.pem"), cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestWithTLS(t *testing.T) {
	addr, dir := tlsServer(t, false)
	ctx := context.Background()
	cfg := clientTLS(t, dir, false)

	c := New([]string{addr}, WithTLS(cfg), WithMaxAttempts(1))
	defer c.CloseIdleConnections()
	if got := c.Endpoints(); len(got) != 1 || got[0] != "https://"+addr {
		t.Fatalf("endpoints %v; want https://%s", got, addr)
	}
	peers, err := c.Peers(ctx)
	if err != nil || len(peers) != 1 {
		t.Fatalf("Peers over TLS: %v, %v", peers, err)
	}
	if cfg.NextProtos != nil {
		t.Fatalf("the caller's config was changed: NextProtos %v", cfg.NextProtos)
	}

	// Without TLS settings a bare address is plain HTTP, which the TLS
	// listener refuses in words.
	plain := New([]string{addr}, WithMaxAttempts(1))
	defer plain.CloseIdleConnections()
	_, err = plain.Peers(ctx)
	if StatusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "HTTP request to an HTTPS server") {
		t.Fatalf("plain HTTP to an HTTPS server: %v", err)
	}
	// An explicit http:// stays plaintext even with TLS settings.
	explicit := New([]string{"http://" + addr}, WithTLS(cfg), WithMaxAttempts(1))
	defer explicit.CloseIdleConnections()
	if _, err := explicit.Peers(ctx); StatusCode(err) != http.StatusBadRequest {
		t.Fatalf("explicit http:// with TLS settings: %v", err)
	}
	// https:// without a CA that trusts the server fails the handshake.
	untrusting := New([]string{"https://" + addr}, WithMaxAttempts(1))
	defer untrusting.CloseIdleConnections()
	_, err = untrusting.Peers(ctx)
	if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("https without the CA: %v", err)
	}
}

// A certificate refused is refused again: failover tries each endpoint
// once, then gives up without backing off through retries.
func TestCertificateFailureTriesEachEndpointOnce(t *testing.T) {
	addr, dir := tlsServer(t, true)
	other, _ := tlsServer(t, false)
	ctx := context.Background()
	var e *Error
	// The CA of dir does not trust other's certificate, and addr wants a
	// client certificate this client does not have.
	c := New([]string{addr, other}, WithTLS(clientTLS(t, dir, false)))
	defer c.CloseIdleConnections()
	_, err := c.Peers(ctx)
	if !errors.As(err, &e) || e.Attempts != 2 {
		t.Fatalf("error %v; want one after 2 attempts", err)
	}
	// A single node refusing our certificate is tried once.
	one := New([]string{addr}, WithTLS(clientTLS(t, dir, false)))
	defer one.CloseIdleConnections()
	_, err = one.Peers(ctx)
	if !errors.As(err, &e) || e.Attempts != 1 || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("error %v; want a refusal after 1 attempt", err)
	}
}

// With TLS 1.3 a write is on the wire before the server refuses the
// client's certificate, yet it certainly did not happen.
func TestWriteRefusedInHandshakeIsNotApplied(t *testing.T) {
	// The server takes its time to refuse, so the request is surely
	// written first, as it would be over a slow link.
	addr, dir := tlsServerWith(t, func(r *certs.Reloader) *tls.Config {
		cfg := r.APIServerConfig(true)
		verify := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			time.Sleep(200 * time.Millisecond)
			return verify(cs)
		}
		return cfg
	})
	c := New([]string{addr}, WithTLS(clientTLS(t, dir, false)))
	defer c.CloseIdleConnections()
	_, _, err := c.Put(context.Background(), "k", []byte("v"), WriteOptions{})
	if !IsNotApplied(err) || !strings.Contains(err.Error(), "bad certificate") {
		t.Fatalf("write refused in the handshake: %v; want not-applied", err)
	}
}

func TestWithTLSClientCertificate(t *testing.T) {
	addr, dir := tlsServer(t, true)
	ctx := context.Background()
	anon := New([]string{addr}, WithTLS(clientTLS(t, dir, false)), WithMaxAttempts(1))
	defer anon.CloseIdleConnections()
	if _, err := anon.Peers(ctx); err == nil {
		t.Fatal("a client without a certificate got through")
	}
	c := New([]string{addr}, WithTLS(clientTLS(t, dir, true)), WithMaxAttempts(1))
	defer c.CloseIdleConnections()
	if _, err := c.Peers(ctx); err != nil {
		t.Fatal(err)
	}
}

// WithTLS applies to a clone of a caller's transport and leaves the
// caller's client as it was.
func TestWithTLSAndHTTPClient(t *testing.T) {
	addr, dir := tlsServer(t, false)
	tr := NewTransport()
	hc := &http.Client{Transport: tr}
	c := New([]string{addr}, WithHTTPClient(hc), WithTLS(clientTLS(t, dir, false)), WithMaxAttempts(1))
	defer c.CloseIdleConnections()
	if _, err := c.Peers(context.Background()); err != nil {
		t.Fatal(err)
	}
	// (Cloning a transport sets up its HTTP/2 defaults, so its
	// TLSClientConfig may appear, but never with our CA in it.)
	if hc.Transport != tr || (tr.TLSClientConfig != nil && tr.TLSClientConfig.RootCAs != nil) {
		t.Fatal("the caller's HTTP client was modified")
	}
}

// Calls addressed to one node (the fault-injection ones) follow the TLS
// settings too.
func TestWithTLSSingleNodeCalls(t *testing.T) {
	addr, dir := tlsServer(t, false)
	c := New([]string{"127.0.0.1:1"}, WithTLS(clientTLS(t, dir, false)), WithMaxAttempts(1))
	defer c.CloseIdleConnections()
	if ep := c.endpointOf(addr); ep.err != nil || ep.name != "https://"+addr {
		t.Fatalf("endpointOf(%s) = %q, %v", addr, ep.name, ep.err)
	}
}
