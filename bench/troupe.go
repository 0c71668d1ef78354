package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// Troupe speaks Troupe's (Consul's) KV API, over HTTPS when TLS is set.
type Troupe struct {
	// TLS is the client side of a cluster that serves HTTPS: its CA and
	// a client certificate (the nodes require one). Nil speaks plain HTTP.
	TLS *tls.Config
}

// Name is "troupe", or "troupe-tls" over HTTPS, so the two can be rows of
// one table.
func (t Troupe) Name() string {
	if t.TLS != nil {
		return "troupe-tls"
	}
	return "troupe"
}

// TLSConfig is the client TLS configuration, nil for plain HTTP.
func (t Troupe) TLSConfig() *tls.Config { return t.TLS }

func (t Troupe) url(endpoint, key string) string {
	scheme := "http://"
	if t.TLS != nil {
		scheme = "https://"
	}
	return scheme + endpoint + "/v1/kv/" + key
}

// Put is PUT /v1/kv/<key>.
func (t Troupe) Put(endpoint, key string, value []byte) *http.Request {
	req, _ := http.NewRequest(http.MethodPut, t.url(endpoint, key), bytes.NewReader(value))
	return req
}

// Get is a linearizable GET, or ?stale.
func (t Troupe) Get(endpoint, key string, stale bool) *http.Request {
	url := t.url(endpoint, key)
	if stale {
		url += "?stale"
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return req
}

// CAS is PUT ?cas=<ModifyIndex> (0: create if absent).
func (t Troupe) CAS(endpoint, key string, value []byte, version uint64) *http.Request {
	req, _ := http.NewRequest(http.MethodPut, t.url(endpoint, key)+"?cas="+strconv.FormatUint(version, 10), bytes.NewReader(value))
	return req
}

// Txn is PUT /v1/txn with one KV "set" per key.
func (t Troupe) Txn(endpoint string, keys []string, value []byte) *http.Request {
	ops := make([]map[string]any, len(keys))
	for i, k := range keys {
		ops[i] = map[string]any{"KV": map[string]any{"Verb": "set", "Key": k, "Value": value}}
	}
	body, _ := json.Marshal(ops)
	scheme := "http://"
	if t.TLS != nil {
		scheme = "https://"
	}
	req, _ := http.NewRequest(http.MethodPut, scheme+endpoint+"/v1/txn", bytes.NewReader(body))
	return req
}

// Check: writes and CAS succeed on 200 "true", reads on 200 or 404. The
// version is X-Consul-Index, which is the written key's new ModifyIndex
// after a successful write and the key's ModifyIndex on a read.
func (Troupe) Check(kind Kind, resp *http.Response, body []byte) (bool, uint64) {
	v, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	switch kind {
	case Writes, CAS:
		return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "true", v
	case Txn:
		return resp.StatusCode == http.StatusOK, v
	default:
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound, v
	}
}
