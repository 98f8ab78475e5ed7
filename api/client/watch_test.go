package client_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/api"
	"github.com/runledger/runledger/api/client"
)

// watchAsync runs Watch in a goroutine, sending its events and its result.
func watchAsync(c *client.Client, business string) (<-chan client.Event, <-chan error) {
	events, done := make(chan client.Event, 16), make(chan error, 1)
	go func() {
		done <- c.Watch(context.Background(), business, "", func(ev client.Event) error {
			events <- ev
			return nil
		})
	}()
	return events, done
}

func next(t *testing.T, events <-chan client.Event) client.Event {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return client.Event{}
	}
}

// startVisible starts a run and waits until the read model shows it active.
func startVisible(t *testing.T, worker, reader *client.Client, business string) string {
	t.Helper()
	id := uuid.NewString()
	if _, err := worker.StartRun(context.Background(), business, client.StartRequest{RunID: id, TotalCalls: 10, WorkerID: "w"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the run to read as active", func() bool {
		run, ok, err := reader.GetActive(context.Background(), business)
		return err == nil && ok && run.RunID == id
	})
	return id
}

// A dropped stream is resumed with Last-Event-ID: no event is sent twice,
// and the watch ends with the run's terminal state.
func TestWatchResumesWithLastEventID(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	proxy.setRule(func(r *http.Request, n int) fault {
		if suffix(r) == "stream" && n == 0 {
			return fault{cutStreamAfter: 1}
		}
		return fault{}
	})
	worker, reader := e.client(e.srv.URL, "acme", api.RoleWorker), e.client(proxy.URL, "acme", api.RoleUser)
	id := startVisible(t, worker, reader, "acme")
	events, done := watchAsync(reader, "acme")
	first := next(t, events)
	if first.Type != client.EventRun || first.Run.RunID != id || first.ID == "" {
		t.Fatalf("first event = %+v", first)
	}
	time.Sleep(2 * interval) // the heartbeat is stored, not coalesced
	if _, err := worker.Heartbeat(context.Background(), "acme", id, 3, 1); err != nil {
		t.Fatal(err)
	}
	second := next(t, events)
	if second.Type != client.EventRun || second.Run.CompletedCalls != 3 || pos(t, second.ID) <= pos(t, first.ID) {
		t.Fatalf("second event = %+v (first %s)", second, first.ID)
	}
	if _, err := worker.CompleteRun(context.Background(), "acme", id, client.Completion{Outcome: client.OutcomeCompleted, CompletedCalls: 9, FailedCalls: 1}); err != nil {
		t.Fatal(err)
	}
	last := next(t, events)
	if last.Type != client.EventEnded || last.Run.Status != client.StatusCompleted {
		t.Fatalf("last event = %+v", last)
	}
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v", err)
	}
	streams := proxy.requests("stream")
	if len(streams) != 2 || streams[1].lastEventID != first.ID {
		t.Fatalf("stream requests: %+v; want a reconnection with Last-Event-ID %s", streams, first.ID)
	}
}

// The run ends while the stream is down: on reconnection the server has no
// active run, and Watch hands over the run's final state instead.
func TestWatchReportsEndWhileDisconnected(t *testing.T) {
	e := newEnv(t)
	proxy := newFaultProxy(t, e.srv.URL)
	release, held := make(chan struct{}), make(chan struct{})
	proxy.setRule(func(r *http.Request, n int) fault {
		switch {
		case suffix(r) == "stream" && n == 0:
			return fault{cutStreamAfter: 1}
		case suffix(r) == "stream" && n == 1:
			return fault{hold: release, held: held}
		}
		return fault{}
	})
	worker, reader := e.client(e.srv.URL, "acme", api.RoleWorker), e.client(proxy.URL, "acme", api.RoleUser)
	id := startVisible(t, worker, reader, "acme")
	events, done := watchAsync(reader, "acme")
	next(t, events)
	<-held
	if _, err := worker.CompleteRun(context.Background(), "acme", id, client.Completion{Outcome: client.OutcomeFailed, Error: "carrier down"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the run to read as ended", func() bool {
		_, ok, err := reader.GetActive(context.Background(), "acme")
		return err == nil && !ok
	})
	close(release)
	last := next(t, events)
	if last.Type != client.EventEnded || last.Run.Status != client.StatusFailed || last.Run.LastError != "carrier down" {
		t.Fatalf("last event = %+v", last)
	}
	if err := <-done; err != nil {
		t.Fatalf("Watch = %v", err)
	}
}

func TestWatchWithoutActiveRun(t *testing.T) {
	e := newEnv(t)
	reader := e.client(e.srv.URL, "acme", api.RoleUser)
	err := reader.Watch(context.Background(), "acme", "", func(client.Event) error { return nil })
	if apiErr, ok := err.(*client.Error); !ok || apiErr.Code != client.CodeNoActiveRun {
		t.Fatalf("Watch = %v", err)
	}
}

func pos(t *testing.T, id string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		t.Fatalf("event id %q is not a position", id)
	}
	return n
}
