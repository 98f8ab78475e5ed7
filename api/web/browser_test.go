package web_test

// The page in real headless Chromium, driven with chromedp, against a real
// `runledger serve` subprocess (internal/servetest) on real PostgreSQL with a
// 3 s TTL. Workers are simulated by the test with plain HTTP calls and a
// worker token. One browser process serves every scenario (a fresh tab
// each); each scenario saves screenshots with t.ArtifactDir, which
// `make test` keeps under test-artifacts/ (go test -artifacts -outputdir).
//
// Locally the tests skip when no Chromium is found; with
// RUNLEDGER_REQUIRE_BROWSER=1 (CI) a missing browser fails them.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	secret = "browser-test-secret-browser-test-0123"
	ttl    = 3 * time.Second
)

// serveArgs: a 3 s TTL, heartbeats stored 100 ms apart at most, no reaper
// (scenario 3's "worker dies, reaper disabled" holds for all: a silent run
// stays open, as when the reaper is late).
var serveArgs = []string{"--stale-after", ttl.String(), "--heartbeat-min-interval", "0s", "--reap-interval", "1h"}

// findChromium returns the browser to drive, or "".
func findChromium() string {
	if p := os.Getenv("RUNLEDGER_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// startBrowser starts one headless Chromium for the calling test and its
// subtests; it is stopped when the test ends.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium()
	if path == "" {
		if os.Getenv("RUNLEDGER_REQUIRE_BROWSER") == "1" {
			t.Fatal("RUNLEDGER_REQUIRE_BROWSER=1 but no Chromium was found: apt-get install chromium, or set RUNLEDGER_CHROMIUM")
		}
		t.Skip("browser tests skipped: no Chromium found (Debian: apt-get install chromium; or set RUNLEDGER_CHROMIUM=/path). " +
			"Set RUNLEDGER_REQUIRE_BROWSER=1 to make a missing browser a failure.")
	}
	profile := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1100, 900),
		// This machine's closed network refuses Chromium's own background
		// connections; keep it to the page's.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Env("TZ=UTC"), // datetime-local inputs are filled in UTC
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	start := time.Now()
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Logf("Chromium %s started in %s", path, time.Since(start).Round(time.Millisecond))
	return bctx
}

// --- the service and its simulated workers ----------------------------------

type stack struct {
	t    *testing.T
	srv  *servetest.Server
	auth *api.Authenticator
}

// newStack starts `runledger serve` on a fresh database with serveArgs.
func newStack(t *testing.T) *stack {
	t.Helper()
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := servetest.Start(t, servetest.Options{DatabaseURL: pgtest.URL(t), Secret: secret, Args: serveArgs})
	waitFirstSweep(t, srv.URL)
	return &stack{t: t, srv: srv, auth: auth}
}

// waitFirstSweep waits for the reaper's first sweep. With no open run then,
// it sleeps for --reap-interval (1h): no run of these tests is reaped, as
// when the reaper is late or down. (A reaper that woke for new runs would
// break scenarios 3, 6 and 11, which say so when it happens.)
func waitFirstSweep(t *testing.T, url string) {
	t.Helper()
	sweeps := regexp.MustCompile(`(?m)^runledger_reaper_sweep_duration_seconds_count (\d+)$`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if m := sweeps.FindSubmatch(body); m != nil && string(m[1]) != "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the reaper never swept")
		}
	}
}

func (s *stack) token(business string, role api.Role) string {
	tok, err := s.auth.Mint(business, role, time.Hour)
	if err != nil {
		panic(err) // the tests' businesses and roles are valid constants
	}
	return tok
}

// pageURL is the page signed in as role of business, by the URL fragment.
func (s *stack) pageURL(business string, role api.Role, query string) string {
	u := s.srv.URL + "/"
	if query != "" {
		u += "?" + query
	}
	return u + "#token=" + s.token(business, role)
}

// call sends a JSON request with token and decodes the JSON answer; it
// fails the test if the server cannot be reached.
func (s *stack) call(t *testing.T, method, path, token string, body any) (int, map[string]any) {
	t.Helper()
	status, out, err := s.send(method, path, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, out
}

// send is call for goroutines other than the test's: it returns the error.
func (s *stack) send(method, path, token string, body any) (int, map[string]any, error) {
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out, nil
}

// worker is a simulated dialer of one business, for one (sub)test.
type worker struct {
	t        *testing.T
	s        *stack
	business string
	token    string
	runID    string
	mu       sync.Mutex
	last     map[string]any // the run as last answered
}

func (s *stack) worker(t *testing.T, business string) *worker {
	return &worker{t: t, s: s, business: business, token: s.token(business, api.RoleWorker)}
}

func (w *worker) path(suffix string) string {
	return "/v1/businesses/" + w.business + "/runs" + suffix
}

// start starts a run and returns its JSON.
func (w *worker) start(total int, workerID string) map[string]any {
	w.t.Helper()
	status, run := w.s.call(w.t, "POST", w.path(""), w.token, map[string]any{"total_calls": total, "worker_id": workerID})
	if status != http.StatusCreated {
		w.t.Fatalf("start: %d %v", status, run)
	}
	w.mu.Lock()
	w.runID, w.last = run["run_id"].(string), run
	w.mu.Unlock()
	return run
}

// heartbeat reports progress; it returns the run and whether a cancel was requested.
func (w *worker) heartbeat(completed, failed int) (map[string]any, bool) {
	w.t.Helper()
	ans := w.answer(completed, failed)
	return ans["run"].(map[string]any), ans["cancel_requested"] == true
}

// answer heartbeats and returns the whole answer (run, cancel_requested,
// pause_requested).
func (w *worker) answer(completed, failed int) map[string]any {
	w.t.Helper()
	status, ans := w.s.call(w.t, "POST", w.path("/"+w.runID+"/heartbeat"), w.token, map[string]any{"completed_calls": completed, "failed_calls": failed})
	if status != http.StatusOK {
		w.t.Fatalf("heartbeat: %d %v", status, ans)
	}
	w.mu.Lock()
	w.last = ans["run"].(map[string]any)
	w.mu.Unlock()
	return ans
}

// complete ends the run with outcome.
func (w *worker) complete(outcome string, completed, failed int) map[string]any {
	w.t.Helper()
	status, run := w.s.call(w.t, "POST", w.path("/"+w.runID+"/complete"), w.token,
		map[string]any{"outcome": outcome, "completed_calls": completed, "failed_calls": failed})
	if status != http.StatusOK {
		w.t.Fatalf("complete: %d %v", status, run)
	}
	return run
}

// beat heartbeats every interval from a goroutine, one more call done each
// time, until stop is called (or the test ends). cancelled receives the time
// a heartbeat's answer first said cancel_requested.
func (w *worker) beat(interval time.Duration, from int) (stop func(), cancelled <-chan time.Time) {
	done := make(chan struct{})
	learnt := make(chan time.Time, 1)
	var once sync.Once
	stop = func() { once.Do(func() { close(done) }) }
	w.t.Cleanup(stop)
	go func() {
		n := from
		told := false
		for {
			select {
			case <-done:
				return
			case <-time.After(interval):
			}
			w.mu.Lock()
			total := int(w.last["total_calls"].(float64))
			w.mu.Unlock()
			n = min(n+1, total)
			status, ans, err := w.s.send("POST", w.path("/"+w.runID+"/heartbeat"), w.token, map[string]any{"completed_calls": n, "failed_calls": 0})
			if err != nil || status != http.StatusOK {
				continue // a dead server or an ended run: the scenario decides what that means
			}
			w.mu.Lock()
			w.last = ans["run"].(map[string]any)
			w.mu.Unlock()
			if ans["cancel_requested"] == true && !told {
				told = true
				learnt <- time.Now()
			}
		}
	}()
	return stop, learnt
}

// progress is the completed calls of the run's last answer.
func (w *worker) progress() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return int(w.last["completed_calls"].(float64))
}

// staleAt is when the run counts as stale, by its last answer (server clock).
func (w *worker) staleAt() time.Time {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	at, err := time.Parse(time.RFC3339Nano, w.last["stale_at"].(string))
	if err != nil {
		w.t.Fatal(err)
	}
	return at
}

// --- a browser tab -------------------------------------------------------------

type tab struct {
	t       *testing.T
	ctx     context.Context
	dialogs chan string
}

type tabOptions struct {
	width, height int64
	mobile        bool
	initScripts   []string
}

// newTab opens a fresh tab (its own sessionStorage) of the browser, with a
// desktop viewport unless opts say otherwise. JavaScript dialogs (alert) are
// recorded and dismissed.
func newTab(t *testing.T, browser context.Context, opts tabOptions) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatal(err)
	}
	if opts.width == 0 {
		opts.width, opts.height = 1024, 900
	}
	vp := []chromedp.EmulateViewportOption{}
	if opts.mobile {
		vp = append(vp, chromedp.EmulateMobile)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(opts.width, opts.height, vp...)); err != nil {
		t.Fatal(err)
	}
	for _, src := range opts.initScripts {
		if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: src}); err != nil {
			t.Fatal(err)
		}
	}
	p := &tab{t: t, ctx: ctx, dialogs: make(chan string, 8)}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			select {
			case p.dialogs <- ev.Message:
			default:
			}
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return p
}

func (p *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatal(err)
	}
}

// open navigates to url and waits for the page to load.
func (p *tab) open(url string) {
	p.t.Helper()
	p.do(chromedp.Navigate(url))
}

// eval evaluates a JavaScript expression in the page (awaiting a promise).
func eval[T any](p *tab, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls the boolean expression until it holds and returns how long
// that took; it fails the test after timeout, with the page's text.
func (p *tab) waitFor(what, expr string, timeout time.Duration) time.Duration {
	p.t.Helper()
	start := time.Now()
	for {
		if eval[bool](p, expr) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			p.screenshot("timeout")
			p.t.Fatalf("after %s, still not %s; the page says:\n%s", timeout, what, p.visibleText())
		}
		time.Sleep(15 * time.Millisecond)
	}
}

// visibleText is what a person reads on the page.
func (p *tab) visibleText() string {
	return eval[string](p, `document.body.innerText`)
}

// text is the visible text of the first element matching css ("" if none or hidden).
func (p *tab) text(css string) string {
	return eval[string](p, fmt.Sprintf(`(() => { const n = document.querySelector(%q); return n && n.getClientRects().length ? n.innerText : ''; })()`, css))
}

func (p *tab) click(css string) {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.CSS(css)))
}

// screenshot saves the whole page as NAME.png in the test's artifact directory.
func (p *tab) screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	file := filepath.Join(p.t.ArtifactDir(), name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p.t.Logf("screenshot %s", file)
}

// What a person sees, as JavaScript conditions.
const (
	jsBarShown = `(() => { const c = document.getElementById('active-run'); return !!c && !c.hidden && c.getClientRects().length > 0; })()`
	jsNoBar    = `!` + jsBarShown
)

// jsShown holds when an element matching css is visible and its text contains s.
func jsShown(css, s string) string {
	return fmt.Sprintf(`(() => { const n = document.querySelector(%q); return !!n && n.getClientRects().length > 0 && n.innerText.includes(%q); })()`, css, s)
}

// recordTexts makes the page keep every text the element css shows from now
// on, so that a test can tell it said something it showed only briefly: an
// answer the next event replaces a few milliseconds later, between two of
// waitFor's looks.
func (p *tab) recordTexts(css string) {
	p.t.Helper()
	eval[bool](p, fmt.Sprintf(`(() => {
		const n = document.querySelector(%[1]q), said = (window.__said ??= {});
		said[%[1]q] = [];
		new MutationObserver(() => { if (n.getClientRects().length > 0) said[%[1]q].push(n.innerText); })
			.observe(n, { childList: true, subtree: true, characterData: true, attributes: true });
		return true;
	})()`, css))
}

// jsSaid holds when the element css, recorded since recordTexts, has shown a
// text containing s.
func jsSaid(css, s string) string {
	return fmt.Sprintf(`(window.__said?.[%q] ?? []).some((t) => t.includes(%q))`, css, s)
}

// jsBarAt holds when the progress bar's aria-valuenow is pct.
func jsBarAt(pct string) string {
	return fmt.Sprintf(`document.querySelector('#active-run [role=progressbar]')?.getAttribute('aria-valuenow') === %q`, pct)
}

// within fails the test when d exceeds limit.
func within(t *testing.T, what string, d, limit time.Duration) {
	t.Helper()
	if d > limit {
		t.Fatalf("%s took %s, want at most %s", what, d.Round(time.Millisecond), limit)
	}
	t.Logf("%s: %s", what, d.Round(time.Millisecond))
}

// contains fails unless s contains want.
func contains(t *testing.T, what, s, want string) {
	t.Helper()
	if !strings.Contains(s, want) {
		t.Fatalf("%s = %q, want it to contain %q", what, s, want)
	}
}
