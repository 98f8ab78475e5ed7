package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/runledger/runledger/domain"
	"github.com/runledger/runledger/eventstore"
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
	CodeNotReady          = "not_ready"
	CodeMethodNotAllowed  = "method_not_allowed"
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
	CodeInvalidRequest:   http.StatusBadRequest,
	CodeValidationFailed: http.StatusBadRequest,
	CodeUnauthorized:     http.StatusUnauthorized,
	CodeForbidden:        http.StatusForbidden,
	CodeNotFound:         http.StatusNotFound,
	CodeNoActiveRun:      http.StatusNotFound,
	CodeActiveRunExists:  http.StatusConflict,
	CodeRunEnded:         http.StatusConflict,
	CodeRunExists:        http.StatusConflict,
	CodeConflict:         http.StatusConflict,
	CodeBodyTooLarge:     http.StatusRequestEntityTooLarge,
	CodeUnsupportedMedia: http.StatusUnsupportedMediaType,
	CodeInternal:         http.StatusInternalServerError,
	CodeNotReady:         http.StatusServiceUnavailable,
	CodeMethodNotAllowed: http.StatusMethodNotAllowed,

	CodeIdempotencyKeyReused: http.StatusUnprocessableEntity,
}

// apiError is an error that already knows its problem.
type apiError struct{ p Problem }

func (e *apiError) Error() string { return e.p.Code + ": " + e.p.Detail }

func newProblem(code, detail string) *apiError {
	status := statusOf[code]
	return &apiError{p: Problem{Type: problemTypeBase + code, Title: http.StatusText(status), Status: status, Code: code, Detail: detail}}
}

// problemFor maps any error to its problem: API errors as they are, domain
// and store errors by type, anything else to 500 with the cause logged.
func (s *Server) problemFor(r *http.Request, err error) Problem {
	var (
		ae       *apiError
		ve       *domain.ValidationError
		ended    *domain.RunEndedError
		active   *domain.ActiveRunExistsError
		tooLarge *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ae):
		return ae.p
	case errors.As(err, &ve):
		p := newProblem(CodeValidationFailed, ve.Error()).p
		p.Errors = ve.Fields
		return p
	case errors.As(err, &ended):
		p := newProblem(CodeRunEnded, "the run has ended; its final state is attached").p
		v := s.view(ended.Final)
		p.Run = &v
		return p
	case errors.As(err, &active):
		p := newProblem(CodeActiveRunExists, "the business already has an active run").p
		p.RunID = active.RunID.String()
		return p
	case errors.Is(err, domain.ErrRunNotFound):
		return newProblem(CodeNotFound, "run not found").p
	case errors.Is(err, domain.ErrRunExists):
		return newProblem(CodeRunExists, "a run with this id already exists with other parameters").p
	case errors.Is(err, eventstore.ErrVersionConflict):
		return newProblem(CodeConflict, "the run changed concurrently too many times; retry").p
	case errors.As(err, &tooLarge):
		return newProblem(CodeBodyTooLarge, "request body exceeds 64 KiB").p
	}
	s.logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	return newProblem(CodeInternal, internalErrorResponse).p
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	p := s.problemFor(r, err)
	w.Header().Set("Content-Type", problemJSONMediaType)
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", jsonMediaType)
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
