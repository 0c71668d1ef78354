package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/troupe-kv/troupe/certs"
)

// The tls commands make a development CA and certificates with package
// certs. They touch local files only; the files they write are what
// kvnode's TLS settings and kvctl's --ca-file, --cert-file and --key-file
// read.

const productionCANote = `This is a development CA: its key sits in a plain file. In production any
CA will do, as long as every node certificate carries the node's identity as
the URI SAN troupe://node/<node-id> (exactly one), with extended key usage
serverAuth and clientAuth, plus the DNS names and IP addresses clients use
to reach the node; for example, with openssl:
  subjectAltName   = URI:troupe://node/n1, DNS:db1.example.com, IP:10.0.0.1
  extendedKeyUsage = serverAuth, clientAuth
Client certificates (kvctl, applications) need clientAuth and must not carry
a troupe:// URI: the nodes refuse them as peers.`

var tlsCommand = &command{
	name: "tls", group: tlsGroup, args: "<subcommand> [arguments]",
	summary: "make a development CA and node or client certificates",
	long: `Make the TLS material a cluster needs: a CA (kvctl tls ca), then one
certificate per node and any client certificates (kvctl tls cert). Files are
PEM and keys ECDSA P-256; keys are written with mode 0600, certificates
0644, and existing files are never overwritten without --force. These
commands work on local files only and contact no node.

` + productionCANote,
	example: `  kvctl tls ca --dir tls
  kvctl tls cert --dir tls --node n1 --hosts db1.example.com,10.0.0.1
  kvctl tls cert --dir tls --client ops
  kvctl --ca-file tls/ca.pem --cert-file tls/ops.pem --key-file tls/ops-key.pem --addr db1.example.com:8500 status`,
	subs: []*command{tlsCACommand, tlsCertCommand},
}

var tlsCACommand = &command{
	name: "ca", group: tlsGroup, maxArgs: 0, local: true,
	summary: "make a development CA (ca.pem, ca-key.pem)",
	long: `Make a self-signed ECDSA P-256 CA and write DIR/ca.pem (the certificate,
which every node and client is given) and DIR/ca-key.pem (its key, mode
0600, needed only to issue certificates: keep it off the nodes). Existing
files are left alone unless --force is given.

` + productionCANote,
	example: `  kvctl tls ca --dir tls
  kvctl tls ca --dir tls --name "Troupe staging CA" --days 730`,
	setup: func(fs *pflag.FlagSet) action {
		dir := fs.String("dir", ".", "directory to write ca.pem and ca-key.pem into (created if missing)")
		name := fs.String("name", "Troupe development CA", "the CA's common name")
		days := fs.Int("days", 3650, "days the CA is valid")
		force := fs.Bool("force", false, "overwrite existing files")
		return func(inv *invocation, args []string) error {
			if *days <= 0 {
				return usagef("--days must be positive, not %d", *days)
			}
			cert, key, err := certs.NewCA(*name, time.Duration(*days)*24*time.Hour)
			if err != nil {
				return err
			}
			w := written{Kind: "ca", Name: *name, Cert: filepath.Join(*dir, "ca.pem"), Key: filepath.Join(*dir, "ca-key.pem")}
			return inv.writeMaterial(w, cert, key, *force)
		}
	},
}

var tlsCertCommand = &command{
	name: "cert", group: tlsGroup, maxArgs: 0, local: true,
	summary: "issue a node (--node) or client (--client) certificate",
	long: `Issue a certificate signed by the CA in --ca and --ca-key (by default
DIR/ca.pem and DIR/ca-key.pem).

--node ID makes a node certificate, written to DIR/ID.pem and DIR/ID-key.pem:
usable as server and as client, carrying the identity troupe://node/ID as a
URI SAN (how nodes recognise each other) and --hosts, the DNS names and IP
addresses clients use to reach the node's HTTP API, as SANs. Without
--hosts, HTTPS clients cannot verify the node by name. The node id itself
is not added as a host name.

--client NAME makes a client certificate (common name NAME, client use only,
no node identity), written to DIR/NAME.pem and DIR/NAME-key.pem, for nodes
that require client certificates on the HTTP API. It can never pass as a node.

Existing files are left alone unless --force is given. A certificate cannot
outlive its CA.

` + productionCANote,
	example: `  kvctl tls cert --dir tls --node n1 --hosts db1.example.com,10.0.0.1
  kvctl tls cert --dir tls --node n2 --hosts 10.0.0.2 --days 90
  kvctl tls cert --dir tls --client ops
  kvctl tls cert --node n3 --hosts localhost,127.0.0.1 --ca tls/ca.pem --ca-key tls/ca-key.pem --dir /etc/troupe`,
	setup: func(fs *pflag.FlagSet) action {
		node := fs.String("node", "", "make a node certificate for this node id")
		clientName := fs.String("client", "", "make a client certificate with this name")
		var hosts addrList
		fs.Var(&hosts, "hosts", "DNS `names` and IP addresses of the node, comma-separated or repeated (--node only)")
		dir := fs.String("dir", ".", "directory to write the certificate and key into (created if missing)")
		caFile := fs.String("ca", "", "the CA certificate (default DIR/ca.pem)")
		caKeyFile := fs.String("ca-key", "", "the CA key (default DIR/ca-key.pem)")
		days := fs.Int("days", 365, "days the certificate is valid")
		force := fs.Bool("force", false, "overwrite existing files")
		return func(inv *invocation, args []string) error {
			switch {
			case (*node == "") == (*clientName == ""):
				return usagef("tls cert needs exactly one of --node ID and --client NAME")
			case *clientName != "" && len(hosts) > 0:
				return usagef("--hosts is for node certificates; a client certificate names no host")
			case *days <= 0:
				return usagef("--days must be positive, not %d", *days)
			}
			// The id or name becomes a file name, so both follow the
			// node id rule (no '/', no white space).
			name, flag := *node, "--node"
			if *clientName != "" {
				name, flag = *clientName, "--client"
			}
			if err := certs.ValidateNodeID(name); err != nil {
				return usagef("%s: %v", flag, err)
			}
			if *caFile == "" {
				*caFile = filepath.Join(*dir, "ca.pem")
			}
			if *caKeyFile == "" {
				*caKeyFile = filepath.Join(*dir, "ca-key.pem")
			}
			caCert, err := readCAFile("CA certificate", *caFile)
			if err != nil {
				return err
			}
			caKey, err := readCAFile("CA key", *caKeyFile)
			if err != nil {
				return err
			}
			validFor := time.Duration(*days) * 24 * time.Hour
			// The default must not make a certificate that outlives a
			// short-lived CA fail; an explicit --days still does.
			capped := false
			if ca, err := leafOf(caCert); err == nil && !fs.Changed("days") && time.Now().Add(validFor).After(ca.NotAfter) {
				// A minute's margin, as issuing takes "now" again.
				validFor, capped = time.Until(ca.NotAfter)-time.Minute, true
			}
			w := written{Name: name, Cert: filepath.Join(*dir, name+".pem"), Key: filepath.Join(*dir, name+"-key.pem")}
			var cert, key []byte
			if *node != "" {
				w.Kind, w.Hosts = "node", hosts
				cert, key, err = certs.NewNodeCert(caCert, caKey, name, hosts, validFor)
			} else {
				w.Kind = "client"
				cert, key, err = certs.NewClientCert(caCert, caKey, name, validFor)
			}
			if err != nil {
				return err
			}
			if capped {
				w.Note = fmt.Sprintf("valid until the CA's expiry, less than the default %d days", *days)
			}
			return inv.writeMaterial(w, cert, key, *force)
		}
	},
}

// leafOf parses the certificate the certs package just made.
func leafOf(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil {
		return nil, errors.New("internal error: the new certificate is not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

func readCAFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s %s does not exist (make a CA with 'kvctl tls ca', or point --ca and --ca-key at yours)", what, path)
	}
	return b, err
}

// written is what a tls command reports, and its JSON form.
type written struct {
	Kind    string   `json:"kind"`
	Name    string   `json:"name"`
	Hosts   []string `json:"hosts,omitempty"`
	Cert    string   `json:"cert"`
	Key     string   `json:"key"`
	Expires string   `json:"expires"`
	Note    string   `json:"note,omitempty"`
}

// writeMaterial writes a certificate and its key, both or neither when
// they exist already, and reports them.
func (inv *invocation) writeMaterial(w written, cert, key []byte, force bool) error {
	if !force {
		for _, p := range []string{w.Cert, w.Key} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("%s exists; not overwriting it without --force", p)
			}
		}
	}
	dir := filepath.Dir(w.Cert)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// The certificate is public and handed around (ca.pem to every
	// client); the key must never be readable by others.
	if err := writeAtomic(w.Key, key, 0o600); err != nil {
		return err
	}
	if err := writeAtomic(w.Cert, cert, 0o644); err != nil {
		return err
	}
	leaf, err := leafOf(cert)
	if err != nil {
		return err
	}
	w.Expires = leaf.NotAfter.UTC().Format(time.RFC3339)
	if inv.json {
		return inv.printJSON(w)
	}
	what := map[string]string{"ca": "CA", "node": "node", "client": "client"}[w.Kind]
	fmt.Fprintf(inv.stdout, "wrote %s (%s certificate %q) and %s (its key, mode 0600)\n", w.Cert, what, w.Name, w.Key)
	if len(w.Hosts) > 0 {
		fmt.Fprintf(inv.stdout, "hosts: %s\n", strings.Join(w.Hosts, ", "))
	}
	fmt.Fprintf(inv.stdout, "expires %s\n", w.Expires)
	if w.Note != "" {
		fmt.Fprintf(inv.stdout, "note: %s\n", w.Note)
	}
	return nil
}

// writeAtomic writes data to path with mode through a temporary file
// (created 0600) and a rename, so an interrupted run leaves the old file or
// the new one, and an overwritten key does not keep looser permissions.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if err := f.Close(); werr == nil {
		werr = err
	}
	if werr == nil {
		werr = os.Chmod(tmp, mode)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, werr)
	}
	return nil
}
