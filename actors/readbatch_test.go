package actors

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadBatcherSharesAndNeverReusesOldIndexes: reads that arrive while a
// fetch is in flight share the next fetch, and no read ever gets an index
// from a fetch that began before the read did.
func TestReadBatcherSharesAndNeverReusesOldIndexes(t *testing.T) {
	var fetches atomic.Int64
	var started sync.Map // fetch number -> start time
	release := make(chan struct{})
	b := &readBatcher{timeout: time.Second, fetch: func(ctx context.Context, addr string) (uint64, error) {
		n := uint64(fetches.Add(1))
		started.Store(n, time.Now())
		<-release
		return n, nil
	}}
	type got struct {
		asked time.Time
		index uint64
	}
	results := make(chan got, 100)
	ask := func() {
		asked := time.Now()
		idx, err := b.get(context.Background(), "leader")
		if err != nil {
			t.Error(err)
		}
		results <- got{asked, idx}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ask() }() // starts fetch 1
	for fetches.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < 50; i++ { // all arrive while fetch 1 is in flight
		wg.Add(1)
		go func() { defer wg.Done(); ask() }()
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	close(results)
	count := 0
	for r := range results {
		count++
		st, _ := started.Load(r.index)
		if st.(time.Time).Before(r.asked) {
			t.Fatalf("a read asked at %v got index %d from a fetch started earlier, at %v", r.asked, r.index, st)
		}
	}
	if count != 51 {
		t.Fatalf("%d answers, want 51", count)
	}
	if f := fetches.Load(); f != 2 {
		t.Fatalf("%d fetches for 51 reads, want 2 (one in flight, one shared)", f)
	}
}

func TestReadBatcherHonoursCallerContext(t *testing.T) {
	b := &readBatcher{timeout: time.Second, fetch: func(ctx context.Context, addr string) (uint64, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := b.get(ctx, "x"); err == nil {
		t.Fatal("expected the caller's deadline to end the wait")
	}
}
