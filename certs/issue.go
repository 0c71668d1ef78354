package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The node URI is troupe://node/<id>. A fixed host lets the URI namespace
// grow later (another kind of principal) without an old node mistaking it
// for a node identity.
const (
	uriScheme = "troupe"
	uriHost   = "node"
)

// MaxNodeIDLen is the longest node id, in bytes, a certificate may carry.
const MaxNodeIDLen = 255

// maxClientNameLen is RFC 5280's upper bound for a common name.
const maxClientNameLen = 64

// backdate is how far before "now" new certificates become valid, so that
// a peer whose clock is a little behind accepts a certificate made a moment
// ago.
const backdate = 5 * time.Minute

// ValidateNodeID reports why id cannot name a node in a certificate. The
// rule is kvnode's node_id rule (non-empty; no '/', '=', ',' or white space)
// plus at most MaxNodeIDLen bytes of valid UTF-8 without control characters,
// so that an id reads the same in a URI, a log line and a file name.
func ValidateNodeID(id string) error {
	switch {
	case id == "":
		return errors.New("node id is empty")
	case len(id) > MaxNodeIDLen:
		return fmt.Errorf("node id is %d bytes long, more than %d", len(id), MaxNodeIDLen)
	case !utf8.ValidString(id):
		return fmt.Errorf("node id %q is not valid UTF-8", id)
	case strings.ContainsAny(id, "/=,"):
		return fmt.Errorf("node id %q contains '/', '=' or ','", id)
	case strings.ContainsFunc(id, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("node id %q contains white space or control characters", id)
	}
	return nil
}

// NodeURI returns the URI SAN that names node id in a certificate:
// troupe://node/<id>, with characters outside RFC 3986's path characters
// percent-encoded (ids such as "n1" or "db-2.eu" appear as they are). A CA
// other than kvctl's can issue node certificates by putting exactly this
// URI into the subjectAltName.
func NodeURI(nodeID string) (*url.URL, error) {
	if err := ValidateNodeID(nodeID); err != nil {
		return nil, err
	}
	return &url.URL{Scheme: uriScheme, Host: uriHost, Path: "/" + nodeID}, nil
}

// NodeID returns the node id a certificate carries as its troupe://node/<id>
// URI SAN. A certificate with no such URI, a malformed one, or more than one
// is no node: ok is false.
func NodeID(cert *x509.Certificate) (string, bool) {
	if cert == nil {
		return "", false
	}
	found := ""
	for _, u := range cert.URIs {
		if u.Scheme != uriScheme || !strings.EqualFold(u.Host, uriHost) {
			continue
		}
		id, ok := strings.CutPrefix(u.Path, "/")
		if !ok || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || ValidateNodeID(id) != nil {
			return "", false
		}
		// Two identities in one certificate would make "which node is
		// this?" depend on the reader; refuse rather than pick one.
		if found != "" {
			return "", false
		}
		found = id
	}
	return found, found != ""
}

// NewCA creates a self-signed ECDSA P-256 certificate authority valid from
// now for validFor, for development and small clusters. It may sign only end
// certificates (path length 0).
func NewCA(commonName string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certs: CA validity %v is not positive", validFor)
	}
	now := time.Now()
	return newCA(commonName, now.Add(-backdate), now.Add(validFor))
}

func newCA(commonName string, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	if strings.TrimSpace(commonName) == "" {
		return nil, nil, errors.New("certs: CA common name is empty")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generating the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: signing the CA certificate: %w", err)
	}
	return encode(der, key)
}

// NewNodeCert issues a node certificate signed by the given CA, valid from
// now for validFor (and not beyond the CA's own expiry). It serves and
// dials alike (ExtKeyUsage ServerAuth and ClientAuth), carries the node's
// identity as the URI SAN troupe://node/<nodeID> (see NodeURI) and CN
// nodeID, and lists hosts, each an IP address or a DNS name (a "*."
// wildcard allowed), as SANs so HTTPS clients can verify the client API by
// host name.
//
// The node id is deliberately not added as a DNS name: an id such as
// "localhost" or "db" would then vouch for a host the node may not be, and
// identity would leak into host name checks. List the names clients use in
// hosts instead.
func NewNodeCert(caCertPEM, caKeyPEM []byte, nodeID string, hosts []string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certs: certificate validity %v is not positive", validFor)
	}
	now := time.Now()
	return issue(caCertPEM, caKeyPEM, leafSpec{nodeID: nodeID, hosts: hosts}, now.Add(-backdate), now.Add(validFor))
}

// NewClientCert issues a client certificate signed by the given CA: CN
// name, ExtKeyUsage ClientAuth only, and no node URI, so it opens the
// client API when that requires client certificates but is refused on the
// node-to-node channel.
func NewClientCert(caCertPEM, caKeyPEM []byte, name string, validFor time.Duration) (certPEM, keyPEM []byte, err error) {
	if validFor <= 0 {
		return nil, nil, fmt.Errorf("certs: certificate validity %v is not positive", validFor)
	}
	now := time.Now()
	return issue(caCertPEM, caKeyPEM, leafSpec{clientName: name}, now.Add(-backdate), now.Add(validFor))
}

// leafSpec is what an end certificate says: a node (nodeID set) or a
// client (clientName set).
type leafSpec struct {
	nodeID     string
	hosts      []string
	clientName string
}

// issue signs an end certificate valid from notBefore to notAfter. Tests
// call it directly to make certificates that are already expired or not yet
// valid.
func issue(caCertPEM, caKeyPEM []byte, spec leafSpec, notBefore, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	if notAfter.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("certs: the certificate would outlive its CA, which expires at %s; issue it for a shorter time or make a new CA", stamp(ca.NotAfter))
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	switch {
	case spec.nodeID != "" || spec.clientName == "":
		u, err := NodeURI(spec.nodeID)
		if err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
		tmpl.Subject = pkix.Name{CommonName: spec.nodeID}
		tmpl.URIs = []*url.URL{u}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		if tmpl.DNSNames, tmpl.IPAddresses, err = splitHosts(spec.hosts); err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
	default:
		if err := validateClientName(spec.clientName); err != nil {
			return nil, nil, fmt.Errorf("certs: %w", err)
		}
		tmpl.Subject = pkix.Name{CommonName: spec.clientName}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generating a key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: signing the certificate: %w", err)
	}
	return encode(der, key)
}

func validateClientName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("client name is empty")
	case len(name) > maxClientNameLen:
		return fmt.Errorf("client name is %d bytes long, more than %d", len(name), maxClientNameLen)
	case !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("client name %q contains control characters or invalid UTF-8", name)
	}
	return nil
}

// splitHosts sorts hosts into DNS names and IP addresses, refusing anything
// that is neither, so a typo fails here rather than as a host name mismatch
// at the first HTTPS request.
func splitHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, nil, errors.New("empty host name")
		}
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("host %q is neither an IP address nor a DNS name", h)
		}
		if !seen[name] {
			seen[name] = true
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

// validDNSName accepts host names as certificates carry them: letters,
// digits, '-' and '_' in labels of 1 to 63 characters, optionally behind
// one leading "*." wildcard.
func validDNSName(name string) bool {
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certs: drawing a serial number: %w", err)
	}
	return serial, nil
}

func encode(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: encoding the key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// parseCA checks that a CA can sign: a CA certificate, still valid, with
// the key that belongs to it.
func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cas, err := parseCerts(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA certificate: %w", err)
	}
	ca := cas[0]
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("certs: CA certificate %q is not a CA (no CA basic constraint or certSign key usage)", ca.Subject.CommonName)
	}
	if now := time.Now(); now.After(ca.NotAfter) {
		return nil, nil, fmt.Errorf("certs: CA certificate %q: %w: expired at %s", ca.Subject.CommonName, ErrExpired, stamp(ca.NotAfter))
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: CA key: %w", err)
	}
	if !samePublicKey(key.Public(), ca.PublicKey) {
		return nil, nil, fmt.Errorf("certs: the CA key does not match the CA certificate %q", ca.Subject.CommonName)
	}
	return ca, key, nil
}

// parseCerts decodes every CERTIFICATE block, in order, ignoring other
// blocks and text between them.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	sawPEM := false
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		sawPEM = true
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	switch {
	case !sawPEM:
		return nil, errors.New("not PEM: no -----BEGIN CERTIFICATE----- block found")
	case len(out) == 0:
		return nil, errors.New("no CERTIFICATE block among its PEM blocks")
	}
	return out, nil
}

// parseKey reads the first private key block: PKCS #8 ("PRIVATE KEY"), or
// the older EC and RSA forms other tools still write.
func parseKey(data []byte) (crypto.Signer, error) {
	sawPEM := false
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		sawPEM = true
		var key any
		var err error
		switch b.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(b.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", b.Type, err)
		}
		if k, ok := key.(crypto.Signer); ok {
			return k, nil
		}
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if !sawPEM {
		return nil, errors.New("not PEM: no -----BEGIN PRIVATE KEY----- block found")
	}
	return nil, errors.New("no PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block among its PEM blocks")
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}
