package web_test

// Issue 19's business view (the run card, its notes and the history) in real
// Chromium against a real `serve`: every word the page shows in each state is
// true. Each scenario ends with axe-core at 1280 and 360 px.

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

// newStackArgs starts `runledger serve` with args instead of serveArgs.
func newStackArgs(t *testing.T, args ...string) *stack {
	t.Helper()
	auth, err := api.NewAuthenticator(secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := servetest.Start(t, servetest.Options{DatabaseURL: pgtest.URL(t), Secret: secret, Args: args})
	return &stack{t: t, srv: srv, auth: auth}
}

// consoleErrors records the tab's console errors, failed loads and uncaught
// exceptions from now on.
type consoleErrors struct {
	mu   sync.Mutex
	errs []string
}

func (p *tab) watchConsole() *consoleErrors {
	p.t.Helper()
	c := &consoleErrors{}
	if _, err := chromedp.Call(p.ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		p.t.Fatal(err)
	}
	add := func(s string) {
		c.mu.Lock()
		c.errs = append(c.errs, s)
		c.mu.Unlock()
	}
	go func() {
		for ev, err := range chromedp.Events(p.ctx, cdplog.EntryAdded) {
			if err != nil {
				return
			}
			if ev.Entry != nil && ev.Entry.Level == cdplog.EntryLevelError {
				add(ev.Entry.Text + " " + ev.Entry.URL)
			}
		}
	}()
	go func() {
		for ev, err := range chromedp.Events(p.ctx, runtime.ConsoleAPICalled) {
			if err != nil {
				return
			}
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				add("console.error")
			}
		}
	}()
	go func() {
		for ev, err := range chromedp.Events(p.ctx, runtime.ExceptionThrown) {
			if err != nil {
				return
			}
			if ev.ExceptionDetails != nil {
				add("exception: " + ev.ExceptionDetails.Text)
			}
		}
	}()
	return c
}

func (c *consoleErrors) none(t *testing.T, when string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.errs) > 0 {
		t.Fatalf("%s: the console shows %d error(s): %q", when, len(c.errs), c.errs)
	}
}

// clockOf renders an RFC 3339 time as the page's formatTime does in the
// tests' browser (TZ=UTC, 24-hour).
func clockOf(t *testing.T, rfc string) string {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, rfc)
	if err != nil {
		t.Fatal(err)
	}
	return at.UTC().Format("15:04:05")
}

// screenshotDocs writes the page as docs/NAME.png when UPDATE_SCREENSHOTS=1,
// so that the README's pictures are always of the current page.
func (p *tab) screenshotDocs(name string) {
	p.t.Helper()
	if os.Getenv("UPDATE_SCREENSHOTS") != "1" {
		return
	}
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100)) // 100: PNG (less is JPEG)
	if err != nil {
		p.t.Fatal(err)
	}
	file := filepath.Join("..", "..", "docs", name+".png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("wrote %s", file)
}

// TestBusinessRun runs the business view's scenarios of issue 19.
func TestBusinessRun(t *testing.T) {
	browser := startBrowser(t)
	// No reaper (a silent run stays open), stall after 1 s.
	s := newStackArgs(t, "--stale-after", ttl.String(), "--heartbeat-min-interval", "0s", "--reap-interval", "1h", "--stall-after", "1s")
	// The reaper on: a silent run ends at its stale_at.
	reaped := newStackArgs(t, "--stale-after", ttl.String(), "--heartbeat-min-interval", "0s", "--reap-interval", "200ms")

	t.Run("1a a silent worker has no rate and no ETA, and is called silent", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "r01a")
		w.start(100, "dialer-r1")
		stop, _ := w.beat(250*time.Millisecond, 0)
		p.open(s.pageURL("r01a", api.RoleUser, ""))
		p.waitFor("a rate", jsShown("#active-run .rate", "calls/min"), 5*time.Second)
		contains(t, "connection", p.text("#connection"), "Live")
		stop()
		// Silent for a few of its own heartbeat intervals, short of its TTL:
		// the bar still shows, but nothing says it is working. All of it is
		// checked at one instant: read one by one after the wait, a loaded
		// machine let the TTL pass in between (CI: the connection line
		// already said "Watching for a run to start…", which was then true).
		p.waitFor("the rate and ETA withdrawn, the worker called silent, the connection line saying so",
			jsShown("#active-run .rate", "— (silent for")+" && "+jsShown("#active-run .eta", "— (silent for")+" && "+
				jsShown("#active-run .life", "Silent for")+" && "+jsShown("#connection", "no heartbeat from the worker")+" && "+
				jsBarShown+" && ((window.r01aLife = document.querySelector('#active-run .life').innerText), true)", ttl)
		w.mu.Lock() // a heartbeat in flight at stop() has landed by now
		last := w.last["last_heartbeat_at"].(string)
		w.mu.Unlock()
		contains(t, "life", eval[string](p, "window.r01aLife"), "no heartbeat since "+clockOf(t, last))
		p.screenshot("r01a-silent")
		p.waitFor("no bar at the TTL", jsNoBar, ttl+2*time.Second)
		p.axeAtWidths("r01a final")
	})

	t.Run("1b a stalled worker is stalled since its last progress, not since stalled_since", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "r01b")
		w.start(100, "dialer-r1b")
		w.heartbeat(5, 0)
		progressAt := w.last["last_progress_at"].(string)
		done := make(chan struct{})
		defer close(done)
		go func() { // heartbeats that carry no progress
			for {
				select {
				case <-done:
					return
				case <-time.After(250 * time.Millisecond):
				}
				_, _, _ = s.send("POST", w.path("/"+w.runID+"/heartbeat"), w.token, map[string]any{"completed_calls": 5, "failed_calls": 0})
			}
		}()
		p.open(s.pageURL("r01b", api.RoleUser, ""))
		p.waitFor("stalled", jsShown("#active-run .stall-note", "Stalled since "+clockOf(t, progressAt)), 5*time.Second)
		contains(t, "rate", p.text("#active-run .rate"), "— (stalled)")
		contains(t, "eta", p.text("#active-run .eta"), "— (stalled)")
		if strings.Contains(p.visibleText(), "alive but stuck") {
			t.Fatal("the page still says \"alive but stuck\"")
		}
		p.screenshot("r01b-stalled")
		p.axeAtWidths("r01b final")
	})

	t.Run("2 the not-active note follows the run to its end, and Cancel goes with it", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := reaped.worker(t, "r02")
		w.start(40, "dialer-r2")
		w.heartbeat(12, 3)
		lastWord := clockOf(t, w.last["last_heartbeat_at"].(string))
		p.open(reaped.pageURL("r02", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		p.waitFor("the ending told", jsShown("#watch-note", "Ended: failed, its worker went silent at "+lastWord)+" && "+jsNoBar, ttl+5*time.Second)
		p.waitFor("no Cancel anywhere", `![...document.querySelectorAll('button.cancel')].some((b) => b.getClientRects().length > 0)`, 3*time.Second)
		p.waitFor("the history to say so", jsShown("#history tbody tr", "ended failed (stale): silent for"), 3*time.Second)
		contains(t, "history", p.text("#history tbody tr"), "25 calls abandoned")
		if strings.Contains(p.visibleText(), "is not active") {
			t.Fatalf("the page still says the run is not active:\n%s", p.visibleText())
		}
		p.screenshot("r02-ended-by-reaper")
		p.axeAtWidths("r02 final")
	})

	t.Run("3 the history's reasons are the audit's, with abandoned calls and the last error", func(t *testing.T) {
		w := reaped.worker(t, "r03")
		user := reaped.token("r03", api.RoleUser)
		w.start(100, "dialer-r3a")
		w.complete("completed", 34, 0)
		w.start(50, "dialer-r3b")
		if st, out := reaped.call(t, "POST", w.path("/"+w.runID+"/complete"), w.token,
			map[string]any{"outcome": "failed", "error": "carrier down", "completed_calls": 10, "failed_calls": 2}); st != http.StatusOK {
			t.Fatalf("fail: %d %v", st, out)
		}
		w.start(100, "dialer-r3c")
		w.heartbeat(13, 0)
		if st, out := reaped.call(t, "POST", w.path("/"+w.runID+"/cancel"), user, map[string]any{}); st != http.StatusAccepted {
			t.Fatalf("cancel: %d %v", st, out)
		}
		for deadline := time.Now().Add(ttl + 5*time.Second); ; time.Sleep(50 * time.Millisecond) { // the worker is silent; the reaper ends it
			if st, run := reaped.call(t, "GET", w.path("/"+w.runID), user, nil); st == 200 && run["status"] == "cancelled" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the reaper never ended the cancelled run")
			}
		}
		p := newTab(t, browser, tabOptions{})
		p.open(reaped.pageURL("r03", api.RoleUser, ""))
		p.waitFor("three runs", `document.querySelectorAll('#history tbody tr').length === 3`, 5*time.Second)
		rows := eval[[]string](p, `[...document.querySelectorAll('#history tbody tr td[data-label="Why it ended"]')].map((c) => c.innerText)`)
		want := []string{
			"ended cancelled (stopped after the cancel request): silent for",
			`ended failed by worker: 10/50 done, 2 failed, 38 pending (error: "carrier down")`,
			"ended completed by worker: 34/100 done, 0 failed, 66 pending",
		}
		for i, wnt := range want {
			if i >= len(rows) || !strings.Contains(rows[i], wnt) {
				t.Fatalf("history reasons = %q, want row %d to contain %q", rows, i, wnt)
			}
		}
		contains(t, "the reaped cancel", rows[0], "87 calls abandoned")
		p.screenshot("r03-history-reasons")
		p.axeAtWidths("r03 final")
	})

	t.Run("5 an idle page costs no request and logs no error; the start is pushed", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{initScripts: []string{countingScript}})
		console := p.watchConsole()
		p.open(s.pageURL("r05", api.RoleUser, ""))
		p.waitFor("watching with no bar", jsShown("#watch-note", "No active run.")+" && "+jsNoBar, 5*time.Second)
		p.waitFor("the history loaded", jsShown("#history", "No runs yet."), 5*time.Second)
		before := p.counts()
		time.Sleep(2 * time.Second) // a window in which an idle page must ask nothing
		after := p.counts()
		if after.Started != before.Started {
			t.Fatalf("an idle page started %d requests in 2 s (%+v → %+v)", after.Started-before.Started, before, after)
		}
		if after.Open != 1 {
			t.Fatalf("an idle page holds %d open requests, want its one stream", after.Open)
		}
		w := s.worker(t, "r05")
		w.start(10, "dialer-r5")
		within(t, "the bar to appear after the start", p.waitFor("showing a bar", jsBarShown, 3*time.Second), time.Second)
		w.complete("completed", 10, 0)
		p.waitFor("the ending", jsShown("#watch-note", "Run completed: 10 completed, 0 failed of 10."), 3*time.Second)
		w.start(5, "dialer-r5b") // the stream goes on: the next start is pushed too
		within(t, "the next run's bar", p.waitFor("showing a bar", jsBarShown, 3*time.Second), time.Second)
		console.none(t, "idle, a run, its end, the next run")
		p.screenshot("r05-idle-then-pushed")
		p.axeAtWidths("r05 final")
	})

	t.Run("6 keyboard: Tab to Pause, Enter, Enter: paused then resumed, focus kept, announced", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "r06")
		w.start(60, "dialer-r6")
		stop, _ := w.beat(300*time.Millisecond, 1)
		defer stop()
		p.open(s.pageURL("r06", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		const onPause = `document.activeElement === document.querySelector('#active-run button.pause')`
		for i := 0; !eval[bool](p, onPause); i++ {
			if i == 30 {
				t.Fatalf("30 Tabs never reached Pause; the focus is on %s", eval[string](p, `document.activeElement.outerHTML.slice(0, 80)`))
			}
			p.do(chromedp.KeyEvent(kb.Tab))
		}
		p.do(chromedp.KeyEvent(kb.Enter))
		p.waitFor("paused", jsShown("#active-run button.pause", "Resume"), 3*time.Second)
		if !eval[bool](p, onPause) {
			t.Fatalf("after Enter, the focus is on %s", eval[string](p, `document.activeElement.tagName`))
		}
		p.waitFor("the pause announced", `document.getElementById('announce')?.textContent.startsWith('Paused') === true`, 3*time.Second)
		contains(t, "ETA while paused", p.text("#active-run .eta"), "— (paused)")
		p.do(chromedp.KeyEvent(kb.Enter))
		p.waitFor("resumed, announced", jsShown("#active-run button.pause", "Pause")+
			` && document.getElementById('announce')?.textContent.startsWith('Resumed') === true`, 3*time.Second)
		if !eval[bool](p, onPause+` && document.activeElement.getAttribute('aria-busy') === 'false'`) {
			t.Fatalf("after Enter, Enter, the focus is on %s", eval[string](p, `document.activeElement.outerHTML.slice(0, 120)`))
		}
		p.screenshot("r06-keyboard")
		p.axeAtWidths("r06 final")
	})

	t.Run("7 banners follow the worker's acknowledgement and never move the controls", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "r07")
		w.start(60, "dialer-r7")
		p.open(s.pageURL("r07", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		const top = `Math.round(document.querySelector('#active-run button.pause').getBoundingClientRect().top + scrollY)`
		before := eval[float64](p, top)
		p.click("#active-run button.pause")
		p.waitFor("the pause's answer", jsShown("#answer", "Paused — the worker pauses at its next heartbeat"), 3*time.Second)
		if after := eval[float64](p, top); after != before {
			t.Fatalf("the answer moved Pause from %v to %v px", before, after)
		}
		ans := w.answer(3, 0) // the worker's next heartbeat: it learns of the pause
		if ans["pause_requested"] != true {
			t.Fatalf("heartbeat answer %v", ans)
		}
		at := clockOf(t, ans["run"].(map[string]any)["last_heartbeat_at"].(string))
		p.waitFor("the acknowledgement", jsShown("#answer", "Paused — the worker acknowledged at "+at), 3*time.Second)
		if after := eval[float64](p, top); after != before {
			t.Fatalf("the acknowledgement moved Pause from %v to %v px", before, after)
		}
		p.screenshot("r07-acknowledged")
		p.axeAtWidths("r07 final")
	})

	t.Run("11 user-supplied ids are isolated; a long one is shortened and whole by keyboard", func(t *testing.T) {
		long := strings.Repeat("dialer-0123456789-", 8)[:128]
		const bidi = "evil\u202Eworker"
		w := s.worker(t, "r11")
		w.start(10, long)
		w.complete("completed", 10, 0)
		w.start(10, bidi)
		p := newTab(t, browser, tabOptions{width: 360, height: 760, mobile: true})
		p.open(s.pageURL("r11", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		p.waitFor("two runs", `document.querySelectorAll('#history tbody tr').length === 2`, 3*time.Second)
		if got := eval[string](p, `document.querySelector('#active-run .worker bdi')?.textContent ?? 'no <bdi>'`); got != bidi {
			t.Fatalf("the card's worker id is %q, want %q isolated in a <bdi>", got, bidi)
		}
		cell := `document.querySelectorAll('#history tbody tr')[1].querySelector('td[data-label=Worker]')`
		if h := eval[float64](p, cell+`.getBoundingClientRect().height`); h > 80 {
			t.Fatalf("the 128-character id takes %.0f px in the history at 360 px", h)
		}
		p.do(chromedp.Focus(chromedp.CSS(`#history tbody tr:nth-child(2) td[data-label=Worker] button`)))
		p.do(chromedp.KeyEvent(kb.Enter))
		p.waitFor("the whole id shown", fmt.Sprintf(`%s.querySelector('bdi').textContent === %q`, cell, long), 2*time.Second)
		noOverflow(t, p)
		p.screenshot("r11-ids")
		p.axeAtWidths("r11 final")
	})

	t.Run("12 the business view with a history is axe-clean; the marks are read as words", func(t *testing.T) {
		w := s.worker(t, "r12")
		w.start(30, "dialer-r12")
		w.complete("completed", 27, 3)
		w.start(40, "dialer-r12b")
		w.complete("failed", 8, 2)
		w.start(120, "dialer-r12c")
		w.heartbeat(45, 6)
		p := newTab(t, browser, tabOptions{width: 1280, height: 900})
		p.open(s.pageURL("r12", api.RoleUser, ""))
		p.waitFor("the bar at 42%", jsBarAt("42"), 5*time.Second)
		p.waitFor("three runs", `document.querySelectorAll('#history tbody tr').length === 3`, 3*time.Second)
		p.axeAtWidths("r12 final")
		calls := eval[string](p, `[...document.querySelector('#history tbody tr:last-child td[data-label=Calls]').querySelectorAll('span')].map((s) => (s.getAttribute('aria-hidden') === 'true' ? '[hidden ' : '[') + s.textContent + ']').join('')`)
		if calls != "[hidden ✓][completed,][hidden ✗][failed,]" {
			t.Fatalf("the Calls cell's marks: %s", calls)
		}
		// For the README's picture: a worker at work, so that the rate is measured.
		done := make(chan struct{})
		defer close(done)
		go func() {
			for i := 1; ; i++ {
				select {
				case <-done:
					return
				case <-time.After(400 * time.Millisecond):
				}
				_, _, _ = s.send("POST", w.path("/"+w.runID+"/heartbeat"), w.token, map[string]any{"completed_calls": 45 + i, "failed_calls": 6})
			}
		}()
		p.do(chromedp.EmulateViewport(1280, 900))
		p.waitFor("a measured rate", jsShown("#active-run .rate", "calls/min"), 10*time.Second)
		p.screenshotDocs("page-business")
	})
}
