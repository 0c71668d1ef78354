package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
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
