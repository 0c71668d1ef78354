package bench

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// benchstat reads "Name N value unit value unit ...": a line it cannot
// split that way would silently drop a row from a comparison.
func TestGoBenchLineIsBenchmarkFormat(t *testing.T) {
	r := Result{Store: "troupe", Kind: Writes, Clients: 64, Ops: 12000, OpsPerSec: 2000, P50MS: 3.5, P99MS: 20.25, CPUMicrosPerOp: 410}
	fields := strings.Fields(r.GoBenchLine())
	if fields[0] != "BenchmarkTroupe/writes/clients=64" {
		t.Fatalf("name %q", fields[0])
	}
	if n, err := strconv.Atoi(fields[1]); err != nil || n != 12000 {
		t.Fatalf("iterations %q", fields[1])
	}
	values := map[string]string{}
	for i := 2; i+1 < len(fields); i += 2 {
		if _, err := strconv.ParseFloat(fields[i], 64); err != nil {
			t.Fatalf("value %q before unit %q is not a number", fields[i], fields[i+1])
		}
		values[fields[i+1]] = fields[i]
	}
	want := map[string]string{"ns/op": "500000", "ops/s": "2000.0", "p50-ms": "3.500", "p99-ms": "20.250", "cpu-us/op": "410.0"}
	for unit, v := range want {
		if values[unit] != v {
			t.Errorf("%s = %q, want %q (line %q)", unit, values[unit], v, r.GoBenchLine())
		}
	}
}

// Every write must store a new value: a repeated value is a no-op write
// for Troupe, which would flatter its write figures and break CAS chains.
func TestStampMakesEveryValueNew(t *testing.T) {
	seen := map[string]bool{}
	value := make([]byte, 100)
	for _, run := range []int64{1795880084465000000, 1795880084465000001} {
		for c := -1; c < 100; c++ {
			for seq := 0; seq < 300; seq++ {
				stamp(value, run, c, seq)
				if seen[string(value)] {
					t.Fatalf("run %d, client %d, write %d repeats an earlier value %q", run, c, seq, value[:24])
				}
				seen[string(value)] = true
			}
		}
	}
}

// A store over TLS must be a row of its own, and every request it builds
// must go to the https URL; without TLS nothing changes.
func TestTroupeSchemeFollowsTLS(t *testing.T) {
	for _, tc := range []struct {
		store  Troupe
		name   string
		scheme string
	}{
		{Troupe{}, "troupe", "http"},
		{Troupe{TLS: &tls.Config{}}, "troupe-tls", "https"},
	} {
		if got := tc.store.Name(); got != tc.name {
			t.Errorf("Name() = %q, want %q", got, tc.name)
		}
		if (tc.store.TLSConfig() != nil) != (tc.scheme == "https") {
			t.Errorf("%s: TLSConfig() = %v", tc.name, tc.store.TLSConfig())
		}
		for _, req := range []*http.Request{
			tc.store.Put("127.0.0.1:8500", "k", []byte("v")),
			tc.store.Get("127.0.0.1:8500", "k", false),
			tc.store.Get("127.0.0.1:8500", "k", true),
			tc.store.CAS("127.0.0.1:8500", "k", []byte("v"), 7),
		} {
			if req.URL.Scheme != tc.scheme || req.URL.Host != "127.0.0.1:8500" || req.URL.Path != "/v1/kv/k" {
				t.Errorf("%s: %s %s, want %s://127.0.0.1:8500/v1/kv/k", tc.name, req.Method, req.URL, tc.scheme)
			}
		}
	}
	if (Etcd{}).TLSConfig() != nil {
		t.Error("etcd's comparison cluster serves plain HTTP")
	}
}

// kvServer answers Troupe's KV API the way the load checks it, and
// counts the connections and requests it saw.
type kvServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	conns    int
	requests int
	protos   map[string]int
	overTLS  int
}

func newKVServer(t *testing.T, withTLS bool) *kvServer {
	s := &kvServer{protos: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.requests++
		s.protos[r.Proto]++
		if r.TLS != nil {
			s.overTLS++
		}
		s.mu.Unlock()
		w.Header().Set("X-Consul-Index", "1")
		_, _ = io.WriteString(w, "true")
	}))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	if withTLS {
		// The server offers HTTP/2, as kvnode's does: the load must still
		// speak HTTP/1.1, like its plain-HTTP twin.
		s.srv.EnableHTTP2 = true
		s.srv.StartTLS()
	} else {
		s.srv.Start()
	}
	t.Cleanup(s.srv.Close)
	return s
}

// The TLS comparison must measure encryption, not handshakes: with TLS as
// without, one client's requests travel on one kept-alive HTTP/1.1
// connection.
func TestLoadKeepsOneHTTP1ConnectionWithAndWithoutTLS(t *testing.T) {
	for _, withTLS := range []bool{false, true} {
		s := newKVServer(t, withTLS)
		store := Troupe{}
		if withTLS {
			store.TLS = s.srv.Client().Transport.(*http.Transport).TLSClientConfig
		}
		const writes = 20
		if err := Preload(context.Background(), store, []string{s.srv.Listener.Addr().String()}, "k/", writes, 10, 1); err != nil {
			t.Fatalf("%s: %v", store.Name(), err)
		}
		s.mu.Lock()
		if s.requests != writes || s.conns != 1 || s.protos["HTTP/1.1"] != writes {
			t.Errorf("%s: %d requests (%v) over %d connections, want %d over HTTP/1.1 on one", store.Name(), s.requests, s.protos, s.conns, writes)
		}
		if want := map[bool]int{false: 0, true: writes}[withTLS]; s.overTLS != want {
			t.Errorf("%s: %d of %d requests over TLS, want %d", store.Name(), s.overTLS, s.requests, want)
		}
		s.mu.Unlock()
	}
}

// The check above has teeth only if the TLS server would have spoken
// HTTP/2 to a client that asked for it.
func TestKVServerOffersHTTP2(t *testing.T) {
	s := newKVServer(t, true)
	resp, err := s.srv.Client().Get(s.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("the test server answered a default client over %s, not HTTP/2", resp.Proto)
	}
}

// benchstat reads a "-" in a benchmark name as the GOMAXPROCS suffix.
func TestGoBenchNameOfTroupeTLS(t *testing.T) {
	r := Result{Store: "troupe-tls", Kind: Reads, Clients: 64, Ops: 10, OpsPerSec: 10}
	if name := strings.Fields(r.GoBenchLine())[0]; name != "BenchmarkTroupeTls/reads/clients=64" {
		t.Fatalf("name %q", name)
	}
}

// Side by side, every store goes first equally often and every row runs
// every store once.
func TestTurnAlternatesWhoGoesFirst(t *testing.T) {
	for _, stores := range [][]string{{"troupe", "troupe-tls"}, {"a", "b", "c"}} {
		first := map[string]int{}
		rows := 2 * 3 * len(stores)
		for row := 0; row < rows; row++ {
			turn := Turn(row, stores)
			if !slices.Equal(slices.Sorted(slices.Values(turn)), slices.Sorted(slices.Values(stores))) {
				t.Fatalf("row %d runs %v, want each of %v once", row, turn, stores)
			}
			if row > 0 && turn[0] == Turn(row-1, stores)[0] {
				t.Errorf("rows %d and %d both start with %s", row-1, row, turn[0])
			}
			first[turn[0]]++
		}
		for _, s := range stores {
			if first[s] != rows/len(stores) {
				t.Errorf("%s went first in %d of %d rows (%v)", s, first[s], rows, first)
			}
		}
	}
}

func TestCompareMatchesRowsOfBothStores(t *testing.T) {
	results := []Result{
		{Store: "troupe-tls", Kind: Writes, Clients: 64, OpsPerSec: 900, P50MS: 10, P99MS: 30, CPUMicrosPerOp: 330},
		{Store: "troupe", Kind: Writes, Clients: 64, OpsPerSec: 1000, P50MS: 9, P99MS: 25, CPUMicrosPerOp: 300},
		{Store: "troupe", Kind: Reads, Clients: 64, OpsPerSec: 4000, P50MS: 4, P99MS: 12},
		{Store: "troupe-tls", Kind: Reads, Clients: 64, OpsPerSec: 3000, P50MS: 5, P99MS: 15},
		{Store: "troupe", Kind: CAS, Clients: 1, OpsPerSec: 300},    // troupe-tls never ran it
		{Store: "etcd", Kind: Writes, Clients: 64, OpsPerSec: 2000}, // not compared
	}
	lines := strings.Split(strings.TrimSpace(Compare(results, "troupe", "troupe-tls")), "\n")
	want := []string{
		"| load | clients | troupe ops/s | p50 / p99 ms | CPU µs/op | troupe-tls ops/s | p50 / p99 ms | CPU µs/op | ops/s troupe-tls ÷ troupe | CPU troupe-tls ÷ troupe |",
		"|---|---|---|---|---|---|---|---|---|---|",
		"| writes | 64 | 1000 | 9.0 / 25.0 | 300 | 900 | 10.0 / 30.0 | 330 | 0.90× | 1.10× |",
		"| reads | 64 | 4000 | 4.0 / 12.0 | - | 3000 | 5.0 / 15.0 | - | 0.75× | - |",
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
}
