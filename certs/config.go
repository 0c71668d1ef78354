package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"
)

// Why a certificate was refused. Handshake and Load errors wrap one of
// these, and say which certificate and what exactly, e.g.
//
//	certs: peer client certificate "n2" (node n2): certificate expired: expired at 2026-01-02T15:04:05Z, now 2026-03-01T00:00:00Z
var (
	// ErrNoCertificate: the other end presented none where one is required.
	ErrNoCertificate = errors.New("no certificate presented")
	// ErrExpired: the certificate, or its CA or an intermediate, is past
	// its NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: before its NotBefore; usually a clock set wrong.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrUnknownAuthority: it does not chain to a CA in the CA file.
	ErrUnknownAuthority = errors.New("not signed by the cluster CA")
	// ErrWrongUsage: its extended key usage does not allow this side of
	// the handshake (a client certificate served as a server's).
	ErrWrongUsage = errors.New("certificate not issued for this use")
	// ErrNoNodeID: no troupe://node/<id> URI SAN where a node is required.
	ErrNoNodeID = errors.New("certificate carries no node identity")
	// ErrWrongNode: a node identity other than the one expected.
	ErrWrongNode = errors.New("certificate is for another node")
)

// What Explain recognises in a failed handshake.
var (
	// ErrNotTLS means the other end sent something that is not TLS: a
	// plaintext client or server, e.g. a node with TLS off.
	ErrNotTLS = errors.New("the other end does not speak TLS (plaintext, or TLS is off there)")
	// ErrRefused means the other end refused our certificate; only its
	// own log says why.
	ErrRefused = errors.New("the other end refused this side's certificate (its log says why)")
)

// APIServerConfig returns the server config for the HTTPS client API: TLS
// 1.2 or later, serving the current certificate. With verifyClients, every
// client must present a certificate that chains to the current CA and is
// issued for client authentication; node and client certificates both
// qualify. The caller may set further fields (NextProtos, ...) but must keep
// GetCertificate and VerifyConnection.
func (r *Reloader) APIServerConfig(verifyClients bool) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.getCertificate}
	if verifyClients {
		// RequestClientCert, not RequireAndVerifyClientCert: the standard
		// check would use a CA pool fixed here, blind to Reload, and
		// would refuse a client without a certificate with a generic
		// message. VerifyConnection does the whole check instead.
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			_, err := verifyChain(r.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "API client", time.Now())
			return prefixed(err)
		}
	}
	return cfg
}

// PeerServerConfig returns the server side of the node-to-node channel:
// TLS 1.3 (both ends are Troupe), serving the current node certificate and
// requiring a client certificate that chains to the current CA, is issued
// for client authentication and carries a node identity. A client
// certificate without one is refused with ErrNoNodeID. Read the other
// node's id from the connection with PeerID.
//
// With TLS 1.3 the client learns of a refusal only at its first read, as a
// TLS alert; the reason is in the error this side's Handshake returns.
func (r *Reloader) PeerServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: r.getNodeCertificate,
		ClientAuth:     tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return prefixed(verifyPeer(r.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageClientAuth, "peer client", ""))
		},
	}
}

// PeerClientConfig returns the client side of the node-to-node channel: it
// presents the current node certificate and accepts the server only if its
// certificate chains to the current CA, is issued for server
// authentication and names node expectID (any node when expectID is "").
//
// Peers are dialled by IP:port, so the server's host name is not checked;
// its node identity is.
func (r *Reloader) PeerClientConfig(expectID string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// InsecureSkipVerify turns off only the standard library's own
		// check, which would match the certificate against the dialled
		// IP:port and use a CA pool fixed here. VerifyConnection below
		// replaces it with the full check: chain to the current CA,
		// validity, usage and node identity. The handshake signature,
		// which proves the server holds the key, is checked either way.
		InsecureSkipVerify:   true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return r.getNodeCertificate(nil) },
		VerifyConnection: func(cs tls.ConnectionState) error {
			return prefixed(verifyPeer(r.cur.Load(), cs.PeerCertificates, x509.ExtKeyUsageServerAuth, "peer server", expectID))
		},
	}
}

// PeerID returns the node id of the other end of a connection made with
// PeerServerConfig or PeerClientConfig, whose handshake verified it. On any
// other connection it only reads the certificate, which proves nothing.
func PeerID(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete {
		return "", errors.New("certs: the TLS handshake is not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return "", fmt.Errorf("certs: peer: %w", ErrNoCertificate)
	}
	id, ok := NodeID(cs.PeerCertificates[0])
	if !ok {
		return "", fmt.Errorf("certs: peer certificate %s: %w", describe(cs.PeerCertificates[0]), ErrNoNodeID)
	}
	return id, nil
}

// ClientConfig returns a client config for the HTTPS client API, for kvctl
// and the Go client: servers are verified against the CAs in caFile (the
// system roots when caFile is "") with the usual host name check, and the
// certificate in certFile with the key in keyFile is presented when the
// server asks (give both or neither).
func ClientConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		data, err := readFile("CA", caFile)
		if err != nil {
			return nil, err
		}
		cas, err := parseCerts(data)
		if err != nil {
			return nil, fmt.Errorf("certs: CA file %s: %w", caFile, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		for _, ca := range cas {
			cfg.RootCAs.AddCert(ca)
		}
	}
	switch {
	case certFile != "" && keyFile != "":
		pair, err := loadKeyPair(certFile, keyFile, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	case certFile != "":
		return nil, fmt.Errorf("certs: certificate file %s given without its key file", certFile)
	case keyFile != "":
		return nil, fmt.Errorf("certs: key file %s given without its certificate file", keyFile)
	}
	return cfg, nil
}

// Explain makes a failed handshake's error say what happened in words: a
// peer that does not speak TLS wraps ErrNotTLS, a peer that refused this
// side's certificate wraps ErrRefused. Other errors, and nil, come back as
// they are.
func Explain(err error) error {
	if err == nil {
		return nil
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fmt.Errorf("%w: %w", ErrNotTLS, err)
	}
	// A received alert is a *net.OpError "remote error" around an
	// unexported type (tls.AlertError is only for QUIC), so its text is
	// all there is to go on.
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil && certificateAlerts[op.Err.Error()] {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return err
}

// certificateAlerts are the texts of the TLS alerts that refuse a
// certificate: bad_certificate, unsupported_certificate,
// certificate_revoked, certificate_expired, certificate_unknown, unknown_ca,
// access_denied and certificate_required (RFC 8446, 6.2).
var certificateAlerts = map[string]bool{
	"tls: bad certificate":               true,
	"tls: unsupported certificate":       true,
	"tls: revoked certificate":           true,
	"tls: expired certificate":           true,
	"tls: unknown certificate":           true,
	"tls: unknown certificate authority": true,
	"tls: access denied":                 true,
	"tls: certificate required":          true,
}

// getCertificate serves the current certificate, whatever it is.
func (r *Reloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &r.cur.Load().cert, nil
}

// getNodeCertificate serves the current certificate on the node-to-node
// channel, where one without a node identity would only be refused by the
// other end with a vaguer message.
func (r *Reloader) getNodeCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	m := r.cur.Load()
	if m.nodeID == "" {
		return nil, fmt.Errorf("certs: this node's certificate %s (%s): %w, so it cannot be used between nodes", describe(m.leaf), r.files.Cert, ErrNoNodeID)
	}
	return &m.cert, nil
}

// verifyPeer is verifyChain plus the node identity.
func verifyPeer(m *material, chain []*x509.Certificate, usage x509.ExtKeyUsage, who, expectID string) error {
	leaf, err := verifyChain(m, chain, usage, who, time.Now())
	if err != nil {
		return err
	}
	id, ok := NodeID(leaf)
	switch {
	case !ok:
		return fmt.Errorf("%s certificate %s: %w (no %s://%s/<id> URI SAN; is it a client certificate?)", who, describe(leaf), ErrNoNodeID, uriScheme, uriHost)
	case expectID != "" && id != expectID:
		return fmt.Errorf("%s certificate %s: %w: expected node %q", who, describe(leaf), ErrWrongNode, expectID)
	}
	return nil
}

// verifyChain checks that chain (leaf first, then intermediates) is valid
// at now, chains to m's CAs and is issued for usage, and returns the leaf.
// The validity period is checked first and by hand, because x509's message
// for it does not say which bound was crossed.
func verifyChain(m *material, chain []*x509.Certificate, usage x509.ExtKeyUsage, who string, now time.Time) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%s: %w", who, ErrNoCertificate)
	}
	leaf := chain[0]
	if err := checkValidity(leaf, who, now); err != nil {
		return nil, err
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err == nil {
		return leaf, nil
	}
	name := who + " certificate " + describe(leaf)
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return nil, fmt.Errorf("%s: %w: issued by %q, trusted CA %s", name, ErrUnknownAuthority, leaf.Issuer.CommonName, m.caDesc)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		if err := checkIssuers(m, chain, now); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, fmt.Errorf("%s: %w: %v", name, ErrExpired, err)
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return nil, fmt.Errorf("%s: %w: not issued for %s (extended key usage)", name, ErrWrongUsage, usageName(usage))
	}
	return nil, fmt.Errorf("%s: %w", name, err)
}

// checkIssuers finds which CA or intermediate above chain's leaf is out of
// its validity period, since x509 reports only that one is.
func checkIssuers(m *material, chain []*x509.Certificate, now time.Time) error {
	issuers := map[string]bool{}
	for _, c := range chain {
		issuers[string(c.RawIssuer)] = true
	}
	for _, c := range chain[1:] {
		if issuers[string(c.RawSubject)] {
			if err := checkValidity(c, "intermediate", now); err != nil {
				return err
			}
		}
	}
	for _, c := range m.cas {
		if issuers[string(c.RawSubject)] {
			if err := checkValidity(c, "CA", now); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValidity checks a certificate's validity period.
func checkValidity(c *x509.Certificate, who string, now time.Time) error {
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("%s certificate %s: %w: valid from %s, now %s (is a clock wrong?)", who, describe(c), ErrNotYetValid, stamp(c.NotBefore), stamp(now))
	case now.After(c.NotAfter):
		return fmt.Errorf("%s certificate %s: %w: expired at %s, now %s", who, describe(c), ErrExpired, stamp(c.NotAfter), stamp(now))
	}
	return nil
}

// prefixed marks an error as this package's, once, at the top.
func prefixed(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("certs: %w", err)
}

// describe names a certificate in messages by its common name and, for a
// node, its id.
func describe(c *x509.Certificate) string {
	s := fmt.Sprintf("%q", c.Subject.CommonName)
	if c.Subject.CommonName == "" {
		s = "serial " + c.SerialNumber.Text(16)
	}
	if id, ok := NodeID(c); ok {
		s += " (node " + id + ")"
	}
	return s
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	}
	return "this use"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
