package webhooks_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/webhooks"
)

// attention lists the endpoints needing attention of business ("": all).
func (h *harness) attention(business string, limit int) ([]webhooks.EndpointAttention, bool) {
	h.t.Helper()
	list, more, err := webhooks.ListNeedingAttention(context.Background(), h.pool, webhooks.AttentionQuery{BusinessID: business, Limit: limit})
	if err != nil {
		h.t.Fatal(err)
	}
	return list, more
}

// closedURL is an http URL on which nothing listens (no answer comes).
func closedURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestEndpointsNeedingAttention puts endpoints into each state by real
// deliveries to real receivers (answering 204, 503, 410, or not at all) on
// the fake clock, and reads what the operators' list says of each.
func TestEndpointsNeedingAttention(t *testing.T) {
	h := newHarness(t)
	var downStatus atomic.Int32
	downStatus.Store(http.StatusServiceUnavailable)
	ok := newReceiver(t, h.clock, nil)
	down := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return int(downStatus.Load()) })
	gone := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return http.StatusGone })
	events := []string{webhooks.RunStarted, webhooks.RunCompleted}
	for _, r := range []struct {
		rc       *receiver
		business string
		url      string
	}{
		{ok, "ok", ok.srv.URL},
		{down, "down", down.srv.URL + "/hooks/runledger?token=receiver-token"},
		{gone, "gone", gone.srv.URL},
	} {
		r.rc.setSecret(h.register(r.business, r.url, events...).Secret)
	}
	nobody := h.register("nobody", closedURL(t), events...)
	if list, _ := h.attention("", 10); len(list) != 0 {
		t.Fatalf("before any delivery, listed %+v", list)
	}

	for _, b := range []string{"ok", "down", "gone", "nobody"} {
		h.start(b)
	}
	h.waitDeliveries(4)
	t1 := h.clock.Now()
	s := h.sender(nil)
	h.sendAll(s)

	list, more := h.attention("", 10)
	if more || len(list) != 3 {
		t.Fatalf("listed %d (more %v), want down, gone and nobody: %+v", len(list), more, list)
	}
	byBusiness := map[string]webhooks.EndpointAttention{}
	for i, a := range list {
		byBusiness[a.BusinessID] = a
		if want := []string{"down", "gone", "nobody"}[i]; a.BusinessID != want {
			t.Errorf("item %d is %s, want %s (same trouble time: by business)", i, a.BusinessID, want)
		}
	}

	d := byBusiness["down"]
	if d.Origin != down.srv.URL || strings.Contains(d.Origin, "token") {
		t.Errorf("down's origin %q, want %q (no path, no query)", d.Origin, down.srv.URL)
	}
	if d.Disabled || !d.FailingSince.Equal(t1) || d.LastAttempt == nil || d.LastAttempt.StatusCode != 503 ||
		!d.LastAttempt.At.Equal(t1) || d.PendingDeliveries != 1 || !d.OldestPendingAt.Equal(t1) {
		t.Errorf("down: %+v (last %+v), want failing since %s, last attempt 503, 1 pending since then", d, d.LastAttempt, t1)
	}

	g := byBusiness["gone"]
	if !g.Disabled || g.DisabledReason != "the endpoint answered 410 Gone" || !g.DisabledAt.Equal(t1) || !g.FailingSince.IsZero() ||
		g.LastAttempt == nil || g.LastAttempt.StatusCode != 410 || g.PendingDeliveries != 0 || !g.OldestPendingAt.IsZero() ||
		!g.TroubleSince().Equal(t1) {
		t.Errorf("gone: %+v (last %+v), want disabled by its 410, nothing pending", g, g.LastAttempt)
	}

	n := byBusiness["nobody"]
	if n.ID != nobody.ID || n.Disabled || !n.FailingSince.Equal(t1) || n.LastAttempt == nil || n.LastAttempt.StatusCode != 0 ||
		!strings.Contains(n.LastAttempt.Error, "refused") || n.PendingDeliveries != 1 {
		t.Errorf("nobody: %+v (last %+v), want failing with no answer (connection refused)", n, n.LastAttempt)
	}

	// Scoped to one business, and bounded.
	if only, _ := h.attention("gone", 10); len(only) != 1 || only[0].BusinessID != "gone" {
		t.Errorf("gone's operator sees %+v", only)
	}
	if first, more := h.attention("", 1); len(first) != 1 || !more || first[0].BusinessID != "down" {
		t.Errorf("limit 1: %+v (more %v)", first, more)
	}

	// down recovers at its next attempt (5 s later): it leaves the list.
	downStatus.Store(http.StatusNoContent)
	h.clock.Advance(6 * time.Second)
	h.sendAll(s)
	list, _ = h.attention("", 10)
	if len(list) != 2 || list[0].BusinessID != "gone" || list[1].BusinessID != "nobody" {
		t.Fatalf("after down's success, listed %+v, want gone and nobody", list)
	}
	if last := list[1].LastAttempt; last == nil || !last.At.Equal(t1.Add(6*time.Second)) {
		t.Errorf("nobody's last attempt %+v, want the one at %s", last, t1.Add(6*time.Second))
	}
}

// TestEndpointDisabledAfterFiveDaysIsListed: an endpoint that failed every
// attempt for 5 days is listed disabled, with its reason, its failures'
// start and every delivery it still holds.
func TestEndpointDisabledAfterFiveDaysIsListed(t *testing.T) {
	h := newHarness(t)
	week := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return http.StatusServiceUnavailable })
	week.setSecret(h.register("week", week.srv.URL, webhooks.RunStarted, webhooks.RunCompleted).Secret)
	run := h.start("week")
	h.waitDeliveries(1)
	t1 := h.clock.Now()
	s := h.sender(nil)
	h.sendAll(s)
	if list, _ := h.attention("", 10); len(list) != 1 || list[0].Disabled || !list[0].FailingSince.Equal(t1) {
		t.Fatalf("after the first failure: %+v", list)
	}

	h.clock.Advance(webhooks.DisableAfter + time.Minute)
	h.complete("week", run, domain.OutcomeCompleted)
	h.waitDeliveries(2)
	h.sendAll(s)
	list, _ := h.attention("", 10)
	if len(list) != 1 {
		t.Fatalf("listed %+v", list)
	}
	w := list[0]
	at := t1.Add(webhooks.DisableAfter + time.Minute)
	if !w.Disabled || w.DisabledReason != "every attempt failed for 5 days" || !w.DisabledAt.Equal(at) || !w.FailingSince.Equal(t1) ||
		w.LastAttempt == nil || w.LastAttempt.StatusCode != 503 || !w.LastAttempt.At.Equal(at) ||
		w.PendingDeliveries != 2 || !w.OldestPendingAt.Equal(t1) || !w.TroubleSince().Equal(t1) {
		t.Fatalf("week: %+v (last %+v), want disabled after 5 days, failing since %s, 2 deliveries held", w, w.LastAttempt, t1)
	}
}

func TestOriginHidesEverythingButSchemeAndHost(t *testing.T) {
	for raw, want := range map[string]string{
		"https://hooks.example.com/runledger":                          "https://hooks.example.com",
		"https://user:pw@hooks.example.com:8443/p/secret?token=x#frag": "https://hooks.example.com:8443",
		"http://[2001:db8::1]:8080/x":                                  "http://[2001:db8::1]:8080",
		"not a url at all":                                             "",
		"%zz":                                                          "",
	} {
		if got := webhooks.Origin(raw); got != want {
			t.Errorf("Origin(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestListNeedingAttentionRefusesUnboundedReads(t *testing.T) {
	pool := pgtest.NewDB(t)
	for _, limit := range []int{0, -1, webhooks.MaxAttentionLimit + 1} {
		if _, _, err := webhooks.ListNeedingAttention(context.Background(), pool, webhooks.AttentionQuery{Limit: limit}); err == nil {
			t.Errorf("limit %d accepted", limit)
		}
	}
}
