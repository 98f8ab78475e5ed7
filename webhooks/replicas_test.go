package webhooks_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/webhooks"
)

// TestTwoSendersNeverSendOneDeliveryAtOnce: two senders (two replicas) on
// one database send 60 deliveries; the receiver sees each webhook-id once,
// and never two requests of one id in flight together.
func TestTwoSendersNeverSendOneDeliveryAtOnce(t *testing.T) {
	h := newHarness(t)
	var (
		mu       sync.Mutex
		inFlight = map[string]int{}
		overlap  []string
	)
	r := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return http.StatusOK })
	inner := r.srv.Config.Handler
	r.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("webhook-id")
		mu.Lock()
		inFlight[id]++
		if inFlight[id] > 1 {
			overlap = append(overlap, id)
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		inner.ServeHTTP(w, req)
		mu.Lock()
		inFlight[id]--
		mu.Unlock()
	})
	for range 3 {
		h.register("acme", r.srv.URL, webhooks.RunStarted, webhooks.RunCompleted)
	}
	// The three endpoints share the receiver, so they share a secret too.
	var secret string
	if err := h.pool.QueryRow(context.Background(), `UPDATE webhook_endpoints
		SET secret = (SELECT min(secret) FROM webhook_endpoints) RETURNING secret`).Scan(&secret); err != nil {
		t.Fatal(err)
	}
	r.setSecret(secret)
	for range 10 {
		run := h.start("acme")
		h.complete("acme", run, domain.OutcomeCompleted)
	}
	h.waitDeliveries(60)
	a := h.sender(func(s *webhooks.Sender) { s.Concurrency = 4 })
	b := h.sender(func(s *webhooks.Sender) { s.Concurrency = 4 })
	var wg sync.WaitGroup
	for _, s := range []*webhooks.Sender{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.SendDue(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	got := r.requests()
	if len(got) != 60 || len(r.delivered()) != 60 {
		t.Fatalf("%d requests, %d distinct ids; want 60 and 60", len(got), len(r.delivered()))
	}
	if len(overlap) > 0 {
		t.Fatalf("sent at the same moment by two senders: %v", overlap)
	}
}

// TestFrozenSenderDoesNotBlockTheOther: sender A's attempt hangs (its
// receiver never answers); sender B cannot take the delivery while A's
// attempt may still be on the wire, and takes it once the attempt's timeout
// (A's lease) is over; A's late outcome is not recorded over B's.
func TestFrozenSenderDoesNotBlockTheOther(t *testing.T) {
	h := newHarness(t)
	release := make(chan struct{})
	var once sync.Once
	r := newReceiver(t, h.clock, func(n int, _ http.ResponseWriter) int {
		if n == 1 {
			<-release // the first request hangs past A's timeout
		}
		return http.StatusOK
	})
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	ep := h.register("acme", r.srv.URL, webhooks.RunStarted)
	r.setSecret(ep.Secret)
	h.start("acme")
	h.waitDeliveries(1)
	timeout := 2 * time.Second
	a := h.sender(func(s *webhooks.Sender) { s.Timeout = timeout })
	b := h.sender(func(s *webhooks.Sender) { s.Timeout = timeout })
	aDone := make(chan int, 1)
	go func() {
		n, err := a.SendDue(context.Background())
		if err != nil {
			t.Error(err)
		}
		aDone <- n
	}()
	deadline := time.Now().Add(10 * time.Second)
	for r.arrived() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("A never sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.sendAll(b); n != 0 {
		t.Fatalf("B took a delivery A is sending (%d)", n)
	}
	h.clock.Advance(timeout)
	if n := h.sendAll(b); n != 1 {
		t.Fatalf("B sent %d after A's lease, want 1", n)
	}
	if <-aDone != 1 {
		t.Fatal("A claimed nothing")
	}
	once.Do(func() { close(release) })
	list, err := h.endpoints.Deliveries(context.Background(), "acme", ep.ID, 10)
	if err != nil {
		t.Fatal(err)
	}
	d := list[0]
	if d.Status != webhooks.StatusSucceeded || d.Attempts != 2 || len(d.Log) != 1 || d.Log[0].Number != 2 || d.Log[0].StatusCode != 200 {
		t.Fatalf("delivery after the takeover: %+v", d)
	}
}

// TestNameThatTurnsPrivateIsRefusedAtSend: a name that resolved to a public
// address at registration and resolves to loopback at send is refused
// (nothing reaches the receiver listening there), and retried later.
func TestNameThatTurnsPrivateIsRefusedAtSend(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, nil)
	res := &mutableResolver{hosts: map[string][]netip.Addr{}}
	res.set("crm.example", "203.0.113.7")
	strict := webhooks.Policy{AllowInsecure: true, Resolver: res}
	reg := &webhooks.Endpoints{Pool: h.pool, Policy: strict, Now: h.clock.Now}
	port := r.srv.URL[strings.LastIndex(r.srv.URL, ":"):]
	ep, err := reg.Create(context.Background(), "acme", webhooks.NewEndpoint{URL: "http://crm.example" + port + "/hook",
		Events: []string{webhooks.RunStarted}})
	if err != nil {
		t.Fatal(err)
	}
	r.setSecret(ep.Secret)
	res.set("crm.example", "127.0.0.1") // where the receiver does listen
	h.start("acme")
	h.waitDeliveries(1)
	s := h.sender(func(s *webhooks.Sender) { s.Policy = strict })
	if n := h.sendAll(s); n != 1 {
		t.Fatalf("claimed %d", n)
	}
	if n := len(r.requests()); n != 0 {
		t.Fatalf("the receiver on loopback got %d requests", n)
	}
	list, err := reg.Deliveries(context.Background(), "acme", ep.ID, 1)
	if err != nil {
		t.Fatal(err)
	}
	if a := list[0].Log[0]; !strings.Contains(a.Error, "refused") || a.StatusCode != 0 || list[0].Status != webhooks.StatusPending {
		t.Fatalf("refused attempt: %+v (delivery %+v)", a, list[0])
	}
}

// TestFailingFiveDaysDisables: an endpoint whose every attempt fails for
// five days is disabled, with the reason shown.
func TestFailingFiveDaysDisables(t *testing.T) {
	h := newHarness(t)
	r := newReceiver(t, h.clock, func(int, http.ResponseWriter) int { return http.StatusInternalServerError })
	ep := h.register("acme", r.srv.URL, webhooks.RunStarted, webhooks.RunCompleted)
	r.setSecret(ep.Secret)
	s := h.sender(nil)
	for day := 0; day <= 5; day++ {
		run := h.start("acme")
		h.complete("acme", run, domain.OutcomeCompleted)
		h.waitDeliveries(2 * (day + 1))
		h.sendAll(s)
		got, err := h.endpoints.Get(context.Background(), "acme", ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Disabled != (day == 5) {
			t.Fatalf("day %d: disabled %v (%s)", day, got.Disabled, got.DisabledReason)
		}
		if day == 5 && got.DisabledReason != "every attempt failed for 5 days" {
			t.Fatalf("reason %q", got.DisabledReason)
		}
		h.clock.Advance(24 * time.Hour)
	}
}
