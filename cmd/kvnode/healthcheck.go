package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// healthcheckUsage explains `kvnode healthcheck`.
const healthcheckUsage = `Usage: kvnode healthcheck [--live | --cluster] [kvnode flags]

Asks the node on this host whether it is ready (GET /readyz: it can serve
linearizable requests), or with --live only whether it answers at all
(GET /healthz), and exits 0 if so, 1 if not, printing the answer. With
--cluster it also asks the node's failure detector (GET
/v1/cluster/health) and the member list, and exits 0 only if the node is
ready and sees every other member alive: what a rolling restart waits for
before it takes the next node down (with ACLs on it sends acl_token); it
also prints the version the node runs. It reads
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
	var wholeCluster bool
	for _, a := range args {
		switch a {
		case "--help", "-h":
			fmt.Fprint(stderr, healthcheckUsage)
			return 0
		case "--live":
			path = "/healthz"
		case "--cluster":
			wholeCluster = true
		default:
			rest = append(rest, a)
		}
	}
	cfg, err := loadConfig(rest)
	if err != nil {
		fmt.Fprintf(stderr, "kvnode healthcheck: %v\n", err)
		return 1
	}
	if wholeCluster && path != "/readyz" {
		fmt.Fprintln(stderr, "kvnode healthcheck: --live and --cluster ask different questions: give one")
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
	if wholeCluster {
		base := strings.TrimSuffix(url, path)
		peers, err := peersAlive(client, base, cfg.ACLToken)
		if err != nil {
			fmt.Fprintf(stderr, "kvnode healthcheck: %s: %v\n", base, err)
			return 1
		}
		msg += "; " + peers
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, msg)
	return 0
}

// peersAlive asks the node for its members and its failure detector's
// view, and says how many it sees alive and which version the node runs,
// or which members are not alive.
func peersAlive(client *http.Client, base, token string) (string, error) {
	var members []struct {
		ID string `json:"id"`
	}
	if err := getJSON(client, base+"/v1/cluster/members", token, &members); err != nil {
		return "", err
	}
	var health struct {
		Node  string `json:"node"`
		Peers []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"peers"`
	}
	if err := getJSON(client, base+"/v1/cluster/health", token, &health); err != nil {
		return "", err
	}
	state := map[string]string{}
	for _, p := range health.Peers {
		state[p.ID] = p.State
	}
	var bad []string
	for _, m := range members {
		switch st := state[m.ID]; {
		case m.ID == health.Node:
		case st == "":
			bad = append(bad, m.ID+" (no verdict yet)")
		case st != "alive":
			bad = append(bad, m.ID+" "+st)
		}
	}
	if len(bad) > 0 {
		return "", fmt.Errorf("%s sees a member not alive: %s", health.Node, strings.Join(bad, ", "))
	}
	// The version the node runs, which an upgrade waits to see.
	var st struct {
		Version string `json:"version"`
	}
	if err := getJSON(client, base+"/v1/cluster/status", token, &st); err != nil {
		return "", err
	}
	if len(members) == 1 {
		return "1 member, no peers; runs " + st.Version, nil
	}
	return fmt.Sprintf("%d members, every peer alive; runs %s", len(members), st.Version), nil
}

// getJSON GETs url, with the token when there is one, and decodes a 200.
func getJSON(client *http.Client, url, token string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("X-Consul-Token", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		hint := ""
		if (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && token == "" {
			hint = " (ACLs are on: give the node an acl_token, e.g. TROUPE_ACL_TOKEN)"
		}
		return fmt.Errorf("GET %s: %s: %s%s", url, resp.Status, strings.TrimSpace(string(body)), hint)
	}
	return json.Unmarshal(body, v)
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
