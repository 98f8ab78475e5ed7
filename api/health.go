package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/runledger/runledger/projections"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readiness is the body of /readyz.
type Readiness struct {
	Status      string            `json:"status"`
	Database    string            `json:"database"`
	Projections []projections.Lag `json:"projections,omitempty"`
	Detail      string            `json:"detail,omitempty"`
}

// readyz answers 200 when the database answers and every projection is
// within ReadyMaxLag of the log, 503 otherwise.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	out := Readiness{Status: "ready", Database: "ok"}
	if err := s.pool.Ping(ctx); err != nil {
		out.Status, out.Database, out.Detail = "not_ready", "unreachable", "database did not answer"
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	lags, err := projections.Lags(ctx, s.pool, nil)
	if err != nil {
		out.Status, out.Detail = "not_ready", "could not measure projection lag"
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	out.Projections = lags
	for _, l := range lags {
		if l.Seconds > s.cfg.ReadyMaxLag.Seconds() {
			out.Status = "not_ready"
			out.Detail = fmt.Sprintf("projection %s is %.1fs behind (limit %s)", l.Projection, l.Seconds, s.cfg.ReadyMaxLag)
		}
	}
	status := http.StatusOK
	if out.Status != "ready" {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, out)
}
