package api

import (
	"net/http"

	"github.com/runledger/runledger/domain"
)

// pauseRequest is the optional body of pause and resume.
type pauseRequest struct {
	Reason *string `json:"reason"`
}

// pause asks the run's worker to stop dialing and keep heartbeating; it is
// told on its next heartbeat (pause_requested). Repeating it is harmless;
// on an ended run it is 409 run_ended.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, c call) error {
	return s.pauseCommand(w, r, c, func(reason string) domain.Command {
		return domain.PauseRun{RequestedBy: c.actor(), Reason: reason}
	})
}

// resume lets a paused run's worker dial again; on a run that is not paused
// it changes nothing.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, c call) error {
	return s.pauseCommand(w, r, c, func(reason string) domain.Command {
		return domain.ResumeRun{RequestedBy: c.actor(), Reason: reason}
	})
}

// pauseCommand runs a pause or resume: the optional JSON body's reason into
// the command cmd builds, 200 with the run.
func (s *Server) pauseCommand(w http.ResponseWriter, r *http.Request, c call, cmd func(reason string) domain.Command) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	var req pauseRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	var reason string
	if req.Reason != nil {
		reason = *req.Reason
	}
	res, err := s.runner.Execute(r.Context(), c.business, runID, cmd(reason), s.meta(r, c))
	if err != nil {
		return err
	}
	setPosition(w, res.LastPosition)
	writeJSON(w, http.StatusOK, s.view(res.Run, res.LastPosition))
	return nil
}
