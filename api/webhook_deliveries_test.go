package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/webhooks"
)

// TestWebhookDeliveriesVisibleAndRetried: the delivery log shows each
// attempt (time, status, duration, the first 1 KiB of the answer, the next
// attempt); a retry makes a delivery due at once; the metrics count
// outcomes; another business sees none of it.
func TestWebhookDeliveriesVisibleAndRetried(t *testing.T) {
	policy := webhooks.Policy{AllowPrivate: true, AllowInsecure: true}
	e := newEnvWith(t, func(c *api.Config) {
		c.Webhooks = &webhooks.Endpoints{Pool: c.Pool, Now: c.Now, Policy: policy}
	})
	var calls atomic.Int32
	long := strings.Repeat("x", 3000)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(long))
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(recv.Close)
	user := e.token("acme", api.RoleUser)
	base := "/v1/businesses/acme/webhooks"
	id := e.must(e.do("POST", base, user, map[string]any{"url": recv.URL, "events": []string{"run.started"}}), 201, "").str("id")

	proj, err := webhooks.NewProjector(e.pool, webhooks.ProjectorOptions{PollInterval: 50 * time.Millisecond, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	reg := prometheus.NewRegistry()
	sender := &webhooks.Sender{Pool: e.pool, Policy: policy, Now: e.clock.Now, Metrics: webhooks.NewMetrics(reg),
		Jitter: func() float64 { return 0.5 }}

	run := e.start("acme", 3)
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := sender.SendDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery was made")
		}
		time.Sleep(20 * time.Millisecond)
	}
	list := e.must(e.do("GET", base+"/"+id+"/deliveries", user, nil), 200, "")
	ds, _ := list.body["deliveries"].([]any)
	if len(ds) != 1 {
		t.Fatalf("deliveries: %s", list.raw)
	}
	d := ds[0].(map[string]any)
	attempts, _ := d["attempts"].([]any)
	if d["status"] != "pending" || d["event_type"] != "run.started" || len(attempts) != 1 || d["next_attempt_at"] == nil ||
		!strings.HasPrefix(d["message_id"].(string), "msg_") {
		t.Fatalf("delivery: %s", list.raw)
	}
	a := attempts[0].(map[string]any)
	if a["status_code"] != float64(500) || len(a["response"].(string)) != 1024 || a["next_attempt_at"] == nil || a["duration"] == "" {
		t.Fatalf("attempt: %v", a)
	}
	if got := testutil.ToFloat64(sender.Metrics.Deliveries.WithLabelValues(webhooks.OutcomeRetrying)); got != 1 {
		t.Fatalf("retrying outcomes %v", got)
	}

	// Not due for 5 s on the server clock; a retry makes it due now.
	if n, _ := sender.SendDue(context.Background()); n != 0 {
		t.Fatal("sent before its time")
	}
	did := d["id"].(string)
	e.must(e.do("POST", "/v1/businesses/other/webhooks/"+id+"/deliveries/"+did+"/retry", e.token("other", api.RoleUser), nil), 404, "not_found")
	e.must(e.do("POST", base+"/"+id+"/deliveries/"+did+"/retry", e.token("acme", api.RoleWorker), nil), 403, "forbidden")
	e.must(e.do("POST", base+"/"+id+"/deliveries/"+did+"/retry", user, nil), 202, "")
	if n, err := sender.SendDue(context.Background()); n != 1 || err != nil {
		t.Fatalf("after the retry: sent %d (%v)", n, err)
	}
	list = e.must(e.do("GET", base+"/"+id+"/deliveries", user, nil), 200, "")
	d = list.body["deliveries"].([]any)[0].(map[string]any)
	if d["status"] != "succeeded" || len(d["attempts"].([]any)) != 2 || d["next_attempt_at"] != nil {
		t.Fatalf("after the retry: %s", list.raw)
	}
	if got := testutil.ToFloat64(sender.Metrics.Deliveries.WithLabelValues(webhooks.OutcomeSucceeded)); got != 1 {
		t.Fatalf("succeeded outcomes %v", got)
	}
	e.must(e.do("GET", "/v1/businesses/other/webhooks/"+id+"/deliveries", e.token("other", api.RoleUser), nil), 404, "not_found")
	_ = run
}
