package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/servetest"
)

// TestLifecycleUnderLoad compacts and erases beside 32 heartbeating workers
// and the projector of a running serve: no open run and no other business is
// touched (their events before are exactly their events after, plus what
// they appended since), and the appends' p99 latency with and without is
// reported (measured, never asserted: this machine is shared).
func TestLifecycleUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	w := newCrashWorld(t, 30, 240)
	srv := servetest.Start(t, servetest.Options{DatabaseURL: w.url, Secret: testSecret,
		Args: []string{"--heartbeat-min-interval", "0s"}})
	auth, err := api.NewAuthenticator(testSecret, nil)
	if err != nil {
		t.Fatal(err)
	}
	const workers = 32
	type worker struct {
		business, token string
		run             uuid.UUID
		done            *int
	}
	var ws []worker
	post := func(token, path, body string) (time.Duration, error) {
		req, _ := http.NewRequest("POST", srv.URL+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return 0, fmt.Errorf("%s: %s", path, resp.Status)
		}
		return time.Since(start), nil
	}
	for i := range workers {
		wk := worker{business: fmt.Sprintf("live%02d", i), run: uuid.New(), done: new(int)}
		wk.token, err = auth.MintToken(api.TokenSpec{Business: wk.business, Role: api.RoleWorker, Subject: "w", TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := post(wk.token, "/v1/businesses/"+wk.business+"/runs",
			fmt.Sprintf(`{"run_id":%q,"worker_id":"w","total_calls":1000000}`, wk.run)); err != nil {
			t.Fatal(err)
		}
		ws = append(ws, wk)
	}
	// phase runs the workers for d and returns the heartbeats' latencies.
	type sample struct {
		at  time.Time
		lat time.Duration
	}
	phase := func(d time.Duration, during func()) []sample {
		var (
			mu   sync.Mutex
			lats []sample
			wg   sync.WaitGroup
		)
		stop := time.Now().Add(d)
		for _, wk := range ws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					*wk.done++
					at := time.Now()
					lat, err := post(wk.token, "/v1/businesses/"+wk.business+"/runs/"+wk.run.String()+"/heartbeat",
						fmt.Sprintf(`{"completed_calls":%d,"failed_calls":0}`, *wk.done))
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					lats = append(lats, sample{at, lat})
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		if during != nil {
			during()
		}
		wg.Wait()
		return lats
	}
	baseline := phase(4*time.Second, nil)
	untouched := w.positions() // every run but the ended ones to compact and b00's, which is erased
	var from, to time.Time
	loaded := phase(6*time.Second, func() {
		time.Sleep(time.Second)
		from = time.Now()
		for _, args := range [][]string{
			{"compact", "--database-url", w.url, "--ended-before", "1h", "--batch", "4"},
			{"erase", "--database-url", w.url, "--business", "b00", "--reason", "load test"},
		} {
			if out, err := exec.Command(servetest.Binary(t), args...).CombinedOutput(); err != nil {
				t.Errorf("%v: %v\n%s", args, err, out)
			}
		}
		to = time.Now()
	})
	after := w.positions()
	for run, pos := range untouched {
		if _, compacted := w.before[run]; compacted && len(w.after[run]) < len(w.before[run]) {
			continue
		}
		if got := after[run]; len(got) < len(pos) || !slices.Equal(got[:len(pos)], pos) {
			t.Fatalf("run %s was touched: %d events, had %d", run, len(got), len(pos))
		}
	}
	var during []time.Duration
	for _, s := range loaded {
		if !s.at.Before(from) && s.at.Before(to) {
			during = append(during, s.lat)
		}
	}
	lats := func(ss []sample) []time.Duration {
		var out []time.Duration
		for _, s := range ss {
			out = append(out, s.lat)
		}
		return out
	}
	t.Logf("appends p99: %s without, %s while compact+erase ran (%s); p50 %s / %s; %d and %d heartbeats",
		pct(lats(baseline), 99), pct(during, 99), to.Sub(from).Round(time.Millisecond), pct(lats(baseline), 50), pct(during, 50),
		len(baseline), len(during))
	if out, err := exec.Command(servetest.Binary(t), "verify", "--database-url", w.url).CombinedOutput(); err != nil {
		t.Fatalf("verify: %v\n%s", err, out)
	}
}

func pct(lats []time.Duration, p int) time.Duration {
	if len(lats) == 0 {
		return 0
	}
	s := slices.Clone(lats)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
