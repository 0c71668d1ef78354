package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/troupe-kv/troupe/internal/testcluster"
)

// The web console, driven in a real headless Chromium against real kvnode
// processes. Chromium must be installed (make test installs Debian's
// package): without it these tests fail, they never skip, so a CI machine
// that lost it cannot pass them silently.
//
// TROUPE_CONSOLE_SHOTS names a directory for the screenshots of each page
// (docs/console/ holds the committed ones: TROUPE_CONSOLE_SHOTS=$PWD/docs/console);
// unset, they go to a temporary directory.

// chromium finds the browser: $TROUPE_CHROMIUM, else the usual names.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TROUPE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no Chromium found (looked for chromium, chromium-browser, google-chrome, headless-shell, and $TROUPE_CHROMIUM): the console's browser tests need one; apt-get install chromium (make test does, as root)")
	return ""
}

// browser starts a headless Chromium with a window of w×h CSS pixels and
// returns a tab's context; everything is closed when the test ends.
func browser(t *testing.T, w, h int) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.DisableGPU,
		chromedp.WindowSize(w, h),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, so a missing or broken one fails here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// do runs actions in the tab, failing the test if they do not finish
// within limit (a generous bound on waiting, not a timing assertion).
func do(t *testing.T, tab context.Context, what string, limit time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, limit)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		body, _ := chromedp.Run(tab, chromedp.Evaluate[string](`document.body.innerText.slice(0, 3000)`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

// into runs a, keeping its value in dst.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		v, err := a(ctx, tg)
		*dst = v
		return chromedp.Void{}, err
	}
}

// eval evaluates expr in the page into dst.
func eval[T any](dst *T, expr string) chromedp.Action[chromedp.Void] {
	return into(dst, chromedp.Evaluate[T](expr))
}

// text reads the text of the first element sel matches into dst.
func text(dst *string, sel string) chromedp.Action[chromedp.Void] {
	return into(dst, chromedp.Text(chromedp.CSS(sel)))
}

func shotsDir(t *testing.T) string {
	if d := os.Getenv("TROUPE_CONSOLE_SHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, tab context.Context, dir, name string) {
	t.Helper()
	var png []byte
	do(t, tab, "screenshot "+name, 30*time.Second, into(&png, chromedp.FullScreenshot(100)))
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func apiValue(t *testing.T, n *testcluster.Node, key string) string {
	t.Helper()
	code, body, _, err := n.Do(http.MethodGet, "/v1/kv/"+key+"?raw", nil)
	if err != nil || code != 200 {
		t.Fatalf("GET %s on %s: %d %v", key, n.ID, code, err)
	}
	return string(body)
}

func apiPut(t *testing.T, n *testcluster.Node, path, value string) string {
	t.Helper()
	code, body, _, err := n.Do(http.MethodPut, path, []byte(value))
	if err != nil || code != 200 {
		t.Fatalf("PUT %s on %s: %d %q %v", path, n.ID, code, body, err)
	}
	return string(body)
}

// TestConsoleBrowser: a 3-node cluster with chaos on, its console open in
// Chromium on n1. A node killed turns Dead on the page and Alive again
// after its restart, without a reload; a value edited in the browser is
// read back through another node; an edit against an old ModifyIndex shows
// the conflict with both values and writes nothing; a lock's session is
// shown; the chaos panel's partition lands on the nodes and the timeline.
func TestConsoleBrowser(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("console browser test took %s", time.Since(start).Round(time.Millisecond)) }()
	shots := shotsDir(t)
	tab := browser(t, 1280, 800)
	c := testcluster.Start(t, 3, testcluster.Options{Chaos: true})
	leader := c.WaitLeader(30 * time.Second)
	n1 := c.Nodes[0]
	// The victim is neither the node serving the page nor, if avoidable,
	// the leader, so the page's own requests keep a quorum behind them.
	var victim *testcluster.Node
	for _, n := range c.Nodes[1:] {
		if n.ID != leader.ID {
			victim = n
		}
	}
	others := []*testcluster.Node{}
	for _, n := range c.Nodes {
		if n != n1 && n != victim {
			others = append(others, n)
		}
	}
	reader := others[0]

	// --- cluster page ---
	cell := func(obs, peer, state string) string {
		return fmt.Sprintf(`#matrix td[data-observer=%q][data-peer=%q][data-state=%q]`, obs, peer, state)
	}
	do(t, tab, "open the cluster page", 60*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`#cards article[data-node="n3"]`)),
		chromedp.WaitVisible(chromedp.CSS(cell("n1", victim.ID, "alive"))),
		chromedp.WaitVisible(chromedp.CSS(cell(victim.ID, "n1", "alive"))),
	)
	var timing struct {
		Load     float64 `json:"load"`
		Rendered float64 `json:"rendered"`
	}
	do(t, tab, "read the page's timing", 10*time.Second, eval(&timing, `({
		load: performance.getEntriesByType('navigation')[0].loadEventEnd,
		rendered: performance.getEntriesByName('troupe-cluster-rendered')[0].startTime})`))
	t.Logf("cluster page on 3 nodes: load event at %.0f ms, first full render (cards, matrix, timeline from every node) at %.0f ms after navigation", timing.Load, timing.Rendered)
	var role chromedp.AttributeResult
	do(t, tab, "leader card", 10*time.Second, into(&role, chromedp.AttributeValue(chromedp.CSS(fmt.Sprintf(`#cards article[data-node=%q]`, leader.ID)), "data-role")))
	if role.Value != "leader" {
		t.Fatalf("the leader %s's card says %q", leader.ID, role.Value)
	}
	time.Sleep(2500 * time.Millisecond) // a few phi samples for the sparklines
	screenshot(t, tab, shots, "cluster.png")
	// Keyboard: the first Tab lands on the skip link.
	var focused string
	do(t, tab, "tab to the skip link", 10*time.Second, chromedp.KeyEvent("\t"), eval(&focused, `document.activeElement.className`))
	if focused != "skip" {
		t.Errorf("first Tab focused %q, want the skip link", focused)
	}
	do(t, tab, "Enter on the skip link", 10*time.Second, chromedp.KeyEvent("\r"), eval(&focused, `document.activeElement.id`))
	if focused != "main" {
		t.Errorf("Enter on the skip link focused %q, want main", focused)
	}
	do(t, tab, "blur", 10*time.Second, eval(&focused, `(document.activeElement.blur(), "")`))

	victim.Kill()
	do(t, tab, "the killed node shows Dead", 60*time.Second,
		chromedp.WaitVisible(chromedp.CSS(cell("n1", victim.ID, "dead"))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#cards article[data-node=%q][data-role="unreachable"]`, victim.ID))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#timeline li[data-kind="peer"][data-node="n1"]`))),
	)
	var line string
	do(t, tab, "the timeline's peer event", 10*time.Second, text(&line, `#timeline li[data-kind="peer"]`))
	if !strings.Contains(line, victim.ID) || !strings.Contains(line, "dead") {
		t.Errorf("newest peer event %q does not say %s went dead", line, victim.ID)
	}
	screenshot(t, tab, shots, "cluster-node-dead.png")
	victim.Start()
	do(t, tab, "the restarted node shows Alive", 90*time.Second,
		chromedp.WaitVisible(chromedp.CSS(cell("n1", victim.ID, "alive"))),
		chromedp.WaitVisible(chromedp.CSS(cell(victim.ID, "n1", "alive"))),
	)

	// --- keys: an edit in the browser, read through another node ---
	apiPut(t, n1, "/v1/kv/app/config", "v1")
	apiPut(t, n1, "/v1/kv/app/db/url", "postgres://db")
	do(t, tab, "open the app/ folder", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/kv/app%2F"),
		chromedp.WaitVisible(chromedp.CSS(`#key-list a[data-key="app/config"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#key-list a[data-key="app/db/"]`)),
	)
	screenshot(t, tab, shots, "keys.png")
	do(t, tab, "edit app/config", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#key-list a[data-key="app/config"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#value`)),
		chromedp.SetValue(chromedp.CSS(`#value`), "v2 from the browser"),
		chromedp.Click(chromedp.CSS(`#save`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.info`)),
	)
	if got := apiValue(t, reader, "app/config"); got != "v2 from the browser" {
		t.Fatalf("%s reads %q after the browser's edit", reader.ID, got)
	}

	// --- a CAS conflict: the key changes underneath the editor ---
	apiPut(t, reader, "/v1/kv/app/config", "changed underneath")
	var mine, theirs string
	do(t, tab, "save against an old index", 30*time.Second,
		chromedp.SetValue(chromedp.CSS(`#value`), "my stale edit"),
		chromedp.Click(chromedp.CSS(`#save`)),
		chromedp.WaitVisible(chromedp.CSS(`#conflict`)),
		text(&mine, `#conflict-mine`),
		text(&theirs, `#conflict-theirs`),
	)
	if mine != "my stale edit" || theirs != "changed underneath" {
		t.Fatalf("conflict shows mine %q, theirs %q", mine, theirs)
	}
	if got := apiValue(t, n1, "app/config"); got != "changed underneath" {
		t.Fatalf("the conflicting edit was written: %q", got)
	}
	do(t, tab, "hex view", 10*time.Second, chromedp.Click(chromedp.CSS(`#mode-hex`)))
	screenshot(t, tab, shots, "key-conflict.png")

	// --- a lock's holder, and the sessions list ---
	sess := struct{ ID string }{}
	if err := json.Unmarshal([]byte(apiPut(t, n1, "/v1/session/create", `{"Name":"deployer","TTL":"60s"}`)), &sess); err != nil || sess.ID == "" {
		t.Fatalf("session: %+v %v", sess, err)
	}
	if got := apiPut(t, n1, "/v1/kv/app/lock?acquire="+sess.ID, "held"); got != "true" {
		t.Fatalf("acquire: %q", got)
	}
	var lock string
	do(t, tab, "the lock's holder", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/kv/app%2Flock"),
		chromedp.WaitVisible(chromedp.CSS(`#lock strong`)),
		text(&lock, `#lock`),
	)
	if !strings.Contains(lock, sess.ID) || !strings.Contains(lock, "deployer") {
		t.Fatalf("lock line %q does not name session %s (deployer)", lock, sess.ID)
	}
	do(t, tab, "sessions list", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/sessions"),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#sessions tr[data-session=%q]`, sess.ID))),
	)
	screenshot(t, tab, shots, "sessions.png")

	// --- chaos: a partition from the panel ---
	side := others[len(others)-1].ID // partition one node from the other two
	do(t, tab, "partition from the chaos panel", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/chaos"),
		chromedp.WaitVisible(chromedp.CSS(`#partition-form`)),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#partition-form input[name="a"][value=%q]`, side))),
	)
	for _, n := range c.Nodes {
		if n.ID != side {
			do(t, tab, "side B", 10*time.Second, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#partition-form input[name="b"][value=%q]`, n.ID))))
		}
	}
	do(t, tab, "apply the partition", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#partition-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#chaos-result li[data-node]`)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#timeline li[data-kind="fault"][data-node=%q]`, side))),
	)
	for _, n := range c.Nodes {
		code, body, _, err := n.Do(http.MethodGet, "/v1/chaos/faults", nil)
		if err != nil || code != 200 {
			t.Fatalf("faults of %s: %d %v", n.ID, code, err)
		}
		var rs struct {
			Rules []struct {
				Peer string
				Cut  bool
			}
		}
		_ = json.Unmarshal(body, &rs)
		want := 1
		if n.ID == side {
			want = 2
		}
		if len(rs.Rules) != want || !rs.Rules[0].Cut {
			t.Fatalf("%s holds %s after the partition; want %d cut rule(s)", n.ID, body, want)
		}
	}
	time.Sleep(2500 * time.Millisecond) // the partitioned node's peers turn Suspect/Dead on screen
	screenshot(t, tab, shots, "chaos.png")
	do(t, tab, "heal", 30*time.Second,
		chromedp.Click(chromedp.CSS(`#heal`)),
		chromedp.WaitVisible(chromedp.CSS(`#status.info`)),
	)
	for _, n := range c.Nodes {
		if _, body, _, _ := n.Do(http.MethodGet, "/v1/chaos/faults", nil); strings.Contains(string(body), `"cut"`) {
			t.Fatalf("%s still holds %s after the heal", n.ID, body)
		}
	}

	// A crash from the panel lands on the timeline of the node it hit.
	var crashed bool
	do(t, tab, "crash an actor from the panel", 30*time.Second,
		chromedp.SetValue(chromedp.CSS(`#crash-node`), reader.ID),
		chromedp.SetValue(chromedp.CSS(`#crash-actor`), "quota"),
		chromedp.Click(chromedp.CSS(`#crash-form button[type="submit"]`)),
		into(&crashed, chromedp.Poll[bool](fmt.Sprintf(`[...document.querySelectorAll('#timeline li[data-kind="fault"][data-node=%q]')].some((li) => li.innerText.includes('quota: crash'))`, reader.ID))),
	)

	// --- a phone's width ---
	phone := tab
	do(t, phone, "the cluster page at 390 px", 60*time.Second,
		// A window cannot be narrower than 500 px; a phone's viewport is
		// emulated instead.
		chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(n1.URL()+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(cell("n1", side, "alive"))),
	)
	var overflow bool
	do(t, phone, "page width", 10*time.Second, eval(&overflow, `document.documentElement.scrollWidth > window.innerWidth + 1`))
	if overflow {
		t.Errorf("the cluster page is wider than a 390 px screen (only the matrix may scroll, inside its box)")
	}
	screenshot(t, phone, shots, "cluster-phone.png")
}

// TestConsoleBrowserACL: with ACLs on, the page without a token shows the
// sign-in prompt and no data at all; with the management token it shows
// the cluster.
func TestConsoleBrowserACL(t *testing.T) {
	start := time.Now()
	defer func() { t.Logf("console ACL browser test took %s", time.Since(start).Round(time.Millisecond)) }()
	shots := shotsDir(t)
	tab := browser(t, 1280, 800)
	c := testcluster.Start(t, 3, testcluster.Options{Args: []string{"--acl-enabled"}})
	for _, n := range c.Nodes {
		n.WaitHTTP(20 * time.Second) // status needs a token: the bootstrap below waits for a leader
	}
	n1 := c.Nodes[0]
	var mgmt string
	deadline := time.Now().Add(30 * time.Second)
	for mgmt == "" {
		code, body, _, err := n1.Do(http.MethodPut, "/v1/acl/bootstrap", nil)
		if err == nil && code == 200 {
			var tok struct{ SecretID string }
			_ = json.Unmarshal(body, &tok)
			mgmt = tok.SecretID
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bootstrap: %d %s %v", code, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	apiPutToken := func(path, value string) {
		req, _ := http.NewRequest(http.MethodPut, n1.URL()+path, strings.NewReader(value))
		req.Header.Set("X-Consul-Token", mgmt)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT %s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	apiPutToken("/v1/kv/secret/plans", "the secret plans")

	var cards, keys int
	var mainText string
	do(t, tab, "the page without a token", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`#login`)),
		eval(&cards, `document.querySelectorAll('[data-node]').length`),
		eval(&mainText, `document.querySelector('#main').innerText`),
	)
	if cards != 0 || strings.TrimSpace(mainText) != "" {
		t.Fatalf("without a token the page shows data: %d node elements, main %q", cards, mainText)
	}
	screenshot(t, tab, shots, "sign-in.png")
	do(t, tab, "the keys page without a token", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/kv/secret%2F"),
		chromedp.WaitVisible(chromedp.CSS(`#login`)),
		eval(&keys, `document.querySelectorAll('#key-list a').length`),
		eval(&mainText, `document.body.innerText`),
	)
	if keys != 0 || strings.Contains(mainText, "plans") {
		t.Fatalf("without a token the keys page shows keys: %d, text %q", keys, mainText)
	}
	do(t, tab, "sign in", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/cluster"),
		chromedp.WaitVisible(chromedp.CSS(`#login-token`)),
		chromedp.SendKeys(chromedp.CSS(`#login-token`), mgmt),
		chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#cards article[data-node="n3"]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#login`)),
	)
	do(t, tab, "keys with the token", 30*time.Second,
		chromedp.Navigate(n1.URL()+"/ui/#/kv/secret%2F"),
		chromedp.WaitVisible(chromedp.CSS(`#key-list a[data-key="secret/plans"]`)),
	)
}

// TestConsoleClusterViewOverTLS: with TLS on both ports and client
// certificates required, the node serving /v1/ui/cluster reaches every
// other member's view over HTTPS with its own certificate.
func TestConsoleClusterViewOverTLS(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{TLS: true})
	c.WaitLeader(30 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, _, err := c.Nodes[0].Do(http.MethodGet, "/v1/ui/cluster", nil)
		if err != nil || code != 200 {
			t.Fatalf("/v1/ui/cluster over TLS: %d %s %v", code, body, err)
		}
		var cv struct {
			Views map[string]struct {
				Error  string
				Status *struct{ ID string }
				Health *struct{ Peers []struct{ ID, State string } }
			}
		}
		if err := json.Unmarshal(body, &cv); err != nil {
			t.Fatal(err)
		}
		ok := len(cv.Views) == 3
		for id, v := range cv.Views {
			alive := 0
			if v.Health != nil {
				for _, p := range v.Health.Peers {
					if p.State == "alive" {
						alive++
					}
				}
			}
			ok = ok && v.Error == "" && v.Status != nil && v.Status.ID == id && alive == 2
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("views over TLS never complete: %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
