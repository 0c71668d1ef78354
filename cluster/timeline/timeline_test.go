package timeline

import (
	"context"
	"math"
	"testing"
	"time"
)

func TestLogKeepsNewestAndFollowsIndex(t *testing.T) {
	l := NewLog("n1", 3)
	for i := 0; i < 5; i++ {
		l.Add(Event{Kind: KindPeer, Subject: string(rune('a' + i))})
	}
	evs, last := l.Since(0)
	if last != 5 || len(evs) != 3 || evs[0].Index != 3 || evs[2].Index != 5 || evs[2].Subject != "e" || evs[0].Node != "n1" {
		t.Fatalf("since 0: last %d, %+v", last, evs)
	}
	if evs, _ := l.Since(4); len(evs) != 1 || evs[0].Index != 5 {
		t.Fatalf("since 4: %+v", evs)
	}
	// A client that knew an older incarnation of the node (index beyond
	// the newest) reads everything again.
	if evs, _ := l.Since(99); len(evs) != 3 {
		t.Fatalf("since 99: %+v", evs)
	}
}

func TestLogWaitBlocksUntilAnEvent(t *testing.T) {
	l := NewLog("n1", 10)
	l.Add(Event{Kind: KindNode})
	got := make(chan []Event, 1)
	go func() {
		evs, _ := l.Wait(context.Background(), 1)
		got <- evs
	}()
	select {
	case evs := <-got:
		t.Fatalf("answered before any new event: %+v", evs)
	case <-time.After(50 * time.Millisecond):
	}
	l.Add(Event{Kind: KindLeader, To: "n2"})
	select {
	case evs := <-got:
		if len(evs) != 1 || evs[0].To != "n2" {
			t.Fatalf("woke with %+v", evs)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a waiter was not woken by Add")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if evs, last := l.Wait(ctx, 2); len(evs) != 0 || last != 2 {
		t.Fatalf("timed-out wait: %+v %d", evs, last)
	}
}

func TestPhiHistoryBoundedAndForgetsGonePeers(t *testing.T) {
	h := NewPhiHistory(4)
	at := time.Unix(100, 0)
	for i := 0; i < 6; i++ {
		phi := map[string]float64{"n2": float64(i)}
		if i < 2 {
			phi["n3"] = math.Inf(1)
		}
		h.Record(at.Add(time.Duration(i)*time.Second), phi, map[string]string{"n2": "alive", "n3": "dead"})
	}
	s := h.Series()
	if n2 := s["n2"]; len(n2) != 4 || n2[0].Phi != 2 || n2[3].Phi != 5 || n2[3].T != 105000 || n2[3].State != "alive" {
		t.Fatalf("n2: %+v", n2)
	}
	if _, ok := s["n3"]; ok {
		t.Fatalf("n3, gone for a whole capacity of readings, still kept: %+v", s["n3"])
	}
	h.Add("n2", at.Add(5500*time.Millisecond), 9, "dead")
	if n2 := h.Series()["n2"]; len(n2) != 4 || n2[3].State != "dead" || n2[0].Phi != 3 {
		t.Fatalf("n2 after a verdict between readings: %+v", n2)
	}
	h2 := NewPhiHistory(4)
	h2.Record(at, map[string]float64{"n3": math.Inf(1)}, nil)
	if p := h2.Series()["n3"][0].Phi; math.IsInf(p, 0) {
		t.Fatal("an infinite phi was kept as is (JSON cannot carry it)")
	}
}
