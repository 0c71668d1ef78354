package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/troupe-kv/troupe/certs"
	"github.com/troupe-kv/troupe/client"
)

// setting is one connection setting kvctl reads from a flag, an
// environment variable and a YAML key, in that order of precedence.
type setting struct {
	key, flag, env string
}

var connectionSettings = []setting{
	{"addr", "addr", envAddr},
	{"timeout", "timeout", "TROUPE_TIMEOUT"},
	{"ca_file", "ca-file", "TROUPE_CA_FILE"},
	{"cert_file", "cert-file", "TROUPE_CERT_FILE"},
	{"key_file", "key-file", "TROUPE_KEY_FILE"},
}

// resolved are the connection settings of one invocation.
type resolved struct {
	addrs   []string
	timeout time.Duration
	// tls is nil unless a CA, certificate or key file is set.
	tls *tls.Config
}

// settings resolves the connection settings through viper: a flag given on
// the command line wins, then the environment, then the config file, then
// the flag's default. The environment comes from c.getenv rather than
// viper's own lookup so tests can inject it, which is why it is applied
// with Set, and only where the flag was not given.
func (c *cli) settings(fs *pflag.FlagSet) (resolved, error) {
	v := viper.New()
	path, from := fs.Lookup("config").Value.String(), "--config"
	if !fs.Changed("config") {
		path, from = c.getenv(envConfig), "$"+envConfig
	}
	if path != "" {
		if err := readConfig(v, path, from); err != nil {
			return resolved{}, err
		}
	}
	for _, s := range connectionSettings {
		if err := v.BindPFlag(s.key, fs.Lookup(s.flag)); err != nil {
			return resolved{}, err
		}
		if e := c.getenv(s.env); e != "" && !fs.Changed(s.flag) {
			v.Set(s.key, e)
		}
	}
	source := func(s setting) string {
		switch {
		case fs.Changed(s.flag):
			return "--" + s.flag
		case c.getenv(s.env) != "":
			return "$" + s.env
		case v.InConfig(s.key):
			return path + ": " + s.key
		}
		return "--" + s.flag
	}

	var out resolved
	var addrs addrList
	switch a := v.Get("addr").(type) {
	case string:
		_ = addrs.Set(a)
	case []any:
		for _, one := range a {
			_ = addrs.Set(fmt.Sprint(one))
		}
	case nil:
	default:
		return resolved{}, usagef("%s: want addresses, as a list or comma-separated, not %v", source(connectionSettings[0]), a)
	}
	out.addrs = addrs
	if len(out.addrs) == 0 {
		out.addrs = []string{client.DefaultEndpoint}
	}
	for _, a := range out.addrs {
		if _, err := client.ParseEndpoint(a); err != nil {
			return resolved{}, usagef("%s: %v", source(connectionSettings[0]), err)
		}
	}

	switch t := v.Get("timeout").(type) {
	case string:
		d, err := time.ParseDuration(t)
		if err != nil {
			return resolved{}, usagef("%s: %q is not a duration such as 10s or 1m", source(connectionSettings[1]), t)
		}
		out.timeout = d
	case time.Duration:
		out.timeout = t
	default:
		return resolved{}, usagef("%s: %v is not a duration such as 10s or 1m (a number needs a unit)", source(connectionSettings[1]), t)
	}

	ca, cert, key := v.GetString("ca_file"), v.GetString("cert_file"), v.GetString("key_file")
	if ca != "" || cert != "" || key != "" {
		cfg, err := certs.ClientConfig(ca, cert, key)
		if err != nil {
			return resolved{}, err
		}
		out.tls = cfg
	}
	return out, nil
}

// readConfig merges the YAML file at path into v, refusing keys kvctl does
// not know so that a typo does not silently fall back to a default.
func readConfig(v *viper.Viper, path, from string) error {
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s (from %s): %v", path, from, err)
	}
	var known []string
	for _, s := range connectionSettings {
		known = append(known, s.key)
	}
	for _, k := range v.AllKeys() {
		if !slices.Contains(known, k) {
			return fmt.Errorf("config file %s (from %s): unknown setting %q; kvctl reads %s (is this kvnode's file? both read $%s)", path, from, k, strings.Join(known, ", "), envConfig)
		}
	}
	return nil
}

// tlsHint adds what to do to the TLS failures an operator meets first,
// whose own messages name the symptom but not the setting.
func tlsHint(err error) error {
	if err == nil {
		return nil
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (pass the cluster's CA with --ca-file or $TROUPE_CA_FILE)", err)
	case errors.As(err, &host):
		return fmt.Errorf("%w (the node's certificate does not list this host; use a name it lists, or reissue it with kvctl tls cert --hosts)", err)
	case client.StatusCode(err) == http.StatusBadRequest && strings.Contains(err.Error(), "HTTP request to an HTTPS server"):
		return fmt.Errorf("%w (the node serves HTTPS: use https://host:port, or set --ca-file)", err)
	case errors.Is(certs.Explain(err), certs.ErrRefused):
		return fmt.Errorf("%w (the node wants a client certificate from its CA: --cert-file and --key-file)", err)
	}
	return err
}
