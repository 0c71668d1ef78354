package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/cluster/faultnet"
	"github.com/troupe-kv/troupe/storage"
)

// TestAnswerToCutPeerIsLost: with this node's link to n2 cut outbound only,
// a write n2 forwards is applied here but its answer never reaches n2 — the
// "outcome unknown" case a one-way partition produces.
func TestAnswerToCutPeerIsLost(t *testing.T) {
	s, b := newAPI(t, withChaos, func(c *apiConfig) { c.opts.RequestTimeout = 200 * time.Millisecond })
	if err := b.SetFaults(faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n2", Direction: faultnet.Out, Cut: true}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	data := (&storage.Command{Op: storage.OpSet, Key: "applied-anyway", Value: []byte("v")}).Encode()
	req, _ := http.NewRequest("POST", srv.URL+cluster.ApplyPath, strings.NewReader(string(data)))
	req.Header.Set(cluster.ForwardedHeader, "n2")
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("n2 got an answer (%d) over a link cut towards it", resp.StatusCode)
	}
	if _, found, _, _ := b.store.Get("applied-anyway"); !found {
		t.Fatal("the write was not applied: only its answer should be lost")
	}
	// Requests from other peers are answered.
	req, _ = http.NewRequest("POST", srv.URL+cluster.PingPath, nil)
	req.Header.Set(cluster.ForwardedHeader, "n3")
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping from n3: %v", err)
	}
	resp.Body.Close()
}

func TestInternalApplyBatch(t *testing.T) {
	s, b := newAPI(t)
	good := (&storage.Command{Op: storage.OpSet, Key: "batched", Value: []byte("v")}).Encode()
	body := cluster.EncodeBatch([][]byte{good, []byte("garbage")})
	if w := call(t, s, "POST", cluster.ApplyBatchPath, body); w.Code != 400 {
		t.Fatalf("batch without the forwarded header: %d", w.Code)
	}
	if w := call(t, s, "POST", cluster.ApplyBatchPath, []byte{9, 1}, cluster.ForwardedHeader, "n2"); w.Code != 400 {
		t.Fatalf("badly framed batch: %d", w.Code)
	}
	w := call(t, s, "POST", cluster.ApplyBatchPath, body, cluster.ForwardedHeader, "n2")
	if w.Code != 200 {
		t.Fatalf("batch: %d %s", w.Code, w.Body)
	}
	var replies []cluster.BatchItemReply
	if err := json.Unmarshal(w.Body.Bytes(), &replies); err != nil || len(replies) != 2 {
		t.Fatalf("replies %s: %v", w.Body, err)
	}
	if replies[0].Error != "" || !replies[0].OK || replies[0].Index == 0 {
		t.Fatalf("good command: %+v", replies[0])
	}
	if replies[1].Error == "" {
		t.Fatalf("garbage command was not refused: %+v", replies[1])
	}
	if _, found, _, _ := b.store.Get("batched"); !found {
		t.Fatal("the good command of the batch was not applied")
	}
}

// TestPeerBandwidthHoldsLargeRequests: over a 1 KiB/s link from n2, an
// 8 KiB forwarded write cannot arrive within the request timeout, so it is
// never applied and n2 gets no answer; an empty ping still gets through.
func TestPeerBandwidthHoldsLargeRequests(t *testing.T) {
	s, b := newAPI(t, withChaos, func(c *apiConfig) { c.opts.RequestTimeout = 200 * time.Millisecond })
	if err := b.SetFaults(faultnet.Rules{Rules: []faultnet.Rule{{Peer: "n2", Direction: faultnet.In, Bandwidth: 1024}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	defer srv.Close()
	data := (&storage.Command{Op: storage.OpSet, Key: "too-big-for-the-link", Value: []byte(strings.Repeat("v", 8<<10))}).Encode()
	req, _ := http.NewRequest("POST", srv.URL+cluster.ApplyPath, strings.NewReader(string(data)))
	req.Header.Set(cluster.ForwardedHeader, "n2")
	if resp, err := srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("n2 got an answer (%d) for 8 KiB over a 1 KiB/s link within 200ms", resp.StatusCode)
	}
	if _, found, _, _ := b.store.Get("too-big-for-the-link"); found {
		t.Fatal("a write held back by the bandwidth cap past its timeout was applied")
	}
	req, _ = http.NewRequest("POST", srv.URL+cluster.PingPath, nil)
	req.Header.Set(cluster.ForwardedHeader, "n2")
	resp, err := srv.Client().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping from n2 over the capped link: %v", err)
	}
	resp.Body.Close()
}
