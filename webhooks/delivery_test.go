package webhooks_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/webhooks"
)

// TestDeliveriesAreAProjection: each event of a subscribed type becomes one
// delivery per subscribed endpoint of its business (never a heartbeat,
// never another business's), each verified by the library at the receiver,
// and replaying the log from the start creates none twice.
func TestDeliveriesAreAProjection(t *testing.T) {
	h := newHarness(t)
	all := newReceiver(t, h.clock, nil)
	all.strict = true
	ends := newReceiver(t, h.clock, nil)
	other := newReceiver(t, h.clock, nil)
	all.setSecret(h.register("acme", all.srv.URL, webhooks.EventTypes...).Secret)
	ends.setSecret(h.register("acme", ends.srv.URL, webhooks.RunCompleted, webhooks.RunFailed, webhooks.RunCancelled).Secret)
	other.setSecret(h.register("globex", other.srv.URL, webhooks.RunFailed).Secret)

	run := h.start("acme")
	h.exec("acme", run, domain.RecordHeartbeat{CompletedCalls: 1})
	h.exec("acme", run, domain.PauseRun{Reason: "lunch"})
	h.exec("acme", run, domain.ResumeRun{})
	h.complete("acme", run, domain.OutcomeCompleted)
	second := h.start("acme")
	h.exec("acme", second, domain.RequestCancel{Reason: "stop"})
	h.complete("acme", second, domain.OutcomeCancelled)
	g := h.start("globex")
	h.complete("globex", g, domain.OutcomeFailed)
	// all: started, paused, resumed, completed, started, cancelled; ends: completed, cancelled; other: failed.
	h.waitDeliveries(9)

	s := h.sender(nil)
	if n := h.sendAll(s); n != 9 {
		t.Fatalf("sent %d, want 9", n)
	}
	var types []string
	for _, r := range all.requests() {
		types = append(types, r.payload.Type)
	}
	want := []string{"run.started", "run.paused", "run.resumed", "run.completed", "run.started", "run.cancelled"}
	slices.Sort(types)
	slices.Sort(want)
	if !slices.Equal(types, want) {
		t.Fatalf("all-events receiver got %v, want %v", types, want)
	}
	if got := len(ends.delivered()); got != 2 {
		t.Fatalf("end-events receiver got %d, want 2", got)
	}
	od := other.delivered()
	if len(od) != 1 {
		t.Fatalf("globex receiver got %d, want 1", len(od))
	}
	for _, p := range od {
		if p.Type != webhooks.RunFailed || p.Data.Why != "worker_reported" || p.Data.BusinessID != "globex" || p.Data.RunID != g.String() ||
			p.Data.CompletedCalls == nil || *p.Data.CompletedCalls != 4 {
			t.Fatalf("failed payload %+v", p)
		}
	}
	for _, p := range ends.delivered() {
		if p.Type == webhooks.RunCancelled && (p.Data.Why != "graceful" || p.Data.Reason != "stop" || p.Data.Status != "cancelled") {
			t.Fatalf("cancelled payload %+v", p)
		}
	}

	// Replay the whole log through the group: nothing new.
	if _, err := h.pool.Exec(context.Background(), `UPDATE projection_offsets SET offset_acked = 0,
		last_processed_transaction_id = '0' WHERE consumer_group = 'webhooks'`); err != nil {
		t.Fatal(err)
	}
	third := h.start("acme") // one more event, after the replayed ones
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n, maxPerKey int
		if err := h.pool.QueryRow(context.Background(), `SELECT count(*), coalesce(max(c), 0) FROM (
			SELECT count(*) AS c FROM webhook_deliveries GROUP BY event_id, endpoint_id) x`).Scan(&n, &maxPerKey); err != nil {
			t.Fatal(err)
		}
		if n == 10 && maxPerKey == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the replay: %d delivery keys (max %d each), want 10 (1 each)", n, maxPerKey)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = third
}

// TestForcedCancelAndStale: the why of run.cancelled (forced) and run.failed (stale).
func TestForcedCancelAndStale(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, nil)
	r.setSecret(h.register("acme", r.srv.URL, webhooks.RunCancelled, webhooks.RunFailed).Secret)
	silent := h.start("acme")
	h.clock.Advance(domain.DefaultPolicy().StaleAfter + time.Minute)
	h.exec("acme", silent, domain.RequestCancel{Reason: "gone quiet"}) // forced: silent past the TTL
	stale := h.start("acme")
	h.clock.Advance(domain.DefaultPolicy().StaleAfter + time.Minute)
	h.exec("acme", stale, domain.FailStale{DetectedBy: "test"})
	h.waitDeliveries(2)
	h.sendAll(h.sender(nil))
	byRun := map[string]webhooks.Payload{}
	for _, p := range r.delivered() {
		byRun[p.Data.RunID] = p
	}
	if p := byRun[silent.String()]; p.Type != webhooks.RunCancelled || p.Data.Why != "forced" || p.Data.EndReason != "cancel_forced" {
		t.Fatalf("forced cancel: %+v", p)
	}
	if p := byRun[stale.String()]; p.Type != webhooks.RunFailed || p.Data.Why != "stale" || p.Data.AbandonedCalls == nil {
		t.Fatalf("stale: %+v", p)
	}
}

// TestReceiverDownThreeAttemptsThenUp: attempts at once, 5 s and 5 min
// fail; the fourth, 30 min later, succeeds; none is made early; the
// webhook-id is the same on all four.
func TestReceiverDownThreeAttemptsThenUp(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, func(n int, _ http.ResponseWriter) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	ep := h.register("acme", r.srv.URL, webhooks.RunStarted)
	r.setSecret(ep.Secret)
	h.start("acme")
	h.waitDeliveries(1)
	s := h.sender(nil)
	for i, wait := range []time.Duration{0, 5 * time.Second, 5 * time.Minute, 30 * time.Minute} {
		if wait > 0 {
			h.clock.Advance(wait - time.Second)
			if n := h.sendAll(s); n != 0 {
				t.Fatalf("attempt %d made %v early", i+1, time.Second)
			}
			h.clock.Advance(time.Second)
		}
		if n := h.sendAll(s); n != 1 {
			t.Fatalf("attempt %d: sent %d, want 1", i+1, n)
		}
	}
	got := r.requests()
	if len(got) != 4 || got[3].status != http.StatusOK {
		t.Fatalf("requests %+v", got)
	}
	for _, g := range got {
		if g.id != got[0].id {
			t.Fatalf("webhook-id changed across attempts: %s then %s", got[0].id, g.id)
		}
	}
	list, err := h.endpoints.Deliveries(context.Background(), "acme", ep.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status != webhooks.StatusSucceeded || len(list[0].Log) != 4 || list[0].Log[0].StatusCode != 500 ||
		list[0].Log[3].StatusCode != 200 || webhooks.MessageID(list[0].ID) != got[0].id {
		t.Fatalf("delivery log %+v", list)
	}
	if !list[0].Log[0].NextAttemptAt.Equal(list[0].Log[0].At.Add(5 * time.Second)) {
		t.Fatalf("first retry at %v, want 5 s after %v", list[0].Log[0].NextAttemptAt, list[0].Log[0].At)
	}
	if h.sendAll(s) != 0 {
		t.Fatal("a succeeded delivery was sent again")
	}
}

// TestGoneDisablesTheEndpoint: 410 fails the delivery and disables the
// endpoint, visibly; nothing more is sent to it.
func TestGoneDisablesTheEndpoint(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return http.StatusGone })
	ep := h.register("acme", r.srv.URL, webhooks.RunStarted, webhooks.RunCompleted)
	r.setSecret(ep.Secret)
	run := h.start("acme")
	h.complete("acme", run, domain.OutcomeCompleted)
	h.waitDeliveries(2)
	s := h.sender(func(s *webhooks.Sender) { s.Concurrency = 1 })
	h.sendAll(s)
	h.clock.Advance(48 * time.Hour)
	h.sendAll(s)
	if n := len(r.requests()); n != 1 {
		t.Fatalf("%d requests, want 1 (the 410)", n)
	}
	got, err := h.endpoints.Get(context.Background(), "acme", ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Disabled || got.DisabledReason != "the endpoint answered 410 Gone" {
		t.Fatalf("endpoint after 410: %+v", got)
	}
	h.start("acme")
	time.Sleep(300 * time.Millisecond) // the consumer group polls every 100 ms; a disabled endpoint gets no delivery
	h.waitDeliveries(2)
}

// TestRedirectIsAFailure: a 3xx is recorded as a failed attempt and its
// Location is never followed.
func TestRedirectIsAFailure(t *testing.T) {
	h := newHarness(t)
	target := newReceiver(t, h.clock, nil)
	r := newReceiver(t, h.clock, func(_ int, w http.ResponseWriter) int {
		w.Header().Set("Location", target.srv.URL)
		return http.StatusFound
	})
	ep := h.register("acme", r.srv.URL, webhooks.RunStarted)
	r.setSecret(ep.Secret)
	target.setSecret(ep.Secret)
	h.start("acme")
	h.waitDeliveries(1)
	h.sendAll(h.sender(nil))
	if n := len(target.requests()); n != 0 {
		t.Fatalf("the redirect was followed (%d requests)", n)
	}
	list, err := h.endpoints.Deliveries(context.Background(), "acme", ep.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	if list[0].Status != webhooks.StatusPending || list[0].Log[0].StatusCode != http.StatusFound || list[0].NextAttemptAt.IsZero() {
		t.Fatalf("after a 302: %+v", list[0])
	}
}

// TestRetryAfterIsHonoured: a 429's Retry-After replaces a shorter wait.
func TestRetryAfterIsHonoured(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "120")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	})
	r.setSecret(h.register("acme", r.srv.URL, webhooks.RunStarted).Secret)
	h.start("acme")
	h.waitDeliveries(1)
	s := h.sender(nil)
	h.sendAll(s)
	h.clock.Advance(119 * time.Second)
	if h.sendAll(s) != 0 {
		t.Fatal("sent before Retry-After")
	}
	h.clock.Advance(time.Second)
	if h.sendAll(s) != 1 || len(r.delivered()) != 1 {
		t.Fatal("not sent after Retry-After")
	}
}

// TestNoDeliveryBeforeRegistrationOrWhileDisabled: an endpoint hears of no
// event from before its registration (the group may be catching up on
// them) nor of one while a user has it disabled.
func TestNoDeliveryBeforeRegistrationOrWhileDisabled(t *testing.T) {
	h := newHarness(t)
	// Hold the group back (its offset row locked) so that it meets the
	// first event only after the endpoint exists.
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM projection_offsets WHERE consumer_group = 'webhooks'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the group never subscribed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	hold, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, `SELECT 1 FROM projection_offsets WHERE consumer_group = 'webhooks' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	early := h.start("acme")
	h.clock.Advance(time.Second)
	r := newReceiver(t, h.clock, nil)
	ep := h.register("acme", r.srv.URL, webhooks.EventTypes...)
	r.setSecret(ep.Secret)
	if err := hold.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	h.clock.Advance(time.Second)
	h.complete("acme", early, domain.OutcomeCompleted) // after registration: delivered
	h.waitDeliveries(1)
	if _, err := h.endpoints.SetDisabled(context.Background(), "acme", ep.ID, true); err != nil {
		t.Fatal(err)
	}
	quiet := h.start("acme") // while disabled: not delivered, ever
	time.Sleep(300 * time.Millisecond)
	h.waitDeliveries(1)
	if _, err := h.endpoints.SetDisabled(context.Background(), "acme", ep.ID, false); err != nil {
		t.Fatal(err)
	}
	h.complete("acme", quiet, domain.OutcomeFailed)
	h.waitDeliveries(2)
	h.sendAll(h.sender(nil))
	var types []string
	for _, p := range r.delivered() {
		types = append(types, p.Type)
	}
	slices.Sort(types)
	if !slices.Equal(types, []string{webhooks.RunCompleted, webhooks.RunFailed}) {
		t.Fatalf("delivered %v, want run.completed and run.failed only", types)
	}
}
