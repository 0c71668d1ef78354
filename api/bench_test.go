package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The handler path's cost, without Raft: request parsing, validation, the
// bbolt read or the (fake, direct) apply, and JSON encoding.

func BenchmarkHandlerGet(b *testing.B) {
	s, _ := newAPI(b)
	value := bytes.Repeat([]byte("v"), 100)
	for i := 0; i < 1000; i++ {
		putBytes(b, s, "bench/"+strconv.Itoa(i), value)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/"+strconv.Itoa(i%1000), nil)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkHandlerGetStale(b *testing.B) {
	s, _ := newAPI(b)
	benchGetStale(b, s)
}

// benchGetStale times stale reads of one 100-byte value through s.
func benchGetStale(b *testing.B, s *Server) {
	putBytes(b, s, "bench/k", bytes.Repeat([]byte("v"), 100))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/k?stale", nil)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

func BenchmarkHandlerPut(b *testing.B) {
	s, _ := newAPI(b)
	value := bytes.Repeat([]byte("v"), 100)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := httptest.NewRequest(http.MethodPut, "/v1/kv/bench/"+strconv.Itoa(i%1000), bytes.NewReader(value))
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// The cost of counting and timing each request (troupe_http_requests_total
// and troupe_http_request_duration_seconds): the same stale read through
// the API without and with a Registerer.
func BenchmarkHTTPInstrumentation(b *testing.B) {
	for _, instrumented := range []bool{false, true} {
		name := map[bool]string{false: "bare", true: "instrumented"}[instrumented]
		b.Run(name, func(b *testing.B) {
			s, _ := newAPI(b, func(ac *apiConfig) {
				if instrumented {
					ac.opts.Registerer = prometheus.NewRegistry()
				}
			})
			benchGetStale(b, s)
		})
	}
}

// What the instrumentation adds to each request, alone: the labels'
// lookup, one counter and one histogram update, and the clock reads.
func BenchmarkHTTPObserve(b *testing.B) {
	m := newHTTPMetrics(prometheus.NewRegistry())
	req := httptest.NewRequest(http.MethodGet, "/v1/kv/bench/k?stale", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		m.observe(req, routeKV, http.StatusOK, time.Since(start))
	}
}
