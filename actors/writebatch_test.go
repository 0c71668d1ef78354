package actors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/cluster"
	"github.com/troupe-kv/troupe/storage"
)

// TestWriteBatcherGroupsWritesInFlight: writes that arrive while the
// batches in flight are out gather into one; each gets its own answer.
func TestWriteBatcherGroupsWritesInFlight(t *testing.T) {
	release := make(chan struct{})
	var sends atomic.Int64
	var sizes sync.Map
	b := &writeBatcher{timeout: time.Second, maxInFlight: 1, send: func(ctx context.Context, addr string, cmds [][]byte) ([]cluster.BatchItemReply, error) {
		n := sends.Add(1)
		sizes.Store(n, len(cmds))
		if n == 1 {
			<-release
		}
		out := make([]cluster.BatchItemReply, len(cmds))
		for i, c := range cmds {
			out[i] = cluster.BatchItemReply{Index: uint64(len(c)), OK: true}
		}
		return out, nil
	}}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	call := func(i int) {
		defer wg.Done()
		data := make([]byte, i+1) // the fake echoes the length as the index
		res, err := b.apply(context.Background(), "leader", data)
		if err != nil || res.Index != uint64(i+1) {
			errs <- fmt.Errorf("write %d: %+v %v", i, res, err)
		}
	}
	wg.Add(1)
	go call(0)
	for sends.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	for i := 1; i <= 40; i++ {
		wg.Add(1)
		go call(i)
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := sends.Load(); n != 2 {
		t.Fatalf("%d sends for 41 writes, want 2 (one alone, one batch of 40)", n)
	}
	if s, _ := sizes.Load(int64(2)); s.(int) != 40 {
		t.Fatalf("second batch carried %v writes, want 40", s)
	}
}

// TestWriteBatcherOutcomes: a write still queued when its caller gives up
// was not applied; one whose batch was sent has an unknown outcome; a
// transport error reaches every write of the batch.
func TestWriteBatcherOutcomes(t *testing.T) {
	block := make(chan struct{})
	b := &writeBatcher{timeout: time.Second, maxInFlight: 1, send: func(ctx context.Context, addr string, cmds [][]byte) ([]cluster.BatchItemReply, error) {
		<-block
		return nil, fmt.Errorf("%w (lost)", cluster.ErrUnknownOutcome)
	}}
	sent := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := b.apply(ctx, "leader", []byte("first"))
		sent <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := b.apply(ctx, "leader", []byte("queued")); !errors.Is(err, cluster.ErrNoLeader) {
		t.Fatalf("queued write whose caller gave up: %v, want not applied", err)
	}
	if err := <-sent; !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("sent write whose caller gave up: %v, want unknown outcome", err)
	}
	close(block)
	// The transport error reaches a write still waiting for its batch.
	if _, err := b.apply(context.Background(), "leader", []byte("x")); !errors.Is(err, cluster.ErrUnknownOutcome) {
		t.Fatalf("batch transport error: %v", err)
	}
}

func TestWriteBatcherSeparatesLeaders(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	b := &writeBatcher{timeout: time.Second, maxInFlight: 2, send: func(ctx context.Context, addr string, cmds [][]byte) ([]cluster.BatchItemReply, error) {
		mu.Lock()
		seen[addr] += len(cmds)
		mu.Unlock()
		return make([]cluster.BatchItemReply, len(cmds)), nil
	}}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			addr := []string{"a", "b"}[i%2]
			if _, err := b.apply(context.Background(), addr, []byte{1}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if seen["a"] != 10 || seen["b"] != 10 {
		t.Fatalf("writes per leader %v, want 10 each", seen)
	}
}

func TestWriteBatcherSendsALoneWriteOnItsOwn(t *testing.T) {
	var ones, batches atomic.Int64
	b := &writeBatcher{timeout: time.Second, maxInFlight: 2,
		sendOne: func(ctx context.Context, addr string, cmd []byte) (storage.Result, error) {
			ones.Add(1)
			return storage.Result{Index: 9, OK: true}, nil
		},
		send: func(ctx context.Context, addr string, cmds [][]byte) ([]cluster.BatchItemReply, error) {
			batches.Add(1)
			return make([]cluster.BatchItemReply, len(cmds)), nil
		}}
	res, err := b.apply(context.Background(), "leader", []byte{1})
	if err != nil || res.Index != 9 || ones.Load() != 1 || batches.Load() != 0 {
		t.Fatalf("lone write: %+v %v (single sends %d, batches %d)", res, err, ones.Load(), batches.Load())
	}
}
