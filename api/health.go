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
// within ReadyMaxLag of the log, 503 otherwise. It answers from the server's
// observation (at most a second old, see observed.go): a probe costs the
// database nothing of its own.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	out := Readiness{Status: "ready", Database: "ok"}
	ob, err := s.observed.get(ctx)
	if err == nil {
		err = ob.lagErr
	}
	if err != nil {
		out.Status, out.Database, out.Detail = "not_ready", "unreachable", "database did not answer (projection lag unknown)"
		writeJSON(w, http.StatusServiceUnavailable, out)
		return
	}
	out.Projections = ob.lags
	for _, l := range ob.lags {
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
