package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/troupe-kv/troupe/client"
)

// TestForceReachesTheServer: Force sends ?force=true with a join or a
// removal, and nothing without it.
func TestForceReachesTheServer(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.Method+" "+r.URL.RawQuery)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := client.New([]string{strings.TrimPrefix(srv.URL, "http://")})
	ctx := context.Background()
	if err := c.Remove(ctx, "n3", client.Force()); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Join(ctx, client.JoinRequest{ID: "n4", RaftAddr: "x:1"}, client.Force()); err != nil {
		t.Fatal(err)
	}
	want := []string{"DELETE force=true", "DELETE ", "POST force=true"}
	if strings.Join(queries, "|") != strings.Join(want, "|") {
		t.Fatalf("queries %q, want %q", queries, want)
	}
}
