package api

import (
	"net/http"

	"github.com/runledger/runledger/domain"
)

// PolicyView is the service's policy as GET /v1/policy answers it, durations
// as Go duration strings: what a worker needs to pace its heartbeats.
type PolicyView struct {
	StaleAfter           string `json:"stale_after"`
	HeartbeatMinInterval string `json:"heartbeat_min_interval"`
	StallAfter           string `json:"stall_after"`
}

// getPolicy answers any authenticated role; it names no business.
func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	if _, _, err := s.authenticate(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, PolicyView{StaleAfter: s.policy.StaleAfter.String(),
		HeartbeatMinInterval: s.policy.HeartbeatMinInterval.String(), StallAfter: s.policy.StallAfterFor(domain.Run{}).String()})
}
