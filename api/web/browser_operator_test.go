package web_test

// The operator's console in real Chromium (issue 19, items 4, 8, 9, 10): a
// list of open runs that is pushed and ticks on the server's clock, one time
// zone named on screen, the Business field, and a timeline people can read.
// Each scenario ends with axe-core at 1280 and 360 px.

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/runledger/runledger/api"
)

// jsOpenRow holds when the open-runs list shows a row for business.
func jsOpenRow(business string) string {
	return fmt.Sprintf(`!!document.querySelector('#open-runs tbody tr[data-business=%q]')`, business)
}

// openCell is the text of the named column of business's open-run row.
func openCell(p *tab, business, label string) string {
	return eval[string](p, fmt.Sprintf(`document.querySelector('#open-runs tbody tr[data-business=%q] td[data-label=%q]')?.innerText ?? ''`, business, label))
}

// silentSeconds reads "12 s" / "1 min 3 s" as seconds (-1 when unreadable).
func silentSeconds(s string) int {
	m := regexp.MustCompile(`^(?:(\d+) min ?)?(?:(\d+) s)?$`).FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || (m[1] == "" && m[2] == "") {
		return -1
	}
	var min, sec int
	fmt.Sscan("0"+m[1], &min)
	fmt.Sscan("0"+m[2], &sec)
	return min*60 + sec
}

func TestOperator(t *testing.T) {
	browser := startBrowser(t)
	s := newStack(t)

	t.Run("O4 the open-runs list is pushed: a start and an end elsewhere show within 1 s, silences tick on the server's clock", func(t *testing.T) {
		alpha := s.worker(t, "o4-alpha")
		alpha.start(23, "dialer-a")
		// The browser's clock is an hour ahead: silences must still be the server's.
		p := newTab(t, browser, tabOptions{initScripts: []string{shiftDate(time.Hour)}})
		p.open(s.pageURL("*", api.RoleOperator, ""))
		p.waitFor("alpha listed", jsOpenRow("o4-alpha"), 5*time.Second)

		bravo := s.worker(t, "o4-bravo")
		bravo.start(10, "dialer-b")
		within(t, "a run started elsewhere to appear", p.waitFor("bravo listed", jsOpenRow("o4-bravo"), 5*time.Second), time.Second)

		alpha.complete("completed", 23, 0)
		within(t, "a run ended elsewhere to leave", p.waitFor("alpha gone", "!"+jsOpenRow("o4-alpha"), 5*time.Second), time.Second)

		// bravo's silence counts up with no click, from the server's clock.
		first := silentSeconds(openCell(p, "o4-bravo", "Silent for"))
		if first < 0 || first > 3 {
			t.Fatalf("bravo silent for %q with the browser's clock an hour ahead, want a few seconds", openCell(p, "o4-bravo", "Silent for"))
		}
		p.waitFor("bravo's silence to tick", fmt.Sprintf(`(() => { const c = document.querySelector('#open-runs tbody tr[data-business="o4-bravo"] td[data-label="Silent for"]'); return !!c && /^\d+ s$/.test(c.innerText) && parseInt(c.innerText) >= %d; })()`, first+2), 5*time.Second)
		contains(t, "bravo's state", openCell(p, "o4-bravo", "State"), "live")
		// Past its TTL, with no reaper, it is silent past the TTL: the page says so by itself.
		p.waitFor("bravo silent past its TTL", fmt.Sprintf(`document.querySelector('#open-runs tbody tr[data-business="o4-bravo"] td[data-label="State"]')?.innerText.includes('silent past TTL')`), ttl+3*time.Second)
		p.screenshot("O4-open-runs-live")

		// The replay instant defaults to now, not to when the list loaded.
		p2 := newTab(t, browser, tabOptions{})
		p2.open(s.pageURL("*", api.RoleOperator, ""))
		p2.waitFor("bravo listed", jsOpenRow("o4-bravo"), 5*time.Second)
		p2Loaded := time.Now()
		p2.waitFor("two seconds of ticking", fmt.Sprintf(`Date.now() >= %d`, p2Loaded.Add(2*time.Second).UnixMilli()), 5*time.Second)
		p2.click(`#open-runs tbody tr[data-business="o4-bravo"] button`)
		p2.waitFor("the replay form", `!!document.getElementById('replay-at')`, 3*time.Second)
		value := eval[string](p2, `document.getElementById('replay-at').value`)
		shown, err := time.ParseInLocation("2006-01-02 15:04:05", strings.Replace(value, "T", " ", 1), time.UTC) // the tab runs in UTC
		if err != nil {
			t.Fatalf("replay instant %q: %v", value, err)
		}
		if d := time.Since(shown); d > 1500*time.Millisecond || d < -time.Second {
			t.Fatalf("the replay instant defaults to %s, %s before now (the list loaded at %s)", value, d.Round(time.Millisecond), p2Loaded.UTC().Format(time.TimeOnly))
		}
		p.axeAtWidths("O4 open runs")
	})

	t.Run("O8 one time zone, named, 24-hour: the list, the replay's input and its answer in a browser in America/Sao_Paulo", func(t *testing.T) {
		const zone = "America/Sao_Paulo"
		saoPaulo, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		w := s.worker(t, "o8")
		w.start(40, "dialer-8")
		run, _ := w.heartbeat(12, 3)
		p := newTab(t, browser, tabOptions{})
		if _, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
			t.Fatal(err)
		}
		p.open(s.pageURL("*", api.RoleOperator, ""))
		p.waitFor("o8 listed", jsOpenRow("o8"), 5*time.Second)
		if got := eval[string](p, `Intl.DateTimeFormat().resolvedOptions().timeZone`); got != zone {
			t.Fatalf("the tab's zone is %q, want %q", got, zone)
		}
		p.waitFor("the zone named on screen", jsShown("#zone", "Times in America/Sao_Paulo (UTC-03:00), 24-hour"), 3*time.Second)
		staleAt, _ := time.Parse(time.RFC3339Nano, run["stale_at"].(string))
		if got, want := openCell(p, "o8", "Stale at"), staleAt.In(saoPaulo).Format("15:04:05"); got != want {
			t.Fatalf("stale at %q, want %q (America/Sao_Paulo)", got, want)
		}

		p.click(`#open-runs tbody tr[data-business="o8"] button`)
		p.waitFor("the replay form", `!!document.getElementById('replay-at')`, 3*time.Second)
		contains(t, "the instant's label", eval[string](p, `document.querySelector('label[for=replay-at]').innerText`), "America/Sao_Paulo")
		lhb, _ := time.Parse(time.RFC3339Nano, run["last_heartbeat_at"].(string))
		// The instant follows now: wait for the first whole second after the heartbeat.
		p.waitFor("the instant past the heartbeat", fmt.Sprintf(`document.getElementById('replay-at').value > %q`, lhb.In(saoPaulo).Format("2006-01-02 15:04:05")), 3*time.Second)
		value := eval[string](p, `document.getElementById('replay-at').value`)
		instant, err := time.ParseInLocation("2006-01-02 15:04:05", value, saoPaulo)
		if err != nil {
			t.Fatalf("the replay instant reads %q, want YYYY-MM-DD HH:MM:SS: %v", value, err)
		}
		if d := time.Since(instant); d < -time.Second || d > 2*time.Second {
			t.Fatalf("the replay instant %q (America/Sao_Paulo) is %s from now", value, d)
		}
		p.click(`#business-detail form.replay-form button[type=submit]`)
		p.waitFor("the replay's answer", jsShown("#replay-answer", "At "+value+" (America/Sao_Paulo)"), 3*time.Second)
		contains(t, "the replay's answer", p.text("#replay-answer"), "last sign of life "+lhb.In(saoPaulo).Format("2006-01-02 15:04:05"))
		p.waitFor("the timeline", jsShown("#business-detail table.timeline", "RunStarted"), 3*time.Second)
		started, _ := time.Parse(time.RFC3339Nano, run["started_at"].(string))
		contains(t, "the timeline's first time", eval[string](p, `document.querySelector('#business-detail table.timeline tbody td[data-label=Time]').innerText`),
			started.In(saoPaulo).Format("2006-01-02 15:04:05"))
		// The business's live view, opened from the console, speaks the same zone.
		p.click("#live-view summary")
		p.waitFor("the live view's history", jsShown("#history tbody tr", started.In(saoPaulo).Format("2006-01-02 15:04:05")), 5*time.Second)
		p.waitFor("the run card's start", jsShown("#active-run .started", started.In(saoPaulo).Format("15:04:05")), 5*time.Second)
		text := p.visibleText()
		if m := regexp.MustCompile(`\b(AM|PM)\b|\d{4}-\d\d-\d\dT\d\d:\d\d|\d\d:\d\d:\d\dZ`).FindString(text); m != "" {
			t.Fatalf("the page shows %q: another clock or zone than the one it names:\n%s", m, text)
		}
		p.screenshot("O8-sao-paulo")
		p.axeAtWidths("O8 replay in America/Sao_Paulo")
	})

	t.Run("O9 the Business field says what is wrong with an id instead of dropping it", func(t *testing.T) {
		w := s.worker(t, "o9.shop")
		w.start(5, "dialer-9")
		p := newTab(t, browser, tabOptions{})
		p.open(s.pageURL("*", api.RoleOperator, ""))
		p.waitFor("the Business field", `!!document.getElementById('business-input')`, 5*time.Second)
		// Chromium compiles pattern with the v flag; an invalid one is a console error and no check at all.
		if !eval[bool](p, `(() => { const i = document.getElementById('business-input'); if (!i.hasAttribute('pattern')) return true; try { new RegExp('^(?:' + i.pattern + ')$', 'v'); return true; } catch { return false; } })()`) {
			t.Fatalf("the Business field's pattern %q is not a valid regular expression", eval[string](p, `document.getElementById('business-input').pattern`))
		}
		for _, c := range []struct{ typed, want string }{
			{"café", `"café" cannot be a business id: "é" is not allowed. Use letters A–Z, digits, "_", "." and "-" (at most 64), starting with a letter or digit.`},
			{" o9.shop", `" o9.shop" cannot be a business id: it starts with a space. Use letters A–Z, digits, "_", "." and "-" (at most 64), starting with a letter or digit.`},
			{"", `Type a business id.`},
		} {
			typeInto(p, "#business-input", c.typed)
			p.click(`#business-panel form button[type=submit]`)
			p.waitFor("the message for "+c.typed, jsShown("#business-error", c.want), 3*time.Second)
			if got := eval[string](p, `document.getElementById('business-input').getAttribute('aria-invalid')`); got != "true" {
				t.Fatalf("%q: aria-invalid = %q", c.typed, got)
			}
			if eval[bool](p, `document.activeElement?.id === 'business-input'`) == false {
				t.Fatalf("%q: focus is not back on the field", c.typed)
			}
			if eval[bool](p, `!!document.getElementById('replay-at')`) {
				t.Fatalf("%q: a business was shown anyway", c.typed)
			}
		}
		p.screenshot("O9-business-field-message")
		p.axeAtWidths("O9 business field with a message")
		typeInto(p, "#business-input", "o9.shop")
		p.click(`#business-panel form button[type=submit]`)
		p.waitFor("o9.shop shown", jsShown("#business-detail h3", "Replay of o9.shop")+` && document.getElementById('business-error').hidden`, 3*time.Second)
		if got := eval[string](p, `document.getElementById('business-input').getAttribute('aria-invalid') ?? ''`); got == "true" {
			t.Fatal("a valid id still marked invalid")
		}
	})

	t.Run("O10 the timeline folds heartbeats, names each actor one way and says the replay in words", func(t *testing.T) {
		w := s.worker(t, "o10")
		w.start(23, "dialer-10") // a worker token without a subject: the start names the body's worker_id
		for i := 1; i <= 6; i++ {
			w.heartbeat(i, 0)
		}
		alice, err := s.auth.MintToken(api.TokenSpec{Business: "o10", Role: api.RoleUser, Subject: "alice", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if status, ans := s.call(t, "POST", w.path("/"+w.runID+"/pause"), alice, map[string]any{}); status != 200 {
			t.Fatalf("pause: %d %v", status, ans)
		}
		for i := 7; i <= 9; i++ {
			w.heartbeat(i, 1)
		}
		last, _ := w.heartbeat(10, 1)

		p := newTab(t, browser, tabOptions{})
		p.open(s.pageURL("*", api.RoleOperator, ""))
		p.waitFor("o10 listed", jsOpenRow("o10"), 5*time.Second)
		p.click(`#open-runs tbody tr[data-business="o10"] button`)
		p.waitFor("o10's timeline", jsShown("#business-detail table.timeline", "RunStarted"), 3*time.Second)
		rows := eval[[]string](p, jsTimelineRows)
		want := []string{
			"RunStarted | worker dialer-10 | started by worker dialer-10: 23 calls",
			"Heartbeat ×6 | worker dialer-10 | 6 heartbeats over ",
			"PauseRequested | user alice | paused by user alice",
			"Heartbeat ×4 | worker dialer-10 | 4 heartbeats over ",
		}
		if len(rows) != len(want) {
			t.Fatalf("the timeline shows %d rows, want %d:\n%s", len(rows), len(want), strings.Join(rows, "\n"))
		}
		for i := range want {
			if !strings.HasPrefix(rows[i], want[i]) {
				t.Fatalf("row %d = %q, want it to start with %q", i, rows[i], want[i])
			}
		}
		contains(t, "the first fold", rows[1], ": 1/23 → 6/23 done, 0 failed")
		contains(t, "the second fold", rows[3], ": 7/23 → 10/23 done, 1 failed")
		// A fold opens with the keyboard and shows each heartbeat, named the same way.
		p.do(chromedp.Focus(chromedp.CSS(`#business-detail table.timeline tbody tr.hb-group button`)), chromedp.KeyEvent("\r"))
		p.waitFor("the first fold open", `document.querySelector('#business-detail table.timeline tbody tr.hb-group button').getAttribute('aria-expanded') === 'true'`, 2*time.Second)
		rows = eval[[]string](p, jsTimelineRows)
		if len(rows) != len(want)+6 || !strings.HasPrefix(rows[2], "Heartbeat | worker dialer-10 | 1/23 done") || !strings.HasPrefix(rows[7], "Heartbeat | worker dialer-10 | 6/23 done") {
			t.Fatalf("the open fold shows:\n%s", strings.Join(rows, "\n"))
		}
		p.screenshot("O10-timeline-folded")

		// The replay in words, at an instant the run was live.
		lhb, _ := time.Parse(time.RFC3339Nano, last["last_heartbeat_at"].(string))
		at := lhb.Truncate(time.Second).Add(time.Second)
		for time.Now().Before(at) {
			time.Sleep(20 * time.Millisecond)
		}
		typeInto(p, "#replay-at", at.UTC().Format(time.DateTime))
		p.click(`#business-detail form.replay-form button[type=submit]`)
		silent := fmt.Sprintf("%.1f s", float64(int(at.Sub(lhb.Truncate(time.Millisecond))/(100*time.Millisecond)))/10) // tenths, rounded down
		p.waitFor("the replay in words", jsShown("#replay-answer", "At "+at.UTC().Format(time.DateTime)+" (UTC) the page would have shown the bar: the run was live, last sign of life "+silent+" before, paused by user alice."), 3*time.Second)
		if got := p.text("#replay-answer"); strings.Contains(got, "GET") || strings.Contains(got, "404") || strings.Contains(got, "200") {
			t.Fatalf("the replay speaks the API's jargon: %q", got)
		}
		p.screenshot("O10-replay-in-words")
		// The README's picture (UPDATE_SCREENSHOTS=1), with o10's worker alive again.
		w.heartbeat(12, 1)
		p.waitFor("o10 live again, at 13 calls", `document.querySelector('#open-runs tbody tr[data-business="o10"] td[data-label="Calls"]')?.innerText.trim() === '13 / 23' && `+
			`document.querySelector('#open-runs tbody tr[data-business="o10"] td[data-label="State"]')?.innerText.trim() === 'live'`, 3*time.Second)
		p.screenshotDocs("page-operator")
		p.axeAtWidths("O10 timeline and replay")
		p.do(chromedp.EmulateViewport(360, 760, chromedp.EmulateMobile))
		noOverflow(t, p)
		p.screenshot("O10-360px")
		open := eval[float64](p, `document.querySelector('#business-detail table.timeline').getBoundingClientRect().height`)
		p.click(`#business-detail table.timeline tbody tr.hb-group button[aria-expanded="true"]`)
		p.waitFor("the fold closed", `!document.querySelector('#business-detail table.timeline tbody tr.hb-group button[aria-expanded="true"]')`, 2*time.Second)
		folded := eval[float64](p, `document.querySelector('#business-detail table.timeline').getBoundingClientRect().height`)
		t.Logf("the timeline of 12 events at 360 px: %.0f px with one fold open, %.0f px folded", open, folded)
	})
}

// jsTimelineRows is the visible rows of the timeline as "event | actor | what happened".
const jsTimelineRows = `[...document.querySelectorAll('#business-detail table.timeline tbody tr')].filter((r) => r.getClientRects().length > 0)
	.map((r) => ['Event', 'Actor', 'What happened'].map((l) => r.querySelector('td[data-label="' + l + '"]')?.innerText.trim() ?? '').join(' | '))`

// typeInto replaces the value of the field css with text, as typing would
// (an input event follows).
func typeInto(p *tab, css, text string) {
	p.t.Helper()
	eval[bool](p, fmt.Sprintf(`(() => { const i = document.querySelector(%q); i.focus(); i.value = %q; i.dispatchEvent(new Event('input', { bubbles: true })); return true; })()`, css, text))
}
