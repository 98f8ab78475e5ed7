package api

import (
	"net/http"

	"github.com/runledger/runledger/domain"
)

type pauseRequest struct {
	Reason *string `json:"reason"`
}

// pause asks the run's worker to stop dialing and keep heartbeating; it is
// told on its next heartbeat (pause_requested). Repeating it is harmless;
// on an ended run it is 409 run_ended.
func (s *Server) pause(w http.ResponseWriter, r *http.Request, c call) error {
	var req pauseRequest
	cmd := domain.PauseRun{RequestedBy: c.actor()}
	return s.pauseCommand(w, r, c, &req, func() domain.Command {
		if req.Reason != nil {
			cmd.Reason = *req.Reason
		}
		return cmd
	})
}

// resume lets a paused run's worker dial again; on a run that is not paused
// it changes nothing.
func (s *Server) resume(w http.ResponseWriter, r *http.Request, c call) error {
	var req pauseRequest
	cmd := domain.ResumeRun{RequestedBy: c.actor()}
	return s.pauseCommand(w, r, c, &req, func() domain.Command {
		if req.Reason != nil {
			cmd.Reason = *req.Reason
		}
		return cmd
	})
}

// pauseCommand runs a pause or resume: an optional JSON body into req, the
// command cmd builds, 200 with the run.
func (s *Server) pauseCommand(w http.ResponseWriter, r *http.Request, c call, req any, cmd func() domain.Command) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	if err := decodeBody(w, r, req, true); err != nil {
		return err
	}
	res, err := s.runner.Execute(r.Context(), c.business, runID, cmd(), s.meta(r, c))
	if err != nil {
		return err
	}
	setPosition(w, res.LastPosition)
	writeJSON(w, http.StatusOK, s.view(res.Run, res.LastPosition))
	return nil
}
