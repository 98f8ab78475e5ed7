package web_test

// The operator console's "Webhooks needing attention" (issue 26, item 4) in
// real Chromium, against `runledger serve` whose own sender delivers to
// receivers run by the test: the words on screen are checked against the
// API's record of each state (healthy, failing, disabled by a 410, disabled
// by a user), in a browser whose zone is not UTC.

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/runledger/runledger/api"
)

// receiverAnswering is an http receiver that answers every delivery with status.
func receiverAnswering(t *testing.T, status int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv.URL
}

// registerWebhook registers url for business's run.started events and returns its id.
func (s *stack) registerWebhook(t *testing.T, business, url, description string) string {
	t.Helper()
	status, ans := s.call(t, "POST", "/v1/businesses/"+business+"/webhooks", s.token(business, api.RoleUser),
		map[string]any{"url": url, "events": []string{"run.started"}, "description": description})
	if status != http.StatusCreated {
		t.Fatalf("register %s: %d %v", url, status, ans)
	}
	return ans["id"].(string)
}

// waitWebhook waits until business's endpoint id satisfies ok, and returns it.
func (s *stack) waitWebhook(t *testing.T, business, id, what string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		status, e := s.call(t, "GET", "/v1/businesses/"+business+"/webhooks/"+id, s.token(business, api.RoleUser), nil)
		if status == http.StatusOK && ok(e) {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoint %s of %s never %s: %d %v", id, business, what, status, e)
		}
	}
}

// attentionLine is the text of business's line in the panel ("" if none).
func attentionLine(p *tab, business, part string) string {
	return eval[string](p, fmt.Sprintf(`document.querySelector('#webhook-attention li[data-business=%q] .%s')?.innerText.trim() ?? ''`, business, part))
}

func TestOperatorWebhooks(t *testing.T) {
	const zone = "Asia/Kolkata" // UTC+05:30: a time shown in UTC would not pass
	kolkata, err := time.LoadLocation(zone)
	if err != nil {
		t.Fatal(err)
	}
	browser := startBrowser(t)
	s := newStackArgs(t, append(append([]string{}, serveArgs...), "--webhook-allow-private", "--webhook-allow-insecure")...)
	waitFirstSweep(t, s.srv.URL)
	// clock renders a server time as the panel does, in the tab's zone.
	clock := func(rfc string) string {
		at, err := time.Parse(time.RFC3339Nano, rfc)
		if err != nil {
			t.Fatal(err)
		}
		if at.In(kolkata).Format(time.DateOnly) != time.Now().In(kolkata).Format(time.DateOnly) {
			return at.In(kolkata).Format(time.DateTime)
		}
		return at.In(kolkata).Format(time.TimeOnly)
	}

	// Healthy: an endpoint that answers 204 has had its delivery.
	okURL := receiverAnswering(t, http.StatusNoContent)
	okID := s.registerWebhook(t, "wh-ok", okURL, "archive")
	s.worker(t, "wh-ok").start(5, "dialer-ok")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, ans := s.call(t, "GET", "/v1/businesses/wh-ok/webhooks/"+okID+"/deliveries", s.token("wh-ok", api.RoleUser), nil)
		if ds, _ := ans["deliveries"].([]any); len(ds) == 1 && ds[0].(map[string]any)["status"] == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the healthy endpoint's delivery never succeeded: %v", ans)
		}
	}
	p := newTab(t, browser, tabOptions{})
	if _, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: zone}); err != nil {
		t.Fatal(err)
	}
	console := p.watchConsole()
	p.open(s.pageURL("*", api.RoleOperator, ""))
	p.waitFor("the panel to say every endpoint is healthy", jsShown("#webhook-attention", "All webhook endpoints are healthy.")+
		` && document.querySelectorAll('#webhook-attention li').length === 0`, 10*time.Second)
	contains(t, "the panel's status", p.text("#webhooks-status"), "again every 15 s")
	p.screenshot("W1-all-healthy")

	// Failing: a receiver answering 503, registered with a token in its query.
	downURL := receiverAnswering(t, http.StatusServiceUnavailable)
	downID := s.registerWebhook(t, "wh-acme", downURL+"/hooks/runledger?token=receiver-token", "CRM")
	s.worker(t, "wh-acme").start(5, "dialer-acme")
	down := s.waitWebhook(t, "wh-acme", downID, "failing", func(e map[string]any) bool { return e["failing_since"] != nil })
	// The open tab finds it by itself, at its next read (every 15 s).
	p.waitFor("the failing endpoint listed", `!!document.querySelector('#webhook-attention li[data-business="wh-acme"]')`, 20*time.Second)
	line := attentionLine(p, "wh-acme", "attention-line")
	want := regexp.MustCompile(`^wh-acme: ` + regexp.QuoteMeta(downURL) + ` failing since ` + regexp.QuoteMeta(clock(down["failing_since"].(string))) +
		` \((\d+ s|\d+ min( \d+ s)?)\), last attempt 503 Service Unavailable$`)
	if !want.MatchString(line) {
		t.Fatalf("the failing endpoint reads %q, want %s", line, want)
	}
	contains(t, "the failing endpoint's detail", attentionLine(p, "wh-acme", "attention-detail"), "CRM · last attempt at ")
	contains(t, "the failing endpoint's detail", attentionLine(p, "wh-acme", "attention-detail"), "1 delivery waiting, for ")
	if text := p.visibleText(); strings.Contains(text, "receiver-token") || strings.Contains(text, "/hooks/runledger") || strings.Contains(text, "whsec_") {
		t.Fatalf("the panel shows the URL's path, query or a secret:\n%s", text)
	}
	if eval[bool](p, `!document.getElementById('webhooks-healthy').hidden`) {
		t.Fatal("the panel still says every endpoint is healthy")
	}
	p.screenshot("W2-failing")

	// Disabled: a receiver answering 410 Gone; and the healthy one disabled by its user.
	goneURL := receiverAnswering(t, http.StatusGone)
	goneID := s.registerWebhook(t, "wh-gone", goneURL, "pager")
	s.worker(t, "wh-gone").start(5, "dialer-gone")
	gone := s.waitWebhook(t, "wh-gone", goneID, "disabled", func(e map[string]any) bool { return e["disabled"] == true })
	if status, ans := s.call(t, "POST", "/v1/businesses/wh-ok/webhooks/"+okID+"/disable", s.token("wh-ok", api.RoleUser), map[string]any{}); status != http.StatusOK {
		t.Fatalf("disable: %d %v", status, ans)
	}
	p.waitFor("the 410 endpoint listed", `!!document.querySelector('#webhook-attention li[data-business="wh-gone"]')`, 20*time.Second)
	if line := attentionLine(p, "wh-gone", "attention-line"); line != "wh-gone: "+goneURL+" disabled: answered 410 Gone" {
		t.Fatalf("the 410 endpoint reads %q", line)
	}
	detail := attentionLine(p, "wh-gone", "attention-detail")
	if !regexp.MustCompile(`^pager · disabled at ` + regexp.QuoteMeta(clock(gone["disabled_at"].(string))) + `, [^·]+ ago · last attempt 410 Gone at \S+ · no delivery waiting$`).MatchString(detail) {
		t.Fatalf("the 410 endpoint's detail reads %q", detail)
	}
	p.waitFor("the endpoint disabled by its user", jsShown(`#webhook-attention li[data-business="wh-ok"] .attention-line`, "wh-ok: "+okURL+" disabled by a user"), 20*time.Second)
	contains(t, "the endpoint disabled by its user", attentionLine(p, "wh-ok", "attention-detail"), " · last attempt 204 No Content at ")
	order := eval[string](p, `[...document.querySelectorAll('#webhook-attention li')].map((li) => li.dataset.business).join(' ')`)
	if order != "wh-acme wh-gone wh-ok" {
		t.Fatalf("the panel lists %q, want the longest trouble first: wh-acme wh-gone wh-ok", order)
	}
	console.none(t, "the webhooks panel")
	p.screenshot("W3-failing-and-disabled")
	p.axeAtWidths("W3 webhooks needing attention")
	p.do(chromedp.EmulateViewport(360, 760, chromedp.EmulateMobile))
	noOverflow(t, p)
	p.screenshot("W3-360px")
}
