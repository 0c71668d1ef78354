package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// LockHandoffs measures how long a Consul-style lock takes to change
// hands: waiters clients contend for key, each with its own session and
// node, the way consul/api's Lock does (a blocking query on the key until
// it is free, then PUT ?acquire). The holder keeps the lock for hold,
// then releases it and sits out until another client holds it, so every
// hand-off goes to a client that was waiting. A hand-off is measured from
// the moment the holder sends its release to the moment the next holder's
// acquire is acknowledged: the time the protected work stands still.
func LockHandoffs(ctx context.Context, store Troupe, endpoints []string, key string, waiters, handoffs int, hold time.Duration) ([]time.Duration, error) {
	if waiters < 2 {
		return nil, fmt.Errorf("lock hand-offs need at least 2 waiters, not %d", waiters)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		released atomic.Int64 // unix nanos of the last release sent; 0 before the first
		mu       sync.Mutex
		out      []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil && ctx.Err() == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	for w := 0; w < waiters; w++ {
		l := &SessionLoad{store: store, endpoints: endpoints, ttl: 0, hc: NewClient(2, store.TLSConfig())}
		endpoint := endpoints[w%len(endpoints)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer l.hc.CloseIdleConnections()
			id, err := l.create(ctx, endpoint)
			if err != nil {
				fail(err)
				return
			}
			defer func() {
				c, stop := context.WithTimeout(context.Background(), 10*time.Second)
				defer stop()
				_, _, _ = l.do(c, http.MethodPut, l.url(endpoint, "/v1/session/destroy/"+id), nil)
			}()
			index := uint64(0)
			for ctx.Err() == nil {
				holder, idx, err := l.lockHolder(ctx, endpoint, key, index)
				if err != nil {
					fail(err)
					return
				}
				index = idx
				if holder != "" {
					continue // held: wait for the next change
				}
				code, b, err := l.do(ctx, http.MethodPut, l.url(endpoint, "/v1/kv/"+key+"?acquire="+id), []byte(id))
				if err != nil || code != http.StatusOK {
					fail(fmt.Errorf("acquire: %d %s %v", code, b, err))
					return
				}
				if string(b) != "true" {
					continue // another waiter was first
				}
				if r := released.Load(); r != 0 {
					mu.Lock()
					out = append(out, time.Since(time.Unix(0, r)))
					done := len(out) >= handoffs
					mu.Unlock()
					if done {
						cancel()
					}
				}
				time.Sleep(hold)
				released.Store(time.Now().UnixNano())
				code, b, err = l.do(ctx, http.MethodPut, l.url(endpoint, "/v1/kv/"+key+"?release="+id), nil)
				if ctx.Err() != nil {
					return
				}
				if err != nil || code != http.StatusOK || string(b) != "true" {
					fail(fmt.Errorf("release: %d %s %v", code, b, err))
					return
				}
				// Sit out until someone else holds it.
				for ctx.Err() == nil {
					holder, idx, err := l.lockHolder(ctx, endpoint, key, index)
					if err != nil {
						fail(err)
						return
					}
					index = idx
					if holder != "" && holder != id {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return out, firstErr
	}
	return out, nil
}

// lockHolder reads key with a blocking query past index: the session
// holding it ("" when free or absent) and the index to wait on next.
func (l *SessionLoad) lockHolder(ctx context.Context, endpoint, key string, index uint64) (string, uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url(endpoint, "/v1/kv/"+key+"?wait=10s&index="+strconv.FormatUint(index, 10)), nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	switch resp.StatusCode {
	case http.StatusNotFound:
		return "", idx, nil
	case http.StatusOK:
		var entries []struct{ Session string }
		if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil || len(entries) == 0 {
			return "", 0, fmt.Errorf("lock key read: %v", err)
		}
		return entries[0].Session, idx, nil
	default:
		return "", 0, fmt.Errorf("lock key read: %d", resp.StatusCode)
	}
}

// Percentile is the p-quantile (0..1) of ds, nearest rank.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
