package main

import (
	"net/http"
	"time"
)

// metricsServer is the server for /metrics on the --metrics-addr listener,
// or nil without one (serve runs it as a front service). Prometheus then
// scrapes an address the API's clients need not reach.
func (s *service) metricsServer() *http.Server {
	if s.metricsListener == nil {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.api.MetricsHandler())
	s.logger.Info("metrics server", "addr", s.metricsListener.Addr().String())
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second}
}
