package web_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/runledger/runledger/api"
)

// TestPage runs issue 15's scenarios in one browser, each on its own
// business (or its own server when it needs one), in order.
func TestPage(t *testing.T) {
	browser := startBrowser(t)
	s := newStack(t)

	t.Run("01 a run that starts appears within 1 s and follows the heartbeats", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		p.open(s.pageURL("s01", api.RoleUser, ""))
		p.waitFor("watching with no bar", jsShown("#watch-note", "No active run.")+" && "+jsNoBar, 5*time.Second)
		w := s.worker(t, "s01")
		w.start(20, "dialer-1")
		within(t, "the bar to appear after the start", p.waitFor("showing a bar", jsBarShown, 3*time.Second), time.Second)
		contains(t, "counts", p.text("#active-run .counts"), "0 completed · 0 failed · 20 pending of 20")
		for i, hb := range [][2]int{{4, 1}, {9, 1}, {14, 2}} {
			w.heartbeat(hb[0], hb[1])
			want := fmt.Sprint((hb[0] + hb[1]) * 100 / 20)
			d := p.waitFor("the bar at "+want+"%", jsBarAt(want), 3*time.Second)
			within(t, fmt.Sprintf("heartbeat %d to reach the bar", i+1), d, time.Second)
		}
		contains(t, "counts", p.text("#active-run .counts"), "14 completed · 2 failed · 4 pending of 20")
		contains(t, "connection", p.text("#connection"), "Live")
		if life := p.text("#active-run .life"); !regexp.MustCompile(`^Last sign of life \d+ s ago$`).MatchString(life) {
			t.Fatalf("last sign of life = %q", life)
		}
		if rate := p.text("#active-run .rate"); !strings.Contains(rate, "calls/min") {
			t.Fatalf("rate = %q", rate)
		}
		p.screenshot("01-bar-follows-heartbeats")
	})

	t.Run("02 the worker completes: the bar is gone within 1 s", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s02")
		w.start(10, "dialer-2")
		p.open(s.pageURL("s02", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		w.heartbeat(7, 1)
		p.waitFor("the bar at 80%", jsBarAt("80"), 3*time.Second)
		w.complete("completed", 9, 1)
		within(t, "the bar to go after complete", p.waitFor("no bar", jsNoBar, 3*time.Second), time.Second)
		p.waitFor("the ending explained", jsShown("#watch-note", "Run completed: 9 completed, 1 failed of 10."), 2*time.Second)
		p.waitFor("the run in the history", jsShown("#history tbody tr", "Completed"), 2*time.Second)
		p.screenshot("02-completed")
	})

	t.Run("03 the worker dies, no reaper: the bar is gone at the TTL ± 0.5 s", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s03")
		w.start(50, "dialer-3")
		p.open(s.pageURL("s03", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		w.heartbeat(10, 2)
		p.waitFor("the bar at 24%", jsBarAt("24"), 3*time.Second)
		staleAt := w.staleAt() // the worker dies after this heartbeat
		watchBarGone(p)
		p.waitFor("no bar", jsNoBar, ttl+2*time.Second)
		checkBarGoneAtStaleAt(t, p, staleAt, 0)
		p.waitFor("the silent run explained", jsShown("#watch-note", "is not active"), 2*time.Second)
		contains(t, "note", p.text("#watch-note"), "Last sign of life from worker dialer-3")
		// Without a reaper the run is still open in the database: the page
		// did not wait for anyone to end it.
		if status, run := s.call(t, "GET", "/v1/businesses/s03/runs/"+w.runID, s.token("s03", api.RoleUser), nil); status != 200 || run["status"] != "running" || run["active"] != false {
			t.Fatalf("run = %d %v, want running and not active", status, run)
		}
		p.screenshot("03-silent-past-ttl")
	})

	t.Run("04 the server is killed: lost contact and no bar within 5 s", func(t *testing.T) {
		s4 := newStack(t)
		p := newTab(t, browser, tabOptions{})
		w := s4.worker(t, "s04")
		w.start(30, "dialer-4")
		p.open(s4.pageURL("s04", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		w.heartbeat(6, 0)
		p.waitFor("the bar at 20%", jsBarAt("20"), 3*time.Second)
		s4.srv.Kill()
		d := p.waitFor(`"lost contact" and no bar`, jsShown("#watch-note", "Lost contact with the server")+" && "+jsNoBar, 8*time.Second)
		within(t, "lost contact after the kill", d, 5*time.Second)
		contains(t, "connection", p.text("#connection"), "Not watching")
		if eval[bool](p, `!!document.querySelector('#watch-note button')`) == false {
			t.Fatal("no way to try again")
		}
		p.screenshot("04-lost-contact")
	})

	t.Run("05 Cancel on a live run: Stopping, the worker learns it, then the bar goes", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s05")
		w.start(100, "dialer-5")
		stop, cancelled := w.beat(300*time.Millisecond, 10)
		p.open(s.pageURL("s05", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		p.recordTexts("#answer") // the worker's next heartbeat, at most 300 ms away, replaces the answer
		p.click("#active-run button.cancel")
		clicked := time.Now()
		d := p.waitFor("the graceful answer", jsSaid("#answer", "Stopping — the worker stops at its next heartbeat"), 3*time.Second)
		within(t, "the cancel's answer", d, time.Second)
		p.waitFor("the bar marked Stopping", jsShown("#active-run .badge-stopping", "Stopping")+" && "+jsBarShown, time.Second)
		p.screenshot("05-stopping")
		var learnt time.Time
		select {
		case learnt = <-cancelled:
		case <-time.After(3 * time.Second):
			t.Fatal("the worker's heartbeats never learnt of the cancel")
		}
		within(t, "the worker to learn of the cancel", learnt.Sub(clicked), time.Second)
		stop()
		if !eval[bool](p, jsBarShown) {
			t.Fatal("the bar went before the worker stopped")
		}
		n := w.progress()
		w.complete("cancelled", n, 0)
		within(t, "the bar to go after the worker stopped", p.waitFor("no bar", jsNoBar, 3*time.Second), time.Second)
		p.waitFor("the ending explained", jsShown("#watch-note", "Run cancelled: the worker stopped"), 2*time.Second)
		p.screenshot("05-cancelled")
	})

	t.Run("06 Cancel on a silent run: forced, the bar is gone at once", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s06")
		w.start(40, "dialer-6")
		w.heartbeat(12, 3)
		p.open(s.pageURL("s06", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		// The worker is silent: past the TTL the bar gives way to a note
		// that offers to cancel the run the server still holds open.
		p.waitFor("the silent run offered for cancel", jsShown("#watch-note", "is not active")+" && "+jsNoBar, ttl+2*time.Second)
		p.screenshot("06-silent-run-offered")
		p.click("#watch-note button.cancel")
		d := p.waitFor("the forced answer", jsShown("#answer", "Cancelled: the worker was silent"), 3*time.Second)
		within(t, "the forced cancel's answer", d, time.Second)
		if !eval[bool](p, jsNoBar+` && document.getElementById('watch-note').hidden`) {
			t.Fatal("a bar or the silent-run note is still shown after the forced cancel")
		}
		for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) { // the read model catches up
			status, run := s.call(t, "GET", "/v1/businesses/s06/runs/"+w.runID, s.token("s06", api.RoleUser), nil)
			if status == 200 && run["status"] == "cancelled" && run["end_reason"] == "cancel_forced" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("run = %d %v, want cancelled (cancel_forced)", status, run)
			}
		}
		p.waitFor("the history to say so", jsShown("#history tbody tr", "cancelled: the worker was silent"), 3*time.Second)
		p.screenshot("06-forced-cancel")
	})

	t.Run("07 a short maximum watch duration: watching stops and says so", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s07")
		w.start(100, "dialer-7")
		stop, _ := w.beat(400*time.Millisecond, 1)
		defer stop()
		opened := time.Now()
		p.open(s.pageURL("s07", api.RoleUser, "max_watch=2s"))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		p.waitFor("watching stopped", jsShown("#watch-note", "Stopped watching after 2 s — refresh to check again.")+" && "+jsNoBar, 5*time.Second)
		d := time.Since(opened)
		if d < 2*time.Second || d > 4*time.Second {
			t.Fatalf("watching stopped %s after the page was asked for, want 2 s (+ the page's load)", d)
		}
		t.Logf("watching stopped %s after the page was asked for", d.Round(time.Millisecond))
		contains(t, "connection", p.text("#connection"), "Not watching")
		p.screenshot("07-stopped-watching")
		// Checking again resumes, and the live run shows again.
		p.click("#watch-note button")
		p.waitFor("the bar back", jsBarShown, 3*time.Second)
	})

	for _, c := range []struct {
		name     string
		business string
		shift    time.Duration
	}{{"08a the browser clock 1 h ahead", "s08a", time.Hour}, {"08b the browser clock 1 h behind", "s08b", -time.Hour}} {
		t.Run(c.name+": a live run still shows, a silent one still hides", func(t *testing.T) {
			p := newTab(t, browser, tabOptions{initScripts: []string{shiftDate(c.shift)}})
			p.open(s.pageURL(c.business, api.RoleUser, ""))
			skew := time.Duration(eval[float64](p, `Date.now()`)*float64(time.Millisecond)) - time.Duration(time.Now().UnixNano())
			if (skew - c.shift).Abs() > 5*time.Second {
				t.Fatalf("the page's clock is off by %s, want %s", skew, c.shift)
			}
			p.waitFor("watching with no bar", jsShown("#watch-note", "No active run."), 5*time.Second)
			w := s.worker(t, c.business)
			w.start(30, "dialer-8")
			within(t, "the bar to appear", p.waitFor("showing a bar", jsBarShown, 3*time.Second), time.Second)
			// Live for two TTLs: the bar never goes.
			until := time.Now().Add(2 * ttl)
			for i := 1; time.Now().Before(until); i++ {
				w.heartbeat(i, 0)
				p.waitFor(fmt.Sprintf("%d completed", i), jsShown("#active-run .counts", fmt.Sprintf("%d completed", i)), 2*time.Second)
				life := p.text("#active-run .life")
				if !regexp.MustCompile(`^Last sign of life [0-2] s ago$`).MatchString(life) {
					t.Fatalf("with the clock %s off, the page says %q", c.shift, life)
				}
				time.Sleep(500 * time.Millisecond) // the worker's pace
			}
			p.screenshot("08-live-run-with-clock-" + map[bool]string{true: "ahead", false: "behind"}[c.shift > 0])
			staleAt := w.staleAt()
			watchBarGone(p)
			p.waitFor("no bar", jsNoBar, ttl+2*time.Second)
			checkBarGoneAtStaleAt(t, p, staleAt, c.shift)
		})
	}

	t.Run("09 reload after a run ended, or went silent: no bar", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s09")
		w.start(10, "dialer-9")
		p.open(s.pageURL("s09", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		w.complete("completed", 10, 0)
		p.waitFor("no bar", jsNoBar, 3*time.Second)
		p.do(chromedp.Reload())
		p.waitFor("the reloaded page to find no active run", jsShown("#watch-note", "No active run.")+" && "+jsNoBar, 5*time.Second)
		p.waitFor("the ended run in the history", jsShown("#history tbody tr", "Completed"), 3*time.Second)
		p.screenshot("09a-reload-after-end")

		// The incident itself: a run the database still calls running, whose
		// worker died. A refreshed page shows no bar.
		w.start(10, "dialer-9b")
		w.heartbeat(3, 0)
		p.waitFor("showing a bar", jsBarShown, 3*time.Second)
		p.waitFor("no bar once silent", jsNoBar, ttl+2*time.Second)
		p.do(chromedp.Reload())
		// The business stream names the open run that is silent (issue 19, item 2).
		p.waitFor("the reloaded page to find the run not active", jsShown("#watch-note", "is not active")+" && "+jsNoBar, 5*time.Second)
		p.waitFor("the silent run in the history, with Cancel", jsShown("#history tbody tr.status-silent", "Not active (silent)")+
			` && !!document.querySelector('#history tbody tr.status-silent button.cancel')`, 3*time.Second)
		p.screenshot("09b-reload-after-silence")
	})

	t.Run("10 a hostile worker_id renders as text; the CSP header is present", func(t *testing.T) {
		const hostile = `<img src=x onerror=alert(1)>`
		res, err := http.Get(s.srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		for k, v := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "no-referrer",
		} {
			if got := res.Header.Get(k); got != v {
				t.Fatalf("%s = %q, want %q", k, got, v)
			}
		}
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s10")
		w.start(5, hostile)
		stop, _ := w.beat(500*time.Millisecond, 0)
		defer stop()
		token := s.token("s10", api.RoleUser)
		p.open(s.srv.URL + "/#token=" + token)
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		p.waitFor("the run in the history", `document.querySelectorAll('#history tbody tr').length === 1`, 3*time.Second)
		if got := eval[string](p, `document.querySelector('#active-run .worker').textContent`); got != hostile {
			t.Fatalf("worker shows %q, want the characters %q", got, hostile)
		}
		if got := eval[string](p, `document.querySelector('#history tbody tr td[data-label=Worker]').textContent`); got != hostile {
			t.Fatalf("history worker shows %q", got)
		}
		if n := eval[int](p, `document.querySelectorAll('img').length`); n != 0 {
			t.Fatalf("%d img elements on the page", n)
		}
		p.screenshot("10-hostile-worker-id")
		// The CSP is enforced: an inline script does not run.
		if eval[bool](p, `(() => { const s = document.createElement('script'); s.textContent = 'window.__inline = true'; document.body.append(s); return window.__inline === true; })()`) {
			t.Fatal("an inline script ran")
		}
		// The token left the URL for sessionStorage and travels in no URL.
		if got := eval[string](p, `location.href`); strings.Contains(got, "#") || strings.Contains(got, token) {
			t.Fatalf("the address bar still holds the token: %s", got)
		}
		if !eval[bool](p, fmt.Sprintf(`sessionStorage.getItem('runledger.token') === %q`, token)) {
			t.Fatal("the token is not in sessionStorage")
		}
		if eval[bool](p, fmt.Sprintf(`performance.getEntriesByType('resource').some((e) => e.name.includes(%q))`, token[len(token)-20:])) {
			t.Fatal("a request URL carries the token")
		}
		select {
		case msg := <-p.dialogs:
			t.Fatalf("a dialog opened: %q", msg)
		default:
		}
	})

	t.Run("11 the operator console lists a silent run first and the replay answers with its reason", func(t *testing.T) {
		s11 := newStack(t)
		alpha := s11.worker(t, "alpha")
		alphaStart := alpha.start(25, "dialer-a")
		time.Sleep(150 * time.Millisecond) // past the 100 ms coalescing, so the heartbeat is stored
		alpha.heartbeat(5, 1)
		bravo := s11.worker(t, "bravo")
		bravo.start(60, "dialer-b")
		stop, _ := bravo.beat(500*time.Millisecond, 10)
		defer stop()
		// Wait (by the API, not a sleep) until alpha is silent past its TTL.
		op := s11.token("*", api.RoleOperator)
		for deadline := time.Now().Add(ttl + 3*time.Second); ; time.Sleep(50 * time.Millisecond) {
			_, list := s11.call(t, "GET", "/v1/runs/open", op, nil)
			if runs, _ := list["runs"].([]any); len(runs) == 2 && runs[0].(map[string]any)["active"] == false {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("alpha never went silent")
			}
		}
		p := newTab(t, browser, tabOptions{})
		p.open(s11.pageURL("*", api.RoleOperator, ""))
		p.waitFor("two open runs", `document.querySelectorAll('#open-runs tbody tr').length === 2`, 5*time.Second)
		rows := eval[[]string](p, `[...document.querySelectorAll('#open-runs tbody tr')].map((r) => r.dataset.business + ': ' + r.cells[5].innerText)`)
		if len(rows) != 2 || rows[0] != "alpha: silent past TTL" || rows[1] != "bravo: live" {
			t.Fatalf("open runs = %q, want the silent alpha first", rows)
		}
		p.screenshot("11-operator-console")

		p.click(`#open-runs tbody tr[data-business="alpha"] button`)
		p.waitFor("alpha's timeline", jsShown("#business-detail table.timeline", "RunStarted")+" && "+jsShown("#business-detail table.timeline", "started by worker dialer-a: 25 calls"), 3*time.Second)
		// During alpha's life, GET …/runs/active answered 200.
		started, _ := time.Parse(time.RFC3339Nano, alphaStart["started_at"].(string))
		during := started.Truncate(time.Second).Add(2 * time.Second)
		if !during.Before(started.Add(ttl)) {
			during = started.Truncate(time.Second).Add(time.Second)
		}
		p.do(chromedp.SetValue(chromedp.CSS("#replay-at"), during.UTC().Format(time.DateTime)))
		p.click(`#business-detail form button[type=submit]`)
		p.waitFor("the replay's answer", jsShown("#replay-answer", "At "+during.UTC().Format(time.DateTime)+" (UTC) the page would have shown the bar: the run was live, last sign of life "), 3*time.Second)
		contains(t, "replay", p.text("#replay-answer"), "Run "+strings.ReplaceAll(alpha.runID, "-", "")[24:]+" of worker dialer-a: ")
		// The first whole second past alpha's stale_at, once it has passed:
		// the answer is 404, because alpha was silent past its TTL.
		after := alpha.staleAt().Truncate(time.Second).Add(time.Second)
		for time.Now().Before(after) {
			time.Sleep(20 * time.Millisecond)
		}
		p.do(chromedp.SetValue(chromedp.CSS("#replay-at"), after.UTC().Format(time.DateTime)))
		p.click(`#business-detail form button[type=submit]`)
		p.waitFor("the replay's answer", jsShown("#replay-answer", "At "+after.UTC().Format(time.DateTime)+" (UTC) the page would have shown no bar: run "+
			strings.ReplaceAll(alpha.runID, "-", "")[24:]+" had been silent for "), 3*time.Second)
		contains(t, "replay", p.text("#replay-answer"), ", past its TTL of 3 s.")
		p.screenshot("11-replay")
	})

	t.Run("14 Pause and Resume: the bar says Paused, the worker learns it, Resume brings it back", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{})
		w := s.worker(t, "s14")
		w.start(60, "dialer-14")
		w.heartbeat(15, 3)
		p.open(s.pageURL("s14", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		if got := p.text("#active-run button.pause"); got != "Pause" {
			t.Fatalf("the pause button says %q", got)
		}
		p.click("#active-run button.pause")
		d := p.waitFor("the pause's answer", jsShown("#answer", "Paused — the worker pauses at its next heartbeat"), 3*time.Second)
		within(t, "the pause's answer", d, time.Second)
		p.waitFor("the bar marked Paused", jsShown("#active-run .badge-paused", "Paused")+" && "+jsBarShown, 2*time.Second)
		contains(t, "rate while paused", p.text("#active-run .rate"), "paused")
		if ans := w.answer(15, 3); ans["pause_requested"] != true {
			t.Fatalf("the worker's heartbeat answer while paused: %v", ans)
		}
		// A paused worker that keeps heartbeating keeps its run live.
		if !eval[bool](p, jsBarShown) {
			t.Fatal("the bar went while the run was paused")
		}
		p.waitFor("the button offers Resume", `document.querySelector('#active-run button.pause')?.textContent === 'Resume'`, 2*time.Second)
		p.waitFor("the history to say Paused", jsShown("#history tbody tr", "Paused"), 3*time.Second)
		p.screenshot("14-paused")
		p.click("#active-run button.pause")
		p.waitFor("the resume's answer", jsShown("#answer", "Resumed — the worker goes on at its next heartbeat"), 3*time.Second)
		p.waitFor("no Paused badge", `document.querySelector('#active-run .badge-paused')?.hidden === true`, 2*time.Second)
		if ans := w.answer(20, 3); ans["pause_requested"] != false {
			t.Fatalf("the worker's heartbeat answer after resume: %v", ans)
		}
		p.waitFor("the bar at 38%", jsBarAt("38"), 3*time.Second)
		p.screenshot("14-resumed")
		w.complete("completed", 57, 3)
		p.waitFor("no bar", jsNoBar, 3*time.Second)
	})

	t.Run("12 the layout works at 360 px wide", func(t *testing.T) {
		w := s.worker(t, "s12")
		w.start(8, "dialer-12-with-a-rather-long-name-0123456789")
		w.complete("completed", 7, 1)
		w.start(120, "dialer-12")
		p := newTab(t, browser, tabOptions{width: 360, height: 760, mobile: true})
		p.open(s.pageURL("s12", api.RoleUser, ""))
		p.waitFor("showing a bar", jsBarShown, 5*time.Second)
		w.heartbeat(40, 5)
		p.waitFor("the bar at 37%", jsBarAt("37"), 3*time.Second)
		p.waitFor("two runs in the history", `document.querySelectorAll('#history tbody tr').length === 2`, 3*time.Second)
		noOverflow(t, p)
		if wide := eval[float64](p, `document.querySelector('#active-run [role=progressbar]').getBoundingClientRect().width`); wide < 200 {
			t.Fatalf("the bar is %.0f px wide at 360 px", wide)
		}
		p.screenshot("12-business-360px")

		o := newTab(t, browser, tabOptions{width: 360, height: 760, mobile: true})
		o.open(s.pageURL("*", api.RoleOperator, ""))
		o.waitFor("open runs", `document.querySelectorAll('#open-runs tbody tr').length > 0`, 5*time.Second)
		o.click(`#open-runs tbody tr[data-business="s12"] button`)
		o.waitFor("the timeline", jsShown("#business-detail table.timeline", "RunStarted"), 3*time.Second)
		noOverflow(t, o)
		o.screenshot("12-operator-360px")
	})

	t.Run("13 watcher.js leaves no open request or timer after stop() or pagehide", func(t *testing.T) {
		p := newTab(t, browser, tabOptions{initScripts: []string{countingScript}})
		p.open(s.srv.URL + "/") // signed out: the page itself watches nothing
		p.waitFor("the sign-in form", jsShown("#signin", "Sign in"), 5*time.Second)
		if c := p.counts(); c.Open != 0 || c.Timers != 0 {
			t.Fatalf("the signed-out page already has %+v", c)
		}
		w := s.worker(t, "s13")
		w.start(10, "dialer-13")
		token := s.token("s13", api.RoleUser)
		for _, c := range []struct{ name, state, end string }{
			{"streaming, stop()", "streaming", `window.__w.stop()`},
			{"streaming, pagehide", "streaming", `window.dispatchEvent(new PageTransitionEvent('pagehide', { persisted: false }))`},
			{"idle between checks, stop()", "idle", `window.__w.stop()`},
		} {
			if c.state == "idle" && w.runID != "" {
				w.complete("completed", 10, 0)
				w.runID = ""
			}
			eval[bool](p, fmt.Sprintf(`(async () => {
				const { Watcher } = await import('/assets/watcher.js');
				window.__w = new Watcher({ business: 's13', token: %q });
				window.__stopped = [];
				window.__w.addEventListener('stopped', (e) => window.__stopped.push(e.detail.reason));
				window.__w.start();
				return true;
			})()`, token))
			// Streaming: the run shown, the stream's answer in (its idle timer armed).
			want := `window.__w.state === 'streaming' && window.__w.run !== null && __counts().open >= 1 && __counts().timers >= 3`
			if c.state == "idle" {
				want = `window.__w.state === 'idle' && window.__w.run === null && __counts().started > 2`
			}
			p.waitFor(c.name+": watching", want, 5*time.Second)
			before := p.counts()
			if before.Timers < 1 || (c.state == "streaming" && (before.Open < 1 || before.Timers < 3)) {
				t.Fatalf("%s: while watching, %+v: the count sees nothing to clean up", c.name, before)
			}
			eval[bool](p, c.end+`, true`)
			d := p.waitFor(c.name+": nothing left", `__counts().open === 0 && __counts().timers === 0`, 2*time.Second)
			t.Logf("%s: %d open requests and %d timers before, none %s after", c.name, before.Open, before.Timers, d.Round(time.Millisecond))
			after := p.counts()
			// Nothing starts again: watch for a second (a window, not a wait for a condition).
			time.Sleep(time.Second)
			if later := p.counts(); later.Started != after.Started || later.Open != 0 || later.Timers != 0 {
				t.Fatalf("%s: after stopping, %+v became %+v", c.name, after, later)
			}
			if got := eval[[]string](p, `window.__stopped`); len(got) != 1 {
				t.Fatalf("%s: stopped events %v, want one", c.name, got)
			}
		}
	})
}

// noOverflow fails the test when the page scrolls sideways.
func noOverflow(t *testing.T, p *tab) {
	t.Helper()
	if over := eval[float64](p, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Fatalf("the page is %.0f px wider than the screen", over)
	}
}

// countingScript counts, in the page, the timers and the requests that are
// still open: a timeout until it fires or is cleared, an interval until it is
// cleared, a fetch until its body is read to the end, fails or is cancelled.
const countingScript = `(() => {
  const live = new Set();
  const reqs = [];
  const st = window.setTimeout, ct = window.clearTimeout, si = window.setInterval, ci = window.clearInterval, f = window.fetch;
  window.setTimeout = function (fn, ms, ...a) {
    const id = st.call(window, (...b) => { live.delete('t' + id); if (typeof fn === 'function') fn(...b); }, ms, ...a);
    live.add('t' + id);
    return id;
  };
  window.clearTimeout = function (id) { live.delete('t' + id); ct.call(window, id); };
  window.setInterval = function (fn, ms, ...a) { const id = si.call(window, fn, ms, ...a); live.add('i' + id); return id; };
  window.clearInterval = function (id) { live.delete('i' + id); ci.call(window, id); };
  window.fetch = async function (input, init) {
    const r = { url: String(input), open: true };
    reqs.push(r);
    let res;
    try { res = await f.call(window, input, init); } catch (e) { r.open = false; throw e; }
    if (!res.body) { r.open = false; return res; }
    const reader = res.body.getReader();
    const body = new ReadableStream({
      async pull(c) {
        try {
          const { done, value } = await reader.read();
          if (done) { r.open = false; c.close(); } else c.enqueue(value);
        } catch (e) { r.open = false; c.error(e); }
      },
      cancel(reason) { r.open = false; return reader.cancel(reason); },
    });
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  window.__counts = () => ({ timers: live.size, open: reqs.filter((r) => r.open).length, started: reqs.length });
})();`

type pageCounts struct {
	Timers  int `json:"timers"`
	Open    int `json:"open"`
	Started int `json:"started"`
}

func (p *tab) counts() pageCounts {
	return eval[pageCounts](p, `__counts()`)
}

// shiftDate is an init script
// shiftDate is an init script that moves the page's Date by d (Date.now and
// new Date() with no argument), as a browser clock that is d off would.
func shiftDate(d time.Duration) string {
	return fmt.Sprintf(`(() => {
  const shift = %d;
  const RealDate = Date;
  class ShiftedDate extends RealDate {
    constructor(...args) { if (args.length === 0) super(RealDate.now() + shift); else super(...args); }
    static now() { return RealDate.now() + shift; }
  }
  globalThis.Date = ShiftedDate;
})();`, d.Milliseconds())
}

// watchBarGone makes the page note the instant its bar goes, on the real
// clock (performance.timeOrigin + now, which a shifted Date does not move),
// as the DOM changes: the test's own polling, slow on a loaded machine, is
// then no part of the measurement.
func watchBarGone(p *tab) {
	p.t.Helper()
	eval[bool](p, `(() => {
		window.__barGoneAt = 0;
		const shown = () => `+jsBarShown+`;
		const note = () => { if (!window.__barGoneAt && !shown()) window.__barGoneAt = performance.timeOrigin + performance.now(); };
		new MutationObserver(note).observe(document.documentElement, {subtree: true, childList: true, attributes: true});
		note();
		return true;
	})()`)
}

// checkBarGoneAtStaleAt checks that the bar went within ±500 ms of
// stale_at, as the page noted it (watchBarGone). Before, the test timed its
// own polling (a CDP round trip every few tens of ms, stretched by a loaded
// machine) and counted that against the page; noted in the page, the
// remaining error is the page's timer and its server-clock estimate (4–14 ms
// here), so the contract's ±500 ms stays as it is.
func checkBarGoneAtStaleAt(t *testing.T, p *tab, staleAt time.Time, shift time.Duration) {
	t.Helper()
	ms := eval[float64](p, `window.__barGoneAt`)
	if ms == 0 {
		t.Fatal("the page did not note when its bar went")
	}
	gone := time.UnixMilli(0).Add(time.Duration(ms * float64(time.Millisecond)))
	off := gone.Sub(staleAt)
	t.Logf("with the clock %s off, the bar went %s after stale_at", shift, off.Round(time.Millisecond))
	if off < -500*time.Millisecond || off > 500*time.Millisecond {
		t.Fatalf("with the clock %s off, the bar went %s from stale_at, want within ±500ms", shift, off)
	}
}
