package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/projections"
)

// call is an authorised request on one business.
type call struct {
	business string
	claims   Claims
}

// actor names the caller in event metadata.
func (c call) actor() string {
	if c.claims.Subject != "" {
		return string(c.claims.Role) + ":" + c.claims.Subject
	}
	return string(c.claims.Role)
}

// route registers an endpoint of business {b} for the given roles. Checks run
// in an order that leaks nothing: token (401), path ids (400), business (404:
// another business's runs do not exist for you), role (403).
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

func (s *Server) authorize(r *http.Request, roles []Role) (call, error) {
	token, err := bearer(r.Header.Get("Authorization"))
	if err != nil {
		return call{}, newProblem(CodeUnauthorized, "a valid bearer token is required")
	}
	claims, err := s.auth.Parse(token)
	if err != nil {
		return call{}, newProblem(CodeUnauthorized, "the bearer token is invalid or expired")
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
	return call{business: business, claims: claims}, nil
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
	return eventstore.Metadata{CorrelationID: corr, Actor: c.actor(), RequestID: rid}
}

type startRequest struct {
	RunID      *string `json:"run_id"`
	TotalCalls *int    `json:"total_calls"`
	WorkerID   *string `json:"worker_id"`
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
	if req.RunID != nil {
		id, err := parseRunID(*req.RunID, "run_id")
		if err != nil {
			return err
		}
		runID = id
	}
	meta := s.meta(r, c)
	meta.Actor = "worker:" + *req.WorkerID
	res, err := s.runner.Start(r.Context(), domain.StartRun{RunID: runID, BusinessID: c.business,
		WorkerID: *req.WorkerID, TotalCalls: *req.TotalCalls}, meta)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if len(res.Events) == 0 {
		status = http.StatusOK // a retried start: the run as it is
	}
	w.Header().Set("Location", "/v1/businesses/"+c.business+"/runs/"+runID.String())
	writeJSON(w, status, s.view(res.Run))
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
	// Recorded is false when the heartbeat was coalesced (acknowledged, not stored).
	Recorded bool `json:"recorded"`
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
	writeJSON(w, http.StatusOK, HeartbeatResponse{Run: s.view(res.Run), CancelRequested: res.Run.CancelRequested,
		Recorded: len(res.Events) > 0})
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
	writeJSON(w, http.StatusOK, s.view(res.Run))
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
	writeJSON(w, status, s.view(res.Run))
	return nil
}

func (s *Server) getActive(w http.ResponseWriter, r *http.Request, c call) error {
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
			row.ID, row.SilentFor(now).Round(time.Second), s.policy.StaleAfter))
	}
	writeJSON(w, http.StatusOK, s.view(row.Run))
	return nil
}

func (s *Server) getRun(w http.ResponseWriter, r *http.Request, c call) error {
	runID, err := parseRunID(r.PathValue("r"), "run_id")
	if err != nil {
		return err
	}
	row, ok, err := projections.GetRun(r.Context(), s.pool, c.business, runID)
	if err != nil {
		return err
	}
	if !ok {
		return newProblem(CodeNotFound, "run not found")
	}
	writeJSON(w, http.StatusOK, s.view(row.Run))
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
	var after *projections.ListCursor
	if v := q.Get("cursor"); v != "" {
		cur, err := decodeCursor(v)
		if err != nil {
			return fieldProblem("cursor", "is not a cursor this API returned")
		}
		after = &cur
	}
	rows, next, err := projections.ListRuns(r.Context(), s.pool, c.business, limit, after)
	if err != nil {
		return err
	}
	out := RunList{Runs: make([]RunView, len(rows))}
	for i, row := range rows {
		out.Runs[i] = s.view(row.Run)
	}
	if next != nil {
		cur := encodeCursor(*next)
		out.NextCursor = &cur
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func encodeCursor(c projections.ListCursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.StartedAt.UnixMicro(), 10) + "." + c.RunID.String()))
}

func decodeCursor(s string) (projections.ListCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return projections.ListCursor{}, err
	}
	ts, id, ok := strings.Cut(string(raw), ".")
	if !ok {
		return projections.ListCursor{}, fmt.Errorf("bad cursor")
	}
	micros, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return projections.ListCursor{}, err
	}
	runID, err := uuid.Parse(id)
	if err != nil {
		return projections.ListCursor{}, err
	}
	return projections.ListCursor{StartedAt: time.UnixMicro(micros).UTC(), RunID: runID}, nil
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
	events, err := s.store.ReadStream(r.Context(), runID)
	if err != nil {
		return err
	}
	if len(events) == 0 || events[0].BusinessID != c.business {
		return newProblem(CodeNotFound, "run not found")
	}
	writeJSON(w, http.StatusOK, EventList{Events: events})
	return nil
}
