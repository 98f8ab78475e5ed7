package lifecycle

import (
	"context"
	"errors"
	"net"
	"net/http"
)

// HTTPServer is an http.Server as a Service: it serves on Listener (on
// Server.Addr when Listener is nil) until ctx ends, then calls BeforeShutdown
// (if set: the API ends its SSE streams there) and shuts the server down
// gracefully, finishing the requests in flight. Run returns the server's
// error if it stops serving first (its address taken, its listener closed).
type HTTPServer struct {
	Server         *http.Server
	Listener       net.Listener
	BeforeShutdown func()
}

// Run serves until ctx ends; see HTTPServer.
func (h HTTPServer) Run(ctx context.Context) error {
	served := make(chan error, 1)
	go func() {
		if h.Listener == nil {
			served <- h.Server.ListenAndServe()
			return
		}
		served <- h.Server.Serve(h.Listener)
	}()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	if h.BeforeShutdown != nil {
		h.BeforeShutdown()
	}
	// No deadline here: the Group's Stop abandons a server that does not
	// finish, and says so.
	if err := h.Server.Shutdown(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
