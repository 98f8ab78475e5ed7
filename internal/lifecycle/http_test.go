package lifecycle_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/runledger/runledger/internal/lifecycle"
)

// An HTTP server stops on ctx's end only after BeforeShutdown and after the
// request in flight has been answered in full; Run then returns nil.
func TestHTTPServerFinishesInFlightRequestsOnStop(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		_, _ = io.WriteString(w, "answered")
	})}
	before := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() {
		ran <- lifecycle.HTTPServer{Server: srv, Listener: l, BeforeShutdown: func() { close(before) }}.Run(ctx)
	}()
	body := make(chan string, 1)
	go func() {
		res, err := http.Get("http://" + l.Addr().String())
		if err != nil {
			body <- err.Error()
			return
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		body <- string(b)
	}()
	<-entered
	cancel()
	select {
	case <-before:
	case <-time.After(10 * time.Second):
		t.Fatal("BeforeShutdown not called after ctx ended")
	}
	select {
	case err := <-ran:
		t.Fatalf("Run returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if got := <-body; got != "answered" {
		t.Fatalf("the in-flight request got %q", got)
	}
	if err := <-ran; err != nil {
		t.Fatalf("Run = %v after a graceful stop", err)
	}
}

// A server that cannot serve (its address taken) returns at once with the
// error, which a Group reports by name.
func TestHTTPServerThatCannotListenFailsByName(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	srv := &http.Server{Addr: taken.Addr().String(), ReadHeaderTimeout: time.Second}
	g := lifecycle.Start(context.Background(), quiet, lifecycle.Named{Name: "debug server", Service: lifecycle.HTTPServer{Server: srv}})
	defer g.Stop(context.Background())
	select {
	case err := <-g.Failed():
		if !strings.HasPrefix(err.Error(), "debug server: listen tcp") {
			t.Fatalf("Failed = %v, want the debug server and its listen error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a server whose address is taken was not reported")
	}
}
