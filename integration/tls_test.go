package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/certs"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/cluster/peerlink"
	"github.com/troupe-kv/troupe/internal/testcluster"
	"github.com/troupe-kv/troupe/storage"
)

// fixedPeerTLS presents one certificate on the peer port and trusts any
// server: the stranger's side of a handshake the node must refuse.
type fixedPeerTLS struct{ cert tls.Certificate }

func (f fixedPeerTLS) PeerServerConfig() *tls.Config { return nil }
func (f fixedPeerTLS) PeerClientConfig(string) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{f.cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
}
func (f fixedPeerTLS) PeerID(tls.ConnectionState) (string, error) { return "", nil }

func keyPair(t *testing.T, cert, key []byte) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// TestTLSCluster: with TLS on, a cluster forwards and replicates over
// mutual TLS and serves clients over HTTPS; a plaintext client, a client
// without a certificate or with one from another CA, and on the peer port
// a certificate from another CA, an expired one, or a valid one for a
// node that is not a member, all get nowhere, and nothing they sent is
// stored. SIGHUP reloads a node's certificate for new connections.
func TestTLSCluster(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{TLS: true})
	leader := c.WaitLeader(20 * time.Second)
	follower := c.Followers(leader)[0]
	if code, body := put(t, follower, "tls/k", "v"); code != 200 || body != "true" {
		t.Fatalf("write through a follower over TLS: %d %q", code, body)
	}
	for _, n := range c.Nodes {
		if code, p := get(t, n, "tls/k", ""); code != 200 || string(p.Value) != "v" {
			t.Fatalf("read on %s: %d %+v", n.ID, code, p)
		}
	}

	// Plaintext against the client port: refused with a clear answer.
	resp, err := http.Post("http://"+leader.HTTPAddr+"/v1/kv/tls/plain", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "HTTPS") {
		t.Fatalf("plaintext request: %d %q", resp.StatusCode, b)
	}

	// HTTPS without a client certificate, or with one from another CA.
	otherCA, otherKey, err := certs.NewCA("another CA", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, foreignKey, err := certs.NewClientCert(otherCA, otherKey, "intruder", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := os.ReadFile(filepath.Join(c.TLSDir(), "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := os.ReadFile(filepath.Join(c.TLSDir(), "ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	expiringClient, expiringClientKey, err := certs.NewClientCert(caCert, caKey, "short-lived", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	foreignNode, foreignNodeKey, _ := certs.NewNodeCert(otherCA, otherKey, follower.ID, []string{"127.0.0.1"}, time.Hour)
	expiring, expiringKey, _ := certs.NewNodeCert(caCert, caKey, follower.ID, []string{"127.0.0.1"}, time.Second)
	stranger, strangerKey, _ := certs.NewNodeCert(caCert, caKey, "n9", []string{"127.0.0.1"}, time.Hour)
	time.Sleep(1500 * time.Millisecond) // the short-lived certificates expire
	for name, clientCerts := range map[string][]tls.Certificate{
		"no client certificate":       nil,
		"client cert from another CA": {keyPair(t, foreignCert, foreignKey)},
		"expired client cert":         {keyPair(t, expiringClient, expiringClientKey)},
	} {
		cfg := c.TLSConfig()
		cfg.Certificates, cfg.GetClientCertificate = clientCerts, nil
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
		resp, err := hc.Post("https://"+leader.HTTPAddr+"/v1/kv/tls/intruder", "text/plain", strings.NewReader("x"))
		if err == nil {
			resp.Body.Close()
			t.Fatalf("%s: the client port answered %d", name, resp.StatusCode)
		}
	}

	// The peer port.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	register := (&storage.Command{Op: storage.OpRegisterNode, Key: leader.ID, Value: []byte("10.6.6.6:8500")}).Encode()
	write := (&storage.Command{Op: storage.OpSet, Key: "tls/intruder", Value: []byte("x")}).Encode()
	for _, tc := range []struct {
		name, id  string
		cert, key []byte
	}{
		{"a member's id, certificate from another CA", follower.ID, foreignNode, foreignNodeKey},
		{"a member's id, expired certificate", follower.ID, expiring, expiringKey},
		{"a valid certificate of a node that is no member", "n9", stranger, strangerKey},
		{"plaintext, claiming a member's id", follower.ID, nil, nil},
	} {
		cfg := peerlink.Config{Network: faultnet.Plain(tc.id)}
		if tc.cert != nil {
			cfg.TLS = fixedPeerTLS{keyPair(t, tc.cert, tc.key)}
		}
		pc := peerlink.NewClient(cfg)
		if _, err := pc.Apply(ctx, leader.RaftAddr, write); err == nil {
			t.Errorf("%s: a forwarded write was accepted", tc.name)
		}
		if _, err := pc.Apply(ctx, leader.RaftAddr, register); err == nil {
			t.Errorf("%s: a registration was accepted", tc.name)
		}
		if err := pc.Membership(ctx, leader.RaftAddr, peerlink.MembershipRequest{Join: &peerlink.JoinRequest{ID: tc.id, RaftAddr: "127.0.0.1:1"}}); err == nil {
			t.Errorf("%s: a membership change was accepted", tc.name)
		}
		var re *peerlink.RemoteError
		if _, err := pc.Ping(ctx, leader.RaftAddr); err == nil || errors.As(err, &re) {
			t.Errorf("%s: the peer port answered a probe (%v)", tc.name, err)
		}
		pc.Close()
	}
	for _, n := range c.Nodes {
		if code, _ := get(t, n, "tls/intruder", ""); code != 404 {
			t.Fatalf("an intruder's key is on %s: %d", n.ID, code)
		}
		if code, _ := get(t, n, "tls/plain", ""); code != 404 {
			t.Fatalf("a plaintext write is on %s: %d", n.ID, code)
		}
	}
	ms := waitMembers(t, leader, 3, "after the intruders")
	if ms[leader.ID].HTTPAddr != leader.HTTPAddr {
		t.Fatalf("the leader's address changed: %+v", ms[leader.ID])
	}

	// SIGHUP: a renewed certificate is served to new connections.
	notAfter := func() time.Time {
		cfg := c.TLSConfig()
		conn, err := tls.Dial("tcp", follower.HTTPAddr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].NotAfter
	}
	before := notAfter()
	renewed, renewedKey, err := certs.NewNodeCert(caCert, caKey, follower.ID, []string{"127.0.0.1"}, 72*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(c.TLSDir(), follower.ID+".pem"), filepath.Join(c.TLSDir(), follower.ID+"-key.pem")
	if err := os.WriteFile(keyFile, renewedKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, renewed, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := follower.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(follower.Log(), "certificates reloaded") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload logged:\n%s", follower.Tail(2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after := notAfter(); !after.After(before.Add(24 * time.Hour)) {
		t.Fatalf("after SIGHUP the node still serves a certificate valid until %v (before: %v)", after, before)
	}
	// The cluster still works over the renewed certificate.
	if code, body := put(t, follower, "tls/after-reload", fmt.Sprint(time.Now().UnixNano())); code != 200 || body != "true" {
		t.Fatalf("write after the reload: %d %q", code, body)
	}

	// A new node joins over HTTPS and is added over mutual TLS.
	n4 := c.AddJoiner("n4")
	if m := waitMembers(t, leader, 4, "after the TLS join")["n4"]; !m.Voter || m.RaftAddr != n4.RaftAddr {
		t.Fatalf("n4: %+v", m)
	}
	n4.WaitHTTP(20 * time.Second)
	deadline = time.Now().Add(20 * time.Second)
	for {
		if code, p := get(t, n4, "tls/k", ""); code == 200 && string(p.Value) == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n4 never served tls/k")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
