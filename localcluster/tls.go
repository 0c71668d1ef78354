package localcluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/troupe-kv/troupe/certs"
)

// clusterTLS is a cluster's development CA and the client that speaks to
// its nodes.
type clusterTLS struct {
	dir            string
	caCert, caKey  []byte
	client         *http.Client
	clientCertFile string
	clientKeyFile  string
}

// caLife and certLife: a test cluster's CA outlives its certificates, so
// tests can issue renewed ones.
const (
	caLife   = 7 * 24 * time.Hour
	certLife = 24 * time.Hour
)

func newClusterTLS(dir string) (*clusterTLS, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	caCert, caKey, err := certs.NewCA("localcluster development CA", caLife)
	if err != nil {
		return nil, err
	}
	t := &clusterTLS{dir: dir, caCert: caCert, caKey: caKey}
	if err := t.write("ca.pem", caCert); err != nil {
		return nil, err
	}
	// The key stays beside it, so tests can issue more certificates.
	if err := t.write("ca-key.pem", caKey); err != nil {
		return nil, err
	}
	cert, key, err := certs.NewClientCert(caCert, caKey, "localcluster", certLife)
	if err != nil {
		return nil, err
	}
	t.clientCertFile, t.clientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	if err := t.write("client.pem", cert); err != nil {
		return nil, err
	}
	if err := t.write("client-key.pem", key); err != nil {
		return nil, err
	}
	cfg, err := certs.ClientConfig(t.CAFile(), t.clientCertFile, t.clientKeyFile)
	if err != nil {
		return nil, err
	}
	t.client = newHTTPClient(cfg)
	return t, nil
}

func (t *clusterTLS) write(name string, b []byte) error {
	return os.WriteFile(filepath.Join(t.dir, name), b, 0o600)
}

// CAFile is the CA certificate's file.
func (t *clusterTLS) CAFile() string { return filepath.Join(t.dir, "ca.pem") }

// nodeFiles makes node n's certificate, for the hosts of its addresses.
func (t *clusterTLS) nodeFiles(n *Node) (cert, key string, err error) {
	var hosts []string
	for _, a := range []string{n.HTTPAddr, n.RaftAddr} {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return "", "", err
		}
		hosts = append(hosts, h)
	}
	c, k, err := certs.NewNodeCert(t.caCert, t.caKey, n.ID, hosts, certLife)
	if err != nil {
		return "", "", err
	}
	cert, key = filepath.Join(t.dir, n.ID+".pem"), filepath.Join(t.dir, n.ID+"-key.pem")
	if err := t.write(n.ID+".pem", c); err != nil {
		return "", "", err
	}
	return cert, key, t.write(n.ID+"-key.pem", k)
}

// tlsArgs are the kvnode flags that give node n its certificate; none
// without TLS.
func (c *Cluster) tlsArgs(n *Node) ([]string, error) {
	if c.tls == nil {
		return nil, nil
	}
	cert, key, err := c.tls.nodeFiles(n)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate: %w", n.ID, err)
	}
	return []string{"--tls-ca-file", c.tls.CAFile(), "--tls-cert-file", cert, "--tls-key-file", key, "--tls-verify-incoming"}, nil
}

// TLSConfig is what a client of this cluster needs: the CA and a client
// certificate from it; nil without Options.TLS.
func (c *Cluster) TLSConfig() *tls.Config {
	if c.tls == nil {
		return nil
	}
	cfg, err := certs.ClientConfig(c.tls.CAFile(), c.tls.clientCertFile, c.tls.clientKeyFile)
	if err != nil {
		return nil
	}
	return cfg
}

// TLSDir is where the CA, the client certificate and the nodes'
// certificates are; "" without Options.TLS.
func (c *Cluster) TLSDir() string {
	if c.tls == nil {
		return ""
	}
	return c.tls.dir
}

func newHTTPClient(cfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: time.Minute, TLSClientConfig: cfg},
	}
}
