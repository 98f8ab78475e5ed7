package webhooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
	"github.com/runledger/runledger/webhooks"
)

const serveSecret = "webhooks-test-secret-0123456789abcdef"

// TestKillServeDuringDeliveries: serve is killed (SIGKILL) twice while it
// makes and sends deliveries; after a restart every event of a subscribed
// type has reached the receiver (verified by the library) at least once,
// and every attempt of one event carried the same webhook-id.
func TestKillServeDuringDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serve as a subprocess")
	}
	dbURL := pgtest.URL(t)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: serveSecret,
		Args: []string{"--webhook-allow-private", "--webhook-allow-insecure", "--stale-after", "10000h"}})
	auth, err := api.NewAuthenticator(serveSecret, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu       sync.Mutex
		secrets  = map[string]string{} // business → secret
		idOf     = map[string]string{} // event id → webhook-id
		requests int
		problems []string
	)
	recv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p webhooks.Payload
		_ = json.Unmarshal(body, &p)
		mu.Lock()
		defer mu.Unlock()
		requests++
		wh, err := standardwebhooks.NewWebhook(secrets[p.Data.BusinessID])
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s does not verify: %v", p.Data.EventID, err))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		id := r.Header.Get("webhook-id")
		if prev, ok := idOf[p.Data.EventID]; ok && prev != id {
			problems = append(problems, fmt.Sprintf("event %s came as %s and as %s", p.Data.EventID, prev, id))
		}
		idOf[p.Data.EventID] = id
		time.Sleep(30 * time.Millisecond) // attempts are in flight when the kill lands
		w.WriteHeader(http.StatusOK)
	})}
	ln := listen(t)
	go func() { _ = recv.Serve(ln) }()
	t.Cleanup(func() { _ = recv.Close() })
	recvURL := "http://" + ln.Addr().String() + "/hook"

	businesses := []string{"b1", "b2", "b3", "b4"}
	for _, b := range businesses {
		res := call(t, srv.URL, "POST", "/v1/businesses/"+b+"/webhooks", mint(t, auth, b, api.RoleUser),
			map[string]any{"url": recvURL, "events": webhooks.EventTypes})
		mu.Lock()
		secrets[b] = res["secret"].(string)
		mu.Unlock()
	}
	work := func(rounds int) {
		var wg sync.WaitGroup
		for _, b := range businesses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				worker, user := mint(t, auth, b, api.RoleWorker), mint(t, auth, b, api.RoleUser)
				for range rounds {
					run := call(t, srv.URL, "POST", "/v1/businesses/"+b+"/runs", worker, map[string]any{"total_calls": 2, "worker_id": "w"})
					path := "/v1/businesses/" + b + "/runs/" + run["run_id"].(string)
					call(t, srv.URL, "POST", path+"/pause", user, map[string]any{})
					call(t, srv.URL, "POST", path+"/resume", user, map[string]any{})
					call(t, srv.URL, "POST", path+"/complete", worker, map[string]any{"outcome": "completed", "completed_calls": 2, "failed_calls": 0})
				}
			}()
		}
		wg.Wait()
	}
	pool := pgtest.Pool(t, dbURL)
	for range 2 {
		work(5)
		srv.Kill()
		var pending, inFlight int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'pending'),
			count(*) FILTER (WHERE lease_token IS NOT NULL) FROM webhook_deliveries`).Scan(&pending, &inFlight); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed with %d deliveries pending, %d of them claimed", pending, inFlight)
		srv.Restart()
	}
	work(3)

	var want []string
	rows, err := pool.Query(context.Background(), `SELECT event_id::text FROM events
		WHERE type IN ('RunStarted', 'PauseRequested', 'RunResumed', 'RunCompleted') ORDER BY position`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	if rows.Err() != nil || len(want) != 4*4*13 {
		t.Fatalf("%d subscribed events in the log (%v), want %d", len(want), rows.Err(), 4*4*13)
	}
	// A delivery whose attempt the kill cut short is due again after its
	// lease (the 15 s attempt timeout).
	deadline := time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		var missing []string
		for _, id := range want {
			if _, ok := idOf[id]; !ok {
				missing = append(missing, id)
			}
		}
		n, bad := requests, append([]string(nil), problems...)
		mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("receiver: %v", bad)
		}
		if len(missing) == 0 {
			t.Logf("%d events delivered in %d requests across two kills", len(want), n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events never delivered, e.g. %s", len(missing), len(want), missing[0])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func mint(t *testing.T, auth *api.Authenticator, business string, role api.Role) string {
	tok, err := auth.Mint(business, role, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// call makes a request and fails the test unless it succeeds.
func call(t *testing.T, base, method, path, token string, body any) map[string]any {
	raw, _ := json.Marshal(body)
	for attempt := 0; ; attempt++ {
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(raw))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return nil
		}
		out, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable && attempt < 20 { // starting, or catching up
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if res.StatusCode >= 300 {
			t.Errorf("%s %s: %d %s", method, path, res.StatusCode, out)
			return nil
		}
		var m map[string]any
		_ = json.Unmarshal(out, &m)
		return m
	}
}

func listen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestFrozenReplicaMidSend: replica A is frozen (SIGSTOP) while its attempt
// is at the receiver; replica B sends the delivery once A's lease (the 15 s
// attempt timeout) is over, with the same webhook-id; A, thawed, records
// nothing over B's outcome.
func TestFrozenReplicaMidSend(t *testing.T) {
	if testing.Short() {
		t.Skip("runs serve as a subprocess")
	}
	dbURL := pgtest.URL(t)
	opts := servetest.Options{DatabaseURL: dbURL, Secret: serveSecret,
		Args: []string{"--webhook-allow-private", "--webhook-allow-insecure", "--stale-after", "10000h"}}
	a := servetest.Start(t, opts)
	auth, err := api.NewAuthenticator(serveSecret, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	type hit struct {
		id string
		at time.Time
	}
	var (
		mu      sync.Mutex
		hits    []hit
		arrived = make(chan struct{}, 4)
		release = make(chan struct{})
		secret  string
	)
	recv := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		wh, err := standardwebhooks.NewWebhook(secret)
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			t.Errorf("receiver: %v", err)
		}
		hits = append(hits, hit{r.Header.Get("webhook-id"), time.Now()})
		first := len(hits) == 1
		mu.Unlock()
		arrived <- struct{}{}
		if first {
			<-release // A's attempt waits here while A is frozen
		}
		w.WriteHeader(http.StatusOK)
	})}
	ln := listen(t)
	go func() { _ = recv.Serve(ln) }()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }); _ = recv.Close() })

	user, worker := mint(t, auth, "acme", api.RoleUser), mint(t, auth, "acme", api.RoleWorker)
	ep := call(t, a.URL, "POST", "/v1/businesses/acme/webhooks", user,
		map[string]any{"url": "http://" + ln.Addr().String() + "/hook", "events": []string{webhooks.RunStarted}})
	mu.Lock()
	secret = ep["secret"].(string)
	mu.Unlock()
	call(t, a.URL, "POST", "/v1/businesses/acme/runs", worker, map[string]any{"total_calls": 1, "worker_id": "w"})
	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("A never sent")
	}
	a.Freeze()
	defer a.Thaw()
	once.Do(func() { close(release) }) // A cannot read the answer while frozen
	b := servetest.Start(t, opts)
	select {
	case <-arrived:
	case <-time.After(90 * time.Second):
		t.Fatal("B never sent the delivery A holds")
	}
	a.Thaw()
	mu.Lock()
	got := append([]hit(nil), hits...)
	mu.Unlock()
	if len(got) != 2 || got[0].id != got[1].id {
		t.Fatalf("requests %+v, want two with one webhook-id", got)
	}
	t.Logf("B sent %s after A's attempt reached the receiver", got[1].at.Sub(got[0].at).Round(time.Millisecond))
	// B's success is the outcome; A's late one (after its lease) is dropped.
	pool := pgtest.Pool(t, dbURL)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var status string
		var attempts, logged int
		if err := pool.QueryRow(context.Background(), `SELECT status, attempts,
			(SELECT count(*) FROM webhook_attempts WHERE delivery_id = d.id) FROM webhook_deliveries d`).Scan(&status, &attempts, &logged); err != nil {
			t.Fatal(err)
		}
		if status == webhooks.StatusSucceeded {
			if attempts != 2 || logged != 1 {
				t.Fatalf("attempts %d, logged %d: want 2 claims and B's outcome only", attempts, logged)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %s", status)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = b
}
