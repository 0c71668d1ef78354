package bench

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
)

// Troupe speaks Troupe's (Consul's) KV API.
type Troupe struct{}

// Name is "troupe".
func (Troupe) Name() string { return "troupe" }

// Put is PUT /v1/kv/<key>.
func (Troupe) Put(endpoint, key string, value []byte) *http.Request {
	req, _ := http.NewRequest(http.MethodPut, "http://"+endpoint+"/v1/kv/"+key, bytes.NewReader(value))
	return req
}

// Get is a linearizable GET, or ?stale.
func (Troupe) Get(endpoint, key string, stale bool) *http.Request {
	url := "http://" + endpoint + "/v1/kv/" + key
	if stale {
		url += "?stale"
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	return req
}

// CAS is PUT ?cas=<ModifyIndex> (0: create if absent).
func (Troupe) CAS(endpoint, key string, value []byte, version uint64) *http.Request {
	req, _ := http.NewRequest(http.MethodPut, "http://"+endpoint+"/v1/kv/"+key+"?cas="+strconv.FormatUint(version, 10), bytes.NewReader(value))
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
	default:
		return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotFound, v
	}
}
