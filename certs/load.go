package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Files names a node's TLS material on disk, each file PEM.
type Files struct {
	// CA holds the CA certificates the node trusts for peers and clients.
	// More than one is allowed, which is how a CA is rotated: trust old
	// and new, reissue every node, then drop the old.
	CA string
	// Cert holds the node's certificate, then any intermediates.
	Cert string
	// Key holds the certificate's private key.
	Key string
}

// Reloader holds a node's current TLS material and swaps it on Reload.
// It is safe for concurrent use: handshakes read the material through an
// atomic pointer and never see half of a reload.
type Reloader struct {
	files Files
	// mu serialises Reload, so two concurrent reloads cannot install
	// older material after newer.
	mu  sync.Mutex
	cur atomic.Pointer[material]
}

// material is one consistent load of Files; it is never changed once
// built, so handshakes may keep pointers into it.
type material struct {
	cert   tls.Certificate
	leaf   *x509.Certificate
	roots  *x509.CertPool
	cas    []*x509.Certificate
	caDesc string // the CA names, for messages
	nodeID string
}

// Load reads and checks f: every file exists and is PEM, the key belongs to
// the certificate, the certificate chains to a CA in f.CA and is valid now.
// Each error names the file and what is wrong with it.
func Load(f Files) (*Reloader, error) {
	m, err := load(f, time.Now())
	if err != nil {
		return nil, err
	}
	r := &Reloader{files: f}
	r.cur.Store(m)
	return r, nil
}

// Reload reads the files again and, if they pass Load's checks, makes them
// the material for every new handshake. On any error it keeps the current
// material and returns the error for the caller to log. It also refuses a
// certificate for another node id than the current one: a reload renews a
// node's certificate, it never changes which node this is.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, err := load(r.files, time.Now())
	if err != nil {
		return err
	}
	if old := r.cur.Load(); m.nodeID != old.nodeID {
		return fmt.Errorf("certs: certificate file %s: %w: it names node %q, this node is %q; keeping the current certificate", r.files.Cert, ErrWrongNode, m.nodeID, old.nodeID)
	}
	r.cur.Store(m)
	return nil
}

// Files returns the files the Reloader reads.
func (r *Reloader) Files() Files { return r.files }

// NodeID returns the node id in the current certificate, "" if it carries
// none (a client certificate).
func (r *Reloader) NodeID() string { return r.cur.Load().nodeID }

// NotAfter returns when the current certificate expires, so the caller can
// warn ahead of time; after it, peers and clients refuse this node.
func (r *Reloader) NotAfter() time.Time { return r.cur.Load().leaf.NotAfter }

// Leaf returns the current certificate, parsed. It must not be modified.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().leaf }

func load(f Files, now time.Time) (*material, error) {
	caPEM, err := readFile("CA", f.CA)
	if err != nil {
		return nil, err
	}
	cas, err := parseCerts(caPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: CA file %s: %w", f.CA, err)
	}
	pair, chain, err := readKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	var names []string
	for _, ca := range cas {
		roots.AddCert(ca)
		names = append(names, fmt.Sprintf("%q", ca.Subject.CommonName))
	}
	m := &material{cert: pair, leaf: pair.Leaf, roots: roots, cas: cas, caDesc: strings.Join(names, ", ")}
	if _, err := verifyChain(m, chain, x509.ExtKeyUsageAny, "this node's", now); err != nil {
		return nil, fmt.Errorf("certs: certificate file %s (CA file %s): %w", f.Cert, f.CA, err)
	}
	m.nodeID, _ = NodeID(pair.Leaf)
	return m, nil
}

// loadKeyPair reads a certificate and its key for ClientConfig, with Load's
// checks except the chain, which the server judges.
func loadKeyPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	pair, _, err := readKeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := checkValidity(pair.Leaf, "client", now); err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: certificate file %s: %w", certFile, err)
	}
	return pair, nil
}

// readKeyPair reads a certificate (then any intermediates) and its key,
// and checks that the key belongs to the certificate. It returns the pair
// and the parsed chain.
func readKeyPair(certFile, keyFile string) (tls.Certificate, []*x509.Certificate, error) {
	certPEM, err := readFile("certificate", certFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := readFile("key", keyFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	chain, err := parseCerts(certPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certs: certificate file %s: %w", certFile, err)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("certs: key file %s: %w", keyFile, err)
	}
	leaf := chain[0]
	if !samePublicKey(key.Public(), leaf.PublicKey) {
		return tls.Certificate{}, nil, fmt.Errorf("certs: key file %s does not match the certificate in %s (%s): the key belongs to another certificate", keyFile, certFile, describe(leaf))
	}
	out := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		out.Certificate = append(out.Certificate, c.Raw)
	}
	return out, chain, nil
}

// readFile reads one of the files, saying which one a failure is about.
func readFile(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("certs: no %s file given", what)
	}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("certs: %s file %s does not exist", what, path)
	case err != nil:
		return nil, fmt.Errorf("certs: reading %s file: %w", what, err)
	}
	return b, nil
}
