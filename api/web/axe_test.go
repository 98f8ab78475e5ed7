package web_test

// The axe-core accessibility engine in the browser tests. axe-core is a
// test-only devDependency of api/web (package.json, package-lock.json;
// `npm ci` in api/web installs it, as .ci/run does): its source is injected
// into a test's tab with chromedp, never served by the page.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var (
	axeOnce   sync.Once
	axeSource string
	axeErr    error
)

// axeScript returns axe.min.js from api/web/node_modules, and whether it
// is there. Without it the test fails when RUNLEDGER_REQUIRE_BROWSER=1 (CI);
// else the accessibility checks are left out, and the test says so.
func axeScript(t *testing.T) (string, bool) {
	t.Helper()
	axeOnce.Do(func() {
		var raw []byte
		raw, axeErr = os.ReadFile(filepath.Join("node_modules", "axe-core", "axe.min.js"))
		axeSource = string(raw)
	})
	if axeErr != nil {
		msg := fmt.Sprintf("axe-core is not installed (%v): run `npm ci` in api/web", axeErr)
		if os.Getenv("RUNLEDGER_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg)
		}
		t.Log(msg + "; the accessibility check is left out")
		return "", false
	}
	return axeSource, true
}

// axeViolation is one rule axe found broken, with the elements that break it.
type axeViolation struct {
	ID      string `json:"id"`
	Impact  string `json:"impact"`
	Help    string `json:"help"`
	Targets []struct {
		Target  []any  `json:"target"`
		HTML    string `json:"html"`
		Summary string `json:"failureSummary"`
	} `json:"nodes"`
}

// axeViolations runs axe on the tab's whole document as it is now and
// returns what it reports broken (nothing without axe-core: see axeScript).
func (p *tab) axeViolations() []axeViolation {
	p.t.Helper()
	src, ok := axeScript(p.t)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`typeof window.axe === 'object' || (()=>{`+src+`
;return true})()`)); err != nil {
		p.t.Fatalf("inject axe-core: %v", err)
	}
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](`axe.run(document, { resultTypes: ['violations'] }).then((r) => JSON.stringify(r.violations))`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("axe.run: %v", err)
	}
	var out []axeViolation
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		p.t.Fatalf("axe's answer: %v", err)
	}
	return out
}

// axeClean fails the test when axe finds any violation on the tab, and lists
// each (rule, impact, the elements).
func (p *tab) axeClean(state string) {
	p.t.Helper()
	if _, ok := axeScript(p.t); !ok {
		return
	}
	vs := p.axeViolations()
	if len(vs) == 0 {
		p.t.Logf("axe-core: no violation (%s)", state)
		return
	}
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "\n  %s (%s): %s", v.ID, v.Impact, v.Help)
		for _, n := range v.Targets {
			fmt.Fprintf(&b, "\n    %v %s", n.Target, n.HTML)
		}
	}
	p.screenshot("axe-" + strings.ReplaceAll(state, " ", "-"))
	p.t.Errorf("axe-core: %d violation(s) in %s:%s", len(vs), state, b.String())
}

// axeAtWidths runs axeClean at 1280 and at 360 px wide (a phone), then puts
// the viewport back as it was.
func (p *tab) axeAtWidths(state string) {
	p.t.Helper()
	w := eval[float64](p, `window.innerWidth`)
	h := eval[float64](p, `window.innerHeight`)
	for _, size := range []struct {
		w, h   int64
		mobile bool
	}{{1280, 900, false}, {360, 760, true}} {
		vp := []chromedp.EmulateViewportOption{}
		if size.mobile {
			vp = append(vp, chromedp.EmulateMobile)
		}
		p.do(chromedp.EmulateViewport(size.w, size.h, vp...))
		p.axeClean(fmt.Sprintf("%s at %d px", state, size.w))
	}
	p.do(chromedp.EmulateViewport(int64(w), int64(h)))
}

// TestAxeHarness proves the harness can fail: axe, injected as the scenarios
// inject it, reports a table header with no text and a button with no name.
func TestAxeHarness(t *testing.T) {
	browser := startBrowser(t)
	if _, ok := axeScript(t); !ok {
		t.Skip("axe-core is not installed: run `npm ci` in api/web")
	}
	p := newTab(t, browser, tabOptions{})
	p.open(`data:text/html,<!doctype html><html lang="en"><title>t</title><main><table><tr><th>Calls</th><th></th></tr><tr><td>1</td><td>2</td></tr></table><button></button></main></html>`)
	got := map[string]bool{}
	for _, v := range p.axeViolations() {
		got[v.ID] = true
	}
	for _, want := range []string{"empty-table-header", "button-name"} {
		if !got[want] {
			t.Errorf("axe did not report %s; it reported %v", want, got)
		}
	}
}
