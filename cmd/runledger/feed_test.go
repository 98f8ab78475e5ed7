package main

import (
	"bufio"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/internal/pgtest"
	"github.com/runledger/runledger/internal/servetest"
)

// A change committed through replica A reaches an SSE watcher on replica B
// within 250 ms (LISTEN/NOTIFY), and still does after B's listening
// connection is killed (it reconnects and resyncs).
func TestChangesReachAnotherReplicasWatcher(t *testing.T) {
	dbURL := pgtest.URL(t)
	args := []string{"--heartbeat-min-interval", "0s"}
	a := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret, Args: args})
	b := servetest.Start(t, servetest.Options{DatabaseURL: dbURL, Secret: testSecret, Args: args})
	ca, cb := newAPIClient(t, a.URL), newAPIClient(t, b.URL)
	run := startRun(t, ca, "acme", 1000)
	user := cb.token("acme", api.RoleUser)
	waitFor(t, 10*time.Second, "the run on B", func() bool {
		return cb.do("GET", "/v1/businesses/acme/runs/active", user, nil).status == 200
	})
	events := watch(t, b.URL, "acme", user)
	first := nextEvent(t, events, 5*time.Second)
	worker := ca.token("acme", api.RoleWorker)
	heartbeat := func(n int) (time.Time, int64) {
		t.Helper()
		hb := ca.do("POST", "/v1/businesses/acme/runs/"+run+"/heartbeat", worker, map[string]any{"completed_calls": n, "failed_calls": 0})
		if hb.status != 200 {
			t.Fatalf("heartbeat: %d %v", hb.status, hb.body)
		}
		pos, _ := strconv.ParseInt(hb.header.Get("Runledger-Position"), 10, 64)
		return time.Now(), pos
	}
	var worst time.Duration
	for i := 1; i <= 20; i++ {
		answered, pos := heartbeat(i)
		ev := nextEvent(t, events, 5*time.Second)
		for ev.id < pos {
			ev = nextEvent(t, events, 5*time.Second)
		}
		worst = max(worst, time.Since(answered))
	}
	t.Logf("first event id %d; worst delivery to B's watcher over 20 heartbeats: %s", first.id, worst)
	if worst > 250*time.Millisecond {
		t.Fatalf("a change took %s to reach the other replica's watcher", worst)
	}
	// Kill B's listening connection: the next change must still arrive.
	pool := pgtest.Pool(t, dbURL)
	var killed bool
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
		WHERE application_name = 'runledger-listener:' || $1`, strconv.Itoa(b.Pid())).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate B's listener: %v %v", killed, err)
	}
	_, pos := heartbeat(100)
	ev := nextEvent(t, events, 5*time.Second)
	for ev.id < pos {
		ev = nextEvent(t, events, 5*time.Second)
	}
}

type streamEvent struct {
	id    int64
	event string
}

// watch opens a stream and returns its events (closed when it ends).
func watch(t *testing.T, base, business, token string) <-chan streamEvent {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/businesses/"+business+"/runs/active/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("stream: %v %v", res, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	out := make(chan streamEvent, 64)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(res.Body)
		var cur streamEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "" && cur.event != "":
				out <- cur
				cur = streamEvent{}
			case strings.HasPrefix(line, "id: "):
				cur.id, _ = strconv.ParseInt(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "event: "):
				cur.event = strings.TrimPrefix(line, "event: ")
			}
		}
	}()
	return out
}

func nextEvent(t *testing.T, events <-chan streamEvent, d time.Duration) streamEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(d):
		t.Fatalf("no event within %s", d)
	}
	return streamEvent{}
}
