package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
	"github.com/runledger/runledger/internal/dberr"
)

// Problem is an RFC 9457 problem document with a stable machine code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
	// Errors names each invalid field (validation problems).
	Errors []domain.FieldError `json:"errors,omitempty"`
	// RunID is the active run that blocks a start (active_run_exists).
	RunID string `json:"run_id,omitempty"`
	// Run is the final state of an ended run (run_ended).
	Run *RunView `json:"run,omitempty"`
}

// Error codes of the contract; they never change meaning.
const (
	CodeInvalidRequest    = "invalid_request"
	CodeValidationFailed  = "validation_failed"
	CodeUnauthorized      = "unauthorized"
	CodeForbidden         = "forbidden"
	CodeNotFound          = "not_found"
	CodeNoActiveRun       = "no_active_run"
	CodeActiveRunExists   = "active_run_exists"
	CodeRunEnded          = "run_ended"
	CodeRunExists         = "run_exists"
	CodeConflict          = "version_conflict"
	CodeBodyTooLarge      = "body_too_large"
	CodeUnsupportedMedia  = "unsupported_media_type"
	CodeInternal          = "internal"
	CodeMethodNotAllowed  = "method_not_allowed"
	CodeUnavailable       = "unavailable"
	CodeReadModelBehind   = "read_model_behind"
	CodeTooManyStreams    = "too_many_streams"
	problemTypeBase       = "https://runledger.dev/problems/"
	problemJSONMediaType  = "application/problem+json"
	jsonMediaType         = "application/json"
	maxBodyBytes          = 64 << 10
	internalErrorResponse = "internal error"

	// CodeIdempotencyKeyReused refuses a request whose Idempotency-Key was
	// used with another request to the same endpoint (422).
	CodeIdempotencyKeyReused = "idempotency_key_reused"
)

// statusOf is the one place that maps codes to HTTP statuses.
var statusOf = map[string]int{
	CodeInvalidRequest:       http.StatusBadRequest,
	CodeValidationFailed:     http.StatusBadRequest,
	CodeUnauthorized:         http.StatusUnauthorized,
	CodeForbidden:            http.StatusForbidden,
	CodeNotFound:             http.StatusNotFound,
	CodeNoActiveRun:          http.StatusNotFound,
	CodeActiveRunExists:      http.StatusConflict,
	CodeRunEnded:             http.StatusConflict,
	CodeRunExists:            http.StatusConflict,
	CodeConflict:             http.StatusConflict,
	CodeBodyTooLarge:         http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia:     http.StatusUnsupportedMediaType,
	CodeInternal:             http.StatusInternalServerError,
	CodeMethodNotAllowed:     http.StatusMethodNotAllowed,
	CodeUnavailable:          http.StatusServiceUnavailable,
	CodeReadModelBehind:      http.StatusServiceUnavailable,
	CodeTooManyStreams:       http.StatusTooManyRequests,
	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
}

// apiError is an error that already knows its problem.
type apiError struct {
	p Problem
	// retryAfter, when set, is sent as Retry-After (whole seconds).
	retryAfter time.Duration
}

// retryable returns a problem that tells the client when to try again.
func retryable(code, detail string, after time.Duration) *apiError {
	e := newProblem(code, detail)
	e.retryAfter = after
	return e
}

func (e *apiError) Error() string { return e.p.Code + ": " + e.p.Detail }

func newProblem(code, detail string) *apiError {
	status := statusOf[code]
	return &apiError{p: Problem{Type: problemTypeBase + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail}}
}

// problemFor maps any error to its problem: API errors as they are, domain
// and store errors by type, the database's unavailability to 503 (the
// cause logged at most once a second per kind), anything else to 500 with
// the cause logged.
func (s *Server) problemFor(r *http.Request, err error) *apiError {
	var (
		ae       *apiError
		ve       *domain.ValidationError
		ended    *domain.RunEndedError
		active   *domain.ActiveRunExistsError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ve):
		e := newProblem(CodeValidationFailed, ve.Error())
		e.p.Errors = ve.Fields
		return e
	case errors.As(err, &ended):
		e := newProblem(CodeRunEnded, "the run has ended; its final state is attached")
		v := s.view(ended.Final, 0)
		e.p.Run = &v
		return e
	case errors.As(err, &active):
		e := newProblem(CodeActiveRunExists, "the business already has an active run")
		e.p.RunID = active.RunID.String()
		return e
	case errors.Is(err, domain.ErrRunNotFound):
		return newProblem(CodeNotFound, "run not found")
	case errors.Is(err, domain.ErrRunExists):
		return newProblem(CodeRunExists, "a run with this id already exists with other parameters")
	case errors.Is(err, eventstore.ErrVersionConflict):
		return newProblem(CodeConflict, "the run changed concurrently too many times; retry")
	case errors.As(err, &tooLarge):
		return newProblem(CodeBodyTooLarge, "request body exceeds 64 KiB")
	}
	if errors.Is(r.Context().Err(), context.Canceled) { // the client went away; nobody reads this answer
		return retryable(CodeUnavailable, "the request was cancelled", time.Second)
	}
	if kind, ok := dberr.Transient(err); ok {
		s.failures.Log(r.Context(), slog.LevelWarn, "unavailable:"+string(kind), "request failed: database unavailable",
			"method", r.Method, "route", r.Pattern, "err", err)
		return retryable(CodeUnavailable, "the service cannot reach its database right now; retry shortly", time.Second)
	}
	s.failures.Log(r.Context(), slog.LevelError, "internal:"+r.Pattern, "request failed", "method", r.Method, "route", r.Pattern, "err", err)
	return newProblem(CodeInternal, internalErrorResponse)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e := s.problemFor(r, err)
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max(time.Second, e.retryAfter)/time.Second)))
	}
	w.Header().Set("Content-Type", problemJSONMediaType)
	w.WriteHeader(e.p.Status)
	_ = json.NewEncoder(w).Encode(e.p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", jsonMediaType)
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
