package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/troupe-kv/troupe/client"
	"github.com/troupe-kv/troupe/internal/inproc"
)

// Lock: one holder at a time, each acquisition a higher LockIndex (the
// fencing token); a second locker waits for the first to unlock; a holder
// whose session is destroyed sees Lost; the lock's own session outlives
// 2×TTL because Lock renews it.
func TestLock(t *testing.T) {
	nodes := startCluster(t, 3, inproc.Options{SessionTTLMin: time.Second})
	c := newClient(inproc.Addrs(nodes))
	opts := client.LockOptions{Value: []byte("a"), SessionTTL: time.Second, LockDelay: -1}

	first, err := c.Lock(ctx(t), "locks/x", opts)
	if err != nil || first.LockIndex != 1 {
		t.Fatalf("first Lock: %+v %v", first, err)
	}
	got := make(chan *client.Held, 1)
	go func() {
		h, err := c.Lock(context.Background(), "locks/x", opts)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	// Held across several TTLs: renewals keep the session, and the
	// second locker keeps waiting.
	select {
	case h := <-got:
		t.Fatalf("a second holder while the first holds: %+v", h)
	case <-first.Lost():
		t.Fatal("the lock was lost while its session was renewed")
	case <-time.After(3 * time.Second):
	}
	if err := first.Unlock(ctx(t)); err != nil {
		t.Fatal(err)
	}
	var second *client.Held
	select {
	case second = <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("the second locker never got the lock")
	}
	if second.LockIndex != 2 {
		t.Fatalf("second term %d, want 2", second.LockIndex)
	}
	if err := c.DestroySession(ctx(t), second.Session()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-second.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("a destroyed session's lock was not reported lost")
	}
	if err := second.Unlock(ctx(t)); err != nil {
		t.Fatal(err)
	}
	// Sessions: the Lock-made ones are gone.
	list, meta, err := c.Sessions(ctx(t), "", client.ReadOptions{})
	if err != nil || len(list) != 0 || meta.Index == 0 {
		t.Fatalf("sessions left behind: %+v %v", list, err)
	}
}
