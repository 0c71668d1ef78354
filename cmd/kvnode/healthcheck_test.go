package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHealthcheck probes a stand-in node: exit 0 while /readyz says
// ready, 1 when it says not ready or nothing answers; --live asks
// /healthz. The address comes from the settings, as the node's own would.
func TestHealthcheck(t *testing.T) {
	cleanEnv(t)
	var ready atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		case r.URL.Path == "/readyz" && ready.Load():
			_, _ = w.Write([]byte("ready\n"))
		case r.URL.Path == "/readyz":
			http.Error(w, "not ready: no leader", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	port := addr[strings.LastIndex(addr, ":")+1:]

	check := func(wantCode int, wantOut string, args ...string) {
		t.Helper()
		checkHealthcheck(t, wantCode, wantOut, args...)
	}
	check(1, "503 Service Unavailable: not ready: no leader", "--http-addr", addr)
	check(0, "/healthz: ok", "--http-addr", addr, "--live")
	ready.Store(true)
	check(0, "http://"+addr+"/readyz: ready", "--http-addr", addr)
	// A node bound to every interface is asked on loopback, and the
	// setting may come from the environment.
	t.Setenv("TROUPE_HTTP_ADDR", "0.0.0.0:"+port)
	check(0, "http://127.0.0.1:"+port+"/readyz: ready", "--advertise-http", "10.0.0.1:"+port, "--advertise-raft", "10.0.0.1:8300")
	srv.Close()
	check(1, "connection refused", "--advertise-http", "10.0.0.1:"+port, "--advertise-raft", "10.0.0.1:8300")
	check(1, "config: log_level", "--advertise-http", "10.0.0.1:"+port, "--advertise-raft", "10.0.0.1:8300", "--log-level", "loud")
}

func TestVersionFlag(t *testing.T) {
	cleanEnv(t)
	if _, err := loadConfig([]string{"--version", "--node-id", "x"}); err != errVersion {
		t.Fatalf("--version: %v, want errVersion", err)
	}
	// Asked for the version, kvnode does not judge the rest.
	if _, err := loadConfig([]string{"--version", "--log-level", "loud"}); err != errVersion {
		t.Fatalf("--version with a bad setting: %v, want errVersion", err)
	}
}

// TestHealthcheckCluster: --cluster passes only when the node is ready
// and its failure detector sees every other member alive; it sends the
// node's acl_token, and says what to do when ACLs refuse it.
func TestHealthcheckCluster(t *testing.T) {
	cleanEnv(t)
	var n3 atomic.Value
	n3.Store("alive")
	var tokens atomic.Value
	tokens.Store("")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tokens.Store(r.Header.Get("X-Consul-Token"))
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ready\n"))
		case "/v1/cluster/members":
			if r.Header.Get("X-Consul-Token") == "" {
				http.Error(w, "ACL not found", http.StatusUnauthorized)
				return
			}
			_, _ = w.Write([]byte(`[{"id":"n1"},{"id":"n2"},{"id":"n3"}]`))
		case "/v1/cluster/status":
			_, _ = w.Write([]byte(`{"id":"n1","version":"v9.9.9"}`))
		case "/v1/cluster/health":
			st := n3.Load().(string)
			peers := `{"id":"n2","state":"alive"}`
			if st != "" {
				peers += `,{"id":"n3","state":"` + st + `"}`
			}
			_, _ = w.Write([]byte(`{"node":"n1","peers":[` + peers + `]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	check := func(wantCode int, wantOut string, args ...string) {
		t.Helper()
		checkHealthcheck(t, wantCode, wantOut, args...)
	}
	check(1, "ACLs are on: give the node an acl_token", "--http-addr", addr, "--cluster")
	check(0, "ready; 3 members, every peer alive; runs v9.9.9", "--http-addr", addr, "--cluster", "--acl-token", "s3cret")
	if got := tokens.Load(); got != "s3cret" {
		t.Errorf("sent token %q, want the node's acl_token", got)
	}
	n3.Store("dead")
	check(1, "n1 sees a member not alive: n3 dead", "--http-addr", addr, "--cluster", "--acl-token", "s3cret")
	n3.Store("")
	check(1, "n3 (no verdict yet)", "--http-addr", addr, "--cluster", "--acl-token", "s3cret")
	// Without --cluster the peers do not matter.
	check(0, "/readyz: ready", "--http-addr", addr)
	check(1, "give one", "--http-addr", addr, "--cluster", "--live")
}

// checkHealthcheck runs kvnode healthcheck with args and wants its exit
// status and, in its output, wantOut.
func checkHealthcheck(t *testing.T, wantCode int, wantOut string, args ...string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runHealthcheck(args, &out, &errb)
	if code != wantCode || !strings.Contains(out.String()+errb.String(), wantOut) {
		t.Fatalf("healthcheck %q = %d, stdout %q, stderr %q; want %d and %q", args, code, out.String(), errb.String(), wantCode, wantOut)
	}
}
