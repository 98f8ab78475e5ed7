package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/fakeclock"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
	"github.com/runledger/runledger/webhooks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// harness is a database with the log, the webhooks' consumer group running
// and a fake clock (set to the real time at its start, so a receiver can
// check timestamps with the library's tolerance until the test moves it).
type harness struct {
	t         *testing.T
	pool      *pgxpool.Pool
	clock     *fakeclock.Clock
	runner    *runs.Runner
	endpoints *webhooks.Endpoints
	policy    webhooks.Policy
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	pool := pgtest.NewDB(t)
	clock := fakeclock.New(time.Now().UTC().Truncate(time.Second))
	var proj *webhooks.Projector
	store := eventstore.NewWithOptions(pool, eventstore.Options{OnCommitted: func(int64) { proj.Wake() }})
	runner := runs.NewRunner(store, domain.DefaultPolicy())
	runner.Now = clock.Now
	policy := webhooks.Policy{AllowPrivate: true, AllowInsecure: true}
	h := &harness{t: t, pool: pool, clock: clock, runner: runner, policy: policy,
		endpoints: &webhooks.Endpoints{Pool: pool, Policy: policy, Now: clock.Now}}
	var err error
	proj, err = webhooks.NewProjector(pool, webhooks.ProjectorOptions{PollInterval: 100 * time.Millisecond, Now: clock.Now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("projector: %v", err)
		}
	})
	h.waitSubscribed()
	return h
}

// waitSubscribed waits until the webhooks group has its offset row. A new
// group with no endpoint starts at the log's head, so events a test appends
// before then would be passed over (seen as a flaky offset in
// TestGroupSkipsHeartbeatsAndCompactionStillPasses).
func (h *harness) waitSubscribed() {
	h.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		offsets, err := projections.ReadOffsets(context.Background(), h.pool)
		if err != nil {
			h.t.Fatal(err)
		}
		if _, ok := offsets[webhooks.ConsumerGroup]; ok {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("the webhooks group did not subscribe within 10s")
		}
	}
}

// sender returns a sender on the harness's clock, without jitter.
func (h *harness) sender(configure func(*webhooks.Sender)) *webhooks.Sender {
	s := &webhooks.Sender{Pool: h.pool, Policy: h.policy, Now: h.clock.Now, Logger: quiet, Jitter: func() float64 { return 0.5 }}
	if configure != nil {
		configure(s)
	}
	return s
}

func (h *harness) register(business, url string, events ...string) webhooks.Endpoint {
	h.t.Helper()
	e, err := h.endpoints.Create(context.Background(), business, webhooks.NewEndpoint{URL: url, Events: events})
	if err != nil {
		h.t.Fatal(err)
	}
	return e
}

func (h *harness) exec(business string, run uuid.UUID, cmd domain.Command) {
	h.t.Helper()
	if _, err := h.runner.Execute(context.Background(), business, run, cmd, eventstore.Metadata{Actor: "test"}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) start(business string) uuid.UUID {
	h.t.Helper()
	id := uuid.New()
	if _, err := h.runner.Start(context.Background(), domain.StartRun{RunID: id, BusinessID: business, WorkerID: "w1", TotalCalls: 10},
		eventstore.Metadata{Actor: "test"}); err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) complete(business string, run uuid.UUID, outcome domain.Outcome) {
	h.exec(business, run, domain.CompleteRun{Outcome: outcome, CompletedCalls: 4, FailedCalls: 1})
}

// waitDeliveries waits until the consumer group has made n deliveries.
func (h *harness) waitDeliveries(n int) {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var got int
		if err := h.pool.QueryRow(context.Background(), `SELECT count(*) FROM webhook_deliveries`).Scan(&got); err != nil {
			h.t.Fatal(err)
		}
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			h.t.Fatalf("%d deliveries, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sendAll calls SendDue until nothing is due at the clock's time.
func (h *harness) sendAll(s *webhooks.Sender) int {
	h.t.Helper()
	total := 0
	for {
		n, err := s.SendDue(context.Background())
		if err != nil {
			h.t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

// received is one request a receiver got.
type received struct {
	id      string
	payload webhooks.Payload
	status  int
}

// receiver verifies every request with the Standard Webhooks library and
// deduplicates on webhook-id; answer decides each status (n counts from 1).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	clock  *fakeclock.Clock
	mu     sync.Mutex
	secret string
	// strict checks the timestamp's tolerance against the real clock.
	strict bool
	answer func(n int, w http.ResponseWriter) int
	got    []received
	unique map[string]webhooks.Payload
	// arrivals counts requests as they arrive (got, as they are answered).
	arrivals int
}

func newReceiver(t *testing.T, clock *fakeclock.Clock, answer func(n int, w http.ResponseWriter) int) *receiver {
	r := &receiver{t: t, clock: clock, answer: answer, unique: map[string]webhooks.Payload{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	r.secret = s
	r.mu.Unlock()
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Errorf("receiver: %v", err)
		return
	}
	r.mu.Lock()
	secret, strict := r.secret, r.strict
	r.mu.Unlock()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		r.t.Errorf("receiver: secret: %v", err)
		return
	}
	if strict {
		err = wh.Verify(body, req.Header)
	} else {
		err = wh.VerifyIgnoringTimestamp(body, req.Header)
	}
	if err != nil {
		r.t.Errorf("receiver: delivery does not verify: %v (headers %v)", err, req.Header)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if ts := req.Header.Get("webhook-timestamp"); r.clock != nil && ts != itoa(r.clock.Now().Unix()) {
		r.t.Errorf("receiver: webhook-timestamp %s, clock %d", ts, r.clock.Now().Unix())
	}
	var p webhooks.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		r.t.Errorf("receiver: payload: %v", err)
	}
	id := req.Header.Get("webhook-id")
	r.mu.Lock()
	r.arrivals++
	n := r.arrivals
	r.mu.Unlock()
	status := http.StatusNoContent
	if r.answer != nil {
		status = r.answer(n, w)
	}
	r.mu.Lock()
	r.got = append(r.got, received{id: id, payload: p, status: status})
	if status >= 200 && status < 300 {
		r.unique[id] = p
	}
	r.mu.Unlock()
	w.WriteHeader(status)
}

func (r *receiver) arrived() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.arrivals
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// delivered returns the payloads received with success, one per webhook-id.
func (r *receiver) delivered() map[string]webhooks.Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]webhooks.Payload{}
	for k, v := range r.unique {
		out[k] = v
	}
	return out
}
