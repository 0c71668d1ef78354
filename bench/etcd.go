package bench

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/troupe-kv/troupe/localcluster"
)

// Etcd speaks etcd v3's HTTP JSON gateway, for side-by-side runs. Reads
// are linearizable by default and "serializable" (local) when stale.
type Etcd struct{}

// Name is "etcd".
func (Etcd) Name() string { return "etcd" }

// TLSConfig is nil: the comparison cluster serves plain HTTP.
func (Etcd) TLSConfig() *tls.Config { return nil }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func etcdRequest(endpoint, path string, body any) *http.Request {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, "http://"+endpoint+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	return req
}

// Put is /v3/kv/put.
func (Etcd) Put(endpoint, key string, value []byte) *http.Request {
	return etcdRequest(endpoint, "/v3/kv/put", map[string]string{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)})
}

// Get is /v3/kv/range, serializable when stale.
func (Etcd) Get(endpoint, key string, stale bool) *http.Request {
	return etcdRequest(endpoint, "/v3/kv/range", map[string]any{"key": b64(key), "serializable": stale})
}

// CAS is a /v3/kv/txn comparing the key's mod revision (create revision 0
// for "create if absent").
func (Etcd) CAS(endpoint, key string, value []byte, version uint64) *http.Request {
	cmp := map[string]any{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": strconv.FormatUint(version, 10)}
	if version == 0 {
		cmp = map[string]any{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
	}
	return etcdRequest(endpoint, "/v3/kv/txn", map[string]any{
		"compare": []any{cmp},
		"success": []any{map[string]any{"request_put": map[string]string{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)}}},
	})
}

// Txn is a /v3/kv/txn with no comparison and one put per key.
func (Etcd) Txn(endpoint string, keys []string, value []byte) *http.Request {
	puts := make([]any, len(keys))
	for i, k := range keys {
		puts[i] = map[string]any{"request_put": map[string]string{"key": b64(k), "value": base64.StdEncoding.EncodeToString(value)}}
	}
	return etcdRequest(endpoint, "/v3/kv/txn", map[string]any{"success": puts})
}

// Check reads etcd's answers; the version is the revision a write created,
// or a read key's mod revision.
func (Etcd) Check(kind Kind, resp *http.Response, body []byte) (bool, uint64) {
	if resp.StatusCode != http.StatusOK {
		return false, 0
	}
	var r struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
		Succeeded bool `json:"succeeded"`
		Kvs       []struct {
			ModRevision string `json:"mod_revision"`
		} `json:"kvs"`
	}
	if json.Unmarshal(body, &r) != nil {
		return false, 0
	}
	rev, _ := strconv.ParseUint(r.Header.Revision, 10, 64)
	switch kind {
	case CAS, Txn:
		return r.Succeeded, rev
	case Writes:
		return true, rev
	default:
		var mod uint64
		if len(r.Kvs) > 0 {
			mod, _ = strconv.ParseUint(r.Kvs[0].ModRevision, 10, 64)
		}
		return true, mod
	}
}

// EtcdCluster is a local etcd cluster started for comparison.
type EtcdCluster struct {
	cmds      []*exec.Cmd
	endpoints []string
}

// StartEtcd launches n etcd members (default fsync, as in production)
// with data under dir, and waits until the cluster answers.
func StartEtcd(dir, bin string, n int) (*EtcdCluster, error) {
	ports, err := localcluster.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := 0; i < n; i++ {
		peers = append(peers, fmt.Sprintf("e%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	ec := &EtcdCluster{}
	for i := 0; i < n; i++ {
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("etcd%d.log", i+1)))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin,
			"--name", fmt.Sprintf("e%d", i+1),
			"--data-dir", filepath.Join(dir, fmt.Sprintf("e%d", i+1)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(peers, ","), "--initial-cluster-state", "new",
			"--log-level", "warn")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			ec.Close()
			return nil, err
		}
		ec.cmds = append(ec.cmds, cmd)
		ec.endpoints = append(ec.endpoints, strings.TrimPrefix(client, "http://"))
	}
	hc := NewClient(1, nil)
	deadline := time.Now().Add(60 * time.Second)
	for _, ep := range ec.endpoints {
		for {
			resp, err := hc.Do(Etcd{}.Put(ep, "bench/ready", []byte("x")))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				ec.Close()
				return nil, fmt.Errorf("etcd at %s did not answer within a minute", ep)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return ec, nil
}

// Pids lists the members' process ids.
func (e *EtcdCluster) Pids() []int {
	var out []int
	for _, c := range e.cmds {
		out = append(out, c.Process.Pid)
	}
	return out
}

// Endpoints lists the members' client addresses.
func (e *EtcdCluster) Endpoints() []string { return e.endpoints }

// Close stops every member.
func (e *EtcdCluster) Close() {
	for _, c := range e.cmds {
		_ = c.Process.Kill()
		_ = c.Wait()
	}
}
