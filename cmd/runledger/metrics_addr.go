package main

import (
	"errors"
	"net/http"
	"time"
)

// serveMetrics serves /metrics on the --metrics-addr listener, if there is
// one, until the returned server is shut down (nil without one). Prometheus
// then scrapes an address the API's clients need not reach.
func (s *service) serveMetrics() *http.Server {
	if s.metricsListener == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.api.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
	s.logger.Info("metrics server", "addr", s.metricsListener.Addr().String())
	go func() {
		if err := srv.Serve(s.metricsListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("metrics server", "err", err)
		}
	}()
	return srv
}
