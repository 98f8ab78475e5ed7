package api_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/api"
)

// A watcher waiting for the next change holds no state of net/http: its
// stream took the connection over, so no connection goroutine, background
// read or request buffers stay behind it (what made B9's 10,000 watchers
// cost 945 MiB). The streams still answer as the contract says and still
// deliver.
func TestWaitingWatchersHoldNoConnectionStateOfNetHTTP(t *testing.T) {
	e := newEnvWith(t, func(c *api.Config) { c.MaxStreams, c.MaxStreamsPerToken = 200, 200 })
	id := e.start("acme", 10)
	user := e.token("acme", api.RoleUser)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)
	_, readsBefore := serverConnectionGoroutines() // other tests' requests may be in flight
	var streams []<-chan sse
	for i := range 40 {
		path := "/v1/businesses/acme/runs/active/stream"
		if i%2 == 1 {
			path += "?wait=true" // a business stream
		}
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+user)
		req.Header.Set("X-Request-ID", "watcher-request")
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		h := res.Header
		if res.StatusCode != 200 || h.Get("Content-Type") != "text/event-stream" || h.Get("Cache-Control") != "no-cache" ||
			h.Get("X-Request-ID") != "watcher-request" || len(res.TransferEncoding) != 1 || res.TransferEncoding[0] != "chunked" || !res.Close {
			t.Fatalf("stream %d answered %d, headers %v, transfer encoding %v, close %v", i, res.StatusCode, h, res.TransferEncoding, res.Close)
		}
		events := make(chan sse, 16)
		go readSSE(res.Body, events)
		if ev := nextData(t, events); ev.event != "run" || ev.run["run_id"] != id {
			t.Fatalf("stream %d began with %q %v, want the run", i, ev.event, ev.run)
		}
		streams = append(streams, events)
	}

	handlers, readsAfter := serverConnectionGoroutines()
	if added := readsAfter - readsBefore; handlers != 0 || added > 2 {
		t.Fatalf("with 40 watchers waiting, net/http holds %d connection goroutines waiting in a stream and %d more background reads; want none", handlers, added)
	}
	if n := e.server.OpenStreams(); n != 40 {
		t.Fatalf("%d streams open, want 40", n)
	}

	e.clock.Advance(10 * time.Second) // past the heartbeat coalescing interval: stored
	e.must(e.do("POST", "/v1/businesses/acme/runs/"+id+"/heartbeat", e.token("acme", api.RoleWorker), map[string]any{"completed_calls": 3, "failed_calls": 0}), 200, "")
	for i, events := range streams {
		if ev := nextData(t, events); ev.event != "run" || ev.run["completed_calls"] != float64(3) {
			t.Fatalf("stream %d sent %q %v after the heartbeat, want the run at 3 calls", i, ev.event, ev.run)
		}
	}
}

// serverConnectionGoroutines counts net/http's connection goroutines
// whose handler waits in a stream, and net/http's background reads (one per
// request whose handler runs, in this process: other tests' requests too).
func serverConnectionGoroutines() (handlers, backgroundReads int) {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "net/http.(*conn).serve") && strings.Contains(g, "runledger/api.(*sseStream).await") {
			handlers++
		}
		if strings.Contains(g, "net/http.(*connReader).backgroundRead") {
			backgroundReads++
		}
	}
	return handlers, backgroundReads
}

// At shutdown, CloseStreams ends every stream, those that took their
// connection over included, and returns once they have ended: each client
// sees its response end properly (the last chunk), not a cut connection,
// and reconnects elsewhere with Last-Event-ID.
func TestCloseStreamsEndsTakenOverStreams(t *testing.T) {
	e := newEnvWith(t, func(c *api.Config) { c.MaxStreams, c.MaxStreamsPerToken = 20, 20 })
	e.start("acme", 10)
	user := e.token("acme", api.RoleUser)
	type ended struct {
		body string
		err  error
	}
	results := make(chan ended, 10)
	for range 10 {
		req, _ := http.NewRequest("GET", e.url+"/v1/businesses/acme/runs/active/stream", nil)
		req.Header.Set("Authorization", "Bearer "+user)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("stream: %v %v", res, err)
		}
		first := make([]byte, 1)
		if _, err := io.ReadFull(res.Body, first); err != nil {
			t.Fatal(err)
		}
		go func() {
			defer res.Body.Close()
			rest, err := io.ReadAll(res.Body)
			results <- ended{string(first) + string(rest), err}
		}()
	}
	if n := e.server.OpenStreams(); n != 10 {
		t.Fatalf("%d streams open, want 10", n)
	}
	e.server.CloseStreams()
	if n := e.server.OpenStreams(); n != 0 {
		t.Fatalf("CloseStreams returned with %d streams open", n)
	}
	for range 10 {
		select {
		case r := <-results:
			if r.err != nil || !strings.HasPrefix(r.body, "retry: 1000\n\nid: ") || !strings.Contains(r.body, "event: run\n") {
				t.Fatalf("the stream ended with %v after %q; want its events and a proper end", r.err, r.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a client's response did not end after CloseStreams")
		}
	}
}

// A HEAD of a stream route (net/http routes HEAD to GET patterns) is
// answered with the stream's head alone: no body, which HTTP forbids after a
// HEAD, and no stream left holding a slot.
func TestStreamHeadHasNoBody(t *testing.T) {
	e := newEnv(t)
	e.start("acme", 10)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "HEAD /v1/businesses/acme/runs/active/stream HTTP/1.1\r\nHost: runledger\r\nAuthorization: Bearer %s\r\n\r\n", e.token("acme", api.RoleUser))
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	got, _ := io.ReadAll(conn) // until the deadline: whatever the server sends
	head, body, _ := strings.Cut(string(got), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "Content-Type: text/event-stream") || body != "" {
		t.Fatalf("HEAD answered %q, then %q; want the stream's head alone", head, body)
	}
	if n := e.server.OpenStreams(); n != 0 {
		t.Fatalf("%d streams open after a HEAD", n)
	}
}
