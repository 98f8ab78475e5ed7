package api

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
	"github.com/runledger/runledger/runs"
)

// call is an authorised request on one business. It is one pointer wide:
// every handler receives it by value, and an SSE stream keeps its handler's
// frames on its stack for as long as it is open (see follow).
type call struct{ *caller }

// caller is what a call carries.
type caller struct {
	business string
	claims   Claims
	// token is the bearer token itself (never logged), to count its streams.
	token string
}

// actor names the caller in event metadata.
func (c call) actor() string {
	if c.claims.Subject != "" {
		return string(c.claims.Role) + ":" + c.claims.Subject
	}
	return string(c.claims.Role)
}

// route registers an endpoint of business {b} for the given roles. Checks run
// in an order that leaks nothing: token (401), the business id in the path
// (400), business (404: another business's runs do not exist for you), role
// (403); only then does the handler check the rest of its input, so a
// malformed run id in the path from a caller of the wrong role is a 403.
func (s *Server) route(pattern string, roles []Role, h func(http.ResponseWriter, *http.Request, call) error) {
	if strings.HasPrefix(pattern, http.MethodPost+" ") {
		h = s.idempotent(h) // every command accepts Idempotency-Key, checked after authorization
	}
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		c, err := s.authorize(r, roles)
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeError(w, r, err)
		}
	})
}

// authenticate checks the bearer token (401 when missing, bad or expired)
// and returns its claims and the token.
func (s *Server) authenticate(r *http.Request) (Claims, string, error) {
	token, err := bearer(r.Header.Get("Authorization"))
	if err != nil {
		return Claims{}, "", newProblem(CodeUnauthorized, "a valid bearer token is required")
	}
	claims, err := s.auth.Parse(token)
	if err != nil {
		return Claims{}, "", newProblem(CodeUnauthorized, "the bearer token is invalid or expired")
	}
	return claims, token, nil
}

func (s *Server) authorize(r *http.Request, roles []Role) (call, error) {
	claims, token, err := s.authenticate(r)
	if err != nil {
		return call{}, err
	}
	business := r.PathValue("b")
	if err := domain.ValidateBusinessID(business); err != nil {
		return call{}, err
	}
	if claims.BusinessID != business && claims.BusinessID != AnyBusiness {
		return call{}, newProblem(CodeNotFound, "not found")
	}
	if !allows(claims.Role, roles) {
		return call{}, newProblem(CodeForbidden, fmt.Sprintf("role %q may not do this", claims.Role))
	}
	return call{&caller{business: business, claims: claims, token: token}}, nil
}

var (
	workerOnly   = []Role{RoleWorker}
	usersOnly    = []Role{RoleUser}
	readers      = []Role{RoleUser, RoleWorker}
	operatorOnly = []Role{RoleOperator}
)

func (s *Server) routesV1() {
	const base = "/v1/businesses/{b}"
	s.route("POST "+base+"/runs", workerOnly, s.startRun)
	s.route("GET "+base+"/runs/active", readers, s.getActive)
	s.route("GET "+base+"/runs/active/stream", readers, s.streamActive)
	s.route("GET "+base+"/runs", readers, s.listRuns)
	s.route("GET "+base+"/runs/{r}", readers, s.getRun)
	s.route("POST "+base+"/runs/{r}/heartbeat", workerOnly, s.heartbeat)
	s.route("POST "+base+"/runs/{r}/complete", workerOnly, s.complete)
	s.route("POST "+base+"/runs/{r}/cancel", usersOnly, s.cancel)
	s.route("POST "+base+"/runs/{r}/pause", usersOnly, s.pause)
	s.route("POST "+base+"/runs/{r}/resume", usersOnly, s.resume)
	s.route("GET "+base+"/runs/{r}/events", readers, s.runEvents)
	s.route("GET "+base+"/timeline", operatorOnly, s.timeline)
	s.route("GET "+base+"/replay", operatorOnly, s.replay)
	s.handle("GET /v1/policy", s.getPolicy)
}

func (s *Server) meta(r *http.Request, c call) eventstore.Metadata {
	rid := requestID(r.Context())
	corr := r.Header.Get("X-Correlation-ID")
	if corr == "" || len(corr) > 128 {
		corr = rid
	}
	return eventstore.Metadata{CorrelationID: corr, Actor: c.actor(), RequestID: rid, CommandID: commandIDOf(r.Context())}
}

type startRequest struct {
	RunID      *string `json:"run_id"`
	TotalCalls *int    `json:"total_calls"`
	WorkerID   *string `json:"worker_id"`
	// StaleAfter and StallAfter, Go duration strings, set this run's own
	// TTL and stall threshold (1m–24h); absent, the service's apply.
	StaleAfter *string `json:"stale_after"`
	StallAfter *string `json:"stall_after"`
}

func (s *Server) startRun(w http.ResponseWriter, r *http.Request, c call) error {
	var req startRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := required("total_calls", req.TotalCalls, "worker_id", req.WorkerID); err != nil {
		return err
	}
	runID := uuid.Must(uuid.NewV7())
	if cmdID := commandIDOf(r.Context()); cmdID != uuid.Nil {
		runID = runs.DeriveID(cmdID, "run") // a retry of the command starts the same run
	}
	if req.RunID != nil {
		id, err := parseRunID(*req.RunID, "run_id")
		if err != nil {
			return err
		}
		runID = id
	}
	cmd := domain.StartRun{RunID: runID, BusinessID: c.business, WorkerID: *req.WorkerID, TotalCalls: *req.TotalCalls}
	var err error
	if cmd.StaleAfter, err = optionalDuration("stale_after", req.StaleAfter); err != nil {
		return err
	}
	if cmd.StallAfter, err = optionalDuration("stall_after", req.StallAfter); err != nil {
		return err
	}
	meta := s.meta(r, c)
	if c.claims.Subject == "" { // a fleet's shared token: the body names the worker
		meta.Actor = "worker:" + *req.WorkerID
	}
	res, err := s.runner.Start(r.Context(), cmd, meta)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if len(res.Events) == 0 {
		status = http.StatusOK // a retried start: the run as it is
	}
	w.Header().Set("Location", "/v1/businesses/"+c.business+"/runs/"+runID.String())
	setPosition(w, res.LastPosition)
	writeJSON(w, status, s.view(res.Run, res.LastPosition))
	return nil
}

type progressRequest struct {
	CompletedCalls *int `json:"completed_calls"`
	FailedCalls    *int `json:"failed_calls"`
}

// HeartbeatResponse answers a worker's heartbeat.
type HeartbeatResponse struct {
	Run             RunView `json:"run"`
	CancelRequested bool    `json:"cancel_requested"`
	// PauseRequested tells the worker to stop dialing (and keep heartbeating)
	// until a heartbeat answers false.
	PauseRequested bool `json:"pause_requested"`
	// Recorded is false when the heartbeat was coalesced (acknowledged, not stored).
	Recorded bool `json:"recorded"`
	// Position is the log position the answer reflects (see RunView.Position).
	Position int64 `json:"position"`
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	var req progressRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := required("completed_calls", req.CompletedCalls, "failed_calls", req.FailedCalls); err != nil {
		return err
	}
	res, err := s.runner.Execute(r.Context(), c.business, runID,
		domain.RecordHeartbeat{CompletedCalls: *req.CompletedCalls, FailedCalls: *req.FailedCalls}, s.meta(r, c))
	if err != nil {
		return err
	}
	setPosition(w, res.LastPosition)
	writeJSON(w, http.StatusOK, HeartbeatResponse{Run: s.view(res.Run, res.LastPosition), CancelRequested: res.Run.CancelRequested,
		PauseRequested: res.Run.Paused && !res.Run.Ended(), Recorded: len(res.Events) > 0, Position: res.LastPosition})
	return nil
}

type completeRequest struct {
	Outcome        *string `json:"outcome"`
	Error          *string `json:"error"`
	CompletedCalls *int    `json:"completed_calls"`
	FailedCalls    *int    `json:"failed_calls"`
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	var req completeRequest
	if err := decodeBody(w, r, &req, false); err != nil {
		return err
	}
	if err := required("outcome", req.Outcome, "completed_calls", req.CompletedCalls, "failed_calls", req.FailedCalls); err != nil {
		return err
	}
	cmd := domain.CompleteRun{Outcome: domain.Outcome(*req.Outcome), CompletedCalls: *req.CompletedCalls, FailedCalls: *req.FailedCalls}
	if req.Error != nil {
		cmd.Error = *req.Error
	}
	res, err := s.runner.Execute(r.Context(), c.business, runID, cmd, s.meta(r, c))
	if err != nil {
		return err
	}
	setPosition(w, res.LastPosition)
	writeJSON(w, http.StatusOK, s.view(res.Run, res.LastPosition))
	return nil
}

type cancelRequest struct {
	Reason *string `json:"reason"`
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	var req cancelRequest
	if err := decodeBody(w, r, &req, true); err != nil {
		return err
	}
	cmd := domain.RequestCancel{RequestedBy: c.actor()}
	if req.Reason != nil {
		cmd.Reason = *req.Reason
	}
	res, err := s.runner.Execute(r.Context(), c.business, runID, cmd, s.meta(r, c))
	if err != nil {
		return err
	}
	status := http.StatusAccepted // graceful: the worker is told on its next heartbeat
	if res.Run.Ended() {
		status = http.StatusOK // forced: the run was silent past the TTL and is now cancelled
	}
	setPosition(w, res.LastPosition)
	writeJSON(w, status, s.view(res.Run, res.LastPosition))
	return nil
}

func (s *Server) getActive(w http.ResponseWriter, r *http.Request, c call) error {
	if err := s.awaitApplied(r, projections.ActiveRuns); err != nil {
		return err
	}
	if err := s.readModelFresh(projections.ActiveRuns); err != nil {
		return err
	}
	row, ok, err := projections.GetOpenRun(r.Context(), s.pool, c.business)
	if err != nil {
		return err
	}
	now := s.now()
	if !ok {
		return newProblem(CodeNoActiveRun, "the business has no active run")
	}
	if !row.Active(now, s.policy.StaleAfter) {
		return newProblem(CodeNoActiveRun, fmt.Sprintf("run %s has been silent for %s (TTL %s): not active",
			row.ID, row.SilentFor(now).Round(time.Second), s.policy.StaleAfterFor(row.Run)))
	}
	writeJSON(w, http.StatusOK, s.rowView(row))
	return nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	if err := s.awaitApplied(r, projections.Runs); err != nil {
		return err
	}
	row, ok, err := projections.GetRun(r.Context(), s.pool, c.business, runID)
	if err != nil {
		return err
	}
	if !ok {
		return newProblem(CodeNotFound, "run not found")
	}
	writeJSON(w, http.StatusOK, s.rowView(row))
	return nil
}

// RunList is a page of runs, newest first.
type RunList struct {
	Runs       []RunView `json:"runs"`
	NextCursor *string   `json:"next_cursor"`
}

func (s *Server) listRuns(w http.ResponseWriter, r *http.Request, c call) error {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return fieldProblem("limit", "must be an integer from 1 to 100")
		}
		limit = n
	}
	if err := s.awaitApplied(r, projections.Runs); err != nil {
		return err
	}
	var after *projections.ListCursor
	if v := q.Get("cursor"); v != "" {
		at, tie, err := decodeCursor(v)
		id, idErr := uuid.Parse(tie)
		if err != nil || idErr != nil {
			return fieldProblem("cursor", "is not a cursor this API returned")
		}
		after = &projections.ListCursor{StartedAt: at, RunID: id}
	}
	rows, next, err := projections.ListRuns(r.Context(), s.pool, c.business, limit, after)
	if err != nil {
		return err
	}
	var cur string
	if next != nil {
		cur = encodeCursor(next.StartedAt, next.RunID.String())
	}
	writeJSON(w, http.StatusOK, s.runList(rows, cur))
	return nil
}

// runList is a page of rows; cursor, when not empty, is the next page's.
func (s *Server) runList(rows []projections.RunRow, cursor string) RunList {
	out := RunList{Runs: make([]RunView, len(rows))}
	for i, row := range rows {
		out.Runs[i] = s.rowView(row)
	}
	if cursor != "" {
		out.NextCursor = &cursor
	}
	return out
}

// EventList is a run's events in order.
type EventList struct {
	Events []eventstore.Recorded `json:"events"`
}

func (s *Server) runEvents(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	if err := s.awaitApplied(r, ""); err != nil {
		return err
	}
	events, err := s.log.ReadStream(r.Context(), runID)
	if err != nil {
		return err
	}
	if len(events) == 0 || events[0].BusinessID != c.business {
		return newProblem(CodeNotFound, "run not found")
	}
	writeJSON(w, http.StatusOK, EventList{Events: events})
	return nil
}
