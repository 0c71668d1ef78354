package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckUsage explains `kvnode healthcheck`.
const healthcheckUsage = `Usage: kvnode healthcheck [--live] [kvnode flags]

Asks the node on this host whether it is ready (GET /readyz: it can serve
linearizable requests), or with --live only whether it answers at all
(GET /healthz), and exits 0 if so, 1 if not, printing the answer. It reads
the node's settings as kvnode does (flags, TROUPE_* variables, --config),
so with the same environment it finds the node's HTTP port and speaks
HTTPS when TLS is on. Meant for a container's HEALTHCHECK, where an image
built FROM scratch has no shell or curl:

  HEALTHCHECK CMD ["/kvnode", "healthcheck"]
`

// healthcheckTimeout bounds one probe, well inside Docker's default
// HEALTHCHECK timeout of 30s.
const healthcheckTimeout = 4 * time.Second

// runHealthcheck is 'kvnode healthcheck'; it returns the exit status.
func runHealthcheck(args []string, stdout, stderr io.Writer) int {
	path := "/readyz"
	var rest []string
	for _, a := range args {
		switch a {
		case "--help", "-h":
			fmt.Fprint(stderr, healthcheckUsage)
			return 0
		case "--live":
			path = "/healthz"
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := loadConfig(rest)
	if err != nil {
		fmt.Fprintf(stderr, "kvnode healthcheck: %v\n", err)
		return 1
	}
	url, client := probeTarget(cfg, path)
	defer client.CloseIdleConnections()
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintf(stderr, "kvnode healthcheck: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "kvnode healthcheck: %s: %s: %s\n", url, resp.Status, msg)
		return 1
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, msg)
	return 0
}

// probeTarget is the URL of the node's own path on its HTTP port and a
// client for it. A node bound to every interface is asked on loopback.
// With TLS on, the client presents the node's certificate (which a node
// with tls_verify_incoming wants) and does not check the server's: the
// probe asks a node on this host about itself, and the address it uses
// need not be among the certificate's names.
func probeTarget(cfg *Config, path string) (string, *http.Client) {
	host, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	scheme := "http"
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	if cfg.TLS != nil {
		scheme = "https"
		files := cfg.TLS.Files()
		tr.TLSClientConfig = &tls.Config{
			MinVersion:         tls.VersionTLS12,
			InsecureSkipVerify: true, // see the comment above
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
				if err != nil {
					return nil, errors.Join(errors.New("loading the node's certificate"), err)
				}
				return &pair, nil
			},
		}
	}
	url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, port), path)
	return url, &http.Client{Transport: tr, Timeout: healthcheckTimeout}
}
