// Package deploytest is what the deployment tests share (deploy/docker,
// deploy/vm, deploy/kubernetes): kvnode's settings as
// docs/configuration.md lists them and its bound on a graceful stop, for
// checking files against; and, for the tests against real clusters, a
// writer that records every acknowledged write, and the check that every
// node converged holding all of them.
package deploytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Root is the repository's root directory.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func read(t testing.TB, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(Root(), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// Settings are the YAML keys of kvnode's settings, from the table in
// docs/configuration.md (which mirrors cmd/kvnode's own).
func Settings(t testing.TB) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| `--").FindAllStringSubmatch(read(t, "docs/configuration.md"), -1) {
		keys[m[1]] = true
	}
	if len(keys) < 40 {
		t.Fatalf("found only %d settings in docs/configuration.md's table", len(keys))
	}
	return keys
}

// EnvNames are the TROUPE_* variables docs/configuration.md lists: those
// of the settings, and TROUPE_CONFIG.
func EnvNames(t testing.TB) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	for _, m := range regexp.MustCompile("`(TROUPE_[A-Z_]+)`").FindAllStringSubmatch(read(t, "docs/configuration.md"), -1) {
		names[m[1]] = true
	}
	return names
}

// ShutdownTimeout is kvnode's bound on a graceful stop
// (shutdownTimeout in cmd/kvnode/main.go): a service manager must wait
// longer than this before it kills the process.
func ShutdownTimeout(t testing.TB) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`const shutdownTimeout = (\d+) \* time\.Second`).FindStringSubmatch(read(t, "cmd/kvnode/main.go"))
	if m == nil {
		t.Fatal("cmd/kvnode/main.go: no `const shutdownTimeout = N * time.Second`")
	}
	n, _ := strconv.Atoi(m[1])
	return time.Duration(n) * time.Second
}

// Eventually retries check until it returns nil, or fails the test with
// its last error after within.
func Eventually(t testing.TB, what string, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Writer PUTs fresh keys under a prefix, one at a time, each tried once,
// and records those acknowledged. It writes through the first node of its
// list and moves to the next after a failure, as a client with a list of
// endpoints would. With a pace it starts one write per pace (a steady
// load); without one, a write right after the last, pausing 50 ms after a
// failure.
type Writer struct {
	t        testing.TB
	mu       sync.Mutex
	acked    map[string]string
	attempts int
	failed   int
	maxGap   time.Duration // longest time between two acknowledgements
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

// StartWriter starts a writer of keys prefix/000000, prefix/000001, ...
// through the nodes at urls ("http://host:port"); the test's end stops it.
func StartWriter(t testing.TB, prefix string, urls []string, pace time.Duration) *Writer {
	w := &Writer{t: t, acked: map[string]string{}, done: make(chan struct{})}
	t.Cleanup(func() { w.Stop() })
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		client := &http.Client{Timeout: 2 * time.Second}
		var tick <-chan time.Time
		if pace > 0 {
			ticker := time.NewTicker(pace)
			defer ticker.Stop()
			tick = ticker.C
		}
		node, last := 0, time.Now()
		for i := 0; ; i++ {
			if tick != nil {
				select {
				case <-w.done:
					return
				case <-tick:
				}
			} else {
				select {
				case <-w.done:
					return
				default:
				}
			}
			key := fmt.Sprintf("%s/%06d", prefix, i)
			val := prefix + "-" + strconv.Itoa(i)
			ok := Put(client, urls[node]+"/v1/kv/"+key, val)
			w.mu.Lock()
			w.attempts++
			if ok {
				w.acked[key] = val
				w.maxGap = max(w.maxGap, time.Since(last))
				last = time.Now()
			} else {
				w.failed++
				node = (node + 1) % len(urls)
			}
			w.mu.Unlock()
			if !ok && pace == 0 {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return w
}

// Put reports whether the node acknowledged the write: 200 and true.
// Anything else is a failure or an unknown outcome.
func Put(client *http.Client, url, val string) bool {
	req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(val))
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "true"
}

// Acks is how many writes were acknowledged so far.
func (w *Writer) Acks() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// WaitAcks waits until n writes are acknowledged: the cluster serves.
func (w *Writer) WaitAcks(n int, within time.Duration) {
	w.t.Helper()
	Eventually(w.t, fmt.Sprintf("%d acknowledged writes", n), within, func() error {
		if got := w.Acks(); got < n {
			return fmt.Errorf("%d acknowledged so far", got)
		}
		return nil
	})
}

// Stop ends the writer and returns what was acknowledged.
func (w *Writer) Stop() map[string]string {
	w.once.Do(func() { close(w.done) })
	w.wg.Wait()
	return w.acked
}

// String sums the writer up: attempts, acknowledgements, failures (and
// their share), the longest gap between two acknowledgements.
func (w *Writer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	rate := 0.0
	if w.attempts > 0 {
		rate = 100 * float64(w.failed) / float64(w.attempts)
	}
	return fmt.Sprintf("%d writes tried, %d acknowledged, %d failed or unknown (%.2f%%), longest gap between acknowledgements %s",
		w.attempts, len(w.acked), w.failed, rate, w.maxGap.Round(time.Millisecond))
}

// GetJSON GETs path from node id and decodes a 200 answer into v.
type GetJSON func(id, path string, v any) error

// HTTPGetJSON is a GetJSON over HTTP, base(id) being "http://host:port".
func HTTPGetJSON(client *http.Client, base func(id string) (string, error)) GetJSON {
	return func(id, path string, v any) error {
		b, err := base(id)
		if err != nil {
			return err
		}
		resp, err := client.Get(b + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: GET %s: %s: %s", id, path, resp.Status, bytes.TrimSpace(body))
		}
		return json.Unmarshal(body, v)
	}
}

// Converge waits until every node has applied the same index and holds,
// read from its own state (?stale), the same keys under prefix, among
// them every acknowledged write; then reads them linearizably through
// every node.
func Converge(t testing.TB, ids []string, get GetJSON, prefix string, acked map[string]string, within time.Duration) {
	t.Helper()
	Eventually(t, "every node holds every acknowledged write", within, func() error {
		var applied []uint64
		keys := -1
		for _, id := range ids {
			var st struct {
				AppliedIndex uint64 `json:"applied_index"`
			}
			if err := get(id, "/v1/cluster/status", &st); err != nil {
				return err
			}
			applied = append(applied, st.AppliedIndex)
			got, err := readAll(get, id, prefix, true)
			if err != nil {
				return err
			}
			if err := holds(id+" (?stale)", got, acked); err != nil {
				return err
			}
			if keys >= 0 && len(got) != keys {
				return fmt.Errorf("%s holds %d keys, %s %d", id, len(got), ids[0], keys)
			}
			keys = len(got)
		}
		if slices.Min(applied) != slices.Max(applied) {
			return fmt.Errorf("applied indexes differ: %v", applied)
		}
		return nil
	})
	for _, id := range ids {
		Eventually(t, "a linearizable read through "+id, within, func() error {
			got, err := readAll(get, id, prefix, false)
			if err != nil {
				return err
			}
			return holds(id, got, acked)
		})
	}
}

// readAll reads every key under prefix from one node; stale reads its
// local state, otherwise the read is linearizable.
func readAll(get GetJSON, id, prefix string, stale bool) (map[string]string, error) {
	path := "/v1/kv/" + prefix + "/?recurse"
	if stale {
		path += "&stale"
	}
	var pairs []struct {
		Key   string `json:"Key"`
		Value []byte `json:"Value"`
	}
	if err := get(id, path, &pairs); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(pairs))
	for _, p := range pairs {
		out[p.Key] = string(p.Value)
	}
	return out, nil
}

// holds reports the first acknowledged write that got lacks.
func holds(who string, got, acked map[string]string) error {
	for k, v := range acked {
		if g, ok := got[k]; !ok || g != v {
			return fmt.Errorf("%s lacks acknowledged write %s=%s (has %q, present %v)", who, k, v, g, ok)
		}
	}
	return nil
}
